"""The local data lake in a box, built by profiles: every service started in dependency order, stopped in reverse.

One builder for `make up` (devstack.__main__), the integration fixtures (tests/conftest.py and the tests that need
a lake of their own) and the benchmarks. A stack is made of parts; a profile names the parts it needs, and the
parts they need come along:

    core     dev IAM, PostgreSQL, Rucio server (seeded: accounts, RSEs, demo data)
    daemons  core + Rucio's daemons (rules complete, expired replicas go)
    cache    core + the sample CRIC, the XRootD origin and the XCache in front of it
    hub      core + the registration service + Dask Gateway + JupyterHub
    login    the dev IAM and JupyterHub only (logins, the token API and refresh; no data lake behind)
    all      everything (`make up`)

A part is also a name `start()` takes: iam, postgres, rucio, daemons, cache, registrar, jupyterhub, sync (the
periodic account sync), prometheus (scrapes the parts already running; `all` starts it last).

`start()` grows a stack: it starts only what is not running yet, so `start("core")` then `start("hub")` leaves one
IAM, one Rucio and adds the registration service and the hub. The IAM learns its clients (the hub's, Rucio's) when
the stack is made, before it first starts, because the IAM cannot learn clients later; register more on `stack.iam`
before starting it. Ports come from the settings (Settings.free_ports for private stacks); every fixed port of the
parts about to start is checked before any of them starts, and a start that fails stops what it started before the
error propagates: a failed start leaves nothing running.

A supervised stack (`supervised=True`: `make up`, the fault tests) runs its services under supervisord
(devstack.supervision), started before the first part and stopped after the last: a service that dies is restarted
with back-off instead of being reported dead; `supervisor.check()` bounds the restarts.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.ports import ensure_port_free
from devstack.service import ServiceError
from devstack.settings import Settings


@dataclass(frozen=True)
class Part:
    title: str
    needs: tuple[str, ...]
    ports: tuple[tuple[str, str, str], ...]  # (Settings field, what listens there, the variable that moves it)


PARTS = {
    "iam": Part("dev IAM", (), (("iam_port", "dev IAM", "DLAAS_IAM_PORT"),)),
    "postgres": Part("PostgreSQL", (), (("postgres_port", "PostgreSQL", "DLAAS_POSTGRES_PORT"),)),
    "rucio": Part("Rucio server", ("iam", "postgres"), (("rucio_port", "Rucio server", "DLAAS_RUCIO_PORT"),)),
    "cache": Part(
        "XRootD origin, XCache and the sample CRIC",
        ("rucio",),
        (
            ("cric_port", "sample CRIC", "DLAAS_CRIC_PORT"),
            ("xrootd_port", "XRootD origin", "DLAAS_XROOTD_PORT"),
            ("xcache_port", "XCache", "DLAAS_XCACHE_PORT"),
            ("xcache_metrics_port", "XCache exporter", "DLAAS_XCACHE_METRICS_PORT"),
        ),
    ),
    "daemons": Part("Rucio daemons", ("rucio",), ()),
    # The registration service before the hub: the hub waits up to 30 s at start for each service it knows.
    "registrar": Part(
        "registration service", ("rucio",), (("registrar_port", "registration service", "DLAAS_REGISTRAR_PORT"),)
    ),
    # Dask Gateway before the hub too, for the same reason (devstack.dask_gateway).
    "dask_gateway": Part("Dask Gateway", (), (("dask_gateway_port", "Dask Gateway", "DLAAS_DASK_GATEWAY_PORT"),)),
    "jupyterhub": Part("JupyterHub", ("iam",), (("hub_port", "JupyterHub", "DLAAS_HUB_PORT"),)),
    # The periodic account sync (IAM members -> Rucio accounts), as the chart's CronJob; first logins run it anyway.
    "sync": Part("account sync (every 10 minutes)", ("rucio",), ()),
    # Last: it scrapes the parts running when it starts (devstack.prometheus).
    "prometheus": Part("Prometheus", (), (("prometheus_port", "Prometheus", "DLAAS_PROMETHEUS_PORT"),)),
}
ORDER = tuple(PARTS)  # the start order; stop is the reverse
PROFILES = {
    "core": ("rucio",),
    "daemons": ("daemons",),
    "cache": ("cache",),
    "hub": ("registrar", "dask_gateway", "jupyterhub"),
    "login": ("jupyterhub",),
    "all": ("cache", "daemons", "registrar", "dask_gateway", "jupyterhub", "sync", "prometheus"),
}


class Stack:
    def __init__(
        self,
        settings: Settings,
        *,
        full_seed: bool = True,
        iam_options: dict | None = None,
        hub_options: dict | None = None,
        cache_options: dict | None = None,
        dask_gateway_options: dict | None = None,
        daemons_options: dict | None = None,
        supervised: bool = False,
        supervisor_options: dict | None = None,
    ):
        from devstack.account_sync import register_sync_client
        from devstack.hub import register_hub_client
        from devstack.iam import DevIAM
        from devstack.rucio_server import iam_client

        self.settings = settings
        self.full_seed = full_seed
        # Passed on to DevIAM, LocalHub and CacheLayer (tests: short token lifetimes, refresh margins, a test
        # service, no periodic origin sync). The hub's and the cache's may still change until that part starts.
        self.hub_options = hub_options or {}
        self.cache_options = cache_options or {}
        self.daemons_options = daemons_options or {}  # RucioDaemons' (the fault tests: a transfer queue)
        self.dask_gateway_options = dask_gateway_options or {}  # LocalDaskGateway's limits (tests: small ones)
        self.dask_gateway = None
        self.started: list[tuple[str, Any]] = []  # (part, service), in start order
        self.postgres = self.rucio = self.daemons = self.hub = None
        self.cache = self.cric = self.xrootd = self.registrar = None
        self.sync = self.prometheus = None
        self.supervised, self.supervisor_options = supervised, supervisor_options or {}
        self.supervisor = None  # devstack.supervision.Supervisord, once a supervised stack starts
        self.iam = DevIAM(settings, **(iam_options or {}))
        register_hub_client(self.iam, settings.hub_url)
        register_sync_client(self.iam)  # the account sync's, also run by the hub at first logins (onboarding)
        self.iam.add_introspecting_client(*iam_client(settings))  # Rucio introspects tokens without a scope claim

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- which parts -----------------------------------------------------------------------------------------

    @property
    def running(self) -> set[str]:
        return {part for part, _ in self.started}

    def parts(self, names: Iterable[str], without: Iterable[str] = ()) -> list[str]:
        """The parts `names` (profiles or parts) need that are not running yet, in start order, minus `without`."""
        wanted: set[str] = set()

        def add(part: str) -> None:
            if part not in wanted:
                wanted.add(part)
                for need in PARTS[part].needs:
                    add(need)

        for name in names:
            if name not in PROFILES and name not in PARTS:
                raise ValueError(f"unknown profile or part {name!r}: use one of {', '.join([*PROFILES, *PARTS])}")
            for part in PROFILES.get(name, (name,)):
                add(part)
        return [p for p in ORDER if p in wanted and p not in self.running and p not in set(without)]

    # --- start and stop -----------------------------------------------------------------------------------------

    def start(
        self, *names: str, without: Iterable[str] = (), progress: Callable[[str], None] = lambda msg: None
    ) -> Stack:
        """Start what the profiles or parts `names` (default: all) need and is not running yet.

        `without` leaves parts out although others need them: `start("login", without=["iam"])` is a hub that
        starts while the IAM is down (it then needs the IAM's port fixed in the settings, to know where to find it).
        """
        without = set(without)
        todo = self.parts(names or ("all",), without)
        iam_unknown = "iam" not in self.running | set(todo) and not self.iam.issuer and not self.settings.iam_port
        if "jupyterhub" in todo and iam_unknown:
            raise ServiceError("a hub starting without its IAM must know the IAM's port: fix Settings.iam_port")
        if "registrar" in todo and "jupyterhub" in self.running:
            raise ServiceError(
                "the hub already runs without the registration service: start the registration service first "
                "(the `hub` profile does), the hub learns its services only at start"
            )
        if "dask_gateway" in todo and "jupyterhub" in self.running:
            raise ServiceError("the hub already runs without Dask Gateway: start it first (the `hub` profile does)")
        # Every fixed port before starting anything, so a busy port never leaves half a stack behind.
        for part in todo:
            for field, what, env_var in PARTS[part].ports:
                ensure_port_free(self.settings.host, getattr(self.settings, field), what, env_var)
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._start_supervisor(progress)
        first_new = len(self.started)
        try:
            for part in todo:
                progress(f"starting {PARTS[part].title}")
                getattr(self, f"_start_{part}")(progress)
        except BaseException:
            failed, self.started[first_new:] = self.started[first_new:], []
            with contextlib.suppress(ServiceError):  # the reason the start failed is the error to report
                self._stop(failed)
            raise
        return self

    def _start_supervisor(self, progress) -> None:
        if not self.supervised or self.supervisor is not None:
            return
        from devstack.supervision import Supervisord

        progress("starting supervisord (restarts the services that die)")
        self.supervisor = Supervisord(self.settings.run_dir, self.settings.log_dir, **self.supervisor_options).start()

    def _add(self, part: str, service: Any) -> Any:
        service.start()
        self.started.append((part, service))
        return service

    def _start_iam(self, progress) -> None:
        self._add("iam", self.iam)

    def _start_postgres(self, progress) -> None:
        from devstack.postgres import Postgres

        self.postgres = self._add("postgres", Postgres(self.settings))

    def _start_rucio(self, progress) -> None:
        from devstack.account_sync import AccountSync
        from devstack.rucio_seed import seed
        from devstack.rucio_server import RucioServer

        issuer = self.iam.issuer or self.settings.iam_issuer
        self.rucio = self._add("rucio", RucioServer(self.settings, self.postgres.url, iam_issuer=issuer))
        progress("seeding Rucio (accounts, RSEs, demo datasets)")
        added = seed(self.settings, self.rucio, full=self.full_seed)
        if any(added.values()):
            progress("seeded: " + ", ".join(f"{n} {what}" for what, n in added.items()))
        self.rucio.client_config(self.root_cli_config, account="root", auth_type="userpass")
        AccountSync(self.settings, self.iam, self.rucio).prepare()  # its credentials, for the hub's onboarding too

    def _start_cache(self, progress) -> None:
        from devstack.cache_layer import CacheLayer

        self.cache = self._add("cache", CacheLayer(self.settings, self.rucio, **self.cache_options))
        self.xrootd, self.cric = self.cache.xrootd, self.cache.cric

    def _start_daemons(self, progress) -> None:
        from devstack.rucio_daemons import RucioDaemons

        self.daemons = self._add("daemons", RucioDaemons(self.settings, self.rucio, **self.daemons_options))

    def _start_registrar(self, progress) -> None:
        from devstack.registrar import LocalRegistrar

        self.registrar = self._add("registrar", LocalRegistrar(self.settings, self.rucio))

    def _start_dask_gateway(self, progress) -> None:
        from devstack.dask_gateway import LocalDaskGateway

        self.dask_gateway = self._add("dask_gateway", LocalDaskGateway(self.settings, **self.dask_gateway_options))

    def _start_jupyterhub(self, progress) -> None:
        from devstack.hub import LocalHub

        hub = LocalHub(
            self.settings,
            iam=self.iam,
            rucio_url=self.rucio.url if "rucio" in self.running else "",
            registrar="registrar" in self.running,
            dask_gateway="dask_gateway" in self.running,
            **self.hub_options,
        )
        self.hub = self._add("jupyterhub", hub)

    def _start_sync(self, progress) -> None:
        from devstack.account_sync import AccountSync
        from devstack.prometheus import sync_metrics_dir

        metrics = sync_metrics_dir(self.settings) / "dlaas-sync.prom"
        self.sync = self._add("sync", AccountSync(self.settings, self.iam, self.rucio, metrics_file=metrics))

    def _start_prometheus(self, progress) -> None:
        from devstack.prometheus import LocalPrometheus

        targets = {}
        if "jupyterhub" in self.running:
            targets["hub"] = f"{self.hub.url}/hub/metrics"
        if "registrar" in self.running:
            targets["registrar"] = f"http://127.0.0.1:{self.registrar.port}/services/dlaas-registrar/metrics"
        if "cache" in self.running:
            targets["xcache"] = self.xrootd.metrics_url
        self.prometheus = self._add("prometheus", LocalPrometheus(self.settings, targets))

    @property
    def root_cli_config(self) -> Path:
        return self.settings.state_dir / "rucio" / "root-client.cfg"

    def dead(self) -> str | None:
        """The title of the first part that stopped by itself, if any."""
        for part, service in self.started:
            alive = getattr(service, "alive", None)
            if alive is not None and not alive():
                return PARTS[part].title
        return None

    def stop(self) -> None:
        """Stop every part, in reverse start order (by PID); the others are still stopped when one fails to."""
        started, self.started = self.started, []
        try:
            self._stop(started)
        finally:
            if self.supervisor is not None:
                self.supervisor.stop()
                self.supervisor = None

    @staticmethod
    def _stop(started: list[tuple[str, Any]]) -> None:
        errors = []
        for part, service in reversed(started):
            try:
                service.stop()
            except Exception as e:  # keep stopping the others
                errors.append(f"{PARTS[part].title}: {e}")
        if errors:
            raise ServiceError("some services did not stop cleanly: " + "; ".join(errors))

    def summary(self) -> str:
        s, running = self.settings, self.running
        lines = ["", "The local data lake is up:"]
        if "jupyterhub" in running:
            lines.append(f"  JupyterHub     {self.hub.url}")
        if "iam" in running:
            lines.append(f"  dev IAM        {self.iam.issuer}")
        if "rucio" in running:
            lines += [f"  Rucio server   {self.rucio.url}", f"  PostgreSQL     127.0.0.1:{self.postgres.port}"]
        if "cache" in running:
            lines += [
                f"  XRootD origin  {self.xrootd.origin_url} (EULAKE-1, one-way delay {self.xrootd.delay_ms:g} ms)",
                f"  XCache         {self.xrootd.cache_url} (proxy of site LOCAL; allowed origins from {self.cric.url})",
            ]
        if "registrar" in running:
            lines.append(f"  Uploads        {self.registrar.url} (registration service, a hub service)")
        if "dask_gateway" in running:
            gateway = self.dask_gateway
            lines.append(f"  Dask Gateway   {gateway.url} (a hub service; schedulers at {gateway.proxy_address})")
        if "rucio" in running:
            lines.append(f"  RSE storage    {s.state_dir / 'rses'} (EULAKE-1, DESY-DCACHE, DLAAS-SCRATCH)")
        if "sync" in running:
            lines.append(f"  Account sync   every {self.sync.every:g} s (IAM escape/users -> Rucio accounts)")
        if "prometheus" in running:
            lines.append(f"  Prometheus     {self.prometheus.url} (scrapes: {', '.join(self.prometheus.targets)})")
        lines += [f"  state and logs {s.state_dir}", ""]
        if "rucio" in running:
            lines += [
                f"Rucio CLI as root: RUCIO_CONFIG={self.root_cli_config} .venvs/main/bin/rucio did list "
                "'escape_demo:*'",
                "Cached PFNs, as a user's server (SITE_NAME=LOCAL) gets them: "
                "Client().list_replicas(dids, schemes=['root'], client_location=detect_client_location())",
                "",
            ]
        lines += [
            "Demo users (dev IAM): alice / alice-pass (escape/users), bob / bob-pass, "
            "admin / admin-pass (escape/admins: hub operator)",
            "Stop with Ctrl-C or `make down`.",
        ]
        return "\n".join(lines)


@contextmanager
def temporary_state(prefix: str) -> Iterator[Path]:
    """A fresh state directory for a private stack, removed afterwards with the token directories its user servers
    made in /dev/shm. Under /tmp and searchable (0755): PostgreSQL runs as its own user and must reach its files."""
    state = Path(tempfile.mkdtemp(prefix=f"dlaas-{prefix}-"))
    state.chmod(0o755)
    try:
        yield state
    finally:
        from devstack.hub import token_dirs

        for token_dir in token_dirs(state):
            shutil.rmtree(token_dir, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
