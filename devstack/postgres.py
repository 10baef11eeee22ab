"""A private PostgreSQL 15 cluster for the local Rucio server, under the state directory.

PostgreSQL refuses to run as root: as root, the cluster is owned by and run as the `postgres` system user (which
the Debian package creates). It listens on 127.0.0.1 only. Any local account can reach that port, and the
superuser can run commands (`COPY ... TO PROGRAM`), so TCP connections need a generated password (scram-sha-256,
kept 0600 in the state directory; Rucio's URL carries it). The Unix socket sits in a 0700 directory and admits the
cluster's own OS user only (peer), for the set-up done here. pg_hba.conf is rewritten and the password set on every
start, which also locks a cluster made by an older version with `initdb -A trust`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from devstack.ports import ensure_port_free, free_port
from devstack.procs import Process
from devstack.service import Service, ServiceError
from devstack.settings import Settings
from dlaas_fs.atomic import write_secret_file
from dlaas_fs.secret_files import kept_secret

PG_BIN = Path(os.environ.get("DLAAS_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "rucio"
HBA = """# Written by devstack/postgres.py on every start: edits here are lost.
# Unix socket (0700 directory): the cluster's own OS user only. TCP: 127.0.0.1 with the generated password only.
local   all   all                 peer
host    all   all   127.0.0.1/32  scram-sha-256
"""


class Postgres(Service):
    stop_timeout = 20.0

    def __init__(self, settings: Settings, port: int | None = None):
        self.settings = settings
        self.port = settings.postgres_port if port is None else port
        self.root = settings.state_dir / "postgres"
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.password_file = self.root / "password"
        self.user = "postgres" if os.geteuid() == 0 else None
        self.process: Process | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL for Rucio, with the password: keep it in 0600 files only."""
        return f"postgresql+psycopg://{self._role}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def password(self) -> str:
        return kept_secret(self.password_file, 24)  # hex: nothing to escape in a URL or in SQL

    @property
    def _role(self) -> str:
        return self.user or pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)

    def _check_binaries(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise ServiceError(
                f"PostgreSQL 15 not found in {PG_BIN}: run `make up` (installs the Debian package postgresql)"
            )

    def _init_cluster(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            # The postgres user must be able to reach its directory through the state directory's parents.
            for parent in [self.root, *self.root.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise ServiceError(
                        f"{parent} is not searchable by the postgres user: `chmod o+x {parent}` or set DLAAS_STATE_DIR"
                    )
                if parent == Path("/"):
                    break
            shutil.chown(self.root, self.user, self.user)
        if not (self.data / "PG_VERSION").exists():
            result = self._run(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "--auth-local=peer",
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ]
            )
            if result.returncode != 0:
                shutil.rmtree(self.data, ignore_errors=True)
                last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
                raise ServiceError(f"initdb failed: {last}")
        hba = self.data / "pg_hba.conf"
        write_secret_file(hba, HBA)
        if self.user:
            shutil.chown(hba, self.user, self.user)

    def start(self) -> Postgres:
        self._check_binaries()
        if self.port == 0:
            self.port = free_port()
        ensure_port_free("127.0.0.1", self.port, "PostgreSQL", "DLAAS_POSTGRES_PORT")
        self._init_cluster()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self.socket_dir.chmod(0o700)
        if self.user:
            shutil.chown(self.socket_dir, self.user, self.user)
        self.process = Process(
            "postgres",
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=self._ready,
            timeout=30,
            user=self.user,
            stop_signal=signal.SIGINT,  # "fast" shutdown: do not wait for clients to disconnect
        ).start()
        self._psql(f"ALTER ROLE \"{self._role}\" PASSWORD '{self.password}'")  # on stdin: never in argv or a log
        self._ensure_database()
        return self

    def _ready(self) -> bool:
        result = self._run([str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)])
        return result.returncode == 0

    def _psql(self, sql: str, db: str = "postgres") -> str:
        """Run `sql` as the superuser through the private socket (peer), the statement on stdin."""
        result = self._run(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAq",
                "-f",
                "-",
            ],
            stdin=sql,
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _ensure_database(self) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            self._psql(f"CREATE DATABASE {DATABASE}")
