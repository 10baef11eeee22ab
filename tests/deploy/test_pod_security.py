"""Namespaces separate trust, and Pod Security holds in them: the hub/user namespace and the cache namespace enforce
"restricted" and every pod that goes there - ours rendered by the real helm with each cluster's values, z2jh's
assembled from its values (tests/deploy/z2jh_pods.py), user pods rendered by the real KubeSpawner
(tests/deploy/test_user_pods.py) - satisfies it; the privileged namespace holds the EOS FUSEx
DaemonSet and its keytab and nothing else; user pods reach the EOS mounts through claims, never host paths."""

from __future__ import annotations

import copy
import json

import pytest

from tests.deploy.conftest import CHARTS, ENVS, deep_merge, release_values, render
from tests.deploy.pod_security import pod_templates, restricted_violations
from tests.deploy.z2jh_pods import core_pods

ENFORCE = "pod-security.kubernetes.io/enforce"
EXPECTED_LEVELS = {"dlaas": "restricted", "dlaas-eos": "privileged", "dlaas-cache": "restricted"}


@pytest.fixture(scope="module")
def namespaces(infrastructure) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in infrastructure if o["kind"] == "Namespace"}


@pytest.fixture(scope="module", params=ENVS)
def cluster(request, deploy, overlays, tmp_path_factory):
    """(env, z2jh values, dlaas values, the dlaas chart rendered with them) - what Flux deploys to that cluster."""
    built = overlays[request.param]
    dlaas = release_values(built, "dlaas")
    rendered = render(deploy, dlaas, tmp_path_factory.mktemp(f"render-{request.param}"))
    return request.param, release_values(built, "jupyterhub"), dlaas, rendered, built


def test_namespaces_separate_hub_eos_and_cache_with_pod_security_levels(namespaces):
    assert {name: labels.get(ENFORCE) for name, labels in namespaces.items()} == EXPECTED_LEVELS
    for name, level in EXPECTED_LEVELS.items():
        if level == "restricted":  # warnings and audit at the same level: nothing is admitted silently below it
            assert namespaces[name]["pod-security.kubernetes.io/warn"] == "restricted"
            assert namespaces[name]["pod-security.kubernetes.io/audit"] == "restricted"


def test_every_release_and_chart_namespace_is_one_of_ours(cluster, namespaces):
    _, _, dlaas, rendered, built = cluster
    assert dlaas["namespaces"] == {"hub": "dlaas", "eos": "dlaas-eos", "cache": "dlaas-cache"}
    for o in rendered:
        if o["kind"] in ("PersistentVolume",):
            assert "namespace" not in o["metadata"]
            continue
        assert o["metadata"].get("namespace") in namespaces, f"{o['kind']}/{o['metadata']['name']}"
    for o in built:  # HelmReleases, values, secrets: each in a namespace of ours
        assert o["metadata"].get("namespace") in namespaces, f"{o['kind']}/{o['metadata']['name']}"


def test_every_pod_of_ours_in_a_restricted_namespace_is_restricted(cluster, namespaces):
    _, _, _, rendered, _ = cluster
    pods = pod_templates(rendered)
    restricted = [p for p in pods if namespaces[p[0]].get(ENFORCE) == "restricted"]
    assert {name for _, name, _ in restricted} >= {
        "Deployment/dlaas-xcache",
        "Deployment/dlaas-registrar",
        "CronJob/dlaas-xcache-origin-sync",
        "CronJob/dlaas-scratch-cleanup",
    }
    for namespace, name, spec in restricted:
        assert restricted_violations(spec) == [], f"{namespace} {name}"


def test_zero_to_jupyterhub_pods_in_the_hub_namespace_are_restricted(cluster, namespaces):
    _, values, _, _, _ = cluster
    assert namespaces["dlaas"][ENFORCE] == "restricted"
    pods = core_pods(values)
    assert set(pods) == {"hub", "proxy", "user-scheduler", "user-placeholder", "continuous-image-puller"}
    for name, spec in pods.items():
        assert restricted_violations(spec) == [], name


