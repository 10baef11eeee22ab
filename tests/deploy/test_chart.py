"""charts/dlaas: lint and render with a real helm, validate every object strictly, and check what operators rely on
(privileged EOS FUSEx with Bidirectional propagation, a closed XCache, RBAC that cannot touch a pod template, the
registrar wired to the hub and Rucio, CronJobs and services running the real console scripts)."""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from dlaas_xcache import allow_list, serve
from tests.deploy.conftest import CHARTS, ENVS, REPO, docs, release_values
from tests.deploy.pod_security import pod_templates

CHART = CHARTS / "dlaas"
SOURCES = [None, "render-all", *ENVS]
# Kinds whose objects are, or create, pod templates: a ServiceAccount that may change one runs any pod it likes.
POD_TEMPLATE_RESOURCES = {
    "pods",
    "podtemplates",
    "deployments",
    "daemonsets",
    "statefulsets",
    "replicasets",
    "replicationcontrollers",
    "jobs",
    "cronjobs",
}


def values_file(source, overlays, tmp_path):
    """None (chart defaults), the render-all file, or a cluster's values as Flux hands them to the release."""
    if source is None:
        return None
    if source == "render-all":
        return CHART / "ci" / "render-all-values.yaml"
    path = tmp_path / f"{source}-values.json"
    path.write_text(json.dumps(release_values(overlays[source], "dlaas")))
    return path


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module")
def rendered(deploy):
    out = deploy.template(CHART, CHART / "ci" / "render-all-values.yaml")
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


@pytest.mark.parametrize("source", SOURCES, ids=["defaults", *SOURCES[1:]])
def test_lint_template_and_strict_validation(deploy, overlays, source, tmp_path):
    values = values_file(source, overlays, tmp_path)
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
    assert kinds == sorted(
        [
            "ConfigMap",
            "CronJob",
            "DaemonSet",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "PodMonitor",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
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


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"xcache": {"replica": 2}}, "replica"),
        ({"eos": {"instances": [{"name": "escape", "mgm": "m", "remoteMountDir": "/eos/x/", "mount": "/x"}]}}, "mount"),
        ({"scratchCleanup": {"enabled": True, "schedule": "every day"}}, "schedule"),
        ({"eos": {"image": {"repository": "r", "tag": "t", "pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"eos": {"instances": [{"name": "escape\n", "mgm": "m", "remoteMountDir": "/eos/x/"}]}}, "name"),
        ({"namespaces": {"hub": "dlaas\n", "eos": "dlaas-eos", "cache": "dlaas-cache"}}, "hub"),
        ({"registrar": {"enabled": True, "scratchRse": "DLAAS-SCRATCHDISK"}}, "scratchRse"),
        ({"eos": {"instances": [{"name": "scratch", "mgm": "m", "remoteMountDir": "/eos/x/"}]}}, "name"),
        ({"eos": {"nodeSelector": {"hub.jupyter.org/node-purpose": None}}}, "nodeSelector"),
    ],
    ids=[
        "unknown-key",
        "unknown-nested-key",
        "bad-cron",
        "bad-enum",
        "name-with-trailing-newline",
        "namespace-with-trailing-newline",
        "scratch-rse-any-account-may-register-on",
        "instance-named-scratch",
        "eos-on-every-node-unpinned",
    ],
)
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
    assert ds["metadata"]["namespace"] == "dlaas-eos"
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["eosxd-escape", "eosxd-user", "eosxd-scratch"]
    expected_volume = {
        "eosxd-escape": ("eos", "/eos"),
        "eosxd-user": ("eos", "/eos"),
        "eosxd-scratch": ("scratch", "/var/lib/dlaas"),
    }
    for c in containers:
        assert c["securityContext"]["privileged"] is True
        name, path = expected_volume[c["name"]]
        mount = next(m for m in c["volumeMounts"] if m["name"] == name)
        assert mount["mountPropagation"] == "Bidirectional" and mount["mountPath"] == path
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["eos"]["hostPath"]["path"] == "/eos"
    assert volumes["scratch"]["hostPath"]["path"] == "/var/lib/dlaas"
    assert volumes["sss-keytab"]["secret"]["secretName"] == "dlaas-eos-sss"
    assert volumes["sss-keytab"]["secret"]["defaultMode"] == 0o400
    config = next(c for c in by_kind(rendered, "ConfigMap") if c["metadata"]["name"] == "dlaas-eos-fusex")
    fuse = json.loads(config["data"]["fuse.user.conf"])
    assert fuse["hostport"] == "eos-user.example.org:1094" and fuse["localmountdir"] == "/eos/user"
    assert fuse["auth"]["oauth2"] == 1 and fuse["auth"]["sss"] == 1
    # The scratch area: its own instance, mounted outside /eos (the claim of user pods' /eos does not show it).
    scratch = json.loads(config["data"]["fuse.scratch.conf"])
    assert scratch["localmountdir"] == "/var/lib/dlaas/eos-scratch"
    assert scratch["remotemountdir"] == "/eos/escape/dlaas-scratch/"


USERS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dlaas"}},
    "podSelector": {"matchLabels": {"component": "singleuser-server", "app": "jupyterhub"}},
}
HUB = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dlaas"}},
    "podSelector": {"matchLabels": {"component": "hub", "app": "jupyterhub"}},
}

MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
DNS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def named(objects, kind, name):
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_xcache_is_reachable_from_user_pods_only_and_not_an_open_proxy(rendered, tmp_path):
    svc = named(rendered, "Service", "dlaas-xcache")
    assert svc["metadata"]["namespace"] == "dlaas-cache" and svc["spec"]["ports"][0]["port"] == 1094
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(rendered, "NetworkPolicy")}
    xc = policies["dlaas-xcache"]
    # User pods live in another namespace: the peer names it, not just their labels.
    assert xc["ingress"] == [
        {"from": [USERS], "ports": [{"protocol": "TCP", "port": 1094}]},
        {"from": [MONITORING], "ports": [{"protocol": "TCP", "port": 9932}]},  # the exporter: Prometheus only
    ]
    assert policies["dlaas-scratch-cleanup"]["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in policies["dlaas-scratch-cleanup"]  # no network at all
    origins = named(rendered, "ConfigMap", "dlaas-xcache-origins")
    assert origins["data"]["origins.cfg"].split("\n")[:2] == [
        "pss.permit eos.example.org",
        "pss.permit origin.example.net:1094",
    ]
    config = named(rendered, "ConfigMap", "dlaas-xcache")["data"]["xcache.cfg"]
    lines = config.splitlines()
    assert "pss.origin =" in lines
    assert "pfc.prefetch 10" in lines and "pfc.blocksize 1M" in lines  # read-ahead: first reads not per-block RTT
    pod = named(rendered, "Deployment", "dlaas-xcache")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    container, exporter = pod["containers"]  # the exporter: tests/deploy/test_monitoring.py
    assert exporter["name"] == "exporter"
    assert container["command"] == [
        "dlaas-xcache-serve",
        "--config",
        "/etc/xcache/xcache.cfg",
        "--origins",
        "/etc/xcache/origins/origins.cfg",
        "--authdb",
        "/var/run/xrootd/origins.authdb",
        "--permit-file",
        "/var/run/xrootd/origins.cfg",
        "--",
        "-l",
        "-",
        "-n",
        "xcache",
    ]
    # The wrapper's own start check: the configuration loads the path rules and the checked list it writes.
    cfg = tmp_path / "xcache.cfg"
    cfg.write_text(config)
    args = dict(zip(container["command"][1:9:2], container["command"][2:9:2], strict=True))
    assert serve.config_problem(cfg, Path(args["--authdb"]), Path(args["--permit-file"])) is None
    cfg.write_text(config.replace("continue /var/run/xrootd/origins.cfg", "continue /etc/xcache/origins/"))
    assert "lacks `continue /var/run/xrootd/origins.cfg`" in serve.config_problem(
        cfg, Path(args["--authdb"]), Path(args["--permit-file"])
    )
    # ... and the initial list is one it accepts.
    assert [o.netloc for o in allow_list.parse(origins["data"]["origins.cfg"])] == [
        "eos.example.org:1094",
        "origin.example.net:1094",
    ]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The allow-list is the whole ConfigMap directory (no subPath): the kubelet updates it in place when the origin
    # sync rewrites it, and the wrapper notices. The authdb goes to a writable emptyDir.
    assert "subPath" not in mounts["/etc/xcache/origins"]
    assert volumes[mounts["/etc/xcache/origins"]["name"]]["configMap"]["name"] == "dlaas-xcache-origins"
    assert "emptyDir" in volumes[mounts["/var/run/xrootd"]["name"]]
    assert pod["automountServiceAccountToken"] is False
    assert not [ln for ln in lines if "#" in ln]  # xrootd reads trailing comments as arguments


def pod_template_grants(role) -> list[str]:
    """What in a Role/ClusterRole lets its holder create or change pods or pod templates (or anything at all)."""
    found = []
    for rule in role.get("rules", []):
        resources, verbs = set(rule.get("resources", [])), set(rule.get("verbs", []))
        if "*" in resources or "*" in verbs or "*" in rule.get("apiGroups", []):
            found.append(f"wildcard in {rule}")
        touched = {r.split("/")[0] for r in resources} & POD_TEMPLATE_RESOURCES
        if touched and verbs - {"get", "list", "watch"}:
            found.append(f"{sorted(verbs)} on {sorted(touched)}")
    return found


def test_origin_sync_may_only_rewrite_its_own_configmap(rendered):
    (role,) = by_kind(rendered, "Role")
    assert role["metadata"]["namespace"] == "dlaas-cache"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["dlaas-xcache-origins"],
            "verbs": ["get", "update", "patch"],
        },
    ]
    job = named(rendered, "CronJob", "dlaas-xcache-origin-sync")
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "dlaas-xcache-origin-sync"
    assert "--configmap=dlaas-xcache-origins" in container["command"]
    assert not [a for a in container["command"] if a.startswith("--restart-deployment")]


