"""Run the registration service (dlaas-registrar) for the local data lake, as a JupyterHub service next to the hub.

It reads every user's scratch directory (<state>/rses/DLAAS-SCRATCH/<username>) and registers uploads in Rucio with
its own account (dlaas-registrar, userpass; the seed creates it). Its hub API token and Rucio password are generated
into the state directory (0600); the hub learns the token from the same file (devstack.hub), so the service is known
to the hub as `dlaas-registrar` and reachable through the hub's proxy at /services/dlaas-registrar/.
"""

from __future__ import annotations

import os

from devstack.ports import ensure_port_free, http_ready
from devstack.procs import Process
from devstack.service import Service
from devstack.settings import MAIN_PYTHON, REPO, Settings
from dlaas_fs.secret_files import kept_secret

SERVICE_NAME = "dlaas-registrar"
PREFIX = f"/services/{SERVICE_NAME}/"


def api_token(settings: Settings) -> str:
    """The service's hub API token: the hub registers the service with it, the service authenticates with it."""
    return kept_secret(settings.state_dir / "registrar" / "api_token")


def hub_service(settings: Settings) -> dict:
    """The entry of JupyterHub.services for the registration service."""
    return {"name": SERVICE_NAME, "url": settings.registrar_url, "api_token": api_token(settings)}


class LocalRegistrar(Service):
    def __init__(self, settings: Settings, rucio, *, hub_url: str | None = None, port: int | None = None):
        self.settings = settings
        self.rucio = rucio
        self.hub_url = hub_url or settings.hub_url
        self.port = settings.registrar_port if port is None else port
        self.dir = settings.state_dir / "registrar"
        self.process: Process | None = None

    @property
    def url(self) -> str:
        """Where user servers reach it: through the hub's proxy, as in production."""
        return f"{self.hub_url}{PREFIX}"

    def start(self) -> LocalRegistrar:
        from devstack.rucio_seed import REGISTRAR_ACCOUNT, SCRATCH_RSE, registrar_password, rse_dir

        ensure_port_free("127.0.0.1", self.port, "registration service", "DLAAS_REGISTRAR_PORT")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.rucio.client_config(
            self.dir / "rucio.cfg",
            account=REGISTRAR_ACCOUNT,
            auth_type="userpass",
            username=REGISTRAR_ACCOUNT,
            password=registrar_password(self.rucio),
        )
        scratch = rse_dir(self.settings, SCRATCH_RSE)
        scratch.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "RUCIO_", "BEARER_TOKEN"))}
        env.update(
            JUPYTERHUB_API_TOKEN=api_token(self.settings),
            JUPYTERHUB_API_URL=f"{self.hub_url}/hub/api",
            JUPYTERHUB_SERVICE_NAME=SERVICE_NAME,
            JUPYTERHUB_SERVICE_PREFIX=PREFIX,
            RUCIO_CONFIG=str(config),
            PYTHONPATH=str(REPO),
        )
        self.process = Process(
            "dlaas-registrar",
            [
                str(MAIN_PYTHON),
                "-m",
                "dlaas_registrar",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--scratch-root",
                str(scratch),
                "--scratch-rse",
                SCRATCH_RSE,
                f"--Registrar.rucio_token_dir={self.dir / 'rucio-tokens'}",
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=http_ready(f"http://127.0.0.1:{self.port}{PREFIX}api/health"),
            env=env,
            cwd=REPO,
            timeout=30,
        ).start()
        return self
