"""images/: every Dockerfile is hadolint-clean at warning level, pins its bases, ends as a non-root user and installs
the project only from its own wheel file (--no-index); the hub image carries the registration service; the CI
workflow builds every image the deployment references."""

from __future__ import annotations

import re
import shlex
import sys
import tomllib

import pytest
import yaml

from tests.deploy.conftest import CHARTS, FLUX, IMAGES, REPO, run

DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
WORKFLOW = REPO / ".github" / "workflows" / "images.yaml"


def test_the_five_images_exist():
    assert [p.parent.name for p in DOCKERFILES] == ["hub", "singleuser", "singleuser-alma", "singleuser-root", "xcache"]


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
                assert re.search(r":[\w.-]*\d[\w.-]*\Z|@sha256:", image), f"unpinned base image {image}"
                assert not image.endswith(":latest")
            if name:
                stages.add(name)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users, "no USER: the image would run as root"
    last = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), users[-1])
    assert last not in ("root", "0"), f"last USER is {last}"


@pytest.mark.parametrize(
    "bad, rule",
    [
        ("FROM python:latest\nRUN pip install requests\n", "DL3007"),
        ("FROM debian:12.9-slim\nRUN apt-get update && apt-get install -y curl\n", "DL3008"),
    ],
    ids=["latest-tag", "unpinned-apt"],
)
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
    referenced = set(
        re.findall(
            r"ghcr\.io/escape-dlaas/([\w-]+)",
            "".join(p.read_text() for p in [*FLUX.rglob("*.yaml"), *CHARTS.rglob("values*.yaml")]),
        )
    )
    assert referenced and referenced <= set(built)
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}


PROJECT = re.compile(r"escape[-_.]dlaas", re.I)


def run_commands(dockerfile_text: str) -> list[str]:
    """The shell commands of every RUN instruction, continuation lines joined, split at &&."""
    logical, current = [], ""
    for line in dockerfile_text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + (stripped[:-1] if stripped.endswith("\\") else stripped)
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    commands = []
    for instruction in logical:
        if instruction.upper().startswith("RUN "):
            commands += [c.strip() for c in instruction[4:].split("&&") if c.strip()]
    return commands


def project_install_problems(dockerfile_text: str) -> list[str]:
    """How a Dockerfile could install escape-dlaas from an index instead of the wheel built from this repository."""
    problems = []
    for command in run_commands(dockerfile_text):
        words = shlex.split(command)
        if "pip" not in " ".join(words[:3]) or "install" not in words:
            continue
        if "--find-links" in words or "-f" in words or any(w.startswith("--find-links=") for w in words):
            problems.append(f"--find-links: {command}")
        targets = [w for w in words if PROJECT.search(w)]
        for target in targets:
            if not re.fullmatch(r"/\S+/escape_dlaas-\$\{DLAAS_VERSION\}-py3-none-any\.whl", target):
                problems.append(f"not the wheel file by path: {target}")
        if targets and not {"--no-index", "--no-deps"} <= set(words):
            problems.append(f"the wheel is installed without --no-index --no-deps: {command}")
    return problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_the_project_is_installed_from_its_own_wheel_only(dockerfile):
    text = dockerfile.read_text()
    assert project_install_problems(text) == []
    installs = [c for c in run_commands(text) if PROJECT.search(c) and "pip install" in c]
    if dockerfile.parent.name == "singleuser-root":
        assert installs == []  # built on the base image, installs nothing of ours
    else:
        assert len(installs) == 1, installs
        # Its dependencies came from the requirements derived from pyproject.toml, in an earlier pip call.
        assert any("--requirement /tmp/wheels/requirements.txt" in c for c in run_commands(text))


@pytest.mark.parametrize(
    "bad, problem",
    [
        (
            'RUN pip install --no-cache-dir --find-links /tmp/wheels "escape-dlaas[hub]==${DLAAS_VERSION}"',
            "--find-links",
        ),
        ('RUN pip install --no-index --no-deps "escape-dlaas==${DLAAS_VERSION}"', "not the wheel file by path"),
        (
            'RUN pip install --no-deps "/tmp/wheels/escape_dlaas-${DLAAS_VERSION}-py3-none-any.whl"',
            "the wheel is installed without --no-index",
        ),
        ("RUN python3 -m venv /v \\\n    && /v/bin/pip install -f /w escape_dlaas", "--find-links"),
    ],
    ids=["find-links-by-name", "by-name", "no-index-missing", "venv-pip-short-flag"],
)
def test_an_install_an_index_could_win_is_caught(bad, problem):
    assert any(p.startswith(problem) for p in project_install_problems(bad)), project_install_problems(bad)


