"""images/: every Dockerfile is hadolint-clean at warning level, pins its bases, ends as a non-root user; the CI
workflow builds every image the deployment references."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import CHARTS, FLUX, IMAGES, REPO

DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
WORKFLOW = REPO / ".github" / "workflows" / "images.yaml"


def test_the_five_images_exist():
    assert [p.parent.name for p in DOCKERFILES] == ["hub", "singleuser", "singleuser-alma", "singleuser-root",
                                                    "xcache"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(deploy, dockerfile):
    r = deploy.hadolint(dockerfile)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_pinned_bases_and_non_root_user(dockerfile):
    lines = [ln.strip() for ln in dockerfile.read_text().splitlines()]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    stages = set()
    for ln in lines:
        if ln.startswith("FROM "):
            image = ln.split()[1]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
            name = ln.split()[-1] if " AS " in ln else None
            if image not in stages:
                assert re.search(r":[\w.-]*\d[\w.-]*$|@sha256:", image), f"unpinned base image {image}"
                assert not image.endswith(":latest")
            if name:
                stages.add(name)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users, "no USER: the image would run as root"
    last = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), users[-1])
    assert last not in ("root", "0"), f"last USER is {last}"


@pytest.mark.parametrize("bad, rule", [
    ("FROM python:latest\nRUN pip install requests\n", "DL3007"),
    ("FROM debian:12.9-slim\nRUN apt-get update && apt-get install -y curl\n", "DL3008"),
], ids=["latest-tag", "unpinned-apt"])
def test_hadolint_catches_bad_dockerfiles(deploy, tmp_path, bad, rule):
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    r = deploy.hadolint(path)
    assert r.returncode != 0 and rule in r.stdout


def test_workflow_builds_every_image_the_deployment_uses():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"]["tags"] == ["v*.*.*"]  # YAML reads the key `on` as True
    jobs = workflow["jobs"]
    built = {"dlaas-singleuser": "images/singleuser/Dockerfile"}
    built |= {m["image"]: m["dockerfile"] for m in jobs["images"]["strategy"]["matrix"]["include"]}
    assert jobs["images"]["needs"] == "base"
    for dockerfile in built.values():
        assert (REPO / dockerfile).is_file()
    assert {f"images/{p.parent.name}/Dockerfile" for p in DOCKERFILES} == set(built.values())
    referenced = set(re.findall(r"ghcr\.io/escape-dlaas/([\w-]+)", "".join(
        p.read_text() for p in [*FLUX.rglob("*.yaml"), *CHARTS.rglob("values*.yaml")])))
    assert referenced and referenced <= set(built)
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}
