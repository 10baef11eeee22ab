"""The supervisor of the local XRootD origin and XCache: binds their public ports on the host's loopback, then runs
everything in a private network namespace (`python -m devstack.xrootd_supervisor`; devstack.xrootd starts it).

XRootD 5.5 listens on every interface and has no option to bind one address. So that nothing listens beyond
127.0.0.1, the supervisor binds the two public ports on the host's loopback first, then moves itself into a new,
anonymous network namespace that has only a loopback interface, and runs the two servers (devstack.xrootd_servers)
there:

    host 127.0.0.1:<origin port> --bridge--> ns :<origin port> --delay--> origin xrootd (serves <rses>/EULAKE-1)
    host 127.0.0.1:<cache port>  --bridge--> ns XCache xrootd (forwarding mode, allow-list) --> ns :<origin port>
    host 127.0.0.1:<metrics port> --bridge--> ns XCache exporter /metrics <--UDP reports-- ns XCache xrootd

The cache reaches root://127.0.0.1:<origin port> across the same injected delay as a client on the host does,
so benchmarks compare direct and cached reads fairly (`delay`: one way, each direction; tc netem is not available
here). The namespace disappears with the supervisor's processes: nothing global is created or left behind.

The cache's allow-list (`pss.permit host:port` lines, written by dlaas-xcache-origin-sync from CRIC) is a file; the
cache runs under dlaas_xcache.serve's `CacheRunner`, as in Kubernetes: it checks the list, derives the path rules
from it, and restarts the cache when the list's content changes (xrootd has no reload). A list without any
`pss.permit` origin is refused (XCache without one is an open proxy); a broken new list keeps the running cache.
The XCache exporter (dlaas_xcache.exporter) runs beside the cache in the namespace, as the chart's sidecar shares the
cache pod's loopback: the cache sends its summary reports and g-stream to it over UDP (xrootd_servers.MONITOR_UDP),
and its /metrics is bridged to the host's loopback for Prometheus and the hub's status page.
With `--cache-disk-bytes N` (root only) the supervisor also takes a private mount namespace (`/` made private
recursively first, so nothing propagates to the host) and mounts a tmpfs of N bytes on the cache's data directory:
a small cache disk that fills, for the fault suite, and disappears with the supervisor's processes.
The status file (written atomically once both servers and the exporter are ready, and after each cache restart)
tells the ports, the PIDs of the two xrootd processes and how often the cache was started.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devstack import xrootd_servers
from dlaas_fs.atomic import write_atomically
from dlaas_xcache.allow_list import AllowListError
from dlaas_xcache.serve import CacheRunner, terminate

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000


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
        for name, port in (
            ("origin", self.args.origin_port),
            ("cache", self.args.cache_port),
            ("metrics", self.args.metrics_port),
        ):
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
        self.metrics_port = self.public["metrics"].getsockname()[1]
        inner = [p for p in (11094, 11095, 11096) if p != self.origin_port]
        self.origin_inner, self.cache_inner = inner[0], inner[1]

    def enter_namespace(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        flags = CLONE_NEWNET | (CLONE_NEWNS if self.args.cache_disk_bytes else 0)
        if libc.unshare(flags) != 0:
            err = ctypes.get_errno()
            raise SystemExit(
                f"xrootd: cannot create a network namespace ({os.strerror(err)}): the local XRootD "
                "services need root (CAP_SYS_ADMIN)"
            )
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        if self.args.cache_disk_bytes:
            self.mount_cache_disk()

    def mount_cache_disk(self) -> None:
        """A tmpfs of --cache-disk-bytes on the cache's data directory, in our own mount namespace only."""
        cache_dir = Path(self.args.cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        size = f"size={self.args.cache_disk_bytes},mode=0755"
        subprocess.run(["mount", "-t", "tmpfs", "-o", size, "dlaas-xcache-disk", str(cache_dir)], check=True)

    def prepare(self) -> None:
        xrootd_servers.prepare(
            self.work,
            origin_port=self.origin_inner,
            cache_port=self.cache_inner,
            export_root=Path(self.args.export_root),
            exports=self.args.export,
            cache_dir=Path(self.args.cache_dir),
        )

    # --- children ----------------------------------------------------------------------------------------------

    def start_cache(self) -> None:
        self.cache = CacheRunner(
            self.origins,
            xrootd_servers.authdb_path(self.work),
            xrootd_servers.permit_path(self.work),
            spawn=lambda: xrootd_servers.spawn(self.work, "cache", self.cache_inner),
            log=lambda message: print(f"xrootd: {message}", flush=True),
        )
        try:
            self.cache.start()
        except AllowListError as e:
            raise SystemExit(f"xrootd: {e}: run dlaas-xcache-origin-sync first") from None
        self.children["cache"] = self.cache.proc

    def start_exporter(self) -> None:
        """The XCache exporter on the namespace's loopback, before the cache sends it anything; its HTTP port is
        any free one (read from its status file)."""
        status = self.work / "exporter.status.json"
        status.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlaas_xcache.exporter", "--udp", xrootd_servers.MONITOR_UDP]
            + ["--listen", "127.0.0.1:0", "--status-file", str(status)],
            stdin=subprocess.DEVNULL,
        )
        self.children["exporter"] = proc
        deadline = time.monotonic() + xrootd_servers.READY_TIMEOUT
        while not status.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("xrootd: the XCache exporter did not start; see its lines above")
            time.sleep(0.05)
        self.exporter_inner = json.loads(status.read_text())["http_port"]

    def start(self) -> None:
        from devstack.latency_proxy import LatencyProxy

        self.bind_public()
        self.enter_namespace()
        self.prepare()
        self.start_exporter()
        self.children["origin"] = xrootd_servers.spawn(self.work, "origin", self.origin_inner)
        # In the namespace, the origin's public port adds the delay; the cache dials it like any client.
        self.proxies.append(
            LatencyProxy(
                ("127.0.0.1", self.origin_inner), delay=self.args.delay_ms / 1000, host="0.0.0.0", port=self.origin_port
            )
        )
        self.start_cache()
        self.proxies.append(LatencyProxy(("127.0.0.1", self.origin_port), delay=0, sock=self.public["origin"]))
        self.proxies.append(LatencyProxy(("127.0.0.1", self.cache_inner), delay=0, sock=self.public["cache"]))
        self.proxies.append(LatencyProxy(("127.0.0.1", self.exporter_inner), delay=0, sock=self.public["metrics"]))
        for proxy in self.proxies:
            proxy.start()
        self.write_status()

    def write_status(self) -> None:
        status = {
            "origin_port": self.origin_port,
            "cache_port": self.cache_port,
            "metrics_port": self.metrics_port,
            "exporter_pid": self.children["exporter"].pid,
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
                        where = "above" if name == "exporter" else xrootd_servers.log_path(self.work, name)
                        print(f"xrootd: the {name} exited with status {proc.returncode}; see {where}", flush=True)
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
    p = argparse.ArgumentParser(prog="python -m devstack.xrootd_supervisor", description=__doc__.split("\n\n")[0])
    p.add_argument("--origin-port", type=int, required=True, help="host loopback port of the origin (0: any)")
    p.add_argument("--cache-port", type=int, required=True, help="host loopback port of the XCache (0: any)")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="host loopback port of the XCache exporter's /metrics (0: any)"
    )
    p.add_argument("--export-root", required=True, help="directory holding the exported paths (oss.localroot)")
    p.add_argument("--export", action="append", required=True, help="exported path, e.g. /EULAKE-1 (repeatable)")
    p.add_argument("--cache-dir", required=True, help="where the cache keeps its files")
    p.add_argument("--origins-file", required=True, help="the cache's allow-list (pss.permit lines)")
    p.add_argument("--work-dir", required=True, help="configuration, admin paths and logs of both servers")
    p.add_argument("--status-file", required=True, help="written (atomically) once both servers are ready")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in front of the origin")
    p.add_argument(
        "--cache-disk-bytes",
        type=int,
        default=0,
        help="mount a tmpfs of this size on --cache-dir, in a private mount namespace (root only; 0: no limit)",
    )
    args = p.parse_args(argv)
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    if args.cache_disk_bytes < 0:
        p.error("--cache-disk-bytes must be >= 0 (0: no limit)")
    if args.cache_disk_bytes and os.geteuid() != 0:
        p.error("--cache-disk-bytes mounts a tmpfs and needs root: run as root or leave it at 0")
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
