"""Benchmark: PyROOT versus uproot reading one demo ROOT file through the XCache, with injected network latency.

Starts the local data lake's XRootD origin and XCache (devstack.xrootd, real xrootd 5.5 servers) with a one-way
delay in front of the origin (default 25 ms), writes a demo file of Higgs candidates (devstack.higgs_sample, the
seed's own writer), and reads the whole tree `events` (every branch, every entry) from the cache URL Rucio would give
site LOCAL, `root://<cache>//root://<origin>/<path>`:

- PyROOT (ROOT 6.40, the official build): TFile::Open and TTree::GetEntry of every entry (all branches), in a
  loop compiled before the clock starts;
- uproot 5 (fsspec-xrootd, the XRootD 5.9 bindings): TTree.arrays() of every branch, as numpy arrays.

Each reader runs in its own process of the ROOT environment (.venvs/kernel-root), timed from before the open to
the last byte decoded (imports excluded), on a copy of the file the cache has never seen (first read: origin ->
cache -> reader) and then again on the same copy (repeated read: from the cache's disk). Medians of `--repeat`
runs. Prints a table and appends it, with the machine's description, to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_root_read.py [--delay-ms 25] [--events 44000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

READERS = ("PyROOT", "uproot")


def read(reader: str, url: str) -> dict:
    """Runs in the ROOT environment: seconds to open `url` and decode the whole tree, and what was read."""
    if reader == "PyROOT":
        import ROOT

        # Every entry of every branch through TTree::GetEntry, in a loop compiled before the clock starts (an
        # RDataFrame would spend seconds compiling its 13 typed columns, a Python loop on the calls).
        ROOT.gInterpreter.Declare(
            "Long64_t dlaas_read_all(TTree *t) { Long64_t n = 0; "
            "for (Long64_t i = 0; i < t->GetEntries(); ++i) n += t->GetEntry(i) > 0; return n; }"
        )
        t0 = time.perf_counter()
        f = ROOT.TFile.Open(url)
        tree = f.Get("events")
        entries = ROOT.dlaas_read_all(tree)
        elapsed = time.perf_counter() - t0
        return {"seconds": elapsed, "entries": entries, "columns": len(tree.GetListOfBranches())}
    else:
        import uproot

        t0 = time.perf_counter()
        with uproot.open(url) as f:
            columns = f["events"].arrays(library="np")
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "entries": len(columns["m4l"]), "columns": len(columns)}


def child(python: Path, reader: str, url: str) -> dict:
    run = subprocess.run(
        [str(python), "-W", "ignore", __file__, "--child", reader, url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0:
        raise SystemExit(f"{reader} could not read {url}: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay in front of the origin")
    parser.add_argument("--events", type=int, default=44000, help="candidates in the file (the demo files' 44000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch docs/benchmarks.md")
    parser.add_argument("--child", nargs=2, metavar=("READER", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(read(*args.child)))
        return 0

    from bench.hub_stack import append_results
    from devstack.ports import free_port
    from devstack.rucio_seed import ROOT_PYTHON
    from devstack.settings import REPO, Settings
    from devstack.xrootd import XRootDService

    if not ROOT_PYTHON.exists():
        raise SystemExit(f"the ROOT environment is missing ({ROOT_PYTHON}): run `make up` first")
    state = Path(tempfile.mkdtemp(prefix="dlaas-bench-root-"))
    state.chmod(0o755)
    settings = Settings(state_dir=state, xrootd_port=free_port(), xcache_port=free_port())
    data = state / "rses" / "EULAKE-1" / "bench"
    written = subprocess.run(
        [str(ROOT_PYTHON), "-W", "ignore", "-m", "devstack.higgs_sample", str(data / "source")]
        + ["--files", "1", "--events", str(args.events)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if written.returncode != 0:
        raise SystemExit(f"writing the demo file failed: {written.stderr.strip()[-300:]}")
    source = Path(written.stdout.split()[0])
    size = source.stat().st_size
    copies = {(reader, r): data / f"{reader}-{r}.root" for reader in READERS for r in range(args.repeat)}
    for path in copies.values():
        shutil.copyfile(source, path)
    origins = state / "origins.cfg"
    origins.write_text(f"pss.permit 127.0.0.1:{settings.xrootd_port}\n")  # the cache serves exactly this origin
    xr = XRootDService(
        settings, export_root=state / "rses", exports=["/EULAKE-1"], origins_file=origins, delay_ms=args.delay_ms
    )
    results: dict[tuple[str, str], list[float]] = {}
    read_back = set()
    try:
        xr.start()
        for r in range(args.repeat):
            for reader in READERS:
                url = f"{xr.cache_url}//{xr.origin_url}/EULAKE-1/bench/{copies[(reader, r)].name}"
                for label in ("first read", "repeated read"):
                    result = child(ROOT_PYTHON, reader, url)
                    results.setdefault((reader, label), []).append(result["seconds"])
                    read_back.add((result["entries"], result["columns"]))
    finally:
        xr.stop()
        shutil.rmtree(state, ignore_errors=True)
    if read_back != {(args.events, 13)}:
        raise SystemExit(f"the readers did not read the whole tree: {sorted(read_back)}")

    med = {k: statistics.median(v) for k, v in results.items()}
    table = [
        "| reader | first read through XCache (s) | repeated read (s) | first vs repeated |",
        "| --- | ---: | ---: | ---: |",
    ]
    for reader in READERS:
        first, again = med[(reader, "first read")], med[(reader, "repeated read")]
        table.append(f"| {reader} | {first:.2f} | {again:.2f} | {first / again:.1f}x |")
    text = "\n".join(table)
    print(text)
    if not args.no_append:
        append_results(
            f"Reading a demo ROOT file through the XCache, {args.delay_ms:g} ms one-way latency: PyROOT vs uproot",
            f"One file of {args.events} H->4l candidates ({size / 1024**2:.1f} MiB, 13 branches, written by "
            f"devstack.higgs_sample), read whole (every branch, every entry) from the XCache's "
            f"root://cache//root://origin/ URL; XRootD 5.5.3 origin and XCache on loopback, the delay injected by "
            f"devstack's latency proxy in both directions. PyROOT: ROOT 6.40.00 (pip `root` 0.1a12), TFile::Open + "
            f"TTree::GetEntry of every entry in a compiled loop; uproot 5.7.7 + fsspec-xrootd 0.5.1 + XRootD 5.9.2 "
            f"bindings, TTree.arrays. Each read in a fresh process, imports excluded; first read on a copy the cache "
            f"had not seen; medians of {args.repeat} runs.",
            text,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
