"""The Pod Security Standard "restricted", as a function: what a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` would refuse in a pod spec.

No API server runs here, so its admission plugin cannot be asked. This checks the controls of the restricted level
(Kubernetes 1.33) that DLaaS's pods touch: host namespaces and ports, privileged containers, added capabilities,
volume types (hostPath in particular), privilege escalation, running as non-root (and not as uid 0), the seccomp
profile and dropping ALL capabilities. Not checked: AppArmor, SELinux, /proc mount type, sysctls, Windows options -
nothing of ours sets them.
"""

from __future__ import annotations

# Volume types the restricted level allows.
ALLOWED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}


def restricted_violations(pod: dict) -> list[str]:
    """Every reason the restricted level refuses the pod spec `pod` (empty: admitted)."""
    found = []
    psc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field}: true")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume.get('name')}: type {', '.join(sorted(kinds - ALLOWED_VOLUMES))}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        found.append(f"pod seccompProfile {pod_seccomp}")
    if psc.get("runAsUser") == 0:
        found.append("pod runAsUser: 0")
    if psc.get("runAsNonRoot") is False:
        found.append("pod runAsNonRoot: false")
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(kind) or []:
            found += [f"container {c.get('name')}: {v}" for v in _container_violations(c, psc)]
    return found


def _container_violations(c: dict, psc: dict) -> list[str]:
    found = []
    sc = c.get("securityContext") or {}
    if sc.get("privileged"):
        found.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        found.append("capabilities do not drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        found.append(f"adds capabilities {sorted(set(caps['add']) - {'NET_BIND_SERVICE'})}")
    non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if non_root is not True:
        found.append("runAsNonRoot is not true (container or pod)")
    if sc.get("runAsUser") == 0:
        found.append("runAsUser: 0")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in SECCOMP_OK:
        found.append(f"seccompProfile {seccomp or 'unset'} (container or pod: RuntimeDefault or Localhost)")
    for port in c.get("ports") or []:
        if port.get("hostPort"):
            found.append(f"hostPort {port['hostPort']}")
    return found


def pod_templates(objects: list[dict]) -> list[tuple[str, str, dict]]:
    """(namespace, "<Kind>/<name>", pod spec) of every pod an object list would create."""
    found = []
    for o in objects:
        kind, meta = o["kind"], o["metadata"]
        spec = None
        if kind == "Pod":
            spec = o["spec"]
        elif kind in WORKLOADS:
            spec = o["spec"]["template"]["spec"]
        elif kind == "CronJob":
            spec = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if spec is not None:
            found.append((meta.get("namespace"), f"{kind}/{meta['name']}", spec))
    return found
