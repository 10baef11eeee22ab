"""dlaas-xcache-origin-sync: keep the XCache's allowed origins equal to the Data Lake's storage endpoints in CRIC.

The XCache forwards `root://<cache>//root://<origin>//<path>` only to origins its allow-list permits (`pss.permit`
lines); without the list it would be an open proxy for anyone who can reach it. CRIC, the Data Lake's storage
catalogue, knows every RSE's endpoints and changes as sites come and go. This job reads CRIC, derives the hosts of
the RSEs' XRootD endpoints and writes the allow-list:

- to a file (`--output`; the local data lake's supervisor restarts its cache when the file changes), atomically;
- or, in Kubernetes (`--namespace --configmap --restart-deployment`), into the cache's ConfigMap, then rolls the
  cache Deployment by stamping the list's digest on its pod template.

Nothing is written, and the cache is not restarted, when the list did not change. When CRIC is unreachable or its
answer is not a usable catalogue (not JSON, no RSEs, no XRootD endpoint), the previous list stays in place and the
job exits with status 1 and a one-line reason.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from singleuser.token_files import write_atomically

DEFAULT_SCHEMES = ("root", "xroot")
DIGEST_ANNOTATION = "dlaas.escape/allowed-origins-digest"
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class SyncError(Exception):
    """The catalogue could not be used; the message is one line saying why and that the old list stays."""


@dataclass(frozen=True)
class AllowList:
    hosts: tuple[str, ...]
    source: str

    def render(self) -> str:
        # Whole-line comments only: xrootd reads a trailing `#` as an argument. No timestamp, so an unchanged
        # catalogue gives byte-identical text (and no cache restart).
        header = [f"# Allowed origins of this XCache: {len(self.hosts)} storage endpoints from {self.source}",
                  "# Written by dlaas-xcache-origin-sync; edits are overwritten."]
        return "\n".join([*header, *(f"pss.permit {h}" for h in self.hosts)]) + "\n"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()[:16]


def valid_host(host: str) -> bool:
    """A DNS name or an IP address, and nothing that could smuggle another directive into the cache's config."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.match(host))


def _host_of(value: str) -> str:
    """`root://host:1094/path`, `host:1094`, `[::1]:1094` or `host` -> the host alone."""
    value = re.sub(r"^[a-z][a-z0-9+.-]*://", "", value.strip()).split("/", 1)[0]
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def origin_hosts(catalogue, schemes=DEFAULT_SCHEMES) -> tuple[list[str], list[str]]:
    """The sorted hosts of every RSE protocol with one of `schemes`, and warnings about entries that were skipped.

    Accepts CRIC's `/api/doma/rse/query/?json&preset=doma` answer, `{"rses": {NAME: {"protocols": [...]}}}`, and the
    plain `{NAME: {...}}` form. A protocol is `{"scheme": "root", "hostname": "eos.example.org", "port": 1094, ...}`;
    `hostname` may also carry the scheme and port (`root://eos.example.org:1094`), as some CRIC entries do.
    """
    if not isinstance(catalogue, dict):
        raise SyncError("the answer is not a JSON object of RSEs")
    rses = catalogue.get("rses", catalogue)
    if not isinstance(rses, dict) or not rses:
        raise SyncError("the answer lists no RSEs")
    hosts: set[str] = set()
    warnings: list[str] = []
    for name, rse in sorted(rses.items()):
        protocols = rse.get("protocols") if isinstance(rse, dict) else None
        if isinstance(protocols, dict):  # some CRIC presets key protocols by name
            protocols = list(protocols.values())
        if not isinstance(protocols, list):
            continue
        for proto in protocols:
            if not isinstance(proto, dict) or proto.get("scheme") not in schemes:
                continue
            host = _host_of(str(proto.get("hostname") or ""))
            if not host:
                continue
            if not valid_host(host):
                warnings.append(f"skipped RSE {name}: {proto.get('hostname')!r} is not a host name")
                continue
            hosts.add(host.lower())
    if not hosts:
        raise SyncError(f"the answer has {len(rses)} RSEs but no {'/'.join(schemes)} endpoint")
    return sorted(hosts), warnings


def fetch(url: str, timeout: float) -> object:
    try:
        r = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as e:
        raise SyncError(f"CRIC at {url} is unreachable ({type(e).__name__})") from None
    if r.status_code != 200:
        raise SyncError(f"CRIC at {url} answered HTTP {r.status_code}")
    try:
        return r.json()
    except ValueError:
        raise SyncError(f"CRIC at {url} answered something that is not JSON") from None


def build(url: str, timeout: float, schemes=DEFAULT_SCHEMES) -> tuple[AllowList, list[str]]:
    hosts, warnings = origin_hosts(fetch(url, timeout), schemes)
    return AllowList(tuple(hosts), url), warnings


# --- the cache's path guard ------------------------------------------------------------------------------------------

# XRootD 5.5.3's pss.permit check is not enough on its own: a request naming a non-permitted origin is refused
# with EINVAL four times out of five, and the fifth time XrdPss opens the URL left in its buffer by an earlier,
# permitted request, so the client gets *another file* under the name it asked for (measured; XrdPssSys::P2OUT
# returns success when the destination is not authorized). The cache therefore also runs XRootD's own authorization
# (ofs.authorize + acc.authdb) with a rule per permitted origin: a path naming any other origin is refused with
# "permission denied" before the proxy ever sees it.
URL_SCHEMES = ("root", "xroot", "roots", "xroots")


