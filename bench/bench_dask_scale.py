"""Benchmark: one analysis over the 2,000 small demo files (`--files`) with the notebook alone and with Dask Gateway
clusters of 1, 2, 4 and 8 workers, reading through the XCache with a cold cache and a far-away origin.

Starts a whole local data lake on free loopback ports (dev IAM, Rucio with the full demo seed, XRootD origin behind
devstack's latency proxy - 25 ms each way by default - and the XCache, the registration service, Dask Gateway and
the hub). Alice logs in through the IAM, her server starts, and bench/dask_scale_job.py runs with her server's
environment in the ROOT environment's Python, as a terminal of her server would: it asks Rucio once for the files'
PFNs at site LOCAL (the cache's), then reads every file with the XRootD client, checks its adler32 against the
catalogue's and fills an energy histogram - in a plain loop (the notebook alone) or mapped over a cluster of N
one-thread workers of the ROOT environment holding her tokens. Before each run the cache's disk is emptied, so every
run reads every file from the origin through the cache (cold). Cluster start-up is timed apart from the analysis.

Rounds alternate the order of the runs (the first round ascending, the next descending, ...); the table gives the
median of the rounds for each configuration, the speed-up against one worker, the machine's CPU use during the run
(both cores = 200 %), and a mermaid chart. Appends to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_dask_scale.py [--delay-ms 25] [--workers 1,2,4,8] [--rounds 2] [--files 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results, own_cpu  # noqa: E402
from devstack.hub_client import admin_service, hub_login, process_environ, service_session, start_server  # noqa: E402
from devstack.ports import wait_for  # noqa: E402
from devstack.rucio_seed import DEMO_SCOPE  # noqa: E402
from devstack.settings import VENVS, Settings  # noqa: E402
from devstack.stack import Stack, temporary_state  # noqa: E402

JOB = Path(__file__).resolve().parent / "dask_scale_job.py"
ROOT_PYTHON = VENVS / "kernel-root" / "bin" / "python"
DATASET = f"{DEMO_SCOPE}:cosmic-rays-small"
SMALL_SEED = 40  # files of that dataset in the small seed (devstack.rucio_seed), enough for a smoke run


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def storage_cpu(state: Path) -> float:
    """CPU seconds used so far by this stack's XRootD origin, XCache and the latency proxy in front of the origin
    (their command lines name the state directory)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and "xrootd" in cmdline and str(state) in cmdline:
            total += own_cpu(int(proc.name))
    return total


