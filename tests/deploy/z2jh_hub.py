"""The hub configuration Zero to JupyterHub 4.x makes of a values file, for the keys DLaaS's values use.

z2jh's hub pod runs the chart's own jupyterhub_config.py (files/hub/jupyterhub_config.py, with its helpers in
z2jh.py): it maps `singleuser.*` values to KubeSpawner traits, turns `hub.services` and `hub.loadRoles` into
JupyterHub's lists, applies `hub.config` section by section and last execs the `hub.extraConfig` snippets in key
order, with z2jh's `get_config(key, default)` in their namespace. The chart cannot be fetched here, so
`apply_values` replays that file for the keys our values use - read in z2jh 4.x's jupyterhub_config.py, names as
z2jh's _helpers-names.tpl makes them with its default `fullnameOverride: ""`. It is kept small on purpose:
`unmodelled_keys` names every key of a values file that changes the user pod in z2jh but is not replayed here, so
a new key fails the tests until the mapping learns it instead of being silently left out of the rendered pod.

Z2JH_DEFAULTS holds the chart's defaults (its values.yaml) for the keys read here: what a cluster gets where our
values leave a key out - `singleuser.cloudMetadata.blockWithIptables: true` above all, which adds a privileged
init container to every user pod.

Runs in the tests (imported as tests.deploy.z2jh_hub) and in the scripts next to it (imported as z2jh_hub).
"""

from __future__ import annotations

import copy
from typing import Any

RELEASE = "jupyterhub"  # releaseName of flux/apps/base/jupyterhub/helmrelease.yaml
HUB_CONNECT_URL = "http://hub:8081"  # z2jh's `hub` Service and port

Z2JH_DEFAULTS: dict[str, Any] = {
    "singleuser": {
        "uid": 1000,
        "fsGid": 100,
        "allowPrivilegeEscalation": False,
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "networkTools": {"image": {"name": "quay.io/jupyterhub/k8s-network-tools"}},
        "extraLabels": {"hub.jupyter.org/network-access-hub": "true"},
        "cmd": "jupyterhub-singleuser",
        "startTimeout": 300,
        "memory": {"guarantee": "1G"},
        "image": {"name": "quay.io/jupyterhub/k8s-singleuser-sample"},
        "storage": {"type": "dynamic", "homeMountPath": "/home/jovyan", "static": {"subPath": "{username}"}},
    },
    "scheduling": {
        "userScheduler": {"enabled": True},
        "podPriority": {"enabled": False},
        "userPods": {
            "nodeAffinity": {"matchNodePurpose": "prefer"},
            "tolerations": [
                {"key": key, "operator": "Equal", "value": "user", "effect": "NoSchedule"}
                for key in ("hub.jupyter.org/dedicated", "hub.jupyter.org_dedicated")
            ],
        },
    },
}

#: singleuser.<key> -> KubeSpawner trait, copied when not null (z2jh's set_config_if_not_none loop).
SINGLEUSER_TRAITS = {
    "startTimeout": "start_timeout",
    "image.pullPolicy": "image_pull_policy",
    "extraLabels": "extra_labels",
    "extraAnnotations": "extra_annotations",
    "uid": "uid",
    "fsGid": "fs_gid",
    "nodeSelector": "node_selector",
    "initContainers": "init_containers",
    "extraContainers": "extra_containers",
    "memory.limit": "mem_limit",
    "memory.guarantee": "mem_guarantee",
    "cpu.limit": "cpu_limit",
    "cpu.guarantee": "cpu_guarantee",
    "extraEnv": "environment",
    "profileList": "profile_list",
    "extraPodConfig": "extra_pod_config",
}
#: singleuser keys replayed by hand below (image, storage, ...) or that make no difference to the user pod.
SINGLEUSER_OTHER = {
    "image",
    "cpu",
    "memory",
    "defaultUrl",
    "cmd",
    "allowPrivilegeEscalation",
    "cloudMetadata",
    "networkTools",
    "extraTolerations",
    "storage",
    "networkPolicy",
    "events",
}
STORAGE_KEYS = {"type", "static", "homeMountPath", "extraVolumes", "extraVolumeMounts"}
#: Top-level keys that change user pods in z2jh and are not replayed here.
POD_KEYS_ELSEWHERE = ("imagePullSecret", "imagePullSecrets")
USER_PODS_KEYS = {"nodeAffinity", "tolerations"}


