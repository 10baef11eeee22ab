"""A real Prometheus for the local data lake, on loopback only, scraping every part of the stack that exports metrics.

What it scrapes is generated from the parts running when it starts (it is the stack's last part):

    hub           /hub/metrics, with the token of the hub service `prometheus` (role: read:metrics only)
    registrar     the registration service's /services/dlaas-registrar/metrics, on its own port, same token
    xcache        the XCache exporter's /metrics (dlaas_xcache.exporter beside the cache, no token)
    account-sync  the sync's metrics file (dlaas-rucio-sync --metrics-file), through node-exporter's textfile
                  collector with every other collector off, as a cluster's node-exporter would serve it

The scrape token is the hub's own secret for that service (`scrape_service`, which LocalHub registers; the
shared glue, hub_plugins.hub_roles, gives a service of that name a role of read:metrics only), in a 0600 file
Prometheus reads (`credentials_file`): never on a command line. Prometheus keeps its data
in <state>/prometheus/data; every 5 s it scrapes, so a test sees a change within seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.ports import ensure_port_free, free_port, http_ready
from devstack.procs import Process
from devstack.service import Service
from devstack.settings import Settings
from dlaas_fs.atomic import write_atomically
from dlaas_fs.secret_files import kept_secret
from hub_plugins.hub_roles import METRICS_SERVICE

PROMETHEUS = "/usr/bin/prometheus"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
SCRAPE_INTERVAL = "5s"


def token_file(settings: Settings) -> Path:
    return settings.state_dir / "prometheus" / "hub-token"


def scrape_service(settings: Settings) -> dict:
    """The hub service whose token Prometheus sends (JupyterHub.services entry; no URL: nothing to wait for)."""
    return {"name": METRICS_SERVICE, "api_token": kept_secret(token_file(settings))}


def sync_metrics_dir(settings: Settings) -> Path:
    """Where the local account sync writes its metrics file, read by node-exporter's textfile collector."""
    return settings.state_dir / "account-sync" / "metrics"


def scrape_config(targets: dict[str, str], token: Path) -> dict:
    """Prometheus' configuration for `targets` (job -> metrics URL on loopback); the hub's and the registration
    service's jobs send the hub token in `token`."""
    jobs = []
    for job, url in targets.items():
        scheme, _, rest = url.partition("://")
        address, _, path = rest.partition("/")
        entry = {
            "job_name": job,
            "scheme": scheme,
            "metrics_path": f"/{path}",
            "static_configs": [{"targets": [address]}],
        }
        if job in ("hub", "registrar"):
            entry["authorization"] = {"type": "Bearer", "credentials_file": str(token)}
        jobs.append(entry)
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": "4s", "evaluation_interval": "15s"},
        "scrape_configs": jobs,
    }


class LocalPrometheus(Service):
    """Prometheus (and, when the account sync's metrics are wanted, a textfile-only node-exporter) on loopback."""

    def __init__(
        self, settings: Settings, targets: dict[str, str], *, sync_metrics: bool = True, port: int | None = None
    ):
        self.settings = settings
        self.targets = dict(targets)
        self.sync_metrics = sync_metrics
        self.port = (settings.prometheus_port if port is None else port) or free_port()
        self.dir = settings.state_dir / "prometheus"
        self.process: Process | None = None
        self.exporter: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalPrometheus:
        ensure_port_free("127.0.0.1", self.port, "Prometheus", "DLAAS_PROMETHEUS_PORT")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept_secret(token_file(self.settings))
        targets = dict(self.targets)
        if self.sync_metrics:
            textfiles = sync_metrics_dir(self.settings)
            textfiles.mkdir(parents=True, exist_ok=True)
            port = free_port()
            self.exporter = Process(
                "prometheus-node-exporter",
                [
                    NODE_EXPORTER,
                    "--collector.disable-defaults",
                    "--collector.textfile",
                    f"--collector.textfile.directory={textfiles}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                run_dir=self.settings.run_dir,
                log_dir=self.settings.log_dir,
                ready=http_ready(f"http://127.0.0.1:{port}/metrics"),
                timeout=20,
            ).start()
            targets["account-sync"] = f"http://127.0.0.1:{port}/metrics"
        config = self.dir / "prometheus.yml"
        # JSON is YAML: Prometheus reads it as it is.
        write_atomically(config, json.dumps(scrape_config(targets, token_file(self.settings)), indent=2), mode=0o600)
        try:
            self.process = Process(
                "prometheus",
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    "--storage.tsdb.retention.time=7d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                run_dir=self.settings.run_dir,
                log_dir=self.settings.log_dir,
                ready=http_ready(f"{self.url}/-/ready", ok_below=300),
                cwd=self.dir,
                timeout=60,
            ).start()
        except BaseException:
            self.stop()
            raise
        self.targets = targets
        return self

    def alive(self) -> bool:
        return super().alive() and (self.exporter is None or self.exporter.alive())

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.exporter is not None:
                self.exporter.stop(timeout=self.stop_timeout)
                self.exporter = None
