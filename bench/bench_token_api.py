"""Benchmark: the hub's token API under concurrent user servers.

Logs in M users through the dev IAM (so each has exchanged tokens in auth_state), gives each a token with the
`custom:dlaas-tokens` scope (the scope a user server's own token carries), then lets M concurrent clients ask
GET /hub/api/dlaas/tokens for T seconds, as M token agents would (they ask far less often: at half of the token
lifetime). Reports requests/s, latency percentiles, errors and the hub's CPU; appends to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_token_api.py [--servers 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_login_storm import process_tree_usage  # noqa: E402
from bench.bench_register import machine  # noqa: E402
from devstack.hub import LocalHub, register_hub_client  # noqa: E402
from devstack.iam import DevIAM  # noqa: E402
from devstack.iam_login import login  # noqa: E402
from devstack.procs import free_port  # noqa: E402
from devstack.settings import REPO, Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="dlaas-tokapi-"))
    state.chmod(0o755)
    users = [{"username": f"user{i:04d}", "password": f"pw-{i}", "sub": str(uuid.uuid4()), "name": f"User {i}",
              "email": f"user{i}@example.invalid", "groups": ["escape/users"]} for i in range(args.servers)]
    (state / "users.json").write_text(json.dumps(users))
    settings = Settings(state_dir=state, iam_port=0, hub_port=free_port())
    iam = DevIAM(settings, users_file=state / "users.json")
    register_hub_client(iam, settings.hub_url)
    admin_token = uuid.uuid4().hex
    extra = {"services": [{"name": "bench-admin", "api_token": admin_token}],
             "roles": [{"name": "bench-admin", "services": ["bench-admin"], "scopes": ["admin:users", "tokens"]}]}
    hub = None
    latencies, errors = [], []
    try:
        iam.start()
        hub = LocalHub(settings, iam=iam, extra=extra).start()
        admin = requests.Session()
        admin.headers["Authorization"] = f"token {admin_token}"
        tokens = []
        for user in users:
            with requests.Session() as browser:
                callback = login(browser, f"{hub.url}/hub/oauth_login", user["username"], user["password"],
                                 stop_at=f"{hub.url}/hub/oauth_callback")
                browser.get(callback, allow_redirects=False, timeout=60)
            r = admin.post(f"{hub.url}/hub/api/users/{user['username']}/tokens",
                           json={"scopes": ["custom:dlaas-tokens"]}, timeout=30)
            r.raise_for_status()
            tokens.append(r.json()["token"])
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds
        cpu_before, _ = process_tree_usage(hub.process.pid)

        def agent(token):
            with requests.Session() as s:
                s.headers["Authorization"] = f"token {token}"
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    try:
                        r = s.get(f"{hub.url}/hub/api/dlaas/tokens", timeout=30)
                        ok = r.status_code == 200 and "rucio" in r.json()["tokens"]
                    except (requests.RequestException, ValueError, KeyError) as e:
                        ok, r = False, e
                    with lock:
                        (latencies if ok else errors).append(time.perf_counter() - t0 if ok else repr(r))

        started = time.perf_counter()
        with ThreadPoolExecutor(args.servers) as pool:
            list(pool.map(agent, tokens))
        wall = time.perf_counter() - started
        cpu_after, rss = process_tree_usage(hub.process.pid)
    finally:
        if hub:
            hub.stop()
        iam.stop()
        shutil.rmtree(state, ignore_errors=True)

    q = statistics.quantiles(latencies, n=100)
    table = "\n".join([
        "| concurrent servers | seconds | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | errors | hub CPU (s) | hub RSS (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {args.servers} | {args.seconds:.0f} | {len(latencies) / wall:.0f} | {1000 * q[49]:.1f} | "
        f"{1000 * q[94]:.1f} | {1000 * q[98]:.1f} | {len(errors)} | {cpu_after - cpu_before:.1f} | "
        f"{rss / 2**20:.0f} |",
    ])
    print(table)
    if not args.no_append:
        with open(REPO / "docs" / "benchmarks.md", "a") as f:
            f.write(f"\n### Token API under concurrent user servers ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)"
                    f"\n\nMachine: {machine()}. Tokens far from expiry (the refresh path is measured by the "
                    f"refresh tests); the load generator shares the machine.\nCommand: `.venvs/main/bin/python "
                    f"bench/bench_token_api.py --servers {args.servers} --seconds {args.seconds:.0f}`\n\n{table}\n")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