def get(values: dict, dotted: str, default=None):
    node: Any = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def deep_merge(base, override):
    """Helm's values merge: maps merge key by key, anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return merged
    return copy.deepcopy(override)


def unmodelled_keys(values: dict) -> list[str]:
    """Keys of `values` that z2jh turns into user pod settings but `apply_values` does not replay."""
    su = values.get("singleuser") or {}
    found = [
        f"singleuser.{k}"
        for k in su
        if k not in SINGLEUSER_OTHER and k not in {t.split(".")[0] for t in SINGLEUSER_TRAITS}
    ]
    found += [f"singleuser.image.{k}" for k in (su.get("image") or {}) if k not in {"name", "tag", "pullPolicy"}]
    storage = su.get("storage") or {}
    found += [f"singleuser.storage.{k}" for k in storage if k not in STORAGE_KEYS]
    if storage.get("type", "dynamic") != "static":
        found.append(f"singleuser.storage.type {storage.get('type', 'dynamic')!r} (only 'static' is replayed)")
    found += [key for key in POD_KEYS_ELSEWHERE if get(values, key) is not None]
    found += [f"scheduling.userPods.{k}" for k in get(values, "scheduling.userPods", {}) if k not in USER_PODS_KEYS]
    return found


def apply_values(c, values: dict, *, namespace: str, chart_version: str = "", release: str = RELEASE) -> None:
    """Configure `c` (a traitlets Config) as z2jh's jupyterhub_config.py does from `values`."""
    v = deep_merge(Z2JH_DEFAULTS, values)
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.hub_connect_url = HUB_CONNECT_URL
    c.JupyterHub.cleanup_servers = False
    c.KubeSpawner.namespace = namespace
    labels = {"app": v.get("nameOverride") or "jupyterhub", "heritage": "jupyterhub", "release": release}
    if chart_version:
        labels["chart"] = f"jupyterhub-{chart_version.replace('+', '_')}"
    c.KubeSpawner.common_labels = labels

    for key, trait in SINGLEUSER_TRAITS.items():
        value = get(v, f"singleuser.{key}")
        if value is not None:
            setattr(c.KubeSpawner, trait, copy.deepcopy(value))
    image = get(v, "singleuser.image.name")
    tag = get(v, "singleuser.image.tag", chart_version)
    c.KubeSpawner.image = f"{image}:{tag}" if tag else image
    c.KubeSpawner.allow_privilege_escalation = get(v, "singleuser.allowPrivilegeEscalation")

    if get(v, "scheduling.userScheduler.enabled"):
        c.KubeSpawner.scheduler_name = f"{release}-user-scheduler"
    if get(v, "scheduling.podPriority.enabled"):
        c.KubeSpawner.priority_class_name = f"{release}-default-priority"
    purpose = get(v, "scheduling.userPods.nodeAffinity.matchNodePurpose")
    term = {"matchExpressions": [{"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}
    if purpose == "prefer":
        c.KubeSpawner.node_affinity_preferred = [{"weight": 100, "preference": term}]
    elif purpose == "require":
        c.KubeSpawner.node_affinity_required = [term]
    tolerations = get(v, "scheduling.userPods.tolerations", []) + get(v, "singleuser.extraTolerations", [])
    if tolerations:
        c.KubeSpawner.tolerations = copy.deepcopy(tolerations)

    storage = v["singleuser"]["storage"]
    volumes, mounts = [], []
    if storage["type"] == "static":
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": get(storage, "static.pvcName")}})
        mounts.append(
            {"mountPath": storage["homeMountPath"], "name": "home", "subPath": get(storage, "static.subPath")}
        )
    c.KubeSpawner.volumes = volumes + copy.deepcopy(storage.get("extraVolumes") or [])
    c.KubeSpawner.volume_mounts = mounts + copy.deepcopy(storage.get("extraVolumeMounts") or [])

    services = []
    for name, service in (get(v, "hub.services") or {}).items():
        service = dict(copy.deepcopy(service))
        service.setdefault("name", name)
        service.pop("apiToken", None)
        service["api_token"] = f"generated-by-z2jh-{name}"  # z2jh's hub Secret holds a generated one
        services.append(service)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = [
        {"name": name, **copy.deepcopy(role)} for name, role in (get(v, "hub.loadRoles") or {}).items()
    ]

    c.Spawner.cmd = get(v, "singleuser.cmd")
    if get(v, "singleuser.defaultUrl") is not None:
        c.Spawner.default_url = get(v, "singleuser.defaultUrl")
    metadata = get(v, "singleuser.cloudMetadata") or {}
    if metadata.get("blockWithIptables") is True:
        tools = get(v, "singleuser.networkTools") or {}
        c.KubeSpawner.init_containers = [
            *copy.deepcopy(get(v, "singleuser.initContainers") or []),
            {
                "name": "block-cloud-metadata",
                "image": f"{get(tools, 'image.name')}:{get(tools, 'image.tag', chart_version)}",
                "command": ["iptables", "-A", "OUTPUT", "-d", metadata.get("ip", "169.254.169.254"), "-j", "DROP"],
                "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
                **({"resources": tools["resources"]} if tools.get("resources") else {}),
            },
        ]

    for section, traits in (get(v, "hub.config") or {}).items():
        c[section].update(copy.deepcopy(traits))

    def z2jh_get_config(key, default=None):  # what extraConfig snippets see as get_config
        return copy.deepcopy(get(v, key, default))

    for key in sorted(get(v, "hub.extraConfig") or {}):
        code = compile(v["hub"]["extraConfig"][key], f"hub.extraConfig.{key}", "exec")
        exec(code, {"c": c, "get_config": z2jh_get_config})
