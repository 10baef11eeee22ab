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

This module is the command line; reading CRIC is dlaas_xcache.cric, writing the list dlaas_xcache.targets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dlaas_xcache.cric import DEFAULT_SCHEMES, SyncError, build
from dlaas_xcache.targets import update_kubernetes, write_file


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
