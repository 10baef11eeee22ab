"""Session-scoped fixtures over ONE local data lake (devstack.stack.Stack) on free loopback ports.

The stack is made (not started) when a test first needs it, in a temporary state directory; each service fixture
grows it by the profile or part it names (`iam`: the IAM alone, `rucio`: core, `cache_layer`: cache, `hub`: the
registration service and the hub, ...), so a unit-only run starts nothing and one integration module starts only
what it uses. Everything the session started is stopped by PID at its end, even when tests fail; a test that stops
a service (an IAM outage, Rucio down) starts that same service again itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.account_sync import register_sync_client
from devstack.hub_client import hub_login, process_environ, service_session, start_server
from devstack.iam_login import code_flow_tokens, exchange
from devstack.ports import wait_for
from devstack.settings import Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_ADMIN_TOKEN, TEST_REDIRECT, TEST_SCIM_ADMIN, hub_test_extra


@pytest.fixture(scope="session")
def stack():
    """The session's local data lake, not started: the fixtures below start the parts they need."""
    with temporary_state("it") as state:
        lake = Stack(
            Settings.free_ports(state),
            full_seed=False,
            hub_options={"extra": hub_test_extra()},
            # No periodic origin sync: the XCache tests run dlaas-xcache-origin-sync themselves.
            cache_options={"sync_every": None},
            # Small Dask clusters; clusters of ended sessions found within 2 s (test_dask_gateway.py).
            dask_gateway_options={"cluster_max_workers": 2, "server_check_period": 2},
        )
        # The tests' own IAM clients, registered before the IAM first starts (it learns clients only then).
        lake.iam.add_client("dlaas-test", [TEST_REDIRECT], token_exchange=True)
        lake.iam.add_client("dlaas-public", [TEST_REDIRECT], public=True)
        register_sync_client(lake.iam)  # the account sync reads IAM's SCIM API (tests/integration/test_account_sync.py)
        lake.iam.add_client(TEST_SCIM_ADMIN, client_credentials=True, scopes=["scim:read", "scim:write"])
        with lake:
            yield lake


@pytest.fixture(scope="session")
def state_dir(stack) -> Path:
    return stack.settings.state_dir


@pytest.fixture(scope="session")
def settings(stack) -> Settings:
    return stack.settings


@pytest.fixture(scope="session")
def iam(stack):
    return stack.start("iam").iam


@pytest.fixture(scope="session")
def postgres(stack):
    return stack.start("postgres").postgres


@pytest.fixture(scope="session")
def rucio(stack):
    """The seeded Rucio server (core: IAM, PostgreSQL, Rucio)."""
    return stack.start("core").rucio


@pytest.fixture(scope="session")
def rucio_daemons(stack):
    return stack.start("daemons").daemons


@pytest.fixture(scope="session")
def cache_layer(stack):
    """The XRootD origin (EULAKE-1's root door) and the XCache with its sample CRIC."""
    return stack.start("cache").cache


@pytest.fixture(scope="session")
def registrar(stack):
    """The registration service (dlaas-registrar), a service of the hub reached through its proxy. Started before
    the hub: JupyterHub waits at start for the services it knows to answer."""
    return stack.start("registrar").registrar


@pytest.fixture(scope="session")
def hub(stack):
    """JupyterHub with the registration service, against the session's IAM and Rucio."""
    return stack.start("hub").hub


@pytest.fixture(scope="session")
def hub_admin(hub):
    """requests.Session authorised as the test-admin service, with the hub API URL as `.api`."""
    return service_session(hub, TEST_ADMIN_TOKEN)


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


@pytest.fixture(scope="module")
def alice_env(hub, hub_admin, registrar, rucio_daemons):
    """Alice logged in with her server running: the environment of that server (its token files kept fresh by its
    token agent), for running her tools exactly as a terminal of her server does. Stopped after the module."""
    _, answer = hub_login(hub, "alice", "alice-pass")
    assert answer.status_code == 302
    env = process_environ(start_server(hub_admin, "alice"))
    wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=30, what="alice's token files")
    yield env
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)
