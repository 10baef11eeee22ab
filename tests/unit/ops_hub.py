"""An in-process hub (hub_app.InProcessHub) with an operator: `olga`, in escape/admins (role dlaas-operator); `carol`
is in no allowed group. Fixtures `idp` and `hub` for the metrics and status page tests."""

import asyncio
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from .conftest import FakeIdP
from .hub_app import InProcessHub


@pytest.fixture(name="idp")
def operator_idp():
    return FakeIdP(
        users={"alice": "sub-alice", "bob": "sub-bob", "carol": "sub-carol", "olga": "sub-olga"},
        groups={
            "alice": ["escape/users"],
            "bob": ["escape/users"],
            "carol": ["escape/guests"],
            "olga": ["escape/users", "escape/admins"],
        },
    )


@pytest.fixture(name="hub")
def operator_hub(crypt_key, idp, tmp_path):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    hub = loop.run_until_complete(
        InProcessHub(tmp_path, idp, refresh_margin=60, refresh_backoff=30, operator_groups={"escape/admins"}).start()
    )
    hub.run = loop.run_until_complete
    yield hub
    loop.run_until_complete(hub.stop())
    loop.close()
    asyncio.set_event_loop(None)


def callback(hub, code):
    """The OAuth callback of a login whose authorization code is `code` (the FakeIdP's codes are usernames)."""
    browser = requests.Session()
    start = hub.run(hub.http("get", "/hub/oauth_login", browser))
    state = parse_qs(urlparse(start.headers["Location"]).query)["state"][0]
    return hub.run(hub.http("get", f"/hub/oauth_callback?code={code}&state={state}", browser))


def expire_soon(hub, username="alice", seconds=10):
    user = hub.user(username)
    state = hub.run(user.get_auth_state())
    for token in state["exchanged"].values():
        token["expires_at"] = time.time() + seconds
    hub.run(user.save_auth_state(state))
