"""The Zero to JupyterHub values keys DLaaS may use, for the chart version pinned in flux/apps/base/jupyterhub.

The z2jh chart (and its values schema) is not in any registry this project can reach, so its schema cannot be run
offline. Instead this is a hand-kept tree of z2jh 4.x keys (from its configuration reference) for the parts of the
chart we configure; `unknown_keys` reports every key of our values that is not in it - a misspelled key that z2jh's
own schema would reject (or, worse, silently ignore) fails the deploy tests. FREE marks subtrees whose content is
free-form for z2jh (traitlets config, Kubernetes objects, annotations). When you use a new, valid z2jh key, add it.
"""

from __future__ import annotations

FREE = object()

_IMAGE = {"name": None, "tag": None, "pullPolicy": None, "pullSecrets": FREE}
_NETPOL = {
    "enabled": None,
    "ingress": FREE,
    "egress": FREE,
    "egressAllowRules": {
        "cloudMetadataServer": None,
        "dnsPortsCloudMetadataServer": None,
        "dnsPortsKubeSystemNamespace": None,
        "dnsPortsPrivateIPs": None,
        "nonPrivateIPs": None,
        "privateIPs": None,
    },
    "interNamespaceAccessLabels": None,
    "allowedIngressPorts": FREE,
}
_PDB = {"enabled": None, "maxUnavailable": None, "minAvailable": None}

