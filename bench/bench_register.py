"""Benchmark: registering N scratch files for upload, the registration service's way versus one call per file.

Starts its own dev IAM, PostgreSQL and Rucio server (devstack.stack's `core` profile, with the DLaaS policy package)
on free loopback ports, and registers N files lying in alice's scratch directory:

- the registration service's work (what `datalakectl upload` asks it to do): walk and checksum the files in alice's
  directory, plan (checks, one bulk metadata lookup per 500 files), then ONE add_dids call carrying the dataset,
  all replicas and both rules, as the service's own Rucio account for alice;
- baseline: per file, add_replicas + a scratch rule + a destination rule (what a naive script does; only root may
  do that on the scratch area now, so the baseline runs as root).

Counts the HTTP calls each makes to Rucio and the wall time, prints a table and appends it, with the machine's
description, to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_register.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results  # noqa: E402
from devstack.rucio_seed import DESTINATION_RSE, REGISTRAR_ACCOUNT, SCRATCH_RSE, registrar_password, rse_dir  # noqa: E402
from devstack.settings import Settings  # noqa: E402
from devstack.stack import Stack, temporary_state  # noqa: E402
from dlaas_registrar.registration import Registration  # noqa: E402
from dlaas_registrar.scratch_files import checksum, collect, open_user_directory  # noqa: E402


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


def registrar_client(server, home: Path):
    from rucio.client import Client

    class BenchClient(Client):
        TOKEN_PATH_PREFIX = str(home / ".rucio_")

    return BenchClient(
        rucio_host=server.url,
        auth_host=server.url,
        account=REGISTRAR_ACCOUNT,
        auth_type="userpass",
        creds={"username": REGISTRAR_ACCOUNT, "password": registrar_password(server)},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args()

    with temporary_state("bench") as state, Stack(Settings.free_ports(state), full_seed=False) as stack:
        server, settings = stack.start("core").rucio, stack.settings
        client = registrar_client(server, state)
        client.whoami()
        scratch = rse_dir(settings, SCRATCH_RSE)

        # the registration service's way
        counter = CountingClient(client)
        make_files(scratch / "alice" / "bulk", args.files)
        t0 = time.perf_counter()
        fd = open_user_directory(str(scratch), "alice")
        try:
            found = collect(fd, ["bulk"], max_files=args.files)
        finally:
            os.close(fd)
        registration = Registration(client, scratch_rse=SCRATCH_RSE)
        plan = registration.plan(
            "alice", found, destination_rse=DESTINATION_RSE, dataset="bench-bulk", scratch_lifetime=3600
        )
        t_plan = time.perf_counter() - t0
        registration.execute(plan)
        t_bulk = time.perf_counter() - t0
        bulk_calls = counter.calls

        # one call per file, as root
        root = server.root_client()
        counter = CountingClient(root)
        files = make_files(scratch / "alice" / "single", args.files)
        prefix = f"file://localhost{scratch}/"
        t0 = time.perf_counter()
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            try:
                size, adler32, md5 = checksum(fd)
            finally:
                os.close(fd)
            did = {"scope": "user.alice", "name": path.name}
            root.add_replicas(
                SCRATCH_RSE,
                [
                    {
                        **did,
                        "bytes": size,
                        "adler32": adler32,
                        "md5": md5,
                        "pfn": prefix + str(path.relative_to(scratch)),
                    }
                ],
            )
            root.add_replication_rule([did], 1, SCRATCH_RSE, lifetime=3600, account="alice")
            root.add_replication_rule([did], 1, DESTINATION_RSE, account="alice")
        t_single = time.perf_counter() - t0
        single_calls = counter.calls

    n = args.files
    rows = [
        ("registration service (1 bulk call)", bulk_calls, t_bulk, t_plan),
        ("one call per file (3 per file)", single_calls, t_single, None),
    ]
    table = [
        "| method | Rucio HTTP calls | wall time (s) | per file (ms) | of which planning (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, calls, wall, plan_time in rows:
        table.append(
            f"| {name} | {calls} | {wall:.2f} | {1000 * wall / n:.1f} | "
            f"{'-' if plan_time is None else f'{plan_time:.2f}'} |"
        )
    text = "\n".join(table)
    print(text)
    print(f"speed-up: {t_single / t_bulk:.1f}x, calls: {single_calls / max(bulk_calls, 1):.0f}x fewer")
    if not args.no_append:
        append_results(
            f"Registering {n} scratch files for upload",
            "Local Rucio 41.5.1 on PostgreSQL 15 (2 gunicorn "
            "workers), DLaaS policy package; the service's account for alice vs root.",
            text,
            after=f"Speed-up {t_single / t_bulk:.1f}x with {single_calls / max(bulk_calls, 1):.0f}x fewer calls.",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
