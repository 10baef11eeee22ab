"""The local Rucio server (rucio 41.5.1 in its own venv) behind gunicorn, configured to accept dev-IAM tokens.

Configuration lives in <state>/rucio: rucio.cfg, alembic.ini, idpsecrets.json and the root password (all 0600).
The schema is built once; a second start reuses the database. Anything importing `rucio` runs in .venvs/rucio.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from devstack.procs import Process, Service, ServiceError, ensure_port_free, free_port, http_ready, kept_secret
from devstack.settings import REPO, RUCIO_PYTHON, Settings
from singleuser.token_files import write_secret_file

RUCIO_VENV = RUCIO_PYTHON.parent.parent


def iam_client(settings: Settings) -> tuple[str, str]:
    """The client Rucio authenticates as towards the IAM (idpsecrets.json): it introspects scope-less tokens."""
    return "rucio", kept_secret(settings.state_dir / "rucio" / "iam-client-secret", 24)


class RucioServer(Service):
    """Writes the server configuration, builds the schema once, and runs gunicorn on 127.0.0.1."""

    def __init__(
        self,
        settings: Settings,
        db_url: str,
        *,
        iam_issuer: str,
        port: int | None = None,
        extra_config: dict[str, dict[str, str]] | None = None,
        workers: int = 2,
    ):
        self.settings = settings
        self.db_url = db_url
        self.iam_issuer = iam_issuer
        self.port = settings.rucio_port if port is None else port
        self.extra_config = extra_config or {}
        self.workers = workers
        self.dir = settings.state_dir / "rucio"
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.dir / "rucio.cfg"

    @property
    def root_password(self) -> str:
        return kept_secret(self.dir / "root-password", 24)

    def env(self) -> dict[str, str]:
        """Environment for processes that import the Rucio server package."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "BEARER_TOKEN"))}
        env.update(RUCIO_CONFIG=str(self.config_path), RUCIO_HOME=str(self.dir), PYTHONPATH=str(REPO))
        return env

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        alembic_ini = self.dir / "alembic.ini"
        migrate_repo = next((RUCIO_VENV / "lib").glob("python3*/site-packages/rucio/db/sqla/migrate_repo"), None)
        if migrate_repo is None:
            raise ServiceError("the Rucio server is not installed in .venvs/rucio: run `make up`")
        write_secret_file(
            alembic_ini,
            f"""[alembic]
script_location = {migrate_repo}
sqlalchemy.url = {self.db_url}

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = WARN
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
""",
        )
        idp = self.dir / "idpsecrets.json"
        # Rucio needs a client entry (and a SCIM one) per accepted issuer even when it only validates tokens.
        client_id, client_secret = iam_client(self.settings)
        client = {
            "issuer": self.iam_issuer,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": [f"{self.url}/auth/oidc_token"],
        }
        write_secret_file(idp, json.dumps({self.iam_issuer: {**client, "SCIM": dict(client)}}, indent=2))
        sections: dict[str, dict[str, str]] = {
            "common": {"logdir": str(self.dir / "logs"), "loglevel": "INFO"},
            "client": {"rucio_host": self.url, "auth_host": self.url},
            "database": {
                "default": self.db_url,
                "pool_size": "10",
                "max_overflow": "20",
                "pool_recycle": "3600",
                "echo": "0",
                "pool_reset_on_return": "rollback",
            },
            "bootstrap": {
                "userpass_identity": "root",
                "userpass_pwd": self.root_password,
                "userpass_email": "root@dlaas.invalid",
            },
            "alembic": {"cfg": str(alembic_ini)},
            # The DLaaS policy package: only the registration service registers replicas on the scratch RSE.
            "policy": {
                "package": "dlaas_rucio_policy",
                "permission": "generic",
                "schema": "generic",
                "lfn2pfn_algorithm_default": "hash",
                "support": "https://github.com/escape-dlaas",
                "support_rucio": "https://rucio.cern.ch",
            },
            "oidc": {
                "idpsecrets": str(idp),
                "admin_issuer": self.iam_issuer,
                "expected_audience": "rucio",
                "expected_scope": "openid profile",
            },
            "api": {"endpoints": ""},
            "conveyor": {"scheme": "file,posix,root", "transfertool": "devcopy", "use_preparer": "False"},
            "monitor": {"enable_metrics": "False"},
            "messaging-hermes": {"email_from": "rucio@dlaas.invalid"},
        }
        for section, values in self.extra_config.items():
            sections.setdefault(section, {}).update(values)
        text = "".join(
            f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v != "") + "\n"
            for name, values in sections.items()
        )
        write_secret_file(self.config_path, text)

    def bootstrap_database(self) -> None:
        result = subprocess.run(
            [str(RUCIO_PYTHON), "-m", "devstack.rucio_bootstrap"],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ServiceError(f"building the Rucio database failed: {last}")

    def start(self) -> RucioServer:
        if not RUCIO_PYTHON.exists():
            raise ServiceError("the Rucio server venv .venvs/rucio is missing: run `make up`")
        if self.port == 0:
            self.port = free_port()
        ensure_port_free("127.0.0.1", self.port, "Rucio server", "DLAAS_RUCIO_PORT")
        self.write_config()
        self.bootstrap_database()
        self.process = Process(
            "rucio-server",
            [
                str(RUCIO_VENV / "bin" / "gunicorn"),
                "--no-control-socket",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
                "rucio.web.rest.flaskapi.v1.main:application",
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=http_ready(f"{self.url}/ping"),
            env=self.env(),
            cwd=self.dir,
            timeout=60,
        ).start()
        return self

    def root_client(self):
        """A rucio-clients Client (main venv) logged in as root, its token cache inside the state directory."""
        from rucio.client import Client

        class StateDirClient(Client):
            # The default cache (/tmp/.rucio_<user>) would hand tokens of another server instance around.
            TOKEN_PATH_PREFIX = str(self.dir / "client-tokens" / ".rucio_")

        return StateDirClient(
            rucio_host=self.url,
            auth_host=self.url,
            account="root",
            auth_type="userpass",
            creds={"username": "root", "password": self.root_password},
        )

    def client_config(
        self,
        path: Path,
        *,
        account: str,
        auth_type: str = "oidc",
        token_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> Path:
        """A rucio.cfg for rucio-clients (in .venvs/main) talking to this server."""
        lines = [
            "[client]",
            f"rucio_host = {self.url}",
            f"auth_host = {self.url}",
            f"auth_type = {auth_type}",
            f"account = {account}",
            "request_retries = 2",
        ]
        if auth_type == "userpass":
            lines += [f"username = {username or 'root'}", f"password = {password or self.root_password}"]
        if token_file is not None:
            lines += [f"auth_token_file_path = {token_file}"]
        write_secret_file(path, "\n".join(lines) + "\n")
        return path
