"""Benchmark: time to a usable JupyterLab - a bare `jupyter lab` vs a DLaaS server spawned through the hub.

In the same run and on the same machine, rounds alternate between N bare JupyterLab servers and N DLaaS spawns,
started at once, for each N of --sizes. Both sides run .venvs/singleuser on loopback, each server with a fresh
home directory; a server counts as usable when, from its first request on:

- GET <server>/lab answers 200 with JupyterLab's page, and every script and stylesheet the page names answers 200;
- the APIs the page calls first answer 200: lab/api/settings, api/kernelspecs, api/contents (the file browser);
- DLaaS only: the Rucio sidebar's first calls answer with results (rucio-jupyterlab/instances, then a search of
  the demo scope that lists datasets) and the server's Rucio token file exists.

Bare: `jupyter lab` on a free port with a token, its page polled every 0.1 s from the moment the process starts.
DLaaS: users log in through the dev IAM first (not timed); the timer starts at the POST of the hub's spawn form and
follows what a browser does: the spawn-pending page, its progress event stream until `ready`, the redirect to
the server and the server's OAuth handshake with the hub. The stack is the dev IAM, Rucio (PostgreSQL) and the hub,
on free ports in a temporary state directory.

CPU per server: utime + stime of the server's process tree (/proc, reaped children included) read when it is
usable; for DLaaS also the hub's and its proxy's CPU from the start of the burst until its last server was usable,
divided by N. Reports median / max time and CPU per server for each side, the ratios, and where DLaaS's time goes
(spawn to `ready`, redirects and OAuth to the page, page to usable); appends the table to docs/benchmarks.md.

    .venvs/main/bin/python bench/bench_time_to_lab.py [--sizes 1,10] [--rounds 3]   # --sizes 1,10,20 for 20
    .venvs/main/bin/python bench/bench_time_to_lab.py --imports   # which modules only one side imports
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hub_stack import TICKS, append_results, own_cpu, proc_stat  # noqa: E402
from devstack.hub_client import admin_service, hub_login, process_environ, service_session  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.rucio_seed import DEMO_SCOPE  # noqa: E402
from devstack.settings import VENVS, Settings  # noqa: E402
from devstack.stack import Stack, temporary_state  # noqa: E402

JUPYTER_LAB = VENVS / "singleuser" / "bin" / "jupyter-lab"
POLL = 0.1  # seconds between two tries of a page that does not answer yet (the browser's reload, roughly)
LAB_APIS = ("lab/api/settings", "api/kernelspecs", "api/contents?content=1")
ASSETS = re.compile(r'<(?:script[^>]*\ssrc|link[^>]*rel="stylesheet"[^>]*\shref)="([^"]+)"')


def tree_cpu(pid: int) -> float:
    """utime + stime of a process and all its descendants, with the children they already reaped."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = proc_stat(p)
            total += sum(int(f) for f in fields[11:15]) / TICKS
            for children in Path(f"/proc/{p}/task").glob("*/children"):
                todo += [int(c) for c in children.read_text().split()]
        except (OSError, ValueError):
            pass
    return total


class NotYet(Exception):
    """The server does not answer as a usable JupyterLab yet."""


def lab_usable(session: requests.Session, base: str) -> float:
    """Check that the JupyterLab at `base` (ending in /) is usable (module docstring); returns when its page was
    first 200 (time.perf_counter()), or raises NotYet."""
    try:
        page = session.get(f"{base}lab", timeout=60)
    except requests.ConnectionError as e:
        raise NotYet(f"no connection: {e}") from None
    if page.status_code != 200 or "jupyter-config-data" not in page.text:
        raise NotYet(f"/lab answered {page.status_code} at {page.url}")
    page_at = time.perf_counter()
    assets = ASSETS.findall(page.text)
    if not any(".js" in a for a in assets):
        raise RuntimeError(f"JupyterLab's page at {page.url} names no script")
    for path in [*assets, *(f"{base}{api}" for api in LAB_APIS)]:
        answer = session.get(urljoin(page.url, path), timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code} once /lab was up")
    return page_at


def sidebar_ready(session: requests.Session, base: str, token_file: Path) -> bool:
    """The Rucio sidebar's first calls answer with results, and the token file is there."""
    if not token_file.is_file():
        return False
    instances = session.get(f"{base}rucio-jupyterlab/instances", timeout=60)
    if instances.status_code != 200:
        return False
    name = instances.json().get("active_instance")
    found = session.get(
        f"{base}rucio-jupyterlab/did-search",
        params={"namespace": name, "did": f"{DEMO_SCOPE}:*", "type": "all"},
        timeout=60,
    )
    return found.status_code == 200 and isinstance(found.json(), list) and len(found.json()) > 0


