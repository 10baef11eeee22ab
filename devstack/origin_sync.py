"""The XCache's origin sync in the local data lake: dlaas-xcache-origin-sync run once in this process (the stack's
first allow-list, before the cache starts) and then in a loop in the background, as the CronJob runs it in
Kubernetes. The cache notices each new list itself (devstack.xrootd_supervisor)."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack.procs import Process
from devstack.service import Service, ServiceError
from devstack.settings import REPO, Settings


def origins_file(settings: Settings) -> Path:
    """The allow-list the sync writes and the cache reads."""
    return settings.state_dir / "xrootd" / "origins.cfg"


def sync_origins(cric_url: str, path: Path) -> None:
    """One sync from the catalogue, in this process (the stack's first, before the cache starts)."""
    from dlaas_xcache.origin_sync import main as origin_sync

    if origin_sync(["--cric-url", cric_url, "--output", str(path), "--timeout", "10"]) != 0:
        raise ServiceError(f"could not derive the XCache's allowed origins from {cric_url} (see above)")


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
