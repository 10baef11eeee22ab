"""Run Dask Gateway for the local data lake: per-user Dask clusters whose schedulers and workers are local processes,
a JupyterHub service (`dask-gateway`) whose users are the hub's.

The backend is dask-gateway-server's `UnsafeLocalBackend`, through singleuser.dask_gateway_policy's
DataLakeLocalBackend. Its sibling `LocalBackend` would run each user's cluster under that user's Unix account, which
needs the gateway to run as root and a Unix account per hub user. The local data lake has neither: every user's
server already runs as the account that runs `make up` (docs/security.md: a one-researcher box), and the 2026.3.0
`LocalBackend` changes the ownership of paths it should not when it runs as root. `UnsafeLocalBackend` runs the
clusters as the gateway's own account, like the users' servers, which is the same isolation the box has already;
what keeps users apart is the gateway's API (a user sees, scales and stops only her own clusters: the gateway asks
the hub who holds each token) and each cluster's own TLS credentials. On Kubernetes the chart's backend runs every
scheduler and worker in a pod of its own (flux/apps/base/dask-gateway/).

Everything listens on 127.0.0.1: the gateway's public port (API, dashboards, and the schedulers' TLS traffic, which
the gateway routes by SNI) is reached by browsers through the hub's proxy at /services/dask-gateway/ and by Dask
clients directly (`gateway://127.0.0.1:<port>`); the private API and every scheduler and worker take free loopback
ports. The gateway's hub API token is kept in <state>/dask-gateway/api_token (0600); its configuration is rendered
from devstack/templates/dask_gateway_config.py.in.
"""

from __future__ import annotations

import json
import os
from string import Template

from devstack.ports import ensure_port_free, http_ready
from devstack.procs import Process
from devstack.service import Service
from devstack.settings import MAIN_PYTHON, REPO, TEMPLATES, VENVS, Settings
from dlaas_fs.atomic import write_secret_file
from dlaas_fs.secret_files import kept_secret

SERVICE_NAME = "dask-gateway"
PREFIX = f"/services/{SERVICE_NAME}"
#: The environments a cluster may run (the hub's profiles): the `dask` command of each virtual environment.
ENVIRONMENTS = {"base": VENVS / "singleuser" / "bin" / "dask", "root": VENVS / "kernel-root" / "bin" / "dask"}


def api_token(settings: Settings) -> str:
    """The gateway's hub API token: the hub registers the service with it, the gateway asks the hub with it."""
    return kept_secret(settings.state_dir / "dask-gateway" / "api_token")


def hub_service(settings: Settings) -> dict:
    """The entry of JupyterHub.services for the gateway: the hub's proxy routes /services/dask-gateway/ to it."""
    return {"name": SERVICE_NAME, "url": settings.dask_gateway_url, "api_token": api_token(settings)}


def client_addresses(settings: Settings) -> tuple[str, str]:
    """(address, proxy address) as the users' Dask clients need them (dask config gateway.address and
    gateway.proxy-address): the API through the hub's proxy, the schedulers at the gateway's port directly."""
    return f"{settings.hub_url}{PREFIX}", f"gateway://127.0.0.1:{settings.dask_gateway_port}"


class LocalDaskGateway(Service):
    def __init__(
        self,
        settings: Settings,
        *,
        cluster_max_workers: int = 4,
        max_clusters_per_user: int = 2,
        max_worker_cores: int = 2,
        max_worker_memory_gib: float = 2.0,
        idle_timeout: float = 1800.0,
        server_check_period: float = 10.0,
    ):
        self.settings = settings
        self.port = settings.dask_gateway_port
        self.limits = dict(
            cluster_max_workers=cluster_max_workers,
            max_clusters_per_user=max_clusters_per_user,
            max_worker_cores=max_worker_cores,
            max_worker_memory_gib=max_worker_memory_gib,
            idle_timeout=idle_timeout,
            server_check_period=server_check_period,
        )
        self.dir = settings.state_dir / "dask-gateway"
        self.process: Process | None = None

    @property
    def url(self) -> str:
        """Where users and their clients reach the gateway's API and dashboards: through the hub's proxy."""
        return client_addresses(self.settings)[0]

    @property
    def proxy_address(self) -> str:
        return client_addresses(self.settings)[1]

    def config_text(self) -> str:
        environments = {
            name: {"scheduler_cmd": [str(dask), "scheduler"], "worker_cmd": [str(dask), "worker"]}
            for name, dask in ENVIRONMENTS.items()
        }
        first = next(iter(environments.values()))
        fields = {
            "port": self.port,
            "hub_api_url": f"{self.settings.hub_url}/hub/api",
            "token_file": self.dir / "api_token",
            "service_name": SERVICE_NAME,
            "clusters_dir": self.dir / "clusters",
            "environments": json.dumps(environments),
            "scheduler_cmd": json.dumps(first["scheduler_cmd"]),
            "worker_cmd": json.dumps(first["worker_cmd"]),
            **self.limits,
        }
        return Template((TEMPLATES / "dask_gateway_config.py.in").read_text()).substitute(
            {k: str(v) for k, v in fields.items()}
        )

    def start(self) -> LocalDaskGateway:
        ensure_port_free("127.0.0.1", self.port, "Dask Gateway", "DLAAS_DASK_GATEWAY_PORT")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "clusters").mkdir(exist_ok=True, mode=0o700)
        api_token(self.settings)
        config = self.dir / "dask_gateway_config.py"
        write_secret_file(config, self.config_text())
        # Nothing of the caller's credentials: schedulers and workers inherit only what the backend passes on.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTERHUB_", "RUCIO_", "BEARER_TOKEN", "OAUTH2_TOKEN", "DASK_", "DLAAS_"))
        }
        self.process = Process(
            "dask-gateway",
            [str(MAIN_PYTHON), "-m", "dask_gateway_server", "-f", str(config)],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=http_ready(f"http://127.0.0.1:{self.port}{PREFIX}/api/health", ok_below=300),
            env=env,
            cwd=REPO,
            timeout=60,
        ).start()
        return self
