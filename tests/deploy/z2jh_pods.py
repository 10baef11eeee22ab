"""The chart's own pods Zero to JupyterHub 4.x makes from our values (hub, proxy, user scheduler, placeholders, image
pullers) - as far as Pod Security looks at them: security contexts, containers, volumes, host namespaces.

The z2jh chart cannot be rendered here (no registry reachable offline has it), so this assembles each pod from the
value blocks z2jh's templates copy into it verbatim (read in the chart's templates: hub/deployment.yaml,
proxy/deployment.yaml, scheduling/user-scheduler, user-placeholder, image-puller/_helpers-daemonset.tpl). Values z2jh
sets by default and we do not repeat (non-root uids) are left out: they can only make a pod stricter. User pods are
not modelled here: the real KubeSpawner renders them (tests/deploy/user_pods.py).
"""

from __future__ import annotations

import copy

from tests.deploy.z2jh_hub import get as _get


def _container(name: str, security_context) -> dict:
    return {"name": name, "securityContext": copy.deepcopy(security_context or {})}


def core_pods(values: dict) -> dict[str, dict]:
    """The chart's own pods (not user pods) that our values switch on, by name."""
    pods = {
        "hub": {
            "securityContext": copy.deepcopy(_get(values, "hub.podSecurityContext", {})),
            "initContainers": copy.deepcopy(_get(values, "hub.initContainers", [])),
            "containers": [
                _container("hub", _get(values, "hub.containerSecurityContext")),
                *copy.deepcopy(_get(values, "hub.extraContainers", [])),
            ],
            "volumes": copy.deepcopy(_get(values, "hub.extraVolumes", [])),
            **copy.deepcopy(_get(values, "hub.extraPodSpec", {})),
        },
        "proxy": {
            "containers": [_container("chp", _get(values, "proxy.chp.containerSecurityContext"))],
            **copy.deepcopy(_get(values, "proxy.chp.extraPodSpec", {})),
        },
    }
    if _get(values, "proxy.https.enabled") and _get(values, "proxy.https.type", "letsencrypt") == "letsencrypt":
        pods["autohttps"] = {
            "containers": [
                _container("traefik", _get(values, "proxy.traefik.containerSecurityContext")),
                _container("secret-sync", _get(values, "proxy.secretSync.containerSecurityContext")),
            ]
        }
    if _get(values, "scheduling.userScheduler.enabled", True):
        pods["user-scheduler"] = {
            "containers": [
                _container("kube-scheduler", _get(values, "scheduling.userScheduler.containerSecurityContext"))
            ],
            **copy.deepcopy(_get(values, "scheduling.userScheduler.extraPodSpec", {})),
        }
    if _get(values, "scheduling.userPlaceholder.enabled", True):
        pods["user-placeholder"] = {
            "containers": [_container("pause", _get(values, "scheduling.userPlaceholder.containerSecurityContext"))]
        }
    pullers = [
        name
        for name, on in (
            ("continuous-image-puller", _get(values, "prePuller.continuous.enabled", True)),
            ("hook-image-puller", _get(values, "prePuller.hook.enabled", True)),
        )
        if on
    ]
    for name in pullers:
        pull = _get(values, "prePuller.containerSecurityContext")
        init = [_container("image-pull-singleuser", pull)]
        if _get(values, "singleuser.cloudMetadata.blockWithIptables", True):
            init.append(_container("image-pull-metadata-block", pull))
        for i, _ in enumerate(_get(values, "singleuser.profileList", []) or []):
            init.append(_container(f"image-pull-singleuser-profilelist-{i}", pull))
        pods[name] = {
            "initContainers": init,
            "containers": [_container("pause", _get(values, "prePuller.pause.containerSecurityContext"))],
        }
    if _get(values, "prePuller.hook.enabled", True):
        pods["hook-image-awaiter"] = {
            "containers": [_container("hook-image-awaiter", _get(values, "prePuller.hook.containerSecurityContext"))]
        }
    return pods
