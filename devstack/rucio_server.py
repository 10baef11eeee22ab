"""The local Rucio server (rucio 41.5.1 in its own venv) behind gunicorn, configured to accept dev-IAM tokens.

Configuration lives in <state>/rucio: rucio.cfg and alembic.ini (filled in from devstack/templates on every start),
idpsecrets.json and the root password (all 0600).
The schema is built once; a second start reuses the database. Anything importing `rucio` runs in .venvs/rucio.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from string import Template

from devstack.ports import ensure_port_free, free_port, http_ready
from devstack.procs import Process
from devstack.service import Service, ServiceError
from devstack.settings import REPO, RUCIO_PYTHON, TEMPLATES, Settings
from dlaas_fs.atomic import write_secret_file
from dlaas_fs.secret_files import kept_secret
from singleuser.rucio_cfg import client_section

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
        workers: int = 2,
    ):
        self.settings = settings
        self.db_url = db_url
        self.iam_issuer = iam_issuer
        self.port = settings.rucio_port if port is None else port
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
        """rucio.cfg and alembic.ini from their templates (devstack/templates), idpsecrets.json; all 0600."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        alembic_ini = self.dir / "alembic.ini"
        migrate_repo = next((RUCIO_VENV / "lib").glob("python3*/site-packages/rucio/db/sqla/migrate_repo"), None)
        if migrate_repo is None:
            raise ServiceError("the Rucio server is not installed in .venvs/rucio: run `make up`")
        write_secret_file(alembic_ini, _template("alembic.ini.in", migrate_repo=migrate_repo, db_url=self.db_url))
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
        config = _template(
            "rucio.cfg.in",
            logdir=self.dir / "logs",
            rucio_url=self.url,
            db_url=self.db_url,
            root_password=self.root_password,
            alembic_ini=alembic_ini,
            idpsecrets=idp,
            iam_issuer=self.iam_issuer,
        )
        write_secret_file(self.config_path, config)

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
        """A rucio.cfg for rucio-clients (in .venvs/main) talking to this server, 0600 (it may hold a password)."""
        if auth_type == "userpass":
            username, password = username or "root", password or self.root_password
        text = client_section(
            rucio_host=self.url,
            auth_type=auth_type,
            account=account,
            request_retries=2,
            username=username,
            password=password,
            auth_token_file_path=token_file,
        )
        write_secret_file(path, text)
        return path


def _template(name: str, **fields) -> str:
    """A configuration file from devstack/templates with its $name fields filled (every field must be given)."""
    return Template((TEMPLATES / name).read_text()).substitute({k: str(v) for k, v in fields.items()})
