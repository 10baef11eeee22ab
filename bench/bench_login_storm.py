"""Benchmark: a login storm on the hub - N researchers log in at once through the dev IAM.

Each simulated user does what a browser does: GET /hub/oauth_login, the IAM login form, the callback (code
exchange with PKCE, userinfo, and RFC 8693 exchanges for `rucio` and `eos`), landing on the hub. The first
--spawn users then start their server (local spawner, a real JupyterLab each: ~100 MiB apiece, so not all 200 on a
24 GiB machine) and open JupyterLab. Starts its own dev IAM (with N generated users) and hub on free loopback ports.
Reports logins/s, p50/p95/p99 login latency, time to JupyterLab, errors, and the hub's CPU time and peak memory;
appends the table to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_login_storm.py [--users 200] [--concurrency 20] [--spawn 20]
    .venvs/main/bin/python bench/bench_login_storm.py --spawn 0 --onboarding   # first logins onboarded into Rucio
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results, hub_stack, process_tree_usage  # noqa: E402


def onboarding_outcomes(stack) -> dict[str, float]:
    """The hub's count of just-in-time onboardings by outcome, from its /metrics (read with the admin service)."""
    counts: dict[str, float] = {}
    text = stack.admin.get(f"{stack.hub.url}/hub/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("dlaas_onboarding_runs_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--spawn", type=int, default=20, help="how many of the users also start JupyterLab")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="the hub as it was before the login-path fixes (SQLite rollback journal, tornado's "
        "pure-Python HTTP client): the 'before' numbers",
    )
    parser.add_argument(
        "--returning",
        action="store_true",
        help="users the hub already knows (each logged in once before the storm, not measured)",
    )
    parser.add_argument(
        "--onboarding",
        action="store_true",
        help="with Rucio: each first login runs the just-in-time onboarding (dlaas-rucio-sync for that user) before "
        "it lands, as in production",
    )
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.onboarding and args.returning:
        parser.error("--onboarding measures first logins: leave out --returning")

    latencies, errors, to_lab = [], [], []
    peak_rss = 0
    with hub_stack(
        args.users,
        "user",
        admin_scopes=["read:users", "read:metrics"],
        parts=("rucio", "jupyterhub") if args.onboarding else ("login",),
        **({"sqlite_wal": False, "pure_python_http": True} if args.baseline else {}),
    ) as stack:
        hub = stack.hub
        if args.returning:
            # Every user logs in once before the storm: the hub knows them, as on any morning after the first.
            def first_login(user):
                with requests.Session() as browser:
                    if stack.login(user, browser).status_code != 302:
                        raise SystemExit(f"the warm-up login of {user['username']} failed")

            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(first_login, stack.users))
        cpu_before, _ = process_tree_usage(hub.process.pid)
        iam_before, _ = process_tree_usage(stack.iam.process.pid)
        own_before = sum(os.times()[:2])
        stop = threading.Event()

        def sample():
            nonlocal peak_rss
            while not stop.is_set():
                peak_rss = max(peak_rss, process_tree_usage(hub.process.pid)[1])
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        spawners = {u["username"] for u in stack.users[: args.spawn]}

        def one(user):
            t0 = time.perf_counter()
            try:
                with requests.Session() as browser:
                    answer = stack.login(user, browser)
                    if answer.status_code != 302:
                        raise RuntimeError(f"callback answered {answer.status_code}")
                    latencies.append(time.perf_counter() - t0)
                    if user["username"] in spawners:
                        # The spawn page's default environment, then JupyterLab itself (follows the hub's redirects
                        # and the server's OAuth handshake, as a browser does).
                        xsrf = browser.cookies.get("_xsrf", path="/hub/")
                        browser.post(f"{hub.url}/hub/spawn", data={"profile": "base", "_xsrf": xsrf}, timeout=300)
                        lab = browser.get(f"{hub.url}/user/{user['username']}/lab", timeout=300)
                        while lab.status_code == 200 and "/spawn-pending/" in lab.url:
                            time.sleep(0.5)
                            lab = browser.get(f"{hub.url}/user/{user['username']}/lab", timeout=300)
                        if lab.status_code != 200 or f"/user/{user['username']}/lab" not in lab.url:
                            raise RuntimeError(f"JupyterLab answered {lab.status_code} at {lab.url}")
                        to_lab.append(time.perf_counter() - t0)
            except Exception as e:  # counted and reported, the storm goes on
                errors.append(f"{type(e).__name__}: {e}")

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, stack.users))
        wall = time.perf_counter() - started
        stop.set()
        cpu_after, _ = process_tree_usage(hub.process.pid)
        onboarded = onboarding_outcomes(stack) if args.onboarding else {}
        iam_cpu = process_tree_usage(stack.iam.process.pid)[0] - iam_before
        own_cpu = sum(os.times()[:2]) - own_before

    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    lab = f"{statistics.median(to_lab):.1f} / {max(to_lab):.1f}" if to_lab else "-"
    table = "\n".join(
        [
            "| users | concurrency | logins/s | p50 (s) | p95 (s) | p99 (s) | spawned "
            "| time to JupyterLab median / max (s) "
            "| errors | hub CPU (s) | dev IAM CPU (s) | load generator CPU (s) | hub peak RSS (MiB, with servers) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {args.users} | {args.concurrency} | {len(latencies) / wall:.1f} | {q[49]:.2f} | {q[94]:.2f} | "
            f"{q[98]:.2f} | {len(to_lab)} | {lab} | {len(errors)} | {cpu_after - cpu_before:.1f} | {iam_cpu:.1f} | "
            f"{own_cpu:.1f} | {peak_rss / 2**20:.0f} |",
        ]
    )
    if args.onboarding:
        table += "\n\nOnboarding outcomes (hub metrics): " + (
            ", ".join(f"{k} {v:g}" for k, v in sorted(onboarded.items())) or "none"
        )
    print(table)
    if errors:
        print("first errors:", *errors[:3], sep="\n  ")
    if not args.no_append:
        variant = (
            "baseline: SQLite rollback journal, pure-Python HTTP client"
            if args.baseline
            else "SQLite WAL, curl HTTP client"
        )
        who = "returning users" if args.returning else "first logins"
        if args.onboarding:
            who += " with onboarding into Rucio"
        append_results(
            f"Login storm, {who}, {variant}",
            "Each login: IAM form, code + PKCE, userinfo, two RFC 8693 exchanges (rucio, eos); the hub and "
            "the dev IAM share the machine with the load generator.",
            table,
        )
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