@pytest.mark.parametrize("source", SOURCES, ids=["defaults", *SOURCES[1:]])
def test_no_service_account_of_ours_may_create_or_change_pod_templates(deploy, overlays, source, tmp_path):
    values = values_file(source, overlays, tmp_path)
    out = deploy.template(CHART, *([values] if values else []))
    assert out.returncode == 0, out.stderr
    objects = docs(out.stdout)
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in by_kind(objects, "Role"):
        assert pod_template_grants(role) == [], role["metadata"]["name"]
    # Only the origin sync gets an API token at all.
    with_token = [
        name for _, name, spec in pod_templates(objects) if spec.get("automountServiceAccountToken") is not False
    ]
    assert with_token in ([], ["CronJob/dlaas-xcache-origin-sync"])


def test_the_old_origin_sync_role_would_be_caught():
    old = {
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["dlaas-xcache-origins"],
                "verbs": ["get", "update", "patch"],
            },
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": ["dlaas-xcache"],
                "verbs": ["get", "patch"],
            },
        ]
    }
    assert pod_template_grants(old) == ["['get', 'patch'] on ['deployments']"]
    assert pod_template_grants({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]})
    assert pod_template_grants({"rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]})


def test_origin_sync_reaches_only_cric_and_the_api_server(rendered):
    policy = named(rendered, "NetworkPolicy", "dlaas-xcache-origin-sync")["spec"]
    assert "ingress" not in policy and policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == [
        DNS,
        {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {
            "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "192.0.2.10/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        },
    ]


def test_origin_sync_without_addresses_is_refused(deploy, tmp_path):
    bad = tmp_path / "values.yaml"
    bad.write_text(yaml.safe_dump({"originSync": {"enabled": True, "cricCIDRs": ["198.51.100.7/32"]}}))
    out = deploy.template(CHART, bad)
    assert out.returncode != 0 and "set originSync.apiServerCIDRs" in out.stderr


def test_registrar_serves_users_and_the_hub_only_and_reads_scratch_read_only(rendered):
    dep = named(rendered, "Deployment", "dlaas-registrar")
    assert dep["metadata"]["namespace"] == "dlaas"
    template = dep["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/escape-dlaas/dlaas-hub:0.1.0"  # the hub image carries the registrar
    assert container["command"][:9] == [
        "dlaas-registrar",
        "--ip",
        "0.0.0.0",
        "--port",
        "8090",
        "--scratch-root",
        "/scratch-root",
        "--scratch-rse",
        "DLAAS-SCRATCH",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == {
        "name": "JUPYTERHUB_API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hub", "key": "hub.services.dlaas-registrar.apiToken"}},
    }
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_NAME"]["value"] == "dlaas-registrar"
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/services/dlaas-registrar/"
    assert not [e for e in container["env"] if "value" in e and "token" in e["value"].lower()]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # RUCIO_CONFIG is the file of the existing Secret; the Secret is in the hub namespace, never in the chart.
    assert env["RUCIO_CONFIG"]["value"] == mounts["rucio-config"]["mountPath"] + "/rucio.cfg"
    assert volumes["rucio-config"]["secret"]["secretName"] == "dlaas-registrar-rucio"
    assert volumes["rucio-config"]["secret"]["items"] == [{"key": "rucio.cfg", "path": "rucio.cfg"}]
    assert not by_kind(rendered, "Secret")
    # Every user's scratch directory, read-only, from the scratch claim.
    assert mounts["scratch"]["mountPath"] == "/scratch-root" and mounts["scratch"]["readOnly"] is True
    assert volumes["scratch"]["persistentVolumeClaim"] == {"claimName": "dlaas-scratch", "readOnly": True}
    assert volumes["rucio-tokens"]["emptyDir"]["medium"] == "Memory"
    assert "--Registrar.rucio_token_dir=/var/run/dlaas-registrar/rucio-tokens" in container["command"]
    assert pod["automountServiceAccountToken"] is False
    # z2jh's hub NetworkPolicy admits it to the hub API by this label.
    assert template["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert container["readinessProbe"]["httpGet"] == {"path": "/services/dlaas-registrar/api/health", "port": "http"}
    svc = named(rendered, "Service", "dlaas-registrar")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"}]
    policy = named(rendered, "NetworkPolicy", "dlaas-registrar")["spec"]
    assert policy["podSelector"]["matchLabels"] == svc["spec"]["selector"]
    assert policy["ingress"] == [
        {"from": [USERS, HUB], "ports": [{"protocol": "TCP", "port": 8090}]},
        {"from": [MONITORING], "ports": [{"protocol": "TCP", "port": 8090}]},  # Prometheus
    ]
    assert policy["egress"] == [
        DNS,
        {"to": [HUB], "ports": [{"protocol": "TCP", "port": 8081}]},
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]},
    ]


def test_registrar_accepts_the_command_line_of_its_deployment(rendered, tmp_path, monkeypatch):
    """The Deployment's command, run through the real dlaas-registrar application up to serving."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (container,) = named(rendered, "Deployment", "dlaas-registrar")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert scripts[command[0]] == "dlaas_registrar.app:main"
    from dlaas_registrar.app import Registrar

    scratch = tmp_path / "scratch-root"
    scratch.mkdir()
    for e in container["env"]:
        monkeypatch.setenv(e["name"], e.get("value", "a-token-from-the-secret"))
    args = [str(scratch) if a == "/scratch-root" else a for a in command[1:]]
    args = [a.replace("/var/run/dlaas-registrar", str(tmp_path)) for a in args]
    app = Registrar()
    app.initialize(args)
    assert (app.ip, app.port, app.scratch_rse) == ("0.0.0.0", 8090, "DLAAS-SCRATCH")
    assert app.service_prefix == "/services/dlaas-registrar/"
    assert app.rucio_token_dir == str(tmp_path / "rucio-tokens")
    assert os.environ["RUCIO_CONFIG"].endswith("/rucio.cfg")


def test_scratch_cleanup_cronjob_runs_the_real_console_script(rendered, tmp_path, monkeypatch):
    job = next(c for c in by_kind(rendered, "CronJob") if c["metadata"]["name"] == "dlaas-scratch-cleanup")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    assert job["metadata"]["namespace"] == "dlaas"
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
