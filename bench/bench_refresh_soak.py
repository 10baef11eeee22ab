"""Benchmark: token refresh soak - M running user servers with short-lived tokens for T minutes.

Starts its own dev IAM (access tokens of --lifetime seconds), hub (refresh margin --margin) and M real user
servers (local spawner, token agent inside). Samples every server's Rucio token file twice a second and reports the
fraction of samples where the file held a valid (unexpired) token, how long each rewrite came before expiry, and the
IdP requests per user per hour. Appends to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_refresh_soak.py [--servers 5] [--minutes 2] [--lifetime 30] [--margin 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jwt
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results, hub_stack  # noqa: E402
from devstack.hub_client import process_environ, request_server, wait_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--lifetime", type=int, default=30)
    parser.add_argument("--margin", type=int, default=10)
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    samples = valid = 0
    margins_at_rewrite: list[float] = []
    with hub_stack(
        args.servers,
        "soak",
        admin_scopes=["admin:users", "admin:servers", "admin:server_state"],
        access_token_ttl=args.lifetime,
        refresh_margin=args.margin,
        auth_refresh_age=5,
    ) as stack:
        iam, admin = stack.iam, stack.admin
        for user in stack.users:
            with requests.Session() as browser:
                stack.login(user, browser)
            request_server(admin, user["username"], timeout=120)
        files = {
            user["username"]: Path(
                process_environ(wait_server(admin, user["username"], timeout=180))["BEARER_TOKEN_FILE"]
            )
            for user in stack.users
        }
        token_requests_before = iam.process.log_path.read_text().count("POST /token 200")
        last = {}
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            now = time.time()
            for name, path in files.items():
                samples += 1
                try:
                    token = path.read_text()
                    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
                except (OSError, jwt.PyJWTError, KeyError):
                    continue
                valid += exp > now
                if last.get(name) not in (None, token):
                    old_exp = jwt.decode(last[name], options={"verify_signature": False})["exp"]
                    margins_at_rewrite.append(old_exp - now)
                last[name] = token
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        token_requests = iam.process.log_path.read_text().count("POST /token 200") - token_requests_before

    per_user_hour = token_requests / max(len(files), 1) / (elapsed / 3600)
    table = "\n".join(
        [
            "| servers | minutes | token lifetime (s) | margin (s) | samples valid | rewrites | median time left at "
            "rewrite (s) | min (s) | IdP token requests / user / hour |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {len(files)} | {args.minutes:g} | {args.lifetime} | {args.margin} | "
            f"{100 * valid / max(samples, 1):.2f} % "
            f"| {len(margins_at_rewrite)} | {statistics.median(margins_at_rewrite) if margins_at_rewrite else 0:.1f} | "
            f"{min(margins_at_rewrite, default=0):.1f} | {per_user_hour:.0f} |",
        ]
    )
    print(table)
    if not args.no_append:
        append_results(
            "Token refresh soak",
            "Real user servers (local spawner), token files sampled every 0.5 s; IdP "
            "requests are refresh + exchanges (3 per refresh).",
            table,
        )
    return 0 if samples and valid == samples else 1


if __name__ == "__main__":
    sys.exit(main())