def bare_server(home: Path, deadline: float, extra_env: dict[str, str] | None = None) -> dict:
    """Start one bare `jupyter lab`, wait until usable, leave it running; its result and process."""
    home.mkdir(parents=True)
    token, port = secrets.token_hex(16), free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    env.update(HOME=str(home), USER=os.environ.get("USER", "root"), SHELL="/bin/bash", **(extra_env or {}))
    cmd = [
        str(JUPYTER_LAB),
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    log = (home / "server.log").open("wb")
    t0 = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with requests.Session() as session:
            session.headers["Authorization"] = f"token {token}"
            base = f"http://127.0.0.1:{port}/"
            while True:
                try:
                    page_at = lab_usable(session, base)
                    break
                except NotYet:
                    if process.poll() is not None or time.perf_counter() > deadline:
                        last = (home / "server.log").read_text(errors="replace").strip().splitlines()[-3:]
                        raise RuntimeError(f"bare jupyter lab did not come up: {' | '.join(last)}") from None
                    time.sleep(POLL)
    except BaseException:
        stop_bare(process)
        raise
    usable = time.perf_counter()
    return {"process": process, "cpu": tree_cpu(process.pid), "time": usable - t0, "page": page_at - t0}


def stop_bare(process: subprocess.Popen) -> None:
    """Stop a bare server's process group (its own session), by its PID."""
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)


def dlaas_spawn(hub_url: str, admin: requests.Session, browser: requests.Session, name: str, deadline: float) -> dict:
    """What a browser does after pressing Start; returns the timings and the server's CPU when usable."""
    t0 = time.perf_counter()
    xsrf = browser.cookies.get("_xsrf", path="/hub/")
    pending = browser.post(f"{hub_url}/hub/spawn", data={"profile": "base", "_xsrf": xsrf}, timeout=120)
    if pending.status_code != 200:
        raise RuntimeError(f"the spawn form answered {pending.status_code} at {pending.url}")
    progress = re.search(r'new EventSource\("([^"]+)"\)', pending.text)
    if progress:  # the spawn-pending page: its event stream says when the server is ready, then the page reloads
        url = urljoin(pending.url, progress.group(1).replace("&amp;", "&"))
        with browser.get(url, stream=True, timeout=120, headers={"Accept": "text/event-stream"}) as events:
            for line in events.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed"):
                        raise RuntimeError(f"{name}'s spawn failed: {event.get('message')}")
                    if event.get("ready"):
                        break
        ready = time.perf_counter()
        browser.get(pending.url, timeout=120)  # the reload: redirects to the server, which runs the OAuth handshake
    else:
        ready = time.perf_counter()
    pid = admin.get(f"{admin.api}/users/{name}", timeout=60).json()["servers"][""]["state"]["pid"]
    cpu_ready = tree_cpu(pid)
    base = f"{hub_url}/user/{name}/"
    while True:
        try:
            page_at = lab_usable(browser, base)
            break
        except NotYet:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{name}'s JupyterLab never became usable") from None
            time.sleep(POLL)
    cpu_lab = tree_cpu(pid)
    token_file = Path(process_environ(pid)["BEARER_TOKEN_FILE"])
    late = False
    while not sidebar_ready(browser, base, token_file):
        late = True
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name}'s Rucio sidebar never answered with results")
        time.sleep(POLL)
    usable = time.perf_counter()
    cpu = tree_cpu(pid)
    return {
        "time": usable - t0,
        "ready": ready - t0,
        "page": page_at - t0,
        "cpu": cpu,
        "after_ready": cpu_lab - cpu_ready,
        "sidebar": cpu - cpu_lab,
        "late": late,
    }


def stop_dlaas(admin: requests.Session, names: list[str]) -> None:
    for name in names:
        admin.delete(f"{admin.api}/users/{name}/server", timeout=120)
    deadline = time.monotonic() + 120
    for name in names:
        while admin.get(f"{admin.api}/users/{name}", timeout=60).json()["servers"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}'s server did not stop")
            time.sleep(0.3)


def burst(fn, items, timeout: float) -> list:
    """Run fn(item, deadline) for all items at once; the results in order (the first error raised)."""
    deadline = time.perf_counter() + timeout
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(lambda item: fn(item, deadline), items))


