"""Benchmark: the hub's token API under concurrent user servers.

Logs in R users through the dev IAM (so each has exchanged tokens in auth_state) and starts their real servers
(the token API answers only a running server's own token), then lets M concurrent clients, each holding one of
those server tokens, ask GET /hub/api/dlaas/tokens for T seconds, as M token agents would (they ask far less often:
at half of the token lifetime). The hub's work per request does not depend on which server asks, so R real servers
stand for M without starting M JupyterLabs on the benchmark machine. Reports requests/s, latency percentiles,
errors and the hub's CPU; appends to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_token_api.py [--servers 50] [--running 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results, hub_stack, process_tree_usage  # noqa: E402
from devstack.hub_client import process_environ, request_server, service_session, wait_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=50, help="concurrent clients (token agents)")
    parser.add_argument("--running", type=int, default=5, help="real user servers whose tokens they use")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    latencies, errors = [], []
    running = max(1, min(args.running, args.servers))
    with hub_stack(running, "tokapi", admin_scopes=["admin:servers", "admin:server_state", "read:users"]) as stack:
        for user in stack.users:
            with requests.Session() as browser:
                stack.login(user, browser)
            request_server(stack.admin, user["username"], timeout=120)
        server_tokens = [
            process_environ(wait_server(stack.admin, user["username"], timeout=120))["JUPYTERHUB_API_TOKEN"]
            for user in stack.users
        ]
        tokens = [server_tokens[i % running] for i in range(args.servers)]
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds
        cpu_before, _ = process_tree_usage(stack.hub.process.pid)

        def agent(token):
            with service_session(stack.hub, token) as s:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    try:
                        r = s.get(f"{stack.api}/dlaas/tokens", timeout=30)
                        ok = r.status_code == 200 and "rucio" in r.json()["tokens"]
                    except (requests.RequestException, ValueError, KeyError) as e:
                        ok, r = False, e
                    with lock:
                        (latencies if ok else errors).append(time.perf_counter() - t0 if ok else repr(r))

        started = time.perf_counter()
        with ThreadPoolExecutor(args.servers) as pool:
            list(pool.map(agent, tokens))
        wall = time.perf_counter() - started
        cpu_after, rss = process_tree_usage(stack.hub.process.pid)

    q = statistics.quantiles(latencies, n=100)
    table = "\n".join(
        [
            "| concurrent clients (real servers) | seconds | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | errors "
            "| hub CPU (s) | hub RSS (MiB) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {args.servers} ({running}) | {args.seconds:.0f} | {len(latencies) / wall:.0f} | {1000 * q[49]:.1f} | "
            f"{1000 * q[94]:.1f} | {1000 * q[98]:.1f} | {len(errors)} | {cpu_after - cpu_before:.1f} | "
            f"{rss / 2**20:.0f} |",
        ]
    )
    print(table)
    if not args.no_append:
        append_results(
            "Token API under concurrent user servers",
            "Tokens far from expiry (the refresh path is measured "
            "by the refresh tests); the load generator shares the machine.",
            table,
        )
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
