"""Fixtures of the deployment checks: the pinned tools (installed into <repo>/.tools on first use) and helpers that
run helm, kustomize and the strict manifest validator on the repository's charts and Flux tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.deploy_tools import ensure
from devstack.settings import REPO
from tests.deploy.warm_python import run_script
from tests.deploy.z2jh_hub import deep_merge  # noqa: F401 - Helm/Flux values merge, used by the tests

HERE = Path(__file__).resolve().parent
CHARTS = REPO / "charts"
FLUX = REPO / "flux"
IMAGES = REPO / "images"
KUBE_VERSION = "1.33.0"
ENVS = ("production", "staging")


@pytest.fixture(scope="session")
def tools():
    return ensure()


def run(argv, *, input=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=input, timeout=timeout)


class Deploy:
    """Thin wrappers over the real tools; each returns the CompletedProcess so tests can assert failures too."""

    def __init__(self, tools):
        self.tools = tools

    def helm(self, *args):
        return run([self.tools.helm, *args])

    def template(self, chart: Path, *values: Path, release="dlaas", namespace="dlaas"):
        argv = ["template", release, chart, "--namespace", namespace, "--kube-version", KUBE_VERSION]
        for v in values:
            argv += ["-f", v]
        return self.helm(*argv)

    def kustomize(self, path: Path):
        return run([self.tools.kubectl, "kustomize", path])

    def validate(self, *sources: Path | str, stdin: str | None = None) -> tuple[int, dict]:
        argv = [self.tools.python, HERE / "manifest_check.py", "--kube-version", KUBE_VERSION, *sources]
        r = run(argv, input=stdin)
        try:
            report = json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"the validator crashed: {r.stderr[-2000:]}") from None
        return r.returncode, report

    def hadolint(self, dockerfile: Path):
        return run([self.tools.hadolint, "--no-color", "--failure-threshold", "warning", dockerfile])


@pytest.fixture(scope="session")
def deploy(tools):
    return Deploy(tools)


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="session")
def overlays(deploy) -> dict[str, list[dict]]:
    """Every cluster's kustomize-built apps overlay: what Flux applies for it."""
    built = {}
    for env in ENVS:
        r = deploy.kustomize(FLUX / "apps" / env)
        assert r.returncode == 0, f"kustomize build flux/apps/{env}: {r.stderr}"
        built[env] = docs(r.stdout)
    return built


@pytest.fixture(scope="session")
def infrastructure(deploy) -> list[dict]:
    r = deploy.kustomize(FLUX / "infrastructure")
    assert r.returncode == 0, r.stderr
    return docs(r.stdout)


def render(deploy, values: dict, tmp_path: Path, chart: Path = CHARTS / "dlaas") -> list[dict]:
    """The dlaas chart rendered by the pinned helm with `values` (as Flux would hand them over)."""
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    out = deploy.template(chart, path)
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


def release_values(built: list[dict], release: str, flux_root: Path = FLUX) -> dict:
    """The values Flux hands to a HelmRelease of a kustomize-built overlay: its valuesFrom ConfigMaps in order,
    then spec.values on top."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in built}
    hr = by_name[("HelmRelease", release)]
    values: dict = {}
    for ref in hr["spec"].get("valuesFrom", []):
        cm = by_name[(ref["kind"], ref["name"])]
        values = deep_merge(values, yaml.safe_load(cm["data"][ref.get("valuesKey", "values.yaml")]) or {})
    return deep_merge(values, hr["spec"].get("values") or {})


def chart_version(built: list[dict], release: str) -> str:
    """The chart version a HelmRelease of a kustomize-built overlay asks Flux for."""
    hr = next(d for d in built if d["kind"] == "HelmRelease" and d["metadata"]["name"] == release)
    return hr["spec"]["chart"]["spec"]["version"]


def user_pods_report(
    values: dict, tmp_path: Path, *, users=("alice",), user_options: dict | None = None, chart: str = ""
) -> tuple[int, dict, str]:
    """The user pods the real KubeSpawner makes of `values`, per user and profile (tests/deploy/user_pods.py)."""
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    args = [str(path), "--chart-version", chart]
    for user in users:
        args += ["--user", user]
    if user_options is not None:
        args += ["--user-options", json.dumps(user_options)]
    r = run_script(HERE / "user_pods.py", args, env={"PATH": "/usr/bin:/bin"}, cwd=REPO, timeout=300)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"rendering the user pods crashed: {r.stderr[-3000:]}") from None
    return r.returncode, report, r.stderr


@pytest.fixture(scope="session")
def user_pods(overlays, tmp_path_factory) -> dict[str, tuple[dict, dict, dict]]:
    """Per cluster: (z2jh values, dlaas values, the user_pods.py report for alice and john.doe - a name KubeSpawner
    escapes in its {username}), rendered once for the session."""
    rendered = {}
    for env in ENVS:
        built = overlays[env]
        values = release_values(built, "jupyterhub")
        code, report, stderr = user_pods_report(
            values,
            tmp_path_factory.mktemp(f"user-pods-{env}"),
            users=("alice", "john.doe"),
            chart=chart_version(built, "jupyterhub"),
        )
        assert code == 0, report["errors"] or stderr
        rendered[env] = (values, release_values(built, "dlaas"), report)
    return rendered


def hub_config_report(values: dict, tmp_path: Path) -> tuple[int, dict, str]:
    """Load the hub config of `values` in a real JupyterHub (tests/deploy/hub_config_check.py)."""
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    env_secret = {"JUPYTERHUB_CRYPT_KEY": "ab" * 32, "OAUTH_CLIENT_SECRET": "not-a-real-secret"}
    r = run_script(HERE / "hub_config_check.py", [path], env={"PATH": "/usr/bin:/bin", **env_secret}, cwd=REPO)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"hub config check crashed: {r.stderr[-3000:]}") from None
    return r.returncode, report, r.stderr
