"""The local data lake in a box: every service, started in dependency order and stopped in reverse.

`Stack` is what `python -m devstack up` runs and what the integration fixtures build on. If any service fails to
start, everything already started is stopped again before the error propagates: nothing is left running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.procs import ServiceError, ensure_port_free
from devstack.settings import Settings


@dataclass
class Started:
    name: str
    service: Any


class Stack:
    def __init__(
        self,
        settings: Settings,
        *,
        full_seed: bool = True,
        with_hub: bool = True,
        iam_options: dict | None = None,
        hub_options: dict | None = None,
    ):
        self.settings = settings
        self.full_seed = full_seed
        self.with_hub = with_hub
        # Passed on to DevIAM and LocalHub (tests: short token lifetimes, refresh margins, a test service).
        self.iam_options = iam_options or {}
        self.hub_options = hub_options or {}
        self.started: list[Started] = []
        self.iam = self.postgres = self.rucio = self.daemons = self.hub = None
        self.cache = self.cric = self.xrootd = self.registrar = None

    def _ports(self) -> list[tuple[int, str, str]]:
        s = self.settings
        ports = [
            (s.iam_port, "dev IAM", "DLAAS_IAM_PORT"),
            (s.postgres_port, "PostgreSQL", "DLAAS_POSTGRES_PORT"),
            (s.rucio_port, "Rucio server", "DLAAS_RUCIO_PORT"),
            (s.cric_port, "sample CRIC", "DLAAS_CRIC_PORT"),
            (s.xrootd_port, "XRootD origin", "DLAAS_XROOTD_PORT"),
            (s.xcache_port, "XCache", "DLAAS_XCACHE_PORT"),
        ]
        if self.with_hub:
            ports.append((s.hub_port, "JupyterHub", "DLAAS_HUB_PORT"))
            ports.append((s.registrar_port, "registration service", "DLAAS_REGISTRAR_PORT"))
        return ports

    def start(self, progress: Callable[[str], None] = lambda msg: None) -> Stack:
        # Check every fixed port before starting anything, so a busy port never leaves half a stack behind.
        for port, what, env_var in self._ports():
            ensure_port_free(self.settings.host, port, what, env_var)
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all(progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _add(self, name: str, service: Any, progress: Callable[[str], None]) -> Any:
        progress(f"starting {name}")
        service.start()
        self.started.append(Started(name, service))
        return service

    def _start_all(self, progress: Callable[[str], None]) -> None:
        from devstack.hub import LocalHub, register_hub_client
        from devstack.iam import DevIAM
        from devstack.postgres import Postgres
        from devstack.registrar import LocalRegistrar
        from devstack.rucio_daemons import RucioDaemons
        from devstack.rucio_seed import seed
        from devstack.rucio_server import RucioServer, iam_client
        from devstack.xrootd import CacheLayer

        s = self.settings
        self.iam = DevIAM(s, **self.iam_options)
        self.iam.add_introspecting_client(*iam_client(s))  # Rucio introspects tokens without a scope claim
        if self.with_hub:
            register_hub_client(self.iam, s.hub_url)
        self._add("dev IAM", self.iam, progress)
        self.postgres = self._add("PostgreSQL", Postgres(s), progress)
        self.rucio = self._add("Rucio server", RucioServer(s, self.postgres.url, iam_issuer=self.iam.issuer), progress)
        progress("seeding Rucio (accounts, RSEs, demo datasets)")
        added = seed(s, self.rucio, full=self.full_seed)
        if any(added.values()):
            progress("seeded: " + ", ".join(f"{n} {what}" for what, n in added.items()))
        self.rucio.client_config(self.root_cli_config, account="root", auth_type="userpass")
        self.cache = self._add("XRootD origin, XCache and the sample CRIC", CacheLayer(s, self.rucio), progress)
        self.xrootd, self.cric = self.cache.xrootd, self.cache.cric
        self.daemons = self._add("Rucio daemons", RucioDaemons(s, self.rucio), progress)
        if self.with_hub:
            # The registration service first: the hub waits up to 30 s at start for the services it knows.
            self.registrar = self._add(
                "registration service", LocalRegistrar(s, self.rucio, hub_url=s.hub_url), progress
            )
            hub = LocalHub(s, iam=self.iam, rucio_url=self.rucio.url, registrar=True, **self.hub_options)
            self.hub = self._add("JupyterHub", hub, progress)

    @property
    def root_cli_config(self):
        return self.settings.state_dir / "rucio" / "root-client.cfg"

    def dead(self) -> str | None:
        """The name of the first service that stopped by itself, if any."""
        for started in self.started:
            alive = getattr(started.service, "alive", None)
            if alive is not None and not alive():
                return started.name
        return None

    def stop(self) -> None:
        errors = []
        while self.started:
            started = self.started.pop()
            try:
                started.service.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{started.name}: {e}")
        if errors:
            raise ServiceError("some services did not stop cleanly: " + "; ".join(errors))

    def summary(self) -> str:
        s = self.settings
        lines = [
            "",
            "The local data lake is up:",
            *([f"  JupyterHub     {s.hub_url}"] if self.with_hub else []),
            f"  dev IAM        {self.iam.issuer}",
            f"  Rucio server   {self.rucio.url}",
            f"  PostgreSQL     127.0.0.1:{self.postgres.port}",
            f"  XRootD origin  {self.xrootd.origin_url} (EULAKE-1, one-way delay {self.xrootd.delay_ms:g} ms)",
            f"  XCache         {self.xrootd.cache_url} (proxy of site LOCAL; allowed origins from {self.cric.url})",
            *(
                [f"  Uploads        {self.registrar.url} (registration service, a hub service)"]
                if self.with_hub
                else []
            ),
            f"  RSE storage    {s.state_dir / 'rses'} (EULAKE-1, DESY-DCACHE, DLAAS-SCRATCH)",
            f"  state and logs {s.state_dir}",
            "",
            f"Rucio CLI as root: RUCIO_CONFIG={self.root_cli_config} .venvs/main/bin/rucio did list 'escape_demo:*'",
            "Cached PFNs, as a user's server (SITE_NAME=LOCAL) gets them: "
            "Client().list_replicas(dids, schemes=['root'], client_location=detect_client_location())",
            "",
            "Demo users (dev IAM): alice / alice-pass (escape/users), bob / bob-pass, "
            "admin / admin-pass (escape/admins: hub operator)",
            "Stop with Ctrl-C or `make down`.",
        ]
        return "\n".join(lines)
