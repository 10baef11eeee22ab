"""Run JupyterHub for the local data lake: the production hub glue (hub_plugins.hub_config) with the `escape-iam`
authenticator against the dev IAM, and a local process spawner starting JupyterLab from .venvs/singleuser.

LocalHub writes its own settings as traitlets configuration, keyed by class and trait name as in any JupyterHub
configuration, into <state>/hub/hub-settings.json; devstack/jupyterhub_config.py loads it and applies
hub_plugins.hub_config.configure over it, as the z2jh values do over theirs.

The hub's proxy (configurable-http-proxy) runs as a service of its own, as z2jh's proxy pod does, and user servers run
in sessions of their own with `cleanup_servers` off: a hub that restarts (killed, upgraded, stopped for a while)
leaves the users' servers running and reachable through the proxy, and finds them again from its database (the
spawner's pid and start time, devstack.local_spawner). The servers' pidfiles are in <state>/run, so `stop()` and
`make down` still stop them, by PID, after the hub.

Hub secrets (cookie secret, JUPYTERHUB_CRYPT_KEY, the IAM client secret) are generated into <state>/hub with
mode 0600; the crypt key reaches the hub through its environment, as JupyterHub expects. They are the hub's own
secrets: no user token is ever put in an environment variable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from devstack import dask_gateway
from devstack.account_sync import onboard_command
from devstack.ports import ensure_port_free, free_port, http_ready, tcp_ready
from devstack.procs import Process, stop_pidfile
from devstack.prometheus import scrape_service
from devstack.registrar import PREFIX as REGISTRAR_PREFIX
from devstack.registrar import hub_service as registrar_service
from devstack.service import Service, ServiceError
from devstack.settings import MAIN_PYTHON, NODE_MODULES, REPO, VENVS, Settings
from dlaas_fs.atomic import write_secret_file
from dlaas_fs.secret_files import kept_secret

CONFIG_FILE = REPO / "devstack" / "jupyterhub_config.py"
SINGLEUSER = VENVS / "singleuser" / "bin" / "dlaas-singleuser"  # singleuser.lean_start
ROOT_KERNELS = VENVS / "kernel-root" / "share" / "jupyter"

PROFILES = [
    {
        "slug": "base",
        "display_name": "Data Lake (Python)",
        "description": "JupyterLab with the Rucio extension, rucio-clients and datalakectl.",
        "default_kernel": "python3",
    },
    {
        "slug": "root",
        "display_name": "ROOT (PyROOT, C++, uproot)",
        "description": "Everything in Data Lake (Python), plus ROOT 6.40: a Python kernel with PyROOT, uproot and "
        "awkward, the ROOT C++ kernel, and demo notebooks in ~/examples.",
        "default_kernel": "dlaas-root",
        "jupyter_path": str(ROOT_KERNELS),
    },
]
HUB_CLIENT_ID = "dlaas-hub"


def token_dir_template(state_dir: Path) -> str:
    """Where a local user's server keeps its token files: a private directory per user in /dev/shm (memory only),
    named after the stack's state directory so that two stacks on one machine never share one."""
    return f"/dev/shm/dlaas-{Path(state_dir).name}-{{username}}"


def token_dirs(state_dir: Path) -> list[Path]:
    """The token directories the user servers of the stack in `state_dir` made (to remove with the stack)."""
    return sorted(Path("/dev/shm").glob(token_dir_template(state_dir).format(username="*").removeprefix("/dev/shm/")))


def register_hub_client(iam, hub_url: str) -> dict:
    """Register the hub as a confidential client of the dev IAM (before the IAM starts)."""
    return iam.add_client(HUB_CLIENT_ID, [f"{hub_url}/hub/oauth_callback"], token_exchange=True)


