"""charts/dlaas: lint and render with a real helm, validate every object strictly, and check what operators rely on
(privileged EOS FUSEx with Bidirectional propagation, a closed XCache, CronJobs running the real console scripts)."""

from __future__ import annotations

import json
import shutil
import time
import tomllib

import pytest
import yaml

from tests.deploy.conftest import CHARTS, REPO, docs

CHART = CHARTS / "dlaas"
VALUES_FILES = [None, CHART / "ci" / "render-all-values.yaml", REPO / "flux" / "apps" / "base" / "dlaas" / "values.yaml"]
IDS = ["defaults", "render-all", "flux-base"]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module")
def rendered(deploy):
    out = deploy.template(CHART, CHART / "ci" / "render-all-values.yaml")
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


@pytest.mark.parametrize("values", VALUES_FILES, ids=IDS)
def test_lint_template_and_strict_validation(deploy, values, tmp_path):
    extra = [values] if values else []
    lint = deploy.helm("lint", CHART, "--strict", *sum((["-f", v] for v in extra), []))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = deploy.template(CHART, *extra)
    assert out.returncode == 0, out.stderr
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(out.stdout)
    code, report = deploy.validate(manifest)
    assert code == 0 and not report["errors"], report["errors"]
    assert report["checked"] >= 10


def test_render_all_values_renders_every_template(deploy, rendered):
    kinds = sorted({o["kind"] for o in rendered})
    assert kinds == sorted(["ConfigMap", "CronJob", "DaemonSet", "Deployment", "NetworkPolicy", "Role",
                            "RoleBinding", "Service", "ServiceAccount"])
    text = deploy.template(CHART, CHART / "ci" / "render-all-values.yaml").stdout
    templates = {p.name for p in (CHART / "templates").glob("*.yaml")}
    sources = {line.rsplit("/", 1)[1] for line in text.splitlines() if line.startswith("# Source: dlaas/templates/")}
    assert sources == templates
    keys = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert len(keys) == len(rendered)  # no two objects of a kind share a name


def test_schema_declares_additional_properties_on_every_object():
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_objects.append(path)
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path + " (lists properties but is not closed)")
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "#")
    assert not open_objects


@pytest.mark.parametrize("patch, needle", [
    ({"xcache": {"replica": 2}}, "replica"),
    ({"eos": {"instances": [{"name": "escape", "mgm": "m", "remoteMountDir": "/eos/x/", "mount": "/x"}]}}, "mount"),
    ({"scratchCleanup": {"enabled": True, "schedule": "every day"}}, "schedule"),
    ({"eos": {"image": {"repository": "r", "tag": "t", "pullPolicy": "Sometimes"}}}, "pullPolicy"),
], ids=["unknown-key", "unknown-nested-key", "bad-cron", "bad-enum"])
def test_bad_values_fail_lint_and_template(deploy, tmp_path, patch, needle):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(patch))
    lint = deploy.helm("lint", CHART, "-f", bad)
    out = deploy.template(CHART, bad)
    assert lint.returncode != 0 and out.returncode != 0
    assert needle in out.stderr


def test_broken_template_fails_validation(deploy, tmp_path):
    """A misspelled field in a template renders fine with helm, and is caught by the strict validation."""
    copy = tmp_path / "dlaas"
    shutil.copytree(CHART, copy)
    dep = copy / "templates" / "xcache-deployment.yaml"
    dep.write_text(dep.read_text().replace("readinessProbe:", "readynessProbe:"))
    out = deploy.template(copy)
    assert out.returncode == 0, out.stderr
    code, report = deploy.validate("-", stdin=out.stdout)
    assert code == 1
    assert any("Deployment/dlaas-xcache" in e and "readynessProbe" in e for e in report["errors"]), report