def test_project_requirements_expands_extras_and_refuses_unknown_ones(tmp_path):
    script = IMAGES / "project_requirements.py"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("""[project]
name = "escape-dlaas"
dependencies = ["requests>=2.31"]
[project.optional-dependencies]
hub = ["jupyterhub==6.1.1"]
registrar = ["escape-dlaas[hub]", "rucio-clients==41.5.1"]
""")
    r = run([sys.executable, script, pyproject, "registrar"])
    assert r.returncode == 0 and r.stdout.split() == ["requests>=2.31", "jupyterhub==6.1.1", "rucio-clients==41.5.1"]
    r = run([sys.executable, script, pyproject, "hub,registrar"])  # as the images' DLAAS_EXTRAS gives them
    assert r.returncode == 0 and r.stdout.split() == ["requests>=2.31", "jupyterhub==6.1.1", "rucio-clients==41.5.1"]
    r = run([sys.executable, script, pyproject, "hubb"])
    assert r.returncode == 1 and "pyproject.toml has no extra 'hubb'" in r.stderr


def image_extras(dockerfile_text: str) -> list[str]:
    """The extras an image installs: the default of its DLAAS_EXTRAS build argument, comma-separated."""
    found = re.findall(r"^ARG DLAAS_EXTRAS=(\S+)$", dockerfile_text, re.M)
    return found[0].split(",") if len(found) == 1 else []


def test_every_extra_the_images_ask_for_exists():
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for dockerfile in DOCKERFILES:
        if dockerfile.parent.name == "singleuser-root":
            continue  # built on the base image: no wheel stage
        asked = image_extras(dockerfile.read_text())
        assert asked and set(asked) <= extras, f"{dockerfile}: {asked}"


def wheel_stage(dockerfile_text: str) -> str:
    """The text of the `wheel` build stage: from its FROM line to the next FROM."""
    found = re.search(r"^FROM \S+ AS wheel$.*?(?=^FROM )", dockerfile_text, re.M | re.S)
    return found.group(0).strip() if found else ""


def test_every_image_builds_the_same_wheel_of_every_shipped_package():
    """One wheel stage, written the same in every Dockerfile that builds the project (a stage cannot be shared
    between Dockerfiles without BuildKit's bake): the images differ in the extras they install, never in the wheel."""
    stages = {p.parent.name: wheel_stage(p.read_text()) for p in DOCKERFILES if p.parent.name != "singleuser-root"}
    assert all(stages.values()), [name for name, stage in stages.items() if not stage]
    assert len(set(stages.values())) == 1, "the wheel stages differ: " + ", ".join(sorted(stages))
    stage = next(iter(stages.values()))
    assert "ARG DLAAS_EXTRAS" in stage and '"${DLAAS_EXTRAS}"' in stage
    copied = set(re.findall(r"^COPY (\w+) \./\1$", stage, re.M))
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = {p.rstrip("*") for p in packages["include"]} - {"devstack"}  # devstack: the local data lake only
    assert copied == shipped


def test_the_xcache_image_needs_no_user_server_package():
    """dlaas_xcache and its image depend on the small shared packages only, not on singleuser or hub_plugins."""
    for module in (REPO / "dlaas_xcache").glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (\w+)", module.read_text(), re.M)
        assert not {"singleuser", "hub_plugins", "devstack"} & set(imports), module.name


def test_the_hub_image_carries_the_registration_service():
    text = (IMAGES / "hub" / "Dockerfile").read_text()
    # Built into the same wheel, with the dependencies of its extra, and checked at build time.
    assert "COPY dlaas_registrar ./dlaas_registrar" in text
    commands = run_commands(text)
    assert "command -v dlaas-registrar" in commands and 'python -c "import dlaas_registrar.app"' in commands
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["dlaas-registrar"] == "dlaas_registrar.app:main"
    assert any(p.startswith("dlaas_registrar") for p in project["tool"]["setuptools"]["packages"]["find"]["include"])
    # The chart runs the registrar from this image.
    values = yaml.safe_load((CHARTS / "dlaas" / "values.yaml").read_text())
    assert values["registrar"]["image"]["repository"].endswith("/dlaas-hub")