class LocalHub(Service):
    stop_timeout = 20.0

    def __init__(
        self,
        settings: Settings,
        *,
        iam,
        rucio_url: str = "",
        port: int | None = None,
        refresh_margin: int = 300,
        auth_refresh_age: int = 60,
        extra: dict | None = None,
        registrar: bool = False,
        dask_gateway: bool = False,
        sqlite_wal: bool = True,
        pure_python_http: bool = False,
    ):
        self.settings = settings
        # Whether the registration service runs beside this hub: JupyterHub waits up to 30 s at start for every
        # service it knows, so it is announced only when it is there.
        self.registrar = registrar
        self.dask_gateway = dask_gateway  # the same for Dask Gateway (devstack.dask_gateway)
        self.iam = iam
        self.rucio_url = rucio_url
        self.port = settings.hub_port if port is None else port
        self.refresh_margin = refresh_margin
        self.auth_refresh_age = auth_refresh_age
        # Traitlets configuration (class -> trait -> value) merged over this hub's own, e.g. a test's services and
        # roles ({"JupyterHub": {"services": [...], "load_roles": [...]}}, services added to the registrar's) or
        # {"EscapeIAMAuthenticator": {"refresh_backoff": 2}}.
        self.extra = extra or {}
        # Benchmarks' baseline only: SQLite's rollback journal, and tornado's pure-Python HTTP client (pycurl hidden).
        self.sqlite_wal = sqlite_wal
        self.pure_python_http = pure_python_http
        self.dir = settings.state_dir / "hub"
        self.process: Process | None = None
        self.proxy_process: Process | None = None
        self.proxy_api_port = self.hub_api_port = 0  # chosen by start(), kept across restarts of the processes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        """This hub's traitlets configuration, keyed by class and trait name: what the local stack sets beside the
        production glue (hub_plugins.hub_config.configure, applied over it by devstack/jupyterhub_config.py) - the
        local process spawner, loopback addresses, secrets' files, the dev IAM client and groups, local paths."""
        from devstack.rucio_seed import REPLICA_RSE, SCRATCH_RSE, SITE, rse_dir

        client = self.iam.client(HUB_CLIENT_ID)
        mount = rse_dir(self.settings, REPLICA_RSE)
        homes = self.dir / "homes"
        # Each user's server sees only its own scratch directory (the registration service relies on it).
        scratch = str(rse_dir(self.settings, SCRATCH_RSE)) + "/{username}"
        own = {
            "JupyterHub": {
                "bind_url": self.url,
                "hub_bind_url": f"http://127.0.0.1:{self.hub_api_port or free_port()}",
                "db_url": f"sqlite:///{self.dir / 'jupyterhub.sqlite'}",
                "cookie_secret_file": str(self.dir / "cookie_secret"),
                # Users' servers outlive the hub (a restart or an upgrade must not stop them): it reconnects.
                "cleanup_servers": False,
                "spawner_class": "devstack.local_spawner.ProfilesLocalProcessSpawner",
            },
            # The proxy is a service of its own (start()): the hub only talks to its API.
            "ConfigurableHTTPProxy": {
                "api_url": f"http://127.0.0.1:{self.proxy_api_port or free_port()}",
                "should_start": False,
            },
            "Authenticator": {"auth_refresh_age": self.auth_refresh_age},
            # The XCache exporter's port is fixed before the cache starts: the status page shows the hit ratio once
            # the cache runs, and says it cannot reach the exporter before.
            "StatusPage": {"cache_metrics_url": f"http://127.0.0.1:{self.settings.xcache_metrics_port}/metrics"},
            "EscapeIAMAuthenticator": {
                # Known before the IAM first starts when its port is fixed: a hub may start while the IAM is down.
                "issuer": self.iam.issuer or self.settings.iam_issuer,
                "token_profile": self.iam.profile,  # the dev IAM's: groups or wlcg.groups
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
                "oauth_callback_url": f"{self.url}/hub/oauth_callback",
                "allowed_groups": ["escape/users"],
                # IAM admins operate the hub (role dlaas-operator), without becoming JupyterHub admins.
                "operator_groups": ["escape/admins"],
                "exchange_targets": {
                    "rucio": {"audience": "rucio", "scope": "openid profile"},
                    "eos": {"audience": "eos", "scope": "openid profile"},
                },
                "refresh_margin": self.refresh_margin,
                # A member's first login runs the account sync for her (devstack.account_sync), with Rucio behind.
                "onboard_command": onboard_command(self.settings, self.iam) if self.rucio_url else [],
            },
            "Spawner": {
                "cmd": [str(SINGLEUSER)],
                "args": ["--allow-root"] if os.geteuid() == 0 else [],
                "start_timeout": 60,
            },
            "SimpleLocalProcessSpawner": {"home_dir_template": str(homes / "{username}")},
            "ProfilesLocalProcessSpawner": {
                "profiles": PROFILES,
                "scratch_dir_template": scratch,
                "pidfile_dir": str(self.settings.run_dir),
                "bin_dirs": [str(VENVS / "singleuser" / "lib" / "dlaas" / "bin")],  # `rucio`: singleuser.rucio_cli
                "public_hub_url": f"{self.url}/hub/",
            },
            "DataLakeEnvironment": {
                "token_dir": token_dir_template(self.settings.state_dir),
                "rucio_base_url": self.rucio_url,
                "rucio_site_name": SITE,
                "mounted_rse": REPLICA_RSE,
                "rucio_rse_mount_path": str(mount),
                "rucio_path_begins_at": len(mount.parts) - 1,
                "jupyter_config_path": str(REPO / "singleuser" / "jupyter_config"),
                "icon_font": str(NODE_MODULES / "material-icons" / "iconfont" / "material-icons.woff2"),
                "rucio_config_path": str(homes / "{username}" / ".rucio" / "rucio.cfg"),
                "rucio_cache_dir": str(homes / "{username}" / ".cache" / "rucio-jupyterlab"),
                "scratch_mount": scratch,
                "scratch_rse": SCRATCH_RSE,
                "registrar_url": f"{self.url}{REGISTRAR_PREFIX}",
            },
        }
        config = _merged(own, self.extra)
        config["JupyterHub"]["services"] = [
            *([registrar_service(self.settings)] if self.registrar else []),
            *([dask_gateway.hub_service(self.settings)] if self.dask_gateway else []),
            scrape_service(self.settings),  # the local Prometheus' token; hub_roles gives it read:metrics
            *self.extra.get("JupyterHub", {}).get("services", []),
        ]
        config["JupyterHub"]["load_roles"] = list(config["JupyterHub"].get("load_roles", []))
        if self.dask_gateway:  # its role (read:servers) comes from hub_plugins.hub_roles, as in production
            address, proxy_address = dask_gateway.client_addresses(self.settings)
            config["DataLakeEnvironment"].update(dask_gateway_address=address, dask_gateway_proxy_address=proxy_address)
        return config

    def start(self) -> LocalHub:
        if self.port == 0:
            raise ServiceError("LocalHub needs its port before the IAM starts (the redirect URI names it)")
        ensure_port_free("127.0.0.1", self.port, "JupyterHub", "DLAAS_HUB_PORT")
        if not (NODE_MODULES / ".bin" / "configurable-http-proxy").exists():
            raise ServiceError("configurable-http-proxy is not installed: run `make up`")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept_secret(self.dir / "cookie_secret")
        self.proxy_api_port, self.hub_api_port = free_port(), free_port()
        settings_file = self.dir / "hub-settings.json"
        write_secret_file(
            settings_file,
            json.dumps(
                {"config": self.config(), "sqlite_wal": self.sqlite_wal, "pure_python_http": self.pure_python_http},
                indent=2,
            ),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "RUCIO_", "BEARER_TOKEN"))}
        env.update(
            DLAAS_HUB_SETTINGS=str(settings_file),
            JUPYTERHUB_CRYPT_KEY=kept_secret(self.dir / "crypt_key"),
            CONFIGPROXY_AUTH_TOKEN=kept_secret(self.dir / "proxy_token"),
            PATH=f"{Path(MAIN_PYTHON).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        )
        self.proxy_process = Process(
            "jupyterhub-proxy",
            [
                str(NODE_MODULES / ".bin" / "configurable-http-proxy"),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                str(self.proxy_api_port),
                "--error-target",
                f"http://127.0.0.1:{self.hub_api_port}/hub/error",
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=tcp_ready("127.0.0.1", self.proxy_api_port),
            env={k: env[k] for k in ("PATH", "CONFIGPROXY_AUTH_TOKEN")},
            cwd=self.dir,
            timeout=30,
        ).start()
        try:
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
        except BaseException:
            self.proxy_process.stop()
            self.proxy_process = None
            raise
        return self

    def alive(self) -> bool:
        return super().alive() and self.proxy_process is not None and self.proxy_process.alive()

    def server_pidfiles(self) -> list[Path]:
        """The pidfiles of the users' servers this hub started (devstack.local_spawner writes them)."""
        return sorted(self.settings.run_dir.glob("user-*.pid"))

    def stop(self) -> None:
        """The hub, then its users' servers (they outlive a hub restart, not the stack), then the proxy; by PID."""
        super().stop()
        for pidfile in self.server_pidfiles():
            stop_pidfile(pidfile)
        if self.proxy_process is not None:
            self.proxy_process.stop(timeout=self.stop_timeout)
            self.proxy_process = None


def _merged(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base`: dicts key by key, anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (
            _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        )
    return merged
