"""Where dlaas-xcache-origin-sync puts the allow-list: a file (the local data lake, or a volume), or the XCache's
ConfigMap in Kubernetes, and nothing else there. Both leave an unchanged list alone and say whether they wrote; the
cache notices a new list by itself (dlaas-xcache-serve), so the sync needs no right over the cache's pod template.
"""

from __future__ import annotations

from pathlib import Path

from dlaas_fs.atomic import write_atomically
from dlaas_xcache.cric import AllowList


def write_file(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (readable by the cache's user); False if it already had that content."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    write_atomically(path, text, mode=0o644, dir_mode=0o755)
    return True


def update_kubernetes(allow: AllowList, namespace: str, configmap: str, key: str = "origins.cfg", api=None) -> bool:
    """Put the list into the cache's ConfigMap if it changed; returns whether it did. The cache, which mounts the
    ConfigMap, picks the new list up by itself (dlaas-xcache-serve)."""
    if api is None:
        from kubernetes import client, config

        config.load_incluster_config()
        api = client.CoreV1Api()
    text = allow.render()
    current = api.read_namespaced_config_map(configmap, namespace)
    if (current.data or {}).get(key) == text:
        return False
    api.patch_namespaced_config_map(configmap, namespace, {"data": {key: text}})
    return True
