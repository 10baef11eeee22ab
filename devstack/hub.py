"""Run JupyterHub for the local data lake: the `escape-iam` authenticator against the dev IAM, the token API,
and a local process spawner starting JupyterLab from .venvs/singleuser.

Hub secrets (cookie secret, JUPYTERHUB_CRYPT_KEY, the IAM client secret) are generated into <state>/hub with
mode 0600; the crypt key reaches the hub through its environment, as JupyterHub expects. They are the hub's own
secrets: no user token is ever put in an environment variable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from devstack.registrar import PREFIX as REGISTRAR_PREFIX
from devstack.registrar import hub_service as registrar_service
from devstack.procs import Process, Service, ServiceError, ensure_port_free, free_port, http_ready, kept_secret
from singleuser.token_files import write_secret_file
from devstack.settings import MAIN_PYTHON, NODE_MODULES, REPO, VENVS, Settings

CONFIG_FILE = REPO / "devstack" / "jupyterhub_config.py"
SINGLEUSER = VENVS / "singleuser" / "bin" / "jupyterhub-singleuser"
ROOT_KERNELS = VENVS / "kernel-root" / "share" / "jupyter"

PROFILES = [
    {"slug": "base", "display_name": "Data Lake (Python)",
     "description": "JupyterLab with the Rucio extension, rucio-clients and datalakectl.",
     "default_kernel": "python3"},
    {"slug": "root", "display_name": "ROOT files (uproot, awkward)",
     "description": "Everything in Data Lake (Python), plus a kernel that reads ROOT files with uproot and awkward.",
     "default_kernel": "dlaas-root", "jupyter_path": str(ROOT_KERNELS)},
]
HUB_CLIENT_ID = "dlaas-hub"


def register_hub_client(iam, hub_url: str) -> dict:
    """Register the hub as a confidential client of the dev IAM (before the IAM starts)."""
    return iam.add_client(HUB_CLIENT_ID, [f"{hub_url}/hub/oauth_callback"], token_exchange=True)


class LocalHub(Service):
    stop_timeout = 20.0

    def __init__(self, settings: Settings, *, iam, rucio_url: str = "", port: int | None = None,
                 refresh_margin: int = 300, auth_refresh_age: int = 60, extra: dict | None = None,
                 registrar: bool = False):
        self.settings = settings
        # Whether the registration service runs beside this hub: JupyterHub waits up to 30 s at start for every
        # service it knows, so it is announced only when it is there.
        self.registrar = registrar
        self.iam = iam
        self.rucio_url = rucio_url
        self.port = settings.hub_port if port is None else port
        self.refresh_margin = refresh_margin
        self.auth_refresh_age = auth_refresh_age
        self.extra = extra or {}
        self.dir = settings.state_dir / "hub"
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHub:
        if self.port == 0:
            raise ServiceError("LocalHub needs its port before the IAM starts (the redirect URI names it)")
        ensure_port_free("127.0.0.1", self.port, "JupyterHub", "DLAAS_HUB_PORT")
        chp = NODE_MODULES / ".bin" / "configurable-http-proxy"
        if not chp.exists():
            raise ServiceError("configurable-http-proxy is not installed: run `make up`")
        client = self.iam.client(HUB_CLIENT_ID)
        from devstack.rucio_seed import REPLICA_RSE, SCRATCH_RSE, SITE, rse_dir

        mount = rse_dir(self.settings, REPLICA_RSE)
        settings = {
            "bind_url": self.url,
            "public_url": self.url,
            "hub_bind_url": f"http://127.0.0.1:{free_port()}",
            "proxy_api_url": f"http://127.0.0.1:{free_port()}",
            "proxy_command": str(chp),
            "db_url": f"sqlite:///{self.dir / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(self.dir / "cookie_secret"),
            "issuer": self.iam.issuer,
            "token_profile": self.iam.profile,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "refresh_margin": self.refresh_margin,
            "auth_refresh_age": self.auth_refresh_age,
            "home_dir_template": str(self.dir / "homes" / "{username}"),
            "token_dir_template": "/dev/shm/dlaas-" + self.settings.state_dir.name + "-{username}",
            "singleuser_command": str(SINGLEUSER),
            "singleuser_args": ["--allow-root"] if os.geteuid() == 0 else [],
            "jupyter_config_path": str(REPO / "singleuser" / "jupyter_config"),
            "profiles": PROFILES,
            "icon_font": str(NODE_MODULES / "material-icons" / "iconfont" / "material-icons.woff2"),
            "rucio_config_path": str(self.dir / "homes" / "{username}" / ".rucio" / "rucio.cfg"),
            "rucio_cache_dir": str(self.dir / "homes" / "{username}" / ".cache" / "rucio-jupyterlab"),
            "rucio_url": self.rucio_url,
            "site_name": SITE,
            "destination_rse": REPLICA_RSE,
            "rse_mount_path": str(mount),
            "path_begins_at": len(mount.parts) - 1,
            # Each user's server sees only its own scratch directory (the registration service relies on it).
            "scratch_mount": str(rse_dir(self.settings, SCRATCH_RSE)) + "/{username}",
            "registrar_url": f"{self.url}{REGISTRAR_PREFIX}",
            "scratch_rse": SCRATCH_RSE,
            **self.extra,
        }
        settings["services"] = [*([registrar_service(self.settings)] if self.registrar else []),
                                *self.extra.get("services", [])]
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept_secret(self.dir / "cookie_secret")
        settings_file = self.dir / "hub-settings.json"
        write_secret_file(settings_file, json.dumps(settings, indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "RUCIO_", "BEARER_TOKEN"))}
        env.update(
            DLAAS_HUB_SETTINGS=str(settings_file),
            JUPYTERHUB_CRYPT_KEY=kept_secret(self.dir / "crypt_key"),
            CONFIGPROXY_AUTH_TOKEN=kept_secret(self.dir / "proxy_token"),
            PATH=f"{Path(MAIN_PYTHON).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        )
        self.process = Process(
            "jupyterhub",
            [str(MAIN_PYTHON), "-m", "jupyterhub", "-f", str(CONFIG_FILE)],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=http_ready(f"{self.url}/hub/health", ok_below=300),
            env=env,
            cwd=self.dir,
            timeout=60,
        ).start()
        return self