def test_eos_fusex_daemonset_is_privileged_with_bidirectional_mount(rendered):
    (ds,) = by_kind(rendered, "DaemonSet")
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["eosxd-escape", "eosxd-user"]
    for c in containers:
        assert c["securityContext"]["privileged"] is True
        eos = next(m for m in c["volumeMounts"] if m["name"] == "eos")
        assert eos["mountPropagation"] == "Bidirectional" and eos["mountPath"] == "/eos"
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["eos"]["hostPath"]["path"] == "/eos"
    assert volumes["sss-keytab"]["secret"]["secretName"] == "dlaas-eos-sss"
    assert volumes["sss-keytab"]["secret"]["defaultMode"] == 0o400
    config = next(c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == "dlaas-eos-fusex")
    fuse = json.loads(config["data"]["fuse.user.conf"])
    assert fuse["hostport"] == "eos-user.example.org:1094" and fuse["localmountdir"] == "/eos/user"
    assert fuse["auth"]["oauth2"] == 1 and fuse["auth"]["sss"] == 1


def test_xcache_is_reachable_from_user_pods_only_and_not_an_open_proxy(rendered):
    (svc,) = by_kind(rendered, "Service")
    assert svc["spec"]["ports"][0]["port"] == 1094
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(rendered, "NetworkPolicy")}
    xc = policies["dlaas-xcache"]
    assert xc["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"component": "singleuser-server",
                                                                        "app": "jupyterhub"}}}],
                              "ports": [{"protocol": "TCP", "port": 1094}]}]
    assert policies["dlaas-scratch-cleanup"]["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in policies["dlaas-scratch-cleanup"]  # no network at all
    origins = next(c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == "dlaas-xcache-origins")
    assert origins["data"]["origins.cfg"].split("\n")[:2] == ["pss.permit eos.example.org",
                                                              "pss.permit origin.example.net:1094"]
    cfg = next(c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == "dlaas-xcache")["data"]
    lines = cfg["xcache.cfg"].splitlines()
    assert "pss.origin =" in lines and "continue /etc/xcache/origins/" in lines
    assert "pfc.prefetch 10" in lines and "pfc.blocksize 1M" in lines  # read-ahead: first reads not per-block RTT
    # pss.permit is backed by path rules derived from the same list before xrootd starts
    assert "ofs.authorize 1" in lines and "acc.authdb /var/run/xrootd/origins.authdb" in lines
    dep = next(d for d in by_kind(rendered, "Deployment") if d["metadata"]["name"] == "dlaas-xcache")["spec"]["template"]
    (init,) = dep["spec"]["initContainers"]
    assert init["command"][0] == "dlaas-xcache-authdb" and "/var/run/xrootd/origins.authdb" in init["command"]
    assert {m["name"] for m in init["volumeMounts"]} == {"origins", "run"}
    assert not [ln for ln in lines if "#" in ln]  # xrootd reads trailing comments as arguments


def test_origin_sync_job_may_touch_only_its_configmap_and_the_cache(rendered):
    (role,) = by_kind(rendered, "Role")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["dlaas-xcache-origins"],
         "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["dlaas-xcache"],
         "verbs": ["get", "patch"]},
    ]
    job = next(c for c in by_kind(rendered, "CronJob") if c["metadata"]["name"] == "dlaas-xcache-origin-sync")
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "dlaas-xcache-origin-sync"
    assert "--configmap=dlaas-xcache-origins" in container["command"]


def test_scratch_cleanup_cronjob_runs_the_real_console_script(rendered, tmp_path, monkeypatch):
    job = next(c for c in by_kind(rendered, "CronJob") if c["metadata"]["name"] == "dlaas-scratch-cleanup")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    assert pod["volumes"] == [{"name": "scratch", "persistentVolumeClaim": {"claimName": "dlaas-scratch"}}]
    mount_path = container["volumeMounts"][0]["mountPath"]
    # Run the command line the CronJob runs (with the volume at a temporary path) through the real entry point.
    module, func = scripts[command[0]].split(":")
    main = getattr(__import__(module, fromlist=[func]), func)
    old, new = tmp_path / "alice" / "old.h5", tmp_path / "alice" / "new.h5"
    old.parent.mkdir()
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    day = 86400
    import os
    os.utime(old, (time.time() - 2 * day, time.time() - 2 * day))  # 48 h old: older than the 24 h of the values
    args = [str(tmp_path) if a == mount_path else a for a in command[1:]]
    assert main(args) == 0
    assert not old.exists() and new.exists()