def job(env: dict, *args: str, timeout: float = 3600) -> dict:
    """Run the analysis job as alice, in her server's environment; the JSON line it printed last."""
    done = subprocess.run(
        [str(ROOT_PYTHON), str(JOB), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=env["HOME"]
    )
    if done.returncode != 0:
        raise SystemExit(f"dask_scale_job.py {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def empty_cache(cache_dir: Path) -> None:
    """Remove every file the cache holds (data and .cinfo), keeping its directory: the next read is cold."""
    for entry in cache_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def chart(labels: list[str], seconds: list[float], files: int) -> str:
    bars = ", ".join(f"{s:.1f}" for s in seconds)
    names = ", ".join(f'"{label}"' for label in labels)
    top = max(seconds) * 1.1
    return (
        "```mermaid\nxychart-beta\n"
        f'    title "Analysis of {files:,} small files, cold cache (seconds, lower is better)"\n'
        f'    x-axis [{names}]\n    y-axis "seconds" 0 --> {top:.0f}\n    bar [{bars}]\n```'
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay in front of the origin")
    parser.add_argument("--workers", default="1,2,4,8", help="cluster sizes to run, comma separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the order of the runs")
    parser.add_argument("--files", type=int, default=2000, help="how many of the 2,000 small demo files to read")
    parser.add_argument("--no-notebook", action="store_true", help="skip the plain loop in the notebook's process")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args()
    sizes = [int(n) for n in args.workers.split(",")]
    configs = ([0] if not args.no_notebook else []) + sizes

    extra, admin_token = admin_service("bench-admin", ["admin:servers", "admin:server_state", "read:users"])
    seconds: dict[int, list[float]] = {n: [] for n in configs}
    starts: dict[int, list[float]] = {n: [] for n in sizes}
    cpu: dict[int, list[float]] = {n: [] for n in configs}  # the machine's, % (200 % = both cores)
    parts: dict[int, list[dict]] = {n: [] for n in configs}  # CPU seconds of each part of the run
    histograms = set()
    with temporary_state("bench-dask") as state:
        settings = Settings.free_ports(state, origin_delay_ms=args.delay_ms)
        lake = Stack(
            settings,
            full_seed=args.files > SMALL_SEED,
            hub_options={"extra": extra},
            cache_options={"sync_every": None},
            dask_gateway_options={"cluster_max_workers": max(sizes), "max_clusters_per_user": 1},
        )
        with lake:
            t0 = time.perf_counter()
            lake.start("cache", "hub")
            print(f"local data lake up in {time.perf_counter() - t0:.0f} s", flush=True)
            _, answer = hub_login(lake.hub, "alice", "alice-pass")
            assert answer.status_code == 302, answer.status_code
            env = process_environ(start_server(service_session(lake.hub, admin_token), "alice"))
            wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=60, what="alice's token files")
            files = state / "files.json"
            listed = job(env, "list", DATASET, str(files), str(args.files))
            print(f"Rucio listed {listed['files']} cache PFNs in {listed['seconds']:.1f} s", flush=True)
            cache_dir = lake.cache.xrootd.cache_dir
            for r in range(args.rounds):
                for n in configs if r % 2 == 0 else list(reversed(configs)):
                    empty_cache(cache_dir)
                    busy0, total0 = cpu_busy()
                    storage0 = storage_cpu(state)
                    result = job(env, "run", str(files), str(n))
                    busy1, total1 = cpu_busy()
                    parts[n].append({**result["cpu"], "storage": storage_cpu(state) - storage0})
                    if result["errors"]:
                        raise SystemExit(f"{result['errors']} files failed, e.g.: {result['first_error']}")
                    histograms.add(tuple(result["histogram"]))
                    seconds[n].append(result["seconds"])
                    cpu[n].append(100 * os.cpu_count() * (busy1 - busy0) / max(total1 - total0, 1))
                    if n:
                        starts[n].append(result["start_seconds"])
                    what = f"{n} workers" if n else "notebook alone"
                    print(f"round {r + 1}: {what}: {result['seconds']:.1f} s, CPU {cpu[n][-1]:.0f} %", flush=True)
    if len(histograms) != 1:
        raise SystemExit(f"the runs disagree on the histogram: {histograms}")

    med = {n: statistics.median(v) for n, v in seconds.items()}
    base = med.get(1)
    files_n = listed["files"]
    table = [
        "| configuration | analysis (s) | files/s | per file (ms) | speed-up vs 1 worker | cluster start (s) "
        "| machine CPU (%) | CPU per file (ms): workers / scheduler / notebook / XRootD + proxy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in configs:
        label = f"{n} worker{'s' if n > 1 else ''}" if n else "notebook alone (plain loop)"
        speedup = f"{base / med[n]:.1f}x" if base else "-"
        start = f"{statistics.median(starts[n]):.1f}" if n else "-"
        per_file = " / ".join(
            f"{1000 * statistics.median(p.get(k, 0.0) for p in parts[n]) / files_n:.1f}"
            for k in ("workers", "scheduler", "notebook", "storage")
        )
        table.append(
            f"| {label} | {med[n]:.1f} | {files_n / med[n]:.1f} | {1000 * med[n] / files_n:.0f} | {speedup} "
            f"| {start} | {statistics.median(cpu[n]):.0f} | {per_file} |"
        )
    text = "\n".join(table)
    labels = [f"{n} worker{'s' if n > 1 else ''}" if n else "notebook" for n in configs]
    figure = chart(labels, [med[n] for n in configs], files_n)
    print(text)
    print(f"Rucio listed the {files_n} PFNs in {listed['seconds']:.1f} s (once, before the runs)")
    if not args.no_append:
        append_results(
            f"Dask Gateway: {files_n:,} small files, {args.delay_ms:g} ms one-way latency to the origin, cold cache",
            f"Local data lake (XRootD 5.5.3 origin behind devstack's latency proxy, XCache in forwarding mode, Rucio "
            f"41.5.1, dask-gateway-server 2026.3.0 with its local process backend, distributed 2026.8.0). Alice's "
            f"analysis (bench/dask_scale_job.py) in the ROOT environment: XRootD Python client, adler32 checked, "
            f"energy histogram; one-thread workers; the cache emptied before each run; medians of {args.rounds} "
            f"rounds in alternating order. Rucio's list_replicas for the {files_n} files: "
            f"{listed['seconds']:.1f} s, once, not in the figures.",
            text,
            after=figure,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
