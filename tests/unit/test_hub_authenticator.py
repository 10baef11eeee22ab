"""EscapeIAMAuthenticator's own decisions: configuration checks, when to refresh, and never a stale token."""

import asyncio
import time

import pytest
from jupyterhub.crypto import CryptKeeper
from tornado.httpclient import HTTPClientError
from traitlets import TraitError

from hub_plugins.authenticator import EscapeIAMAuthenticator
from hub_plugins.token_exchange import ExchangeError

ENDPOINTS = {"authorize_url": "http://iam/authorize", "token_url": "http://iam/token",
             "userdata_url": "http://iam/userinfo", "issuer": "http://iam/"}


def make(**kw):
    return EscapeIAMAuthenticator(**{**ENDPOINTS, "client_id": "hub", "client_secret": "s",
                                     "allowed_groups": {"escape/users"}, **kw})


def test_refuses_to_start_without_an_auth_state_key(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    CryptKeeper.clear_instance()
    with pytest.raises(ValueError, match="JUPYTERHUB_CRYPT_KEY"):
        make()


def test_refuses_to_run_without_auth_state(crypt_key):
    with pytest.raises(ValueError, match="enable_auth_state"):
        make(enable_auth_state=False)


def test_defaults_fit_iam(crypt_key):
    auth = make()
    assert auth.enable_pkce and auth.manage_groups
    assert auth.scope == ["openid", "profile", "email", "offline_access"]
    assert auth.username_claim == "preferred_username"
    assert auth.auth_state_groups_key == "oauth_user.groups"
    assert auth.login_service == "ESCAPE IAM"


def test_bad_exchange_targets_are_refused_at_startup(crypt_key):
    with pytest.raises(TraitError, match="needs an 'audience'"):
        make(exchange_targets={"rucio": {"scope": "openid"}})


def test_negative_refresh_margin_is_refused(crypt_key):
    with pytest.raises(TraitError, match="refresh_margin"):
        make(refresh_margin=-1)


def test_needs_refresh_within_the_margin_or_when_a_target_is_missing(crypt_key):
    auth = make(exchange_targets={"rucio": {"audience": "rucio"}, "eos": {"audience": "eos"}}, refresh_margin=60)
    now = 1000.0
    fresh = {"exchanged": {"rucio": {"expires_at": now + 3600}, "eos": {"expires_at": now + 61}}}
    assert not auth.needs_refresh(fresh, now)
    assert auth.needs_refresh({"exchanged": {"rucio": {"expires_at": now + 3600}, "eos": {"expires_at": now + 60}}},
                              now)
    assert auth.needs_refresh({"exchanged": {"rucio": {"expires_at": now + 3600}}}, now)
    assert auth.needs_refresh({}, now)


class FakeUser:
    name = "alice"

    def __init__(self, state):
        self.state = state

    async def get_auth_state(self):
        return self.state


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def _state(expires_in: float, refresh_token="rt"):
    return {"refresh_token": refresh_token, "access_token": "at",
            "exchanged": {"rucio": {"expires_at": time.time() + expires_in, "access_token": "x"}}}


def test_refresh_does_nothing_while_tokens_are_fresh(crypt_key):
    auth = make(refresh_margin=60)

    async def must_not_call(*a, **k):
        raise AssertionError("the IdP was called although nothing was close to expiry")

    auth.get_token_info = must_not_call
    assert run(auth.refresh_user(FakeUser(_state(3600)))) is True


def test_refresh_renews_ahead_of_expiry(crypt_key):
    auth = make(refresh_margin=60)
    calls = []

    async def token_info(handler, params):
        calls.append(params["grant_type"])
        return {"access_token": "new-at", "expires_in": 600}

    async def to_model(token_info):
        return {"name": "alice", "admin": None, "auth_state": {"refresh_token": token_info["refresh_token"]},
                "groups": ["escape/users"]}

    auth.get_token_info, auth._token_to_auth_model = token_info, to_model
    model = run(auth.refresh_user(FakeUser(_state(30))))
    assert calls == ["refresh_token"]
    assert model["auth_state"]["refresh_token"] == "rt", "a refresh answer without a new refresh token keeps the old"


@pytest.mark.parametrize(
    "failure",
    [HTTPClientError(400), HTTPClientError(599), ExchangeError("rucio", "IdP answered 502", retryable=True),
     ConnectionRefusedError()],
)
def test_a_failed_refresh_forces_a_new_login_instead_of_a_stale_token(crypt_key, failure):
    auth = make(refresh_margin=60)

    async def token_info(handler, params):
        raise failure

    auth.get_token_info = token_info
    assert run(auth.refresh_user(FakeUser(_state(30)))) is False


def test_no_refresh_token_means_log_in_again(crypt_key):
    auth = make(refresh_margin=60)
    assert run(auth.refresh_user(FakeUser(_state(30, refresh_token=None)))) is False
    assert run(auth.refresh_user(FakeUser(None))) is False


def test_a_refresh_that_returns_another_identity_is_refused(crypt_key):
    auth = make(refresh_margin=60)

    async def token_info(handler, params):
        return {"access_token": "at", "expires_in": 600}

    async def to_model(token_info):
        return {"name": "mallory", "admin": None, "auth_state": {}}

    auth.get_token_info, auth._token_to_auth_model = token_info, to_model
    assert run(auth.refresh_user(FakeUser(_state(30)))) is False


def test_leaving_the_allowed_iam_group_ends_the_tokens_at_the_next_refresh(crypt_key):
    auth = make(refresh_margin=60)

    async def token_info(handler, params):
        return {"access_token": "at", "expires_in": 600}

    async def to_model(token_info):
        return {"name": "alice", "admin": False, "auth_state": _state(3600), "groups": ["escape/guests"]}

    auth.get_token_info, auth._token_to_auth_model = token_info, to_model
    assert run(auth.refresh_user(FakeUser(_state(30)))) is False


def test_concurrent_requests_refresh_once(crypt_key):
    auth = make(refresh_margin=60)
    user = FakeUser(_state(30))
    calls = []

    async def token_info(handler, params):
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"access_token": "at", "expires_in": 600}

    async def to_model(token_info):
        return {"name": "alice", "admin": None, "auth_state": _state(3600), "groups": ["escape/users"]}

    auth.get_token_info, auth._token_to_auth_model = token_info, to_model

    async def storm():
        return await asyncio.gather(*(auth.refresh_user(user) for _ in range(10)))

    results = run(storm())
    assert len(calls) == 1
    # Every waiter gets the same fresh model (JupyterHub has not saved it yet), groups included.
    assert all(r is results[0] for r in results) and results[0]["groups"] == ["escape/users"]