def bare_round(homes: list[Path], timeout: float, extra_env: dict[str, str] | None = None) -> list[dict]:
    """N bare servers at once, each stopped once all are usable (or the round failed)."""
    started: list[dict] = []

    def one(home, deadline):
        started.append(bare_server(home, deadline, extra_env))
        return started[-1]

    try:
        return [{k: v for k, v in r.items() if k != "process"} for r in burst(one, homes, timeout)]
    finally:
        for result in started:
            stop_bare(result["process"])


def dlaas_round(
    hub_url: str, admin: requests.Session, browsers: dict, names: list[str], timeout: float, hub_pids: list[int]
) -> tuple[list[dict], float]:
    """N spawns at once through the hub; their results and the hub's and proxy's CPU per server until the last one
    was usable (stopping the servers afterwards is not part of it, as a bare server's stop is not)."""
    before = sum(own_cpu(p) for p in hub_pids)
    try:
        got = burst(lambda name, deadline: dlaas_spawn(hub_url, admin, browsers[name], name, deadline), names, timeout)
        return got, (sum(own_cpu(p) for p in hub_pids) - before) / len(names)
    finally:
        stop_dlaas(admin, names)


def summary(results: list[dict]) -> dict:
    times = [r["time"] for r in results]
    return {"median": statistics.median(times), "max": max(times), "cpu": statistics.median(r["cpu"] for r in results)}


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")
PROFILE_IMPORTS = {"PYTHONPROFILEIMPORTTIME": "1"}


