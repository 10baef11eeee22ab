"""The analysis bench_dask_scale.py times, as a researcher runs it: in her server's ROOT environment, with her
server's environment (token files, SITE_NAME, Dask Gateway address), started by the benchmark as a terminal of her
server would. Run as a script, so Dask pickles the functions below by value (the workers have no `bench` package).

    python dask_scale_job.py list <dataset> <out.json> <n>   the first n files' cache PFNs, as Rucio gives them to LOCAL
    python dask_scale_job.py run <files.json> <workers>    the analysis; 0 workers: a plain loop in this process

The analysis reads each small JSON event file through the XRootD client (XRootD's Python bindings of the ROOT
environment), checks its adler32 against the catalogue's and fills an energy histogram. `run` prints one JSON line:
seconds for the analysis alone (cluster start excluded, reported apart), the CPU seconds the workers, the scheduler
and this process spent on it, the histogram, and what went wrong.
"""

from __future__ import annotations

import json
import sys
import time
import zlib

BINS = 20  # 10-GeV bins from 0 to 200 GeV (the demo events lie between 1 and 101 GeV)


def analyse(item: dict) -> dict:
    """Read one event file and return its energy bin, or the storage's message for that file."""
    from XRootD import client

    f = client.File()
    status, _ = f.open(item["pfn"], timeout=60)
    if not status.ok:
        return {"name": item["name"], "error": status.message.strip()}
    try:
        status, data = f.read(timeout=60)
    finally:
        f.close(timeout=30)
    if not status.ok:
        return {"name": item["name"], "error": status.message.strip()}
    if f"{zlib.adler32(data):08x}" != item["adler32"]:
        return {"name": item["name"], "error": "adler32 differs from the catalogue's"}
    energy = json.loads(data)["energy_gev"]
    return {"name": item["name"], "bin": min(int(energy // 10), BINS - 1)}


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far (on a worker, a scheduler or here)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def histogram(results: list[dict]) -> dict:
    counts = [0] * BINS
    errors = [r for r in results if "error" in r]
    for r in results:
        if "bin" in r:
            counts[r["bin"]] += 1
    return {"histogram": counts, "errors": len(errors), "first_error": errors[0]["error"] if errors else None}


def list_files(dataset: str, out: str, count: int) -> None:
    from rucio.client import Client
    from rucio.common.client import detect_client_location

    scope, name = dataset.split(":", 1)
    rucio = Client()
    t0 = time.perf_counter()
    replicas = rucio.list_replicas(
        [{"scope": scope, "name": name}], schemes=["root"], client_location=detect_client_location()
    )
    files = [
        {"name": r["name"], "adler32": r["adler32"], "pfn": next(iter(r["rses"].values()))[0]}
        for r in sorted(replicas, key=lambda r: r["name"])
    ][:count]
    with open(out, "w") as f:
        json.dump(files, f)
    print(json.dumps({"files": len(files), "seconds": time.perf_counter() - t0}))


def run(files_json: str, workers: int) -> None:
    with open(files_json) as f:
        items = json.load(f)
    if workers == 0:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        results = [analyse(item) for item in items]
        elapsed, cpu = time.perf_counter() - t0, {"notebook": cpu_seconds() - cpu0}
        print(json.dumps({"seconds": elapsed, "start_seconds": 0.0, "cpu": cpu, **histogram(results)}))
        return
    from singleuser.dask_clusters import new_cluster

    t_start = time.perf_counter()
    cluster = new_cluster(workers=workers, environment="root", worker_cores=1)
    try:
        client = cluster.get_client()
        client.wait_for_workers(workers, timeout=300)
        started = time.perf_counter() - t_start
        before = (sum(client.run(cpu_seconds).values()), client.run_on_scheduler(cpu_seconds), cpu_seconds())
        t0 = time.perf_counter()
        results = client.gather(client.map(analyse, items, pure=False))
        elapsed = time.perf_counter() - t0
        after = (sum(client.run(cpu_seconds).values()), client.run_on_scheduler(cpu_seconds), cpu_seconds())
        spent = [a - b for a, b in zip(after, before, strict=True)]
        cpu = dict(zip(("workers", "scheduler", "notebook"), spent, strict=True))
        print(json.dumps({"seconds": elapsed, "start_seconds": started, "cpu": cpu, **histogram(results)}))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "list":
        list_files(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        run(sys.argv[2], int(sys.argv[3]))
