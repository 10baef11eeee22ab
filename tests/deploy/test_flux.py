"""flux/: kustomize-build every overlay, validate every manifest strictly (Kubernetes and Flux CRD schemas), and
check the GitOps rules: clusters/ only wires, overlays change only versions and values, secrets are encrypted."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.deploy.conftest import ENVS, FLUX, docs

KUSTOMIZE_DIRS = ["infrastructure", "apps/base", *(f"apps/{env}" for env in ENVS)]
NOT_MANIFESTS = {"kustomization.yaml", "kustomizeconfig.yaml", "values.yaml", ".sops.yaml"}
PATCHABLE = {("spec", "chart", "spec", "version"), ("spec", "values")}


def manifest_files(root=FLUX):
    """Every YAML file of the tree that Flux applies as is: not kustomize's own files, not values files, not the
    overlays' partial patches (those are validated merged, in the kustomize builds)."""
    return sorted(p for p in root.rglob("*.yaml") if p.name not in NOT_MANIFESTS and not p.name.endswith("-patch.yaml"))


@pytest.fixture(scope="module")
def built(deploy):
    out = {}
    for d in KUSTOMIZE_DIRS:
        r = deploy.kustomize(FLUX / d)
        assert r.returncode == 0, f"kustomize build flux/{d}: {r.stderr}"
        out[d] = r.stdout
    return out


@pytest.mark.parametrize("path", KUSTOMIZE_DIRS)
def test_kustomize_build_is_valid(deploy, built, path, tmp_path):
    out = tmp_path / "built.yaml"
    out.write_text(built[path])
    code, report = deploy.validate(out)
    assert code == 0, report["errors"]
    assert report["checked"] >= 2


def test_every_flux_manifest_is_valid(deploy):
    files = manifest_files()
    assert len(files) >= 10
    code, report = deploy.validate(*files)
    assert code == 0, report["errors"]
    # The encrypted Secrets (hub, EOS keytab, registrar's rucio.cfg) are recognised and skipped, the rest checked.
    assert len(report["skipped"]) == 3 * len(ENVS)
    assert all("SOPS-encrypted" in s for s in report["skipped"])


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("apps/base/jupyterhub/helmrelease.yaml", "  interval: 30m", "  intreval: 30m"), "'intreval' was unexpected"),
        (
            ("apps/base/dlaas/helmrelease.yaml", "remediateLastFailure", "remediateLastFailures"),
            "'remediateLastFailures' was unexpected",
        ),
        (("apps/base/jupyterhub/helmrelease.yaml", "mode: warn", "mode: warning"), "'warning' is not one of"),
        (("clusters/production/apps.yaml", "prune: true", "prune: yes-please"), "is not of type 'boolean'"),
        (("infrastructure/namespaces.yaml", "  labels:", "  labelz:"), "labelz"),
    ],
    ids=["helmrelease-field", "nested-field", "enum", "type", "kubernetes-object"],
)
def test_a_broken_manifest_fails(deploy, tmp_path, edit, expected):
    tree = tmp_path / "flux"
    shutil.copytree(FLUX, tree)
    rel, old, new = edit
    path = tree / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    code, report = deploy.validate(*manifest_files(tree))
    assert code == 1
    assert any(expected in e for e in report["errors"]), report["errors"]


def test_a_broken_overlay_fails_kustomize(deploy, tmp_path):
    tree = tmp_path / "flux"
    shutil.copytree(FLUX, tree)
    k = tree / "apps" / "production" / "kustomization.yaml"
    k.write_text(k.read_text().replace("jupyterhub-patch.yaml", "jupyterhub-pach.yaml"))
    r = deploy.kustomize(tree / "apps" / "production")
    assert r.returncode != 0 and "jupyterhub-pach.yaml" in r.stderr


def test_clusters_only_wire_flux_kustomizations():
    for env in ENVS:
        objs = [d for f in sorted((FLUX / "clusters" / env).glob("*.yaml")) for d in docs(f.read_text())]
        assert {(o["kind"], o["metadata"]["name"]) for o in objs} == {
            ("Kustomization", "infrastructure"),
            ("Kustomization", "apps"),
        }
        apps = next(o for o in objs if o["metadata"]["name"] == "apps")["spec"]
        assert apps["path"] == f"./flux/apps/{env}"
        assert apps["dependsOn"] == [{"name": "infrastructure"}]
        assert apps["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
        assert apps["prune"] is True and apps["wait"] is True


def leaf_paths(node, prefix=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaf_paths(v, (*prefix, k))
    else:
        yield prefix


@pytest.mark.parametrize("env", ENVS)
def test_overlays_patch_only_versions_and_values(env):
    kustomization = yaml.safe_load((FLUX / "apps" / env / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == "../base"
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "patches"}
    for patch in kustomization["patches"]:
        doc = yaml.safe_load((FLUX / "apps" / env / patch["path"]).read_text())
        assert doc["kind"] == "HelmRelease"
        for path in leaf_paths({"spec": doc["spec"]}):
            assert any(path[: len(p)] == p for p in PATCHABLE), f"{patch['path']} patches {'.'.join(path)}"


def test_helmreleases_pin_versions_depend_and_remediate(built):
    for env in ENVS:
        objs = {(o["kind"], o["metadata"]["name"]): o for o in docs(built[f"apps/{env}"])}
        hub = objs[("HelmRelease", "jupyterhub")]["spec"]  # its chart version: tests/deploy/test_versions.py
        # The registrar (dlaas) reads the service token z2jh generates: jupyterhub first, and no cycle.
        assert "dependsOn" not in hub
        assert objs[("HelmRelease", "dlaas")]["spec"]["dependsOn"] == [{"name": "jupyterhub"}]
        for name in ("jupyterhub", "dlaas"):
            spec = objs[("HelmRelease", name)]["spec"]
            assert spec["install"]["remediation"]["retries"] >= 1
            assert spec["upgrade"]["remediation"]["retries"] >= 1
            assert spec["timeout"] and spec["interval"]
            # valuesFrom names were rewritten to the generated (hashed) ConfigMaps, which exist
            for ref in spec["valuesFrom"]:
                assert ("ConfigMap", ref["name"]) in objs


def test_every_helmrelease_takes_its_chart_from_a_repository_the_infrastructure_defines(built):
    """Flux applies infrastructure/ before the apps: a HelmRelease whose HelmRepository nobody defines never
    installs."""
    repositories = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in docs(built["infrastructure"])
        if o["kind"] == "HelmRepository"
    }
    for env in ENVS:
        for release in (o for o in docs(built[f"apps/{env}"]) if o["kind"] == "HelmRelease"):
            source = release["spec"]["chart"]["spec"]["sourceRef"]
            if source["kind"] == "HelmRepository":
                assert (source["namespace"], source["name"]) in repositories, (env, release["metadata"]["name"])


def test_no_plaintext_secret_in_the_flux_tree():
    for path in FLUX.rglob("*.yaml"):
        for doc in docs(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                assert "sops" in doc, f"{path} holds a plaintext Secret"
                for value in (doc.get("stringData") or doc.get("data") or {}).values():
                    assert value.startswith("ENC[AES256_GCM,"), f"{path}: a value is not encrypted"