def permitted_hosts(origins_cfg: str) -> list[str]:
    """The hosts of the `pss.permit` lines of an allow-list (a `:port` is dropped: pss.permit ignores it too)."""
    return [_host_of(ln.split()[1]) for ln in origins_cfg.splitlines()
            if ln.strip().startswith("pss.permit ") and len(ln.split()) == 2]


def authdb(hosts) -> str:
    """acc.authdb rules letting anyone look up and read paths of the permitted origins, and nothing else.

    The cache sees `root://<cache>//root://host:1094//p` as the path `/root:/host:1094/p`; a rule is a path prefix,
    so each host gets one for `host:` (any port) and one for `host/` (default port), for every XRootD scheme.
    """
    rules = [f"/{scheme}:/{host}{end} lr" for host in hosts if valid_host(host)  # never widen with a non-host
             for scheme in URL_SCHEMES for end in (":", "/")]
    # One record for the id `u *` (XrdAcc allows one per id), continued over lines with backslashes.
    return ("# Paths the XCache serves: those of its permitted origins (derived from the pss.permit lines).\n"
            + " \\\n  ".join(["u *", *rules]) + "\n")


def write_authdb(origins_cfg: Path, output: Path) -> int:
    """Derive the cache's authdb from its allow-list file; returns the number of origins."""
    hosts = permitted_hosts(Path(origins_cfg).read_text())
    write_file(Path(output), authdb(hosts))
    return len(hosts)


def authdb_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dlaas-xcache-authdb",
                                description="Write the XCache's acc.authdb from its pss.permit allow-list.")
    p.add_argument("--origins", required=True, help="the allow-list (pss.permit lines)")
    p.add_argument("--output", required=True, help="the authdb to write (acc.authdb)")
    args = p.parse_args(argv)
    try:
        n = write_authdb(Path(args.origins), Path(args.output))
    except OSError as e:
        print(f"dlaas-xcache-authdb: cannot derive the authdb: {e}", file=sys.stderr)
        return 1
    print(f"dlaas-xcache-authdb: {n} permitted origins -> {args.output}")
    return 0


# --- targets ---------------------------------------------------------------------------------------------------------


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


def update_kubernetes(allow: AllowList, namespace: str, configmap: str, deployment: str | None,
                      key: str = "origins.cfg", api=None) -> bool:
    """Put the list into the ConfigMap and roll the cache Deployment, only if the list changed. Returns changed."""
    if api is None:
        from kubernetes import client, config

        config.load_incluster_config()
        api = (client.CoreV1Api(), client.AppsV1Api())
    core, apps = api
    text = allow.render()
    current = core.read_namespaced_config_map(configmap, namespace)
    changed = (current.data or {}).get(key) != text
    if changed:
        core.patch_namespaced_config_map(configmap, namespace, {"data": {key: text}})
    if deployment:
        # The digest on the pod template rolls the cache when (and only when) the list changed; a run that patched
        # the ConfigMap but died before this step is repaired by the next run.
        dep = apps.read_namespaced_deployment(deployment, namespace)
        annotations = dep.spec.template.metadata.annotations or {}
        if annotations.get(DIGEST_ANNOTATION) != allow.digest:
            apps.patch_namespaced_deployment(deployment, namespace, {
                "spec": {"template": {"metadata": {"annotations": {DIGEST_ANNOTATION: allow.digest}}}}})
            changed = True
    return changed


# --- command line ------------------------------------------------------------------------------------------------------


def sync_once(args) -> int:
    try:
        allow, warnings = build(args.cric_url, args.timeout, tuple(args.schemes.split(",")))
    except SyncError as e:
        print(f"dlaas-xcache-origin-sync: {e}; the previous allow-list stays in place", file=sys.stderr, flush=True)
        return 1
    for w in warnings:
        print(f"dlaas-xcache-origin-sync: warning: {w}", file=sys.stderr, flush=True)
    if args.output:
        changed = write_file(Path(args.output), allow.render())
        where = args.output
    else:
        try:
            changed = update_kubernetes(allow, args.namespace, args.configmap, args.restart_deployment)
        except Exception as e:  # the API client raises many types; the reason is all the operator needs
            print(f"dlaas-xcache-origin-sync: cannot update ConfigMap {args.namespace}/{args.configmap}: "
                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr, flush=True)
            return 1
        where = f"ConfigMap {args.namespace}/{args.configmap}"
    state = "updated" if changed else "unchanged"
    print(f"dlaas-xcache-origin-sync: {len(allow.hosts)} allowed origins, {where} {state}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dlaas-xcache-origin-sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--cric-url", required=True,
                   help="CRIC's RSE query, e.g. https://<cric>/api/doma/rse/query/?json&preset=doma")
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES),
                   help="protocol schemes whose hosts become origins (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for CRIC (default: %(default)s)")
    p.add_argument("--output", help="write the allow-list to this file")
    p.add_argument("--namespace", help="Kubernetes: namespace of the cache")
    p.add_argument("--configmap", help="Kubernetes: ConfigMap holding the allow-list (key origins.cfg)")
    p.add_argument("--restart-deployment", help="Kubernetes: the cache Deployment to roll when the list changed")
    p.add_argument("--every", type=float, default=0,
                   help="keep running and sync every this many seconds (default: once)")
    args = p.parse_args(argv)
    if bool(args.output) == bool(args.configmap):
        p.error("give either --output FILE or --namespace and --configmap")
    if args.configmap and not args.namespace:
        p.error("--configmap needs --namespace")
    if args.every < 0:
        p.error("--every must be positive")
    if not args.every:
        return sync_once(args)
    while True:
        sync_once(args)
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
