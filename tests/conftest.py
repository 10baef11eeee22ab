"""Session-scoped fixtures that start the real local data lake on free loopback ports.

The same classes `make up` uses (devstack.*) run here with port 0 / free ports and a temporary state directory;
every process is stopped by PID in the fixture's finalizer, even when a test fails.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from devstack.account_sync import register_sync_client
from devstack.hub import LocalHub, register_hub_client
from devstack.iam import DevIAM
from devstack.iam_login import code_flow_tokens, exchange
from devstack.postgres import Postgres
from devstack.procs import free_port
from devstack.rucio_daemons import RucioDaemons
from devstack.rucio_seed import seed
from devstack.rucio_server import RucioServer, iam_client
from devstack.settings import Settings

TEST_REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the scripted login stops before it
TEST_SCIM_ADMIN = "dlaas-test-scim-admin"  # changes users and group members through SCIM, as IAM administrators do


@pytest.fixture(scope="session")
def state_dir():
    # Under /tmp rather than pytest's 0700 tmp dir: PostgreSQL runs as its own user and must reach its files.
    path = Path(tempfile.mkdtemp(prefix="dlaas-it-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    for token_dir in Path("/dev/shm").glob(f"dlaas-{path.name}-*"):  # the user servers' token directories
        shutil.rmtree(token_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(state_dir):
    # The hub's port is fixed up front: the IAM must know the hub's redirect URI before it starts.
    # So are XRootD's: Rucio's seed registers the origin's port and the cache's address before they start.
    return Settings(
        state_dir=state_dir,
        iam_port=0,
        rucio_port=0,
        postgres_port=0,
        hub_port=free_port(),
        xrootd_port=free_port(),
        xcache_port=free_port(),
        cric_port=0,
        registrar_port=free_port(),
    )


@pytest.fixture(scope="session")
def iam(settings):
    iam = DevIAM(settings)
    register_hub_client(iam, settings.hub_url)
    iam.add_client("dlaas-test", [TEST_REDIRECT], token_exchange=True)
    iam.add_client("dlaas-public", [TEST_REDIRECT], public=True)
    iam.add_introspecting_client(*iam_client(settings))  # Rucio introspects tokens without a scope claim
    register_sync_client(iam)  # the account sync reads IAM's SCIM API (tests/integration/test_account_sync.py)
    iam.add_client(TEST_SCIM_ADMIN, client_credentials=True, scopes=["scim:read", "scim:write"])
    iam.start()
    yield iam
    iam.stop()


@pytest.fixture(scope="session")
def postgres(settings):
    pg = Postgres(settings, port=0).start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def rucio(settings, postgres, iam):
    server = RucioServer(settings, postgres.url, iam_issuer=iam.issuer, port=0).start()
    try:
        seed(settings, server, full=False)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rucio_daemons(settings, rucio):
    daemons = RucioDaemons(settings, rucio).start()
    yield daemons
    daemons.stop()


@pytest.fixture(scope="session")
def cache_layer(settings, rucio):
    """The XRootD origin (EULAKE-1's root door) and the XCache with its sample CRIC; no periodic sync: tests run
    dlaas-xcache-origin-sync themselves."""
    from devstack.xrootd import CacheLayer

    layer = CacheLayer(settings, rucio, sync_every=None).start()
    yield layer
    layer.stop()


TEST_ADMIN_TOKEN = "dlaas-test-admin-" + uuid.uuid4().hex


def hub_test_extra() -> dict:
    """A test-only hub service that starts and stops servers (and reads their pid from the server state) and makes
    tokens for tests. It cannot read auth_state: tests read that from the hub's database (tests.hub_state). Users
    and IAM operators have the production roles (hub_plugins.hub_roles)."""
    return {
        "JupyterHub": {
            "services": [{"name": "test-admin", "api_token": TEST_ADMIN_TOKEN}],
            "load_roles": [
                {
                    "name": "test-admin",
                    "services": ["test-admin"],
                    "scopes": ["admin:servers", "admin:server_state", "list:users", "read:users", "tokens"],
                }
            ],
        }
    }


@pytest.fixture(scope="session")
def registrar(settings, rucio):
    """The registration service (dlaas-registrar), a service of the hub reached through its proxy. Started before the
    hub: JupyterHub waits at start for the services it knows to answer."""
    from devstack.registrar import LocalRegistrar

    service = LocalRegistrar(settings, rucio, hub_url=settings.hub_url).start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def hub(settings, iam, rucio, registrar):
    hub = LocalHub(settings, iam=iam, rucio_url=rucio.url, extra=hub_test_extra(), registrar=True).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def hub_admin(hub):
    """requests.Session authorised as the test-admin service, with the hub API URL as `.api`."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {TEST_ADMIN_TOKEN}"
    session.api = f"{hub.url}/hub/api"
    return session


@pytest.fixture(scope="session")
def rucio_token(iam):
    """`rucio_token(user, audience='rucio')` -> an access token exchanged from a real login of `user`."""
    cache = {}

    def get(user: str, audience: str = "rucio", scope: str = "openid profile") -> str:
        key = (user, audience, scope)
        if key not in cache:
            client = iam.client("dlaas-test")
            login = code_flow_tokens(iam, client, user, iam.user(user)["password"])
            cache[key] = exchange(iam, client, login["access_token"], audience=audience, scope=scope)["access_token"]
        return cache[key]

    return get


@pytest.fixture
def user_client(rucio, tmp_path, monkeypatch):
    """`user_client(account, token)` -> a rucio-clients Client authenticating with `token` as a bearer token file,
    the way rucio-clients in a user's server do (BEARER_TOKEN_FILE), with a private token cache."""
    from rucio.client import Client

    def make(account: str, token: str):
        token_file = tmp_path / f"token-{account}"
        token_file.write_text(token)
        token_file.chmod(0o600)
        monkeypatch.setenv("BEARER_TOKEN_FILE", str(token_file))
        monkeypatch.delenv("BEARER_TOKEN", raising=False)

        class IsolatedClient(Client):
            TOKEN_PATH_PREFIX = str(tmp_path / ".rucio_")

        return IsolatedClient(rucio_host=rucio.url, auth_host=rucio.url, account=account, auth_type="oidc")

    return make


@pytest.fixture(scope="session")
def root_client(rucio):
    """A rucio-clients Client logged in as root (userpass), for setting up and checking catalogue state."""
    return rucio.root_client()


def wait_for(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def process_environ(pid: int) -> dict:
    """The environment of a running process, as a terminal started inside it would have it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@pytest.fixture(scope="module")
def alice_env(hub, hub_admin, registrar, rucio_daemons):
    """Alice logged in with her server running: the environment of that server (its token files kept fresh by its
    token agent), for running her tools exactly as a terminal of her server does. Stopped after the module."""
    from devstack.iam_login import login

    browser = requests.Session()
    callback = login(
        browser, f"{hub.url}/hub/oauth_login", "alice", "alice-pass", stop_at=f"{hub.url}/hub/oauth_callback"
    )
    assert browser.get(callback, allow_redirects=False, timeout=30).status_code == 302
    started = hub_admin.post(f"{hub_admin.api}/users/alice/server", timeout=90)
    assert started.status_code in (201, 202) or "already running" in started.text, started.text

    def ready():
        server = hub_admin.get(f"{hub_admin.api}/users/alice", timeout=10).json()["servers"].get("")
        return server if server and server["ready"] else None

    env = process_environ(wait_for(ready, timeout=90, what="alice's server")["state"]["pid"])
    wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=30, what="alice's token files")
    yield env
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)