Z2JH_KEYS = {
    "fullnameOverride": None,
    "nameOverride": None,
    "enabled": None,
    "apps": FREE,
    "imagePullSecret": FREE,
    "imagePullSecrets": FREE,
    "custom": FREE,
    "global": FREE,
    "debug": {"enabled": None},
    "rbac": {"create": None},
    "hub": {
        "revisionHistoryLimit": None,
        "config": FREE,
        "service": FREE,
        "baseUrl": None,
        "cookieSecret": None,
        "initContainers": FREE,
        "nodeSelector": FREE,
        "tolerations": FREE,
        "concurrentSpawnLimit": None,
        "consecutiveFailureLimit": None,
        "activeServerLimit": None,
        "deploymentStrategy": FREE,
        "db": {
            "type": None,
            "upgrade": None,
            "pvc": {
                "annotations": FREE,
                "selector": FREE,
                "accessModes": FREE,
                "storage": None,
                "subPath": None,
                "storageClassName": None,
            },
            "url": None,
            "password": None,
        },
        "labels": FREE,
        "annotations": FREE,
        "command": FREE,
        "args": FREE,
        "extraConfig": FREE,
        "extraFiles": FREE,
        "extraEnv": FREE,
        "extraContainers": FREE,
        "extraVolumes": FREE,
        "extraVolumeMounts": FREE,
        "extraPodSpec": FREE,
        "image": _IMAGE,
        "resources": FREE,
        "podSecurityContext": FREE,
        "containerSecurityContext": FREE,
        "lifecycle": FREE,
        "loadRoles": FREE,
        "services": FREE,
        "pdb": _PDB,
        "networkPolicy": _NETPOL,
        "allowNamedServers": None,
        "namedServerLimitPerUser": None,
        "authenticatePrometheus": None,
        "redirectToServer": None,
        "shutdownOnLogout": None,
        "templatePaths": FREE,
        "templateVars": FREE,
        "livenessProbe": FREE,
        "readinessProbe": FREE,
        "existingSecret": None,
        "serviceAccount": FREE,
        "priorityClassName": None,
    },
    "proxy": {
        "secretToken": None,
        "annotations": FREE,
        "deploymentStrategy": FREE,
        "service": {
            "type": None,
            "labels": FREE,
            "annotations": FREE,
            "nodePorts": FREE,
            "disableHttpPort": None,
            "extraPorts": FREE,
            "loadBalancerIP": None,
            "loadBalancerSourceRanges": FREE,
        },
        "chp": {
            "revisionHistoryLimit": None,
            "containerSecurityContext": FREE,
            "image": _IMAGE,
            "extraCommandLineFlags": FREE,
            "livenessProbe": FREE,
            "readinessProbe": FREE,
            "resources": FREE,
            "defaultTarget": None,
            "errorTarget": None,
            "extraEnv": FREE,
            "nodeSelector": FREE,
            "tolerations": FREE,
            "networkPolicy": _NETPOL,
            "pdb": _PDB,
            "extraPodSpec": FREE,
        },
        "traefik": FREE,
        "secretSync": FREE,
        "labels": FREE,
        "https": {
            "enabled": None,
            "type": None,
            "letsencrypt": FREE,
            "manual": FREE,
            "secret": FREE,
            "hosts": FREE,
        },
    },
    "singleuser": {
        "podNameTemplate": None,
        "extraTolerations": FREE,
        "nodeSelector": FREE,
        "extraNodeAffinity": FREE,
        "extraPodAffinity": FREE,
        "extraPodAntiAffinity": FREE,
        "networkTools": FREE,
        "cloudMetadata": {"blockWithIptables": None, "ip": None},
        "networkPolicy": _NETPOL,
        "events": None,
        "extraAnnotations": FREE,
        "extraLabels": FREE,
        "extraEnv": FREE,
        "lifecycleHooks": FREE,
        "initContainers": FREE,
        "extraContainers": FREE,
        "allowPrivilegeEscalation": None,
        "uid": None,
        "fsGid": None,
        "serviceAccountName": None,
        "storage": {
            "type": None,
            "extraLabels": FREE,
            "extraVolumes": FREE,
            "extraVolumeMounts": FREE,
            "static": {"pvcName": None, "subPath": None},
            "capacity": None,
            "homeMountPath": None,
            "dynamic": {
                "storageClass": None,
                "pvcNameTemplate": None,
                "volumeNameTemplate": None,
                "storageAccessModes": FREE,
                "subPath": None,
            },
        },
        "image": _IMAGE,
        "startTimeout": None,
        "cpu": {"limit": None, "guarantee": None},
        "memory": {"limit": None, "guarantee": None},
        "extraResource": {"limits": FREE, "guarantees": FREE},
        "cmd": FREE,
        "defaultUrl": None,
        "extraPodConfig": FREE,
        "profileList": FREE,
    },
    "scheduling": {
        "userScheduler": {
            "enabled": None,
            "revisionHistoryLimit": None,
            "replicas": None,
            "image": _IMAGE,
            "pdb": _PDB,
            "nodeSelector": FREE,
            "tolerations": FREE,
            "labels": FREE,
            "annotations": FREE,
            "containerSecurityContext": FREE,
            "logLevel": None,
            "plugins": FREE,
            "pluginConfig": FREE,
            "resources": FREE,
            "serviceAccount": FREE,
            "extraPodSpec": FREE,
        },
        "podPriority": {
            "enabled": None,
            "globalDefault": None,
            "defaultPriority": None,
            "imagePullerPriority": None,
            "userPlaceholderPriority": None,
        },
        "userPlaceholder": {
            "enabled": None,
            "image": _IMAGE,
            "revisionHistoryLimit": None,
            "replicas": None,
            "labels": FREE,
            "annotations": FREE,
            "containerSecurityContext": FREE,
            "resources": FREE,
        },
        "corePods": FREE,
        "userPods": FREE,
    },
    "prePuller": {
        "revisionHistoryLimit": None,
        "labels": FREE,
        "annotations": FREE,
        "resources": FREE,
        "containerSecurityContext": FREE,
        "extraTolerations": FREE,
        "hook": {
            "enabled": None,
            "pullOnlyOnChanges": None,
            "image": _IMAGE,
            "containerSecurityContext": FREE,
            "podSchedulingWaitDuration": None,
            "nodeSelector": FREE,
            "tolerations": FREE,
            "resources": FREE,
            "serviceAccount": FREE,
        },
        "continuous": {"enabled": None, "serviceAccount": FREE},
        "pullProfileListImages": None,
        "extraImages": FREE,
        "pause": {"containerSecurityContext": FREE, "image": _IMAGE},
    },
    "ingress": {
        "enabled": None,
        "annotations": FREE,
        "ingressClassName": None,
        "hosts": FREE,
        "pathSuffix": None,
        "pathType": None,
        "tls": FREE,
        "extraPaths": FREE,
    },
    "cull": {
        "enabled": None,
        "users": None,
        "adminUsers": None,
        "removeNamedServers": None,
        "timeout": None,
        "every": None,
        "concurrency": None,
        "maxAge": None,
    },
}


def unknown_keys(values: dict, tree: dict = Z2JH_KEYS, prefix: str = "") -> list[str]:
    """Dotted paths of keys in `values` that z2jh (as far as this tree knows) does not have."""
    found = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in tree:
            found.append(path)
            continue
        sub = tree[key]
        if sub is FREE:
            continue
        if isinstance(value, dict):
            if sub is None:
                found.append(f"{path} (z2jh expects a value, not a mapping)")
            else:
                found.extend(unknown_keys(value, sub, f"{path}."))
        elif isinstance(sub, dict) and value is not None:
            found.append(f"{path} (z2jh expects a mapping)")
    return found