def test_only_the_eos_fusex_daemonset_and_its_keytab_live_in_the_privileged_namespace(cluster):
    _, values, dlaas, rendered, built = cluster
    in_eos = [o for o in rendered + built if o["metadata"].get("namespace") == "dlaas-eos"]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in in_eos) == [
        ("ConfigMap", "dlaas-eos-fusex"),
        ("DaemonSet", "dlaas-eos-fusex"),
        ("NetworkPolicy", "dlaas-eos-fusex"),
        ("Secret", "dlaas-eos-sss"),
    ]
    (daemonset,) = [o for o in in_eos if o["kind"] == "DaemonSet"]
    # It would be refused anywhere else: the checker sees why.
    assert any("privileged" in v for v in restricted_violations(daemonset["spec"]["template"]["spec"]))
    assert daemonset["spec"]["template"]["spec"]["volumes"][-1]["secret"]["secretName"] == "dlaas-eos-sss"
    # The hub and user pods' namespace holds no keytab; z2jh's hub (which may read Secrets there) cannot read it.
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in built if o["kind"] == "Secret"}
    assert secrets == {("dlaas", "dlaas-hub"), ("dlaas-eos", "dlaas-eos-sss"), ("dlaas", "dlaas-registrar-rucio")}


def test_user_pods_reach_eos_through_claims_bound_to_exactly_the_mounts(cluster):
    _, values, dlaas, rendered, _ = cluster
    storage = values["singleuser"]["storage"]
    volumes = {v["name"]: v for v in storage["extraVolumes"]}
    mounts = {m["name"]: m for m in storage["extraVolumeMounts"]}
    assert not [v for v in storage["extraVolumes"] if "hostPath" in v]
    pvs = {o["spec"]["claimRef"]["name"]: o for o in rendered if o["kind"] == "PersistentVolume"}
    pvcs = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "PersistentVolumeClaim"}
    (daemonset,) = [o for o in rendered if o["kind"] == "DaemonSet"]
    node_selector = daemonset["spec"]["template"]["spec"]["nodeSelector"]
    host_paths = {"eos": dlaas["eos"]["hostMountPath"], "scratch": dlaas["eos"]["scratch"]["hostMountPath"]}
    for name, host_path in host_paths.items():
        claim = volumes[name]["persistentVolumeClaim"]["claimName"]
        pv, pvc = pvs[claim], pvcs[claim]
        # Bound both ways: this PV to this claim in the hub namespace, and nothing else can claim it.
        assert pv["spec"]["claimRef"]["namespace"] == pvc["metadata"]["namespace"] == "dlaas"
        assert pvc["spec"]["volumeName"] == pv["metadata"]["name"] and pvc["spec"]["storageClassName"] == ""
        assert pv["spec"]["hostPath"] == {"path": host_path, "type": "Directory"}
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        # Pods using it land where the DaemonSet mounts EOS.
        (term,) = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert {e["key"]: e["values"] for e in term["matchExpressions"]} == {k: [v] for k, v in node_selector.items()}
    assert mounts["eos"] == {"name": "eos", "mountPath": "/eos", "mountPropagation": "HostToContainer"}
    # Only the user's own scratch directory, named as the hub (and the registrar) name the user.
    assert mounts["scratch"] == {"name": "scratch", "mountPath": "/scratch", "subPath": "{unescaped_username}"}
    assert values["hub"]["config"]["DataLakeEnvironment"]["scratch_mount"] == mounts["scratch"]["mountPath"]
    # The scratch mount is outside the data mount: /eos does not show everyone's scratch directories.
    scratch = dlaas["eos"]["scratch"]["hostMountPath"]
    assert not (scratch + "/").startswith(dlaas["eos"]["hostMountPath"].rstrip("/") + "/")


def test_a_scratch_mount_inside_the_data_mount_is_refused(deploy, overlays, tmp_path):
    values = deep_merge(
        release_values(overlays["production"], "dlaas"), {"eos": {"scratch": {"hostMountPath": "/eos/scratch"}}}
    )
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    out = deploy.template(CHARTS / "dlaas", path)
    assert out.returncode != 0
    assert "eos.scratch.hostMountPath (/eos/scratch) must lie outside eos.hostMountPath (/eos)" in out.stderr


