"""Benchmark: registering N scratch files for upload, datalakectl's way versus one call per file.

Starts its own dev IAM, PostgreSQL and Rucio server on free loopback ports (nothing else is needed), logs in as
alice, and registers N files lying in the scratch RSE:

- datalakectl: plan (checks, checksums, one bulk metadata lookup per 500 files) + ONE add_dataset call carrying
  all replicas and both rules;
- baseline: per file, add_replicas + a scratch rule + a destination rule (what a naive script does).

Counts the HTTP calls each makes to Rucio and the wall time, prints a table and appends it, with the machine's
description, to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_register.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results  # noqa: E402
from devstack.iam import DevIAM  # noqa: E402
from devstack.iam_login import code_flow_tokens, exchange  # noqa: E402
from devstack.postgres import Postgres  # noqa: E402
from devstack.rucio_seed import DESTINATION_RSE, SCRATCH_RSE, rse_dir, seed  # noqa: E402
from devstack.rucio_server import RucioServer  # noqa: E402
from devstack.settings import Settings  # noqa: E402
from singleuser.scratch_upload import ScratchUploader  # noqa: E402

REDIRECT = "http://127.0.0.1:9/callback"


class CountingClient:
    """Wraps a rucio Client and counts the HTTP requests it sends."""

    def __init__(self, client):
        self.client, self.calls = client, 0
        original = client._send_request

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        client._send_request = counted


def make_files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"bench-{folder.name}-{i:05d}.txt"
        path.write_bytes(f"event {i} of {folder.name}\n".encode() * 4)
        paths.append(path)
    return paths


def user_client(server, token_file: Path, home: Path):
    from rucio.client import Client

    os.environ["BEARER_TOKEN_FILE"] = str(token_file)

    class BenchClient(Client):
        TOKEN_PATH_PREFIX = str(home / ".rucio_")

    return BenchClient(rucio_host=server.url, auth_host=server.url, account="alice", auth_type="oidc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="dlaas-bench-"))
    state.chmod(0o755)
    settings = Settings(state_dir=state, iam_port=0, rucio_port=0, postgres_port=0)
    iam = DevIAM(settings)
    client_def = iam.add_client("bench", [REDIRECT])
    started = []
    try:
        for service in (iam, Postgres(settings, port=0)):
            started.append(service.start())
        server = RucioServer(settings, started[1].url, iam_issuer=iam.issuer, port=0).start()
        started.append(server)
        seed(settings, server, full=False)
        login = code_flow_tokens(iam, client_def, "alice", "alice-pass")
        token = exchange(iam, client_def, login["access_token"], audience="rucio", scope="openid profile")
        token_file = state / "rucio_token"
        token_file.write_text(token["access_token"])
        client = user_client(server, token_file, state)
        client.whoami()
        scratch = rse_dir(settings, SCRATCH_RSE)

        # datalakectl's way
        counter = CountingClient(client)
        files = make_files(scratch / "alice" / "bulk", args.files)
        t0 = time.perf_counter()
        uploader = ScratchUploader(client, scratch_rse=SCRATCH_RSE, scratch_mount=scratch, account="alice")
        plan = uploader.plan(files, destination_rse=DESTINATION_RSE, dataset="bench-bulk", scratch_lifetime=3600)
        t_plan = time.perf_counter() - t0
        uploader.execute(plan)
        t_bulk = time.perf_counter() - t0
        bulk_calls = counter.calls

        # one call per file
        counter.calls = 0
        files = make_files(scratch / "alice" / "single", args.files)
        prefix = f"file://localhost{scratch}/"
        t0 = time.perf_counter()
        for path in files:
            from singleuser.scratch_upload import checksums

            size, adler32, md5 = checksums(path)
            did = {"scope": "user.alice", "name": path.name}
            client.add_replicas(SCRATCH_RSE, [{**did, "bytes": size, "adler32": adler32, "md5": md5,
                                               "pfn": prefix + str(path.relative_to(scratch))}])
            client.add_replication_rule([did], 1, SCRATCH_RSE, lifetime=3600)
            client.add_replication_rule([did], 1, DESTINATION_RSE)
        t_single = time.perf_counter() - t0
        single_calls = counter.calls
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(state, ignore_errors=True)

    n = args.files
    rows = [
        ("datalakectl (1 bulk call)", bulk_calls, t_bulk, t_plan),
        ("one call per file (3 per file)", single_calls, t_single, None),
    ]
    table = ["| method | Rucio HTTP calls | wall time (s) | per file (ms) | of which planning (s) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, calls, wall, plan_time in rows:
        table.append(f"| {name} | {calls} | {wall:.2f} | {1000 * wall / n:.1f} | "
                     f"{'-' if plan_time is None else f'{plan_time:.2f}'} |")
    text = "\n".join(table)
    print(text)
    print(f"speed-up: {t_single / t_bulk:.1f}x, calls: {single_calls / max(bulk_calls, 1):.0f}x fewer")
    if not args.no_append:
        append_results(f"Registering {n} scratch files for upload", "Local Rucio 41.5.1 on PostgreSQL 15 (2 gunicorn "
                       "workers), OIDC token of alice.", text, after=f"Speed-up {t_single / t_bulk:.1f}x with "
                       f"{single_calls / max(bulk_calls, 1):.0f}x fewer calls.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
