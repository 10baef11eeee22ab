"""The user's Data Lake tokens on the workers of her Dask clusters, as files, the way her server has them.

A Dask worker reads the lake as the user: rucio-clients with a bearer token file, XRootD through the site's cache,
EOS with its token file. Workers get what the server's token agent wrote - the short-lived Rucio and EOS access
tokens - and nothing else: never the IAM refresh token (only the hub has it) and never a hub API token (the worker
has no business with the hub). They travel inside a Dask worker plugin (`DataLakeTokens`) that the user's own
client registers with the cluster's scheduler over the cluster's TLS connection; the scheduler keeps it in memory
and gives it to every worker, including workers that join later. Registering it again under the same name (what
singleuser.dask_token_push does after each renewal) replaces it on every worker.

On a worker, `setup` writes the files atomically, 0600, into a private directory of its own inside the token
directory the user's server uses (memory-backed: /dev/shm locally, the tokens emptyDir on Kubernetes), writes a
rucio.cfg for the user's account there, and points the worker's environment at them with the variables the server
has (singleuser.contract: the token files, rucio.cfg, the site; paths and names, never tokens). A file whose token
has expired is removed by the worker itself, so a worker whose user stopped renewing (logged out, server gone)
keeps no live token; when the worker closes, the directory goes.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from singleuser import contract
from singleuser.private_dirs import ensure_private_dir
from singleuser.rucio_cfg import client_section
from singleuser.token_files import remove_private_file, write_private_file

PLUGIN_NAME = "dlaas-data-lake-tokens"
#: What the one-line refusal of an unsafe worker token directory tells the user to do.
WORKER_DIR_HINT = f"the worker's token directory sits in {contract.TOKEN_DIR.name}: use a directory of yours there"
#: The token files a worker may hold (named as in the user's server).
TOKEN_FILES = {"rucio_token", "eos_token"}
#: Seconds between two checks of a worker for tokens that have expired.
EXPIRY_CHECK_PERIOD = 2.0


class DataLakeTokens(WorkerPlugin):
    """The user's token files and Rucio settings for the workers of one cluster.

    `files` maps a file name to (content, expires_at); `environ` names what the worker's processes should know
    (the site, the Rucio account), `rucio` the [client] options of rucio.cfg. Build it in the user's server with
    `from_server()`."""

    name = PLUGIN_NAME
    idempotent = False  # a renewal must replace the plugin on every worker

    def __init__(self, *, base_dir: str, files: dict[str, tuple[str, float]], rucio: dict, environ: dict[str, str]):
        self.base_dir = base_dir
        self.files = dict(files)
        self.rucio = dict(rucio)
        self.environ = dict(environ)
        self.dir: Path | None = None
        self._callback = None

    def __repr__(self) -> str:  # never the tokens, whatever prints the plugin
        return f"DataLakeTokens(files={sorted(self.files)}, base_dir={self.base_dir!r})"

    # --- on the worker --------------------------------------------------------------------------------------------

    def worker_dir(self) -> Path:
        return Path(self.base_dir) / f"dask-worker-{os.getpid()}"

    def setup(self, worker) -> None:
        self.dir = ensure_private_dir(self.worker_dir(), WORKER_DIR_HINT)
        for name, (content, _expires_at) in self.files.items():
            write_private_file(self.dir / name, content, hint=WORKER_DIR_HINT)
        for name in TOKEN_FILES - set(self.files):  # the server has none any more (logged out): neither do we
            remove_private_file(self.dir / name, hint=WORKER_DIR_HINT)
        self.remove_expired()
        environ = dict(self.environ)
        if self.rucio:
            cache = self.dir / ".rucio-cli-cache"
            write_private_file(
                self.dir / "rucio.cfg",
                client_section(**self.rucio, auth_token_file_path=str(cache)),
                hint=WORKER_DIR_HINT,
            )
            environ[contract.CLIENT_CONFIG.name] = str(self.dir / "rucio.cfg")
        if "rucio_token" in self.files:
            environ[contract.RUCIO_TOKEN_FILE.name] = str(self.dir / "rucio_token")
        if "eos_token" in self.files:
            environ[contract.EOS_TOKEN_FILE.name] = f"FILE:{self.dir / 'eos_token'}"
        os.environ.update(environ)  # tasks run in this process: rucio-clients, XRootD and EOS read these names
        from tornado.ioloop import PeriodicCallback

        self._callback = PeriodicCallback(self.remove_expired, EXPIRY_CHECK_PERIOD * 1000)
        self._callback.start()

    def remove_expired(self, now: float | None = None) -> list[str]:
        """Remove the files whose token has expired (or expires within a second); returns their names."""
        now = time.time() if now is None else now
        gone = []
        for name, (_content, expires_at) in list(self.files.items()):
            if expires_at <= now + 1.0 and self.dir is not None:
                remove_private_file(self.dir / name, hint=WORKER_DIR_HINT)
                gone.append(name)
        return gone

    def teardown(self, worker) -> None:
        if self._callback is not None:
            self._callback.stop()
        if self.dir is None:
            return
        if getattr(worker, "status", None) is not None and worker.status.name in ("running", "paused"):
            # Replaced by a renewal (its setup has rewritten the files by the time this runs) or unregistered.
            worker.loop.add_callback(self._remove_unless_replaced, worker)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)  # the worker closes: its tokens go with it

    def _remove_unless_replaced(self, worker) -> None:
        if not isinstance(worker.plugins.get(self.name), DataLakeTokens):
            shutil.rmtree(self.dir, ignore_errors=True)


def token_expiry(token: str) -> float:
    """The `exp` of a JWT access token, read without verifying it (the token was verified by the hub)."""
    from singleuser.token_claims import unverified_exp

    exp = unverified_exp(token)
    return 0.0 if exp is None else exp  # unknown: treated as expired, never kept


def from_server(settings=None) -> DataLakeTokens:
    """The plugin for the current token files of this user's server (singleuser.server_settings)."""
    from singleuser.server_settings import ServerSettings

    settings = settings or ServerSettings()
    files: dict[str, tuple[str, float]] = {}
    rucio_file = Path(settings.rucio_token_file) if settings.rucio_token_file else None
    if rucio_file is not None and rucio_file.is_file():
        token = rucio_file.read_text()
        files["rucio_token"] = (token, token_expiry(token))
    eos_file = Path(settings.eos_token_file) if settings.eos_token_file else None
    if eos_file is not None and eos_file.is_file():
        line = eos_file.read_text()
        files["eos_token"] = (line, token_expiry(line.split(":")[1] if line.count(":") >= 2 else ""))
    rucio = {}
    if settings.rucio_base_url:
        rucio = {
            "rucio_host": settings.rucio_base_url,
            "auth_host": settings.rucio_auth_url,
            "auth_type": "oidc",
            "account": settings.rucio_account,
            "ca_cert": settings.rucio_ca_cert or None,
        }
    environ = {
        var.name: value
        for var, value in (
            (contract.CLIENT_SITE, settings.rucio_site_name),
            (contract.ACCOUNT, settings.rucio_account),
            (contract.AUTH_TYPE, contract.AUTH_TYPE.default),
        )
        if value
    }
    base = settings.token_dir or (str(rucio_file.parent) if rucio_file else "/dev/shm")
    return DataLakeTokens(base_dir=base, files=files, rucio=rucio, environ=environ)


def introduce_to_rucio(log=None) -> None:
    """Show this server's Rucio token to Rucio once before workers use it: Rucio records a token the first time it
    sees it, and of several workers presenting a new token at the same moment one was refused (401)."""
    from rucio.client import Client

    try:
        Client().whoami()  # with the server's token file, which the plugin is built from
    except Exception as e:
        if log is not None:
            log.warning("Rucio did not accept the token yet (%s)", type(e).__name__)


def fingerprint(plugin: DataLakeTokens) -> tuple:
    """What changes when the plugin must be sent again (new tokens, other settings)."""
    return (
        tuple(sorted(plugin.files.items())),
        tuple(sorted(plugin.rucio.items())),
        tuple(sorted(plugin.environ.items())),
    )
