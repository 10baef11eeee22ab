"""The local data lake's XRootD origin and XCache, in a private network namespace reached through host loopback.

XRootD 5.5 listens on every interface and has no option to bind one address. So that nothing listens beyond
127.0.0.1, a supervisor (`python -m devstack.xrootd`) binds the two public ports on the host's loopback first, then
moves itself into a new, anonymous network namespace that has only a loopback interface, and runs everything else
there:

    host 127.0.0.1:<origin port> --bridge--> ns :<origin port> --delay--> origin xrootd (serves <rses>/EULAKE-1)
    host 127.0.0.1:<cache port>  --bridge--> ns XCache xrootd (forwarding mode, allow-list) --> ns :<origin port>

The cache reaches root://127.0.0.1:<origin port> across the same injected delay as a client on the host does,
so benchmarks compare direct and cached reads fairly (`delay`: one way, each direction; tc netem is not available
here). The namespace disappears with the supervisor's processes: nothing global is created or left behind.

The cache's allow-list (`pss.permit host:port` lines, written by dlaas-xcache-origin-sync from CRIC) is a file; the
cache runs under dlaas_xcache.serve's `CacheRunner`, as in Kubernetes: it checks the list, derives the path rules
from it, and restarts the cache when the list's content changes (xrootd has no reload). A list without any
`pss.permit` origin is refused (XCache without one is an open proxy); a broken new list keeps the running cache.

`XRootDService` runs the supervisor as a devstack service; `status()` reads the supervisor's status file (ports,
PIDs of the two xrootd processes, how often the cache was started).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devstack.procs import Process, Service, ServiceError, ensure_port_free, tcp_ready
from devstack.settings import REPO, Settings
from dlaas_xcache.allow_list import AllowListError
from dlaas_xcache.serve import CacheRunner, terminate
from singleuser.token_files import write_atomically

CLONE_NEWNET = 0x40000000
XROOTD = "/usr/bin/xrootd"
RUN_AS = "xrootd"  # the Debian package's user; xrootd refuses to run as root
READY_TIMEOUT = 30.0


# --- the supervisor (runs in its own network namespace) -----------------------------------------------------------


class Supervisor:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work_dir)
        self.origins = Path(args.origins_file)
        self.status_path = Path(args.status_file)
        self.children: dict[str, subprocess.Popen] = {}
        self.cache: CacheRunner | None = None
        self.proxies = []
        self.stopping = False

    # --- setup -------------------------------------------------------------------------------------------------

    def bind_public(self) -> None:
        self.public = {}
        for name, port in (("origin", self.args.origin_port), ("cache", self.args.cache_port)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                raise SystemExit(
                    f"xrootd: cannot listen on 127.0.0.1:{port} for the {name} ({e.strerror}): "
                    f"stop what uses it or choose another port"
                ) from None
            s.listen(128)
            s.setblocking(False)
            self.public[name] = s
        self.origin_port = self.public["origin"].getsockname()[1]
        self.cache_port = self.public["cache"].getsockname()[1]
        inner = [p for p in (11094, 11095, 11096) if p != self.origin_port]
        self.origin_inner, self.cache_inner = inner[0], inner[1]

    def enter_namespace(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise SystemExit(
                f"xrootd: cannot create a network namespace ({os.strerror(err)}): the local XRootD "
                "services need root (CAP_SYS_ADMIN)"
            )
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    def prepare_dirs(self) -> None:
        user = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
        for sub in ("origin", "cache", "logs", "data"):
            d = self.work / sub
            d.mkdir(parents=True, exist_ok=True)
            if user:
                os.chown(d, user.pw_uid, user.pw_gid)
        cache_root = Path(self.args.cache_dir)
        cache_root.mkdir(parents=True, exist_ok=True)
        if user:
            os.chown(cache_root, user.pw_uid, user.pw_gid)
        (self.work / "origin" / "xrootd.cfg").write_text(
            "\n".join(
                [
                    f"xrd.port {self.origin_inner}",
                    "all.role server",
                    f"oss.localroot {self.args.export_root}",
                    *[f"all.export {e} r/o" for e in self.args.export],
                    f"all.adminpath {self.work / 'origin'}",
                    f"all.pidpath {self.work / 'origin'}",
                    "",
                ]
            )
        )
        (self.work / "cache" / "xrootd.cfg").write_text(
            "\n".join(
                [
                    f"xrd.port {self.cache_inner}",
                    "all.role server",
                    "all.export /",
                    "ofs.osslib libXrdPss.so",
                    "pss.cachelib libXrdPfc.so",
                    "pss.origin =",
                    f"oss.localroot {cache_root}",
                    "pfc.ram 1g",
                    # Read ahead: without it a first read waits one round trip to the origin per block (1 MiB).
                    "pfc.blocksize 1M",
                    "pfc.prefetch 10",
                    f"all.adminpath {self.work / 'cache'}",
                    f"all.pidpath {self.work / 'cache'}",
                    # XRootD 5.5.3's pss.permit alone may answer a refused origin with another request's file: a path
                    # rule per permitted origin refuses the others first (see dlaas_xcache.authdb). Both files are
                    # written by the CacheRunner from the checked allow-list.
                    "ofs.authorize 1",
                    f"acc.authdb {self.work / 'cache' / 'origins.authdb'}",
                    "acc.audit deny",
                    f"continue {self.work / 'cache' / 'origins.cfg'}",
                    "",
                ]
            )
        )

    # --- children ----------------------------------------------------------------------------------------------

    def _spawn(self, name: str, port: int) -> subprocess.Popen:
        argv = [
            XROOTD,
            "-c",
            str(self.work / name / "xrootd.cfg"),
            "-l",
            str(self.work / "logs" / f"{name}.log"),
            "-n",
            name,
        ]
        if os.geteuid() == 0:
            argv[1:1] = ["-R", RUN_AS]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        listening = tcp_ready("127.0.0.1", port)
        while not listening():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = self.work / "logs" / name / f"{name}.log"  # xrootd -n <name> logs into a subdirectory
                raise SystemExit(f"xrootd: the {name} did not start; see {log}")
            time.sleep(0.05)
        return proc

    def start_cache(self) -> None:
        work = self.work / "cache"
        self.cache = CacheRunner(
            self.origins,
            work / "origins.authdb",
            work / "origins.cfg",
            spawn=lambda: self._spawn("cache", self.cache_inner),
            log=lambda message: print(f"xrootd: {message}", flush=True),
        )
        try:
            self.cache.start()
        except AllowListError as e:
            raise SystemExit(f"xrootd: {e}: run dlaas-xcache-origin-sync first") from None
        self.children["cache"] = self.cache.proc

    def start(self) -> None:
        from devstack.latency_proxy import LatencyProxy

        self.bind_public()
        self.enter_namespace()
        self.prepare_dirs()
        self.children["origin"] = self._spawn("origin", self.origin_inner)
        # In the namespace, the origin's public port adds the delay; the cache dials it like any client.
        self.proxies.append(
            LatencyProxy(
                ("127.0.0.1", self.origin_inner), delay=self.args.delay_ms / 1000, host="0.0.0.0", port=self.origin_port
            )
        )
        self.start_cache()
        self.proxies.append(LatencyProxy(("127.0.0.1", self.origin_port), delay=0, sock=self.public["origin"]))
        self.proxies.append(LatencyProxy(("127.0.0.1", self.cache_inner), delay=0, sock=self.public["cache"]))
        for proxy in self.proxies:
            proxy.start()
        self.write_status()

    def write_status(self) -> None:
        status = {
            "origin_port": self.origin_port,
            "cache_port": self.cache_port,
            "origin_pid": self.children["origin"].pid,
            "cache_pid": self.children["cache"].pid,
            "cache_starts": self.cache.starts,
            "origin_inner_port": self.origin_inner,
            "delay_ms": self.args.delay_ms,
            "supervisor_pid": os.getpid(),
        }
        write_atomically(self.status_path, json.dumps(status), mode=0o644)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        try:
            self.start()
            print(
                f"xrootd: origin on 127.0.0.1:{self.origin_port}, cache on 127.0.0.1:{self.cache_port}, "
                f"delay {self.args.delay_ms} ms one way",
                flush=True,
            )
            while not self.stopping:
                time.sleep(0.2)
                for name, proc in self.children.items():
                    if proc.poll() is not None and not self.stopping:  # a group-wide SIGTERM reaches them first
                        print(
                            f"xrootd: the {name} exited with status {proc.returncode}; see "
                            f"{self.work / 'logs' / name / (name + '.log')}",
                            flush=True,
                        )
                        return 1
                if self.cache.check():
                    self.children["cache"] = self.cache.proc
                    self.write_status()
            return 0
        finally:
            for proxy in self.proxies:
                proxy.stop()
            for proc in self.children.values():
                terminate(proc)
            self.status_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack.xrootd", description=__doc__.split("\n\n")[0])
    p.add_argument("--origin-port", type=int, required=True, help="host loopback port of the origin (0: any)")
    p.add_argument("--cache-port", type=int, required=True, help="host loopback port of the XCache (0: any)")
    p.add_argument("--export-root", required=True, help="directory holding the exported paths (oss.localroot)")
    p.add_argument("--export", action="append", required=True, help="exported path, e.g. /EULAKE-1 (repeatable)")
    p.add_argument("--cache-dir", required=True, help="where the cache keeps its files")
    p.add_argument("--origins-file", required=True, help="the cache's allow-list (pss.permit lines)")
    p.add_argument("--work-dir", required=True, help="configuration, admin paths and logs of both servers")
    p.add_argument("--status-file", required=True, help="written (atomically) once both servers are ready")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in front of the origin")
    args = p.parse_args(argv)
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    return Supervisor(args).run()


# --- the devstack service ------------------------------------------------------------------------------------------


class XRootDService(Service):
    """The supervisor as a devstack service. Ports 0 pick free ones (see `status()`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        export_root: Path,
        exports: list[str],
        origins_file: Path,
        origin_port: int | None = None,
        cache_port: int | None = None,
        delay_ms: float | None = None,
        name: str = "xrootd",
    ):
        self.settings = settings
        self.export_root = Path(export_root)
        self.exports = exports
        self.origins_file = Path(origins_file)
        self.origin_port = settings.xrootd_port if origin_port is None else origin_port
        self.cache_port = settings.xcache_port if cache_port is None else cache_port
        self.delay_ms = settings.origin_delay_ms if delay_ms is None else delay_ms
        self.name = name
        self.dir = settings.state_dir / name
        self.cache_dir = self.dir / "cache" / "data"
        self.status_file = settings.run_dir / f"{name}.status.json"
        self.process: Process | None = None

    def start(self) -> XRootDService:
        if shutil.which("xrootd") is None or shutil.which("ip") is None:
            raise ServiceError("XRootD is not installed (xrootd-server, iproute2): run `make up`")
        for port, what, env in (
            (self.origin_port, "XRootD origin", "DLAAS_XROOTD_PORT"),
            (self.cache_port, "XCache", "DLAAS_XCACHE_PORT"),
        ):
            ensure_port_free(self.settings.host, port, what, env)
        self.status_file.unlink(missing_ok=True)
        self.process = Process(
            self.name,
            [
                sys.executable,
                "-m",
                "devstack.xrootd",
                "--origin-port",
                self.origin_port,
                "--cache-port",
                self.cache_port,
                "--export-root",
                self.export_root,
                *[a for e in self.exports for a in ("--export", e)],
                "--cache-dir",
                self.cache_dir,
                "--origins-file",
                self.origins_file,
                "--work-dir",
                self.dir / "work",
                "--status-file",
                self.status_file,
                "--delay-ms",
                self.delay_ms,
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=self.status_file.exists,
            cwd=REPO,
            timeout=60,
        ).start()
        status = self.status()
        self.origin_port, self.cache_port = status["origin_port"], status["cache_port"]
        return self

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())

    @property
    def origin_url(self) -> str:
        return f"root://127.0.0.1:{self.origin_port}"

    @property
    def cache_url(self) -> str:
        return f"root://127.0.0.1:{self.cache_port}"

    def wait_cache_start(self, after: int, timeout: float = 30.0) -> dict:
        """Wait until the cache was (re)started more than `after` times; returns the status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.status()
                if status["cache_starts"] > after:
                    return status
            except (OSError, ValueError):
                pass
            if not self.alive():
                raise ServiceError(f"{self.name} stopped; see {self.process.log_path}")
            time.sleep(0.1)
        raise ServiceError(f"the cache was not restarted within {timeout:.0f}s; see {self.process.log_path}")


# --- the layer as the stack runs it: catalogue, first sync, origin + cache, periodic sync ----------------------------


class OriginSyncService(Service):
    """dlaas-xcache-origin-sync in a loop, as the CronJob runs it in Kubernetes."""

    def __init__(self, settings: Settings, cric_url: str, origins_file: Path, every: float = 60.0):
        self.settings, self.cric_url, self.origins_file, self.every = settings, cric_url, Path(origins_file), every

    def start(self) -> OriginSyncService:
        self.process = Process(
            "origin-sync",
            [
                sys.executable,
                "-m",
                "dlaas_xcache.origin_sync",
                "--cric-url",
                self.cric_url,
                "--output",
                self.origins_file,
                "--every",
                self.every,
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            cwd=REPO,
        ).start()
        return self


def origins_file(settings: Settings) -> Path:
    return settings.state_dir / "xrootd" / "origins.cfg"


class CacheLayer(Service):
    """The whole latency-hiding layer of the local data lake, started in order and stopped in reverse.

    The sample CRIC (written from Rucio's RSEs), a first allow-list from it, the XRootD origin and XCache, and
    (with `sync_every`) the periodic origin sync. Needs the seeded Rucio server (EULAKE-1's root door).
    """

    def __init__(
        self,
        settings: Settings,
        rucio,
        *,
        sync_every: float | None = 60.0,
        cric_port: int | None = None,
        delay_ms: float | None = None,
    ):
        from devstack.cric import CatalogueService

        self.settings, self.rucio, self.sync_every = settings, rucio, sync_every
        self.cric = CatalogueService(settings, port=cric_port)
        self.origins_file = origins_file(settings)
        self.xrootd: XRootDService | None = None
        self.sync: OriginSyncService | None = None
        self.delay_ms = delay_ms
        self._started: list[Service] = []

    def start(self) -> CacheLayer:
        from devstack.cric import catalogue_from_rucio, write_catalogue
        from devstack.rucio_seed import REPLICA_RSE, rses_root

        try:
            write_catalogue(self.cric.file, catalogue_from_rucio(self.rucio.root_client()))
            self._started.append(self.cric.start())
            sync_origins(self.cric.url, self.origins_file)
            self.xrootd = XRootDService(
                self.settings,
                export_root=rses_root(self.settings),
                exports=[f"/{REPLICA_RSE}"],
                origins_file=self.origins_file,
                delay_ms=self.delay_ms,
            )
            self._started.append(self.xrootd.start())
            if self.sync_every:
                self.sync = OriginSyncService(self.settings, self.cric.url, self.origins_file, self.sync_every)
                self._started.append(self.sync.start())
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return all(service.alive() for service in self._started)

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()


def sync_origins(cric_url: str, path: Path) -> None:
    """One sync from the catalogue, in this process (the stack's first, before the cache starts)."""
    from dlaas_xcache.origin_sync import main as origin_sync

    if origin_sync(["--cric-url", cric_url, "--output", str(path), "--timeout", "10"]) != 0:
        raise ServiceError(f"could not derive the XCache's allowed origins from {cric_url} (see above)")


if __name__ == "__main__":
    sys.exit(main())
