"""Run the account sync (dlaas-rucio-sync) against the local data lake, as the chart's CronJob does in a cluster.

The dev IAM gets the sync's client (client_credentials, scope scim:read; `register_sync_client`, before the IAM
starts); the sync reaches Rucio as root (userpass, what the seed uses). Its client secret and rucio.cfg are written
into <state>/account-sync (0600): nothing secret on a command line or in an environment variable. `run_once()` runs
the real command once (tests); `start()` runs it every `every` seconds in the background until `stop()`, which ends
it by PID.

In the stack (devstack.stack.Stack): the client is registered with the hub's, `prepare()` runs after Rucio's seed,
the `sync` part (`make up`) runs it every ten minutes writing its metrics file, and the hub keeps `onboard_command`
running as its onboarding worker for members' first logins.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.procs import Process
from devstack.service import Service
from devstack.settings import MAIN_PYTHON, REPO, Settings
from dlaas_fs.atomic import write_secret_file

SYNC_CLIENT = "dlaas-account-sync"
GROUPS = ("escape/users",)


def register_sync_client(iam) -> dict:
    """The sync's IAM client, as an IAM administrator registers it: client_credentials, scim:read, nothing else."""
    from devstack.iam import SCIM_READ

    return iam.add_client(SYNC_CLIENT, client_credentials=True, scopes=[SCIM_READ])


def onboard_command(settings: Settings, iam) -> list[str]:
    """The hub's EscapeIAMAuthenticator.onboard_command: this sync as the hub's onboarding worker (the hub appends
    `--serve` and writes one IAM sub per line), with the credentials the stack prepared (AccountSync.prepare, at
    Rucio's seed); RUCIO_CONFIG names a file, no secret."""
    sync = AccountSync(settings, iam, None)
    return ["/usr/bin/env", f"RUCIO_CONFIG={sync.rucio_config}", *sync.argv()]


def default_limits() -> dict[str, int]:
    """The quota the local seed gives its users, on every RSE of the local data lake (the scratch RSE among them)."""
    from devstack.rucio_seed import ACCOUNT_LIMIT, RSES

    return dict.fromkeys(RSES, ACCOUNT_LIMIT)


class AccountSync(Service):
    def __init__(
        self,
        settings: Settings,
        iam,
        rucio,
        *,
        every: float = 600,
        groups=GROUPS,
        limits: dict[str, int] | None = None,
        max_changes: int = 10,
        metrics_file: Path | None = None,
    ):
        self.settings = settings
        self.iam = iam
        self.rucio = rucio
        self.every = every
        self.groups = tuple(groups)
        self.limits = default_limits() if limits is None else limits
        self.max_changes = max_changes
        self.metrics_file = metrics_file  # the periodic runs' metrics (devstack.prometheus reads it)
        self.dir = settings.state_dir / "account-sync"
        self.process: Process | None = None

    def prepare(self) -> None:
        """The client secret and the rucio.cfg (root, its own token file) the command reads."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_secret_file(self.secret_file, self.iam.client(SYNC_CLIENT)["client_secret"])
        self.rucio.client_config(
            self.rucio_config, account="root", auth_type="userpass", token_file=self.dir / "rucio-token"
        )

    @property
    def secret_file(self):
        return self.dir / "client-secret"

    @property
    def rucio_config(self):
        return self.dir / "rucio.cfg"

    def argv(self, *extra: str) -> list[str]:
        """The dlaas-rucio-sync command line (run as `python -m dlaas_sync`)."""
        argv = [
            str(MAIN_PYTHON),
            "-m",
            "dlaas_sync",
            "--iam-url",
            self.iam.issuer,
            "--client-id",
            SYNC_CLIENT,
            "--client-secret-file",
            str(self.secret_file),
            "--max-changes",
            str(self.max_changes),
        ]
        for group in self.groups:
            argv += ["--group", group]
        for rse, amount in sorted(self.limits.items()):
            argv += ["--limit", f"{rse}={amount}"]
        return argv + list(extra)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "BEARER_TOKEN", "DLAAS_SYNC_"))}
        env.update(RUCIO_CONFIG=str(self.rucio_config), PYTHONPATH=str(REPO))
        return env

    def run_once(self, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """One run of the real command (e.g. `run_once("--dry-run")`); stdout, stderr and exit code come back."""
        self.prepare()
        return subprocess.run(
            self.argv(*extra), env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> AccountSync:
        self.prepare()
        metrics = ("--metrics-file", str(self.metrics_file)) if self.metrics_file else ()
        self.process = Process(
            "account-sync",
            [str(MAIN_PYTHON), "-m", "devstack.account_sync", "--every", str(self.every), "--", *self.argv(*metrics)],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            env=self.env(),
            cwd=REPO,
            timeout=10,
        ).start()
        return self


def _every(seconds: float, argv: list[str]) -> int:
    """Run `argv` now and then every `seconds` (each run waited for: never two at once), until SIGTERM."""
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        started = time.monotonic()
        code = subprocess.run(argv).returncode
        print(f"account sync: exit {code}; next run in {seconds:g}s", flush=True)
        while not stopping and time.monotonic() - started < seconds:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="run a command every N seconds (the local stack's CronJob)")
    p.add_argument("--every", type=float, required=True)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args()
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.every <= 0 or not command:
        p.error("give --every SECONDS and, after --, the command")
    sys.exit(_every(args.every, command))