def imported(log: Path) -> dict[str, float]:
    """Module -> seconds of its own import, from a log of a server started with PYTHONPROFILEIMPORTTIME."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if m := IMPORT_LINE.search(line):
            found.setdefault(m.group(2), int(m.group(1)) / 1e6)
    return found


def import_report(bare: dict[str, float], dlaas: dict[str, float]) -> str:
    """The modules only one side imported until usable, by top-level package, with their own import time."""
    lines = [f"modules imported: bare {len(bare)} ({sum(bare.values()):.2f} s), DLaaS {len(dlaas)} "]
    lines[0] += f"({sum(dlaas.values()):.2f} s; import times under PYTHONPROFILEIMPORTTIME, which inflates them)"
    for side, mine, other in (("DLaaS", dlaas, bare), ("bare", bare, dlaas)):
        only: dict[str, list[float]] = {}
        for module, seconds in mine.items():
            if module not in other:
                only.setdefault(module.split(".")[0], []).append(seconds)
        total = sum(sum(v) for v in only.values())
        lines.append(f"only {side}: {sum(len(v) for v in only.values())} modules, {total * 1000:.0f} ms")
        for package, times in sorted(only.items(), key=lambda kv: -sum(kv[1]))[:15]:
            lines.append(f"  {package:<28} {len(times):4d} modules {sum(times) * 1000:8.1f} ms")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="servers started at once, comma-separated (e.g. 1,10,20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per size (bare and DLaaS alternate)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a burst may take at most")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument(
        "--imports",
        action="store_true",
        help="instead: one server of each side with PYTHONPROFILEIMPORTTIME; lists the modules only one side imports",
    )
    args = parser.parse_args()
    if args.imports:
        args.sizes, args.rounds, args.no_append = "1", 1, True
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        if not sizes or min(sizes) < 1 or args.rounds < 1:
            raise ValueError
    except ValueError:
        parser.error("--sizes takes positive integers separated by commas (e.g. 1,10,20), --rounds at least 1")

    prefix = "lab"
    names = [f"{prefix}{n}r{r}i{i}" for n in sizes for r in range(args.rounds) for i in range(n)]
    users = [
        {
            "username": name,
            "password": f"pw-{name}",
            "sub": str(uuid.uuid4()),
            "name": name,
            "email": f"{name}@example.invalid",
            "groups": ["escape/users"],
        }
        for name in names
    ]
    scopes = ["admin:servers", "read:users", "read:servers", "admin:server_state"]
    extra, admin_token = admin_service("bench-admin", scopes)
    profile_env = PROFILE_IMPORTS if args.imports else None
    if profile_env:  # the local spawner's servers write to the hub's log
        extra["Spawner"] = {"environment": profile_env}
    results: dict[tuple[int, str], list[dict]] = {}
    hub_cpu: dict[int, list[float]] = {}
    bare_homes = Path(tempfile.mkdtemp(prefix="dlaas-bare-lab-"))
    try:
        with temporary_state("time-to-lab") as state:
            (state / "users.json").write_text(json.dumps(users))
            settings = Settings.free_ports(state)
            iam_options = {"users_file": state / "users.json"}
            with Stack(settings, full_seed=False, iam_options=iam_options, hub_options={"extra": extra}) as stack:
                stack.start("rucio", "jupyterhub")
                hub, admin = stack.hub, service_session(stack.hub, admin_token)
                print(f"logging in {len(users)} users (not timed)", flush=True)
                with ThreadPoolExecutor(4) as pool:
                    browsers = dict(
                        zip(
                            names,
                            pool.map(lambda u: hub_login(hub, u["username"], u["password"])[0], users),
                            strict=True,
                        )
                    )
                hub_pids = [p.pid for p in (hub.process, getattr(hub, "proxy_process", None)) if p and p.pid]
                for n in sizes:
                    for r in range(args.rounds):
                        for side in ("bare", "dlaas") if r % 2 == 0 else ("dlaas", "bare"):
                            if side == "bare":
                                homes = [bare_homes / f"n{n}r{r}i{i}" for i in range(n)]
                                got = bare_round(homes, args.timeout, profile_env)
                            else:
                                now = [f"{prefix}{n}r{r}i{i}" for i in range(n)]
                                got, hub_share = dlaas_round(hub.url, admin, browsers, now, args.timeout, hub_pids)
                                hub_cpu.setdefault(n, []).append(hub_share)
                            results.setdefault((n, side), []).extend(got)
                            s = summary(got)
                            print(
                                f"N={n} round {r + 1} {side}: median {s['median']:.2f} s, max {s['max']:.2f} s, "
                                f"CPU/server {s['cpu']:.2f} s",
                                flush=True,
                            )
                if args.imports:
                    bare_log = bare_homes / "n1r0i0" / "server.log"
                    print(import_report(imported(bare_log), imported(hub.process.log_path)))
                    return 0
    finally:
        shutil.rmtree(bare_homes, ignore_errors=True)

    header = (
        "| servers at once | rounds | bare median / max (s) | DLaaS median / max (s) | time ratio median / max "
        "| bare CPU/server (s) | DLaaS CPU/server: server + hub (s); of which the server's after `ready` "
        "/ the sidebar's first calls | CPU ratio "
        "| DLaaS: to ready / to page / to usable, median (s) | sidebar not ready with the page |"
    )
    rows = [header, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in sizes:
        bare, dlaas = summary(results[(n, "bare")]), summary(results[(n, "dlaas")])
        hub_share = statistics.median(hub_cpu[n])
        dlaas_cpu = dlaas["cpu"] + hub_share
        phases = " / ".join(
            f"{statistics.median(r[k] for r in results[(n, 'dlaas')]):.2f}" for k in ("ready", "page", "time")
        )
        late = sum(r["late"] for r in results[(n, "dlaas")])
        sidebar, after_ready = (
            statistics.median(r[k] for r in results[(n, "dlaas")]) for k in ("sidebar", "after_ready")
        )
        rows.append(
            f"| {n} | {args.rounds} | {bare['median']:.2f} / {bare['max']:.2f} | {dlaas['median']:.2f} / "
            f"{dlaas['max']:.2f} | {dlaas['median'] / bare['median']:.2f}x / {dlaas['max'] / bare['max']:.2f}x | "
            f"{bare['cpu']:.2f} | {dlaas_cpu:.2f} ({dlaas['cpu']:.2f} + {hub_share:.2f}); "
            f"{after_ready:.2f} / {sidebar:.2f} | "
            f"{dlaas_cpu / bare['cpu']:.2f}x | {phases} | {late} of {len(results[(n, 'dlaas')])} |"
        )
    table = "\n".join(rows)
    print(table)
    if not args.no_append:
        append_results(
            "Time to JupyterLab: bare `jupyter lab` vs a DLaaS spawn through the hub",
            "Same run, rounds alternating; both sides .venvs/singleuser on loopback, a fresh home each. Usable: /lab "
            "200 with every script and stylesheet it names, lab/api/settings, api/kernelspecs, api/contents; DLaaS "
            "also the Rucio sidebar's instances + a demo-scope search with results and the token file. DLaaS timed "
            "from the POST of the spawn form through spawn-pending, its progress stream and the OAuth redirects "
            "(users logged in before); CPU per server: the server's process tree when usable (+ the hub's and "
            "proxy's CPU until the burst's last server was usable / N).",
            table,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
