"""The pods Zero to JupyterHub 4.x (and KubeSpawner 7, for user pods) make from our values - as far as Pod Security
looks at them: security contexts, containers, volumes, host namespaces.

The z2jh chart cannot be rendered here (no registry reachable offline has it), so this assembles each pod from the
value blocks z2jh's templates copy into it verbatim (read in the chart's templates: hub/deployment.yaml,
proxy/deployment.yaml, scheduling/user-scheduler, user-placeholder, image-puller/_helpers-daemonset.tpl), and the
user pod the way KubeSpawner's make_pod merges them: fsGroup from singleuser.fsGid, runAsUser and
allowPrivilegeEscalation from singleuser.uid / allowPrivilegeEscalation, then KubeSpawner.pod_security_context and
container_security_context over them, then extra_pod_config over the pod spec. z2jh's one privileged container - the
`block-cloud-metadata` init container, added while singleuser.cloudMetadata.blockWithIptables is true, z2jh's
default - is included as z2jh defines it. Values z2jh sets by default and we do not repeat (non-root uids) are left
out: they can only make a pod stricter.
"""

from __future__ import annotations

import copy

# What z2jh adds to every user pod while blockWithIptables is true (its files/hub/jupyterhub_config.py).
BLOCK_CLOUD_METADATA = {
    "name": "block-cloud-metadata",
    "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
}


def _get(values: dict, dotted: str, default=None):
    node = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _container(name: str, security_context) -> dict:
    return {"name": name, "securityContext": copy.deepcopy(security_context or {})}


def user_pod(values: dict) -> dict:
    su = values.get("singleuser", {})
    kubespawner = _get(values, "hub.config.KubeSpawner", {})
    psc = {} if su.get("fsGid") is None else {"fsGroup": su["fsGid"]}
    psc.update(kubespawner.get("pod_security_context") or {})
    csc = {} if su.get("uid") is None else {"runAsUser": su["uid"]}
    if su.get("allowPrivilegeEscalation") is not None:
        csc["allowPrivilegeEscalation"] = su["allowPrivilegeEscalation"]
    csc.update(kubespawner.get("container_security_context") or {})
    init = [copy.deepcopy(BLOCK_CLOUD_METADATA)] if _get(su, "cloudMetadata.blockWithIptables", True) else []
    init += copy.deepcopy(su.get("initContainers") or [])
    storage = su.get("storage", {})
    volumes = []
    if storage.get("type") == "static":
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": _get(storage, "static.pvcName")}})
    elif storage.get("type", "dynamic") == "dynamic":
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": "claim-{username}"}})
    volumes += copy.deepcopy(storage.get("extraVolumes") or [])
    notebook = _container("notebook", csc)
    notebook["volumeMounts"] = copy.deepcopy(storage.get("extraVolumeMounts") or [])
    pod = {"securityContext": psc, "initContainers": init, "volumes": volumes,
           "containers": [notebook, *copy.deepcopy(su.get("extraContainers") or [])]}
    pod.update(copy.deepcopy(su.get("extraPodConfig") or {}))
    return pod


def core_pods(values: dict) -> dict[str, dict]:
    """The chart's own pods (not user pods) that our values switch on, by name."""
    pods = {
        "hub": {
            "securityContext": copy.deepcopy(_get(values, "hub.podSecurityContext", {})),
            "initContainers": copy.deepcopy(_get(values, "hub.initContainers", [])),
            "containers": [_container("hub", _get(values, "hub.containerSecurityContext")),
                           *copy.deepcopy(_get(values, "hub.extraContainers", []))],
            "volumes": copy.deepcopy(_get(values, "hub.extraVolumes", [])),
            **copy.deepcopy(_get(values, "hub.extraPodSpec", {})),
        },
        "proxy": {
            "containers": [_container("chp", _get(values, "proxy.chp.containerSecurityContext"))],
            **copy.deepcopy(_get(values, "proxy.chp.extraPodSpec", {})),
        },
    }
    if _get(values, "proxy.https.enabled") and _get(values, "proxy.https.type", "letsencrypt") == "letsencrypt":
        pods["autohttps"] = {"containers": [
            _container("traefik", _get(values, "proxy.traefik.containerSecurityContext")),
            _container("secret-sync", _get(values, "proxy.secretSync.containerSecurityContext")),
        ]}
    if _get(values, "scheduling.userScheduler.enabled", True):
        pods["user-scheduler"] = {
            "containers": [_container("kube-scheduler",
                                      _get(values, "scheduling.userScheduler.containerSecurityContext"))],
            **copy.deepcopy(_get(values, "scheduling.userScheduler.extraPodSpec", {})),
        }
    if _get(values, "scheduling.userPlaceholder.enabled", True):
        pods["user-placeholder"] = {"containers": [
            _container("pause", _get(values, "scheduling.userPlaceholder.containerSecurityContext"))]}
    pullers = [name for name, on in (("continuous-image-puller", _get(values, "prePuller.continuous.enabled", True)),
                                     ("hook-image-puller", _get(values, "prePuller.hook.enabled", True))) if on]
    for name in pullers:
        pull = _get(values, "prePuller.containerSecurityContext")
        init = [_container("image-pull-singleuser", pull)]
        if _get(values, "singleuser.cloudMetadata.blockWithIptables", True):
            init.append(_container("image-pull-metadata-block", pull))
        for i, _ in enumerate(_get(values, "singleuser.profileList", []) or []):
            init.append(_container(f"image-pull-singleuser-profilelist-{i}", pull))
        pods[name] = {"initContainers": init,
                      "containers": [_container("pause", _get(values, "prePuller.pause.containerSecurityContext"))]}
    if _get(values, "prePuller.hook.enabled", True):
        pods["hook-image-awaiter"] = {"containers": [
            _container("hook-image-awaiter", _get(values, "prePuller.hook.containerSecurityContext"))]}
    return pods