GOOD_POD = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {"name": "app", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    ],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}],
}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"volumes": [{"name": "eos", "hostPath": {"path": "/eos"}}]}, "volume eos: type hostPath"),
        ({"hostNetwork": True}, "hostNetwork: true"),
        ({"hostPID": True}, "hostPID: true"),
        ({"hostIPC": True}, "hostIPC: true"),
        (
            {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            "container app: runAsNonRoot is not true (container or pod)",
        ),
        (
            {"securityContext": {"runAsNonRoot": True}},
            "container app: seccompProfile unset (container or pod: RuntimeDefault or Localhost)",
        ),
        (
            {"securityContext": {"runAsNonRoot": True, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}},
            "pod runAsUser: 0",
        ),
        (
            {"containers": [{"name": "app", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]},
            "container app: allowPrivilegeEscalation is not false",
        ),
        (
            {"containers": [{"name": "app", "securityContext": {"allowPrivilegeEscalation": False}}]},
            "container app: capabilities do not drop ALL",
        ),
        (
            {
                "containers": [
                    {
                        "name": "app",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "privileged": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ]
            },
            "container app: privileged",
        ),
        (
            {
                "containers": [
                    {
                        "name": "app",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                        },
                    }
                ]
            },
            "container app: adds capabilities ['SYS_ADMIN']",
        ),
        (
            {
                "containers": [
                    {
                        "name": "app",
                        "ports": [{"containerPort": 80, "hostPort": 80}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    }
                ]
            },
            "container app: hostPort 80",
        ),
        (
            {
                "initContainers": [
                    {
                        "name": "init",
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "Unconfined"},
                        },
                    }
                ]
            },
            "container init: seccompProfile Unconfined (container or pod: RuntimeDefault or Localhost)",
        ),
    ],
    ids=[
        "hostPath",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "root-allowed",
        "no-seccomp",
        "uid-0",
        "escalation-allowed",
        "capabilities-kept",
        "privileged",
        "capability-added",
        "host-port",
        "unconfined-init-container",
    ],
)
def test_the_restricted_checker_refuses_each_violation(change, expected):
    assert restricted_violations(GOOD_POD) == []
    assert restricted_violations({**copy.deepcopy(GOOD_POD), **change}) == [expected]


def selects(peer: dict, namespace: str, labels: dict) -> bool:
    """Whether a NetworkPolicy peer (namespaceSelector/podSelector with matchLabels) selects such a pod."""
    ns = peer.get("namespaceSelector", {}).get("matchLabels")
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    ns_ok = ns.get("kubernetes.io/metadata.name") == namespace if ns is not None else namespace == "dlaas"
    return ns_ok and all(labels.get(k) == v for k, v in pods.items())


def test_user_pods_may_reach_the_cache_and_the_registrar_and_those_admit_them(cluster, user_pods):
    """Both sides of each connection: the user pods' egress (z2jh values) and the target's ingress (chart), for the
    labels KubeSpawner gives a user pod."""
    env, values, _, rendered, _ = cluster
    user_labels = user_pods[env][2]["pods"]["alice"]["base"]["metadata"]["labels"]
    egress = values["singleuser"]["networkPolicy"]["egress"]
    targets = {"Deployment/dlaas-xcache": 1094, "Deployment/dlaas-registrar": 8090}
    policies = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "NetworkPolicy"}
    for namespace, name, _spec in pod_templates(rendered):
        if name not in targets:
            continue
        workload = next(o for o in rendered if f"{o['kind']}/{o['metadata']['name']}" == name)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        port = targets[name]
        assert any(
            selects(peer, namespace, labels) and {"protocol": "TCP", "port": port} in rule["ports"]
            for rule in egress
            for peer in rule["to"]
        ), name
        policy = policies[name.split("/")[1]]
        assert policy["metadata"]["namespace"] == namespace
        assert all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
        assert any(
            selects(peer, "dlaas", user_labels) and {"protocol": "TCP", "port": port} in rule["ports"]
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
        ), name
