"""The local data lake's XRootD origin and XCache as one devstack service: runs their supervisor
(devstack.xrootd_supervisor), which keeps both on 127.0.0.1 only through a private network namespace, with an
optional delay in front of the origin.

Ports 0 pick free ones; `status()` reads the supervisor's status file (ports, PIDs of the two xrootd processes, how
often the cache was started), `wait_cache_start()` waits for the cache to restart on a new allow-list. The cache's
monitoring is served by the XCache exporter at `metrics_url` (any free loopback port unless `metrics_port` is given).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from devstack.ports import ensure_port_free
from devstack.procs import Process
from devstack.service import Service, ServiceError
from devstack.settings import REPO, Settings


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
        metrics_port: int = 0,
        cache_disk_bytes: int = 0,
        name: str = "xrootd",
    ):
        self.settings = settings
        self.export_root = Path(export_root)
        self.exports = exports
        self.origins_file = Path(origins_file)
        self.origin_port = settings.xrootd_port if origin_port is None else origin_port
        self.cache_port = settings.xcache_port if cache_port is None else cache_port
        self.delay_ms = settings.origin_delay_ms if delay_ms is None else delay_ms
        self.metrics_port = metrics_port
        self.cache_disk_bytes = cache_disk_bytes  # > 0: the cache's data directory is a tmpfs of this size (root)
        self.name = name
        self.dir = settings.state_dir / name
        self.cache_dir = self.dir / "cache" / "data"
        self.status_file = settings.run_dir / f"{name}.status.json"
        self.process: Process | None = None

    def start(self) -> XRootDService:
        if shutil.which("xrootd") is None or shutil.which("ip") is None:
            raise ServiceError("XRootD is not installed (xrootd-server, iproute2): run `make up`")
        if self.cache_disk_bytes and os.geteuid() != 0:
            raise ServiceError("a limited cache disk (cache_disk_bytes) mounts a tmpfs and needs root: run as root")
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
                "devstack.xrootd_supervisor",
                "--origin-port",
                self.origin_port,
                "--cache-port",
                self.cache_port,
                "--metrics-port",
                self.metrics_port,
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
                "--cache-disk-bytes",
                self.cache_disk_bytes,
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=self.status_file.exists,
            cwd=REPO,
            timeout=60,
        ).start()
        status = self.status()
        self.origin_port, self.cache_port = status["origin_port"], status["cache_port"]
        self.metrics_port = status["metrics_port"]
        return self

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())

    @property
    def origin_url(self) -> str:
        return f"root://127.0.0.1:{self.origin_port}"

    @property
    def cache_url(self) -> str:
        return f"root://127.0.0.1:{self.cache_port}"

    @property
    def metrics_url(self) -> str:
        """The XCache exporter's Prometheus metrics (dlaas_xcache.exporter), fed by the cache's own reports."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

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
