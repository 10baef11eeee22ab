"""dlaas-xcache-origin-sync: keep the XCache's allowed origins equal to the Data Lake's storage endpoints in CRIC.

The XCache forwards `root://<cache>//root://<origin>//<path>` only to origins its allow-list permits (`pss.permit
host:port` lines, see dlaas_xcache.allow_list); without the list it would be an open proxy for anyone who can reach
it. CRIC, the Data Lake's storage catalogue, knows every RSE's endpoints and changes as sites come and go. This job
reads CRIC, derives the host and port of the RSEs' XRootD endpoints (1094 when CRIC gives none) and writes the list:

- to a file (`--output`), atomically;
- or, in Kubernetes (`--namespace --configmap`), into the cache's ConfigMap, and nothing else.

Either way the cache notices the new list itself and restarts on it (dlaas-xcache-serve, or the local data lake's
supervisor): this job needs no right over the cache's pod template. Nothing is written when the list did not change.
When CRIC is unreachable or its answer is not a usable catalogue (not JSON, no RSEs, no XRootD endpoint), the
previous list stays in place and the job exits with status 1 and a one-line reason.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from dlaas_xcache import allow_list
from dlaas_xcache.allow_list import AllowListError, Origin
from singleuser.token_files import write_atomically

DEFAULT_SCHEMES = ("root", "xroot")


class SyncError(Exception):
    """The catalogue could not be used; the message is one line saying why and that the old list stays."""


@dataclass(frozen=True)
class AllowList:
    origins: tuple[Origin, ...]
    source: str

    def render(self) -> str:
        return allow_list.render(self.origins, self.source)


def _origin_of(hostname: str, port) -> Origin:
    """CRIC's `hostname` (`host`, `host:1094`, `[::1]:1094` or `root://host:1094/path`) and `port` -> the origin.

    A port inside `hostname` wins over the `port` field; neither means 1094. Raises AllowListError.
    """
    netloc = re.sub(r"\A[a-z][a-z0-9+.-]*://", "", hostname.strip()).split("/", 1)[0]
    host, embedded = allow_list.split_netloc(netloc)
    if embedded is not None:
        return Origin(host, embedded)
    if port in (None, ""):
        return Origin(host)
    return Origin.parse(f"{Origin(host).hostpart}:{port}")  # the same port checks as the list's


def origins_of(catalogue, schemes=DEFAULT_SCHEMES) -> tuple[list[Origin], list[str]]:
    """The sorted origins of every RSE protocol with one of `schemes`, and warnings about entries that were skipped.

    Accepts CRIC's `/api/doma/rse/query/?json&preset=doma` answer, `{"rses": {NAME: {"protocols": [...]}}}`, and the
    plain `{NAME: {...}}` form. A protocol is `{"scheme": "root", "hostname": "eos.example.org", "port": 1094, ...}`;
    `hostname` may also carry the scheme and port (`root://eos.example.org:1094`), as some CRIC entries do.
    """
    if not isinstance(catalogue, dict):
        raise SyncError("the answer is not a JSON object of RSEs")
    rses = catalogue.get("rses", catalogue)
    if not isinstance(rses, dict) or not rses:
        raise SyncError("the answer lists no RSEs")
    origins: set[Origin] = set()
    warnings: list[str] = []
    for name, rse in sorted(rses.items()):
        protocols = rse.get("protocols") if isinstance(rse, dict) else None
        if isinstance(protocols, dict):  # some CRIC presets key protocols by name
            protocols = list(protocols.values())
        if not isinstance(protocols, list):
            continue
        for proto in protocols:
            if not isinstance(proto, dict) or proto.get("scheme") not in schemes or not proto.get("hostname"):
                continue
            try:
                origins.add(_origin_of(str(proto["hostname"]), proto.get("port")))
            except AllowListError as e:
                warnings.append(f"skipped RSE {name}: {proto.get('hostname')!r} port {proto.get('port')!r}: {e}")
    if not origins:
        raise SyncError(f"the answer has {len(rses)} RSEs but no {'/'.join(schemes)} endpoint")
    return sorted(origins), warnings


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
    origins, warnings = origins_of(fetch(url, timeout), schemes)
    return AllowList(tuple(origins), url), warnings


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


# --- command line -----------------------------------------------------------------------------------------------


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
            changed = update_kubernetes(allow, args.namespace, args.configmap)
        except Exception as e:  # the API client raises many types; the reason is all the operator needs
            print(
                f"dlaas-xcache-origin-sync: cannot update ConfigMap {args.namespace}/{args.configmap}: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        where = f"ConfigMap {args.namespace}/{args.configmap}"
    state = "updated" if changed else "unchanged"
    print(f"dlaas-xcache-origin-sync: {len(allow.origins)} allowed origins, {where} {state}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dlaas-xcache-origin-sync", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cric-url", required=True, help="CRIC's RSE query, e.g. https://<cric>/api/doma/rse/query/?json&preset=doma"
    )
    p.add_argument(
        "--schemes",
        default=",".join(DEFAULT_SCHEMES),
        help="protocol schemes whose hosts become origins (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for CRIC (default: %(default)s)")
    p.add_argument("--output", help="write the allow-list to this file")
    p.add_argument("--namespace", help="Kubernetes: namespace of the cache")
    p.add_argument("--configmap", help="Kubernetes: ConfigMap holding the allow-list (key origins.cfg)")
    p.add_argument("--restart-deployment", help=argparse.SUPPRESS)  # gone; refused below with what to do
    p.add_argument(
        "--every", type=float, default=0, help="keep running and sync every this many seconds (default: once)"
    )
    args = p.parse_args(argv)
    if args.restart_deployment is not None:
        p.error(
            "--restart-deployment is gone: the cache (dlaas-xcache-serve) reloads the list from its ConfigMap by "
            "itself; drop the option (and the Role's rule on deployments)"
        )
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
