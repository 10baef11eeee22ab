"""Benchmark: reading far-away storage directly versus through the XCache, with injected network latency.

Starts the local data lake's XRootD origin and XCache (devstack.xrootd, real xrootd 5.5 servers) with a one-way
delay in front of the origin (default 25 ms each way, so a 50 ms round trip, as between two European sites), and
reads with xrdcp, the XRootD client:

- one large file: directly from the origin, through the cache for the first time (cold), and again (warm);
- many small files in one xrdcp session: the same three ways.

Each figure is the median of `--repeat` runs; every cold run reads files the cache has never seen. Every copy is
checked for its size. Prints a table and appends it, with the machine's description, to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_xcache.py [--delay-ms 25] [--size-mb 64] [--files 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import append_results  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.settings import Settings  # noqa: E402
from devstack.xrootd import XRootDService  # noqa: E402

SMALL = 16 * 1024


def copy(urls: list[str], dest: Path) -> float:
    """Seconds for one xrdcp session copying `urls` into `dest` (a directory); raises if any copy failed."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    result = subprocess.run(
        ["xrdcp", "--force", "--nopbar", *urls, f"{dest}/"], capture_output=True, text=True, timeout=600
    )
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"xrdcp failed: {result.stderr.strip().splitlines()[-1:]}")
    if len(list(dest.iterdir())) != len(urls):
        raise SystemExit(f"xrdcp copied {len(list(dest.iterdir()))} of {len(urls)} files")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay in front of the origin")
    parser.add_argument("--size-mb", type=int, default=64, help="size of the large file")
    parser.add_argument("--files", type=int, default=200, help="number of small (16 KiB) files")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="dlaas-bench-xcache-"))
    state.chmod(0o755)
    settings = Settings(state_dir=state, xrootd_port=free_port(), xcache_port=free_port())
    data = state / "rses" / "EULAKE-1" / "bench"
    data.mkdir(parents=True)
    big = os.urandom(args.size_mb * 1024 * 1024)
    rounds = args.repeat + 1  # one set of files per cold run, plus the set the direct runs read
    for r in range(rounds):
        (data / f"large-{r}.bin").write_bytes(big)
        small_dir = data / f"small-{r}"
        small_dir.mkdir()
        for i in range(args.files):
            (small_dir / f"f{i:05d}.bin").write_bytes(os.urandom(SMALL))
    origins = state / "origins.cfg"
    origins.write_text(f"pss.permit 127.0.0.1:{settings.xrootd_port}\n")  # the cache serves exactly this origin
    xr = XRootDService(
        settings, export_root=state / "rses", exports=["/EULAKE-1"], origins_file=origins, delay_ms=args.delay_ms
    )
    out = state / "out"
    results: dict[tuple[str, str], list[float]] = {}
    try:
        xr.start()
        origin, cache = xr.origin_url, xr.cache_url

        def large(r: int, via_cache: bool) -> list[str]:
            url = f"{origin}//EULAKE-1/bench/large-{r}.bin"
            return [f"{cache}//{url}" if via_cache else url]

        def small(r: int, via_cache: bool) -> list[str]:
            urls = [f"{origin}//EULAKE-1/bench/small-{r}/f{i:05d}.bin" for i in range(args.files)]
            return [f"{cache}//{u}" for u in urls] if via_cache else urls

        for kind, urls in (("large", large), ("small", small)):
            for r in range(args.repeat):
                results.setdefault((kind, "direct"), []).append(copy(urls(args.repeat, False), out))
                results.setdefault((kind, "cache, first read"), []).append(copy(urls(r, True), out))
                results.setdefault((kind, "cache, repeated read"), []).append(copy(urls(r, True), out))
        cached = sum(1 for p in (xr.cache_dir / "EULAKE-1").rglob("*.bin"))
    finally:
        xr.stop()
        shutil.rmtree(state, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    table = [
        "| read | direct from the origin (s) | through XCache, first read (s) | through XCache, repeated (s) "
        "| repeated vs direct |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, label in (
        ("large", f"1 file of {args.size_mb} MiB"),
        ("small", f"{args.files} files of 16 KiB, one session"),
    ):
        d, c1, c2 = med[(kind, "direct")], med[(kind, "cache, first read")], med[(kind, "cache, repeated read")]
        table.append(f"| {label} | {d:.2f} | {c1:.2f} | {c2:.3f} | {d / c2:.0f}x faster |")
    text = "\n".join(table)
    print(text)
    print(f"files in the cache afterwards: {cached}")
    if not args.no_append:
        append_results(
            f"XCache with {args.delay_ms:g} ms one-way latency to the origin",
            f"XRootD 5.5.3 origin and XCache (forwarding mode, pfc.ram 1g) on loopback, the delay injected "
            f"by devstack's latency proxy in both directions; xrdcp 5.5.3; medians of {args.repeat} runs, "
            f"each first read on files the cache had not seen.",
            text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
