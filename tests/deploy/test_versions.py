"""Versions that agree: z2jh's hub pod runs the chart's jupyterhub_config.py inside the hub image, so the jupyterhub
chart Flux installs and the z2jh hub image ours is built on must be one z2jh release - in the base and in every
cluster after kustomize. The chart is pinned to an exact version (no range Flux could float within), the hub
Dockerfile builds FROM quay.io/jupyterhub/k8s-hub:${Z2JH_VERSION} with that version as the default, and the hub image
every cluster runs is ours (built from that Dockerfile)."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.deploy.conftest import ENVS, FLUX, IMAGES, REPO, chart_version, docs, release_values

HUB_DOCKERFILE = IMAGES / "hub" / "Dockerfile"
Z2JH_HUB = "quay.io/jupyterhub/k8s-hub"


def hub_image_base(dockerfile_text: str) -> str:
    """The tag of z2jh's hub image the last stage of the hub Dockerfile is built FROM, build arguments resolved with
    their defaults (as `docker build` without --build-arg does)."""
    args: dict[str, str] = {}
    base = ""
    for line in dockerfile_text.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"ARG (\w+)=(\S+)", line):
            args.setdefault(m[1], m[2])
        elif line.startswith("FROM "):
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), line.split()[1])
            base = image.removeprefix(Z2JH_HUB + ":") if image.startswith(Z2JH_HUB + ":") else ""
    return base


def pairing_problems(env: str, built: list[dict], dockerfile_text: str) -> list[str]:
    """Why the z2jh chart of a kustomize-built overlay and the hub image's base are not the same release."""
    version = chart_version(built, "jupyterhub")
    base = hub_image_base(dockerfile_text)
    found = []
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        found.append(f"{env}: the jupyterhub chart version {version!r} is not one exact release")
    if not re.fullmatch(r"\d+\.\d+\.\d+", base):
        found.append(f"images/hub/Dockerfile is not built FROM {Z2JH_HUB}:<release> (got {base!r})")
    elif version != base:
        found.append(f"{env}: the jupyterhub chart is {version}, the hub image is built on {Z2JH_HUB}:{base}")
    hub_image = (release_values(built, "jupyterhub").get("hub") or {}).get("image", {}).get("name", "")
    if not hub_image.endswith("/dlaas-hub"):
        found.append(f"{env}: hub.image.name {hub_image!r} is not the hub image built from images/hub/Dockerfile")
    return found


@pytest.mark.parametrize("path", ["base", *ENVS])
def test_the_chart_and_the_hub_image_are_one_z2jh_release(deploy, path):
    r = deploy.kustomize(FLUX / "apps" / path)
    assert r.returncode == 0, r.stderr
    assert pairing_problems(path, docs(r.stdout), HUB_DOCKERFILE.read_text()) == []


def test_the_hub_dockerfile_names_its_z2jh_release_once():
    text = HUB_DOCKERFILE.read_text()
    assert re.findall(r"^ARG Z2JH_VERSION=(\S+)$", text, re.M) == [hub_image_base(text)]
    assert f"FROM {Z2JH_HUB}:${{Z2JH_VERSION}}" in text
    # The image says which z2jh release it is built on (docker inspect / the registry show the label).
    assert f'LABEL org.opencontainers.image.base.name="{Z2JH_HUB}:${{Z2JH_VERSION}}"' in text


@pytest.mark.parametrize(
    "version, dockerfile_from, expected",
    [
        (
            "4.4.0",
            None,
            "staging: the jupyterhub chart is 4.4.0, the hub image is built on quay.io/jupyterhub/k8s-hub:",
        ),
        (">=4.3.3 <5.0.0", None, "staging: the jupyterhub chart version '>=4.3.3 <5.0.0' is not one exact release"),
        (None, "quay.io/jupyterhub/k8s-hub:4.3.3", "staging: the jupyterhub chart is "),
    ],
    ids=["other-release-in-an-overlay", "range-in-an-overlay", "dockerfile-pinned-elsewhere"],
)
def test_a_chart_and_hub_image_of_different_releases_fail(deploy, tmp_path, version, dockerfile_from, expected):
    tree = tmp_path / "flux"
    shutil.copytree(FLUX, tree)
    if version is not None:
        patch = tree / "apps" / "staging" / "jupyterhub-patch.yaml"
        text = patch.read_text()
        assert "\nspec:\n" in text
        patch.write_text(text.replace("\nspec:\n", f'\nspec:\n  chart:\n    spec:\n      version: "{version}"\n', 1))
    dockerfile = HUB_DOCKERFILE.read_text()
    if dockerfile_from is not None:
        dockerfile = dockerfile.replace(f"FROM {Z2JH_HUB}:${{Z2JH_VERSION}}", f"FROM {dockerfile_from}")
    r = deploy.kustomize(tree / "apps" / "staging")
    assert r.returncode == 0, r.stderr
    problems = pairing_problems("staging", docs(r.stdout), dockerfile)
    assert any(p.startswith(expected) for p in problems), problems
    if dockerfile_from is not None:
        assert any(p.endswith(f"the hub image is built on {dockerfile_from}") for p in problems), problems


JUPYTERHUB_PIN = re.compile(r"(?<![\w-])jupyterhub==([\w.]+)", re.I)
# Every file that names the JupyterHub release: pyproject's `jupyterhub` extra (which the hub, registrar and notebook
# extras use) and the two constraint files, the lock files of the main and the users' environments. The hub and a
# user's server speak one JupyterHub API version, so they must agree.
JUPYTERHUB_PINNED_IN = [
    "pyproject.toml",
    "constraints.txt",
    "devstack/singleuser-constraints.txt",
]


def jupyterhub_pins(texts: dict[str, str]) -> dict[str, set[str]]:
    """The JupyterHub releases each text pins (`jupyterhub==X`; jupyterhub-kubespawner and the like do not count)."""
    return {name: set(JUPYTERHUB_PIN.findall(text)) for name, text in texts.items()}


def test_jupyterhub_is_pinned_to_one_release_everywhere():
    texts = {name: (REPO / name).read_text() for name in JUPYTERHUB_PINNED_IN}
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in sorted(IMAGES.glob("*/Dockerfile"))}
    pins = jupyterhub_pins(texts)
    for name in JUPYTERHUB_PINNED_IN:
        assert pins[name], f"{name} no longer pins jupyterhub: drop it from JUPYTERHUB_PINNED_IN or pin it again"
    assert len(JUPYTERHUB_PIN.findall(texts["pyproject.toml"])) == 1, "pyproject names JupyterHub once (its extra)"
    releases = set().union(*pins.values())
    assert len(releases) == 1, {name: sorted(found) for name, found in pins.items() if found}


def test_a_second_jupyterhub_release_anywhere_is_caught():
    pins = jupyterhub_pins(
        {"a": 'hub = ["jupyterhub==6.1.1"]', "b": "jupyterhub-kubespawner==7.1.0\njupyterhub==6.0.0"}
    )
    assert pins == {"a": {"6.1.1"}, "b": {"6.0.0"}}
