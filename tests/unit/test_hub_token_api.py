"""The token API's decisions (GET /hub/api/dlaas/tokens), in a real JupyterHub (hub_app.InProcessHub) against an
IdP at the HTTP layer: who gets which tokens, and what a server hears when the user's session is over or IAM is
failing."""

import asyncio
import json
import time

import pytest

from hub_plugins.token_api import LOGGED_OUT, NOT_A_SERVER_TOKEN, SESSION_ENDED

from .hub_app import InProcessHub


@pytest.fixture
def hub(crypt_key, idp, tmp_path):
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    hub = loop.run_until_complete(InProcessHub(tmp_path, idp, refresh_margin=60, refresh_backoff=30).start())
    hub.run = loop.run_until_complete
    yield hub
    loop.run_until_complete(hub.stop())
    loop.close()
    asyncio.set_event_loop(None)


def logged_in_with_server(hub, username="alice", **spawner_traits) -> str:
    hub.run(hub.login(username))
    return hub.run(hub.spawn(username, **spawner_traits))


def message(response) -> str:
    return response.json().get("message", "")


def expire_soon(hub, username="alice", seconds=10):
    """Make the user's exchanged tokens look close to expiry (within the refresh margin)."""
    user = hub.user(username)
    state = hub.run(user.get_auth_state())
    for token in state["exchanged"].values():
        token["expires_at"] = time.time() + seconds
    hub.run(user.save_auth_state(state))


def test_alices_running_server_gets_her_exchanged_tokens_and_nothing_else(hub, idp):
    token = logged_in_with_server(hub)
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert set(body["tokens"]) == {"rucio", "eos"}
    for target, info in body["tokens"].items():
        assert set(info) <= {"access_token", "expires_at", "audience", "scope"}
        assert json.loads(_payload(info["access_token"]))["aud"] == target
        assert json.loads(_payload(info["access_token"]))["sub"] == "sub-alice"
    assert body["issuer"] == "http://iam.test/" and body["userinfo_endpoint"] == "http://iam.test/userinfo"
    state = hub.run(hub.user("alice").get_auth_state())
    for secret in (state["refresh_token"], state["access_token"]):
        assert secret not in answer.text  # never the IAM tokens


def _payload(jwt_token: str) -> str:
    import base64

    part = jwt_token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_bobs_server_gets_bobs_tokens_never_alices(hub):
    logged_in_with_server(hub, "alice")
    bob = logged_in_with_server(hub, "bob")
    body = hub.run(hub.tokens(bob)).json()
    assert {json.loads(_payload(t["access_token"]))["sub"] for t in body["tokens"].values()} == {"sub-bob"}


def test_a_personal_token_with_the_token_scope_gets_nothing(hub):
    logged_in_with_server(hub)
    personal = hub.user("alice").new_api_token(note="made on /hub/token", scopes=["custom:dlaas-tokens!user"])
    answer = hub.run(hub.tokens(personal))
    assert answer.status_code == 403 and message(answer) == NOT_A_SERVER_TOKEN


def test_a_browser_session_gets_nothing(hub):
    browser = hub.run(hub.login("alice"))
    hub.run(hub.spawn("alice"))
    answer = hub.run(hub.tokens(session=browser))
    assert answer.status_code == 403 and "answers user servers only" in message(answer)


def test_no_token_or_an_unknown_one_gets_nothing(hub):
    logged_in_with_server(hub)
    assert hub.run(hub.tokens()).status_code == 403
    assert hub.run(hub.tokens("not-a-token")).status_code == 403


def test_a_stopped_servers_token_gets_nothing(hub):
    token = logged_in_with_server(hub)
    hub.run(hub.user("alice").stop(""))
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 403  # JupyterHub deleted the server's token with the server


def test_a_server_token_without_the_token_scope_gets_nothing(hub):
    hub.run(hub.login("alice"))
    token = hub.run(hub.spawn("alice", "narrow", server_token_scopes=["access:servers!server", "users:activity!user"]))
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 403 and "lacks the custom:dlaas-tokens scope" in message(answer)


def test_a_lost_record_of_the_servers_token_is_found_again_from_jupyterhubs_own(hub):
    token = logged_in_with_server(hub)
    user = hub.user("alice")
    state = hub.run(user.get_auth_state())
    hub.run(user.save_auth_state({**state, "server_token_ids": {}}))  # e.g. a concurrent save lost it
    assert hub.run(hub.tokens(token)).status_code == 200
    assert hub.run(user.get_auth_state())["server_token_ids"].get("") is not None


def test_after_logout_the_server_hears_log_in_again(hub):
    token = logged_in_with_server(hub)
    hub.run(hub.authenticator.end_session(hub.user("alice")))
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 401 and message(answer) == LOGGED_OUT


def test_tokens_close_to_expiry_are_refreshed_before_the_answer(hub, idp):
    token = logged_in_with_server(hub)
    expire_soon(hub)
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 200
    assert idp.count("refresh_token") == 1
    assert min(t["expires_at"] for t in answer.json()["tokens"].values()) > time.time() + 3000


def test_iam_failing_while_the_tokens_have_expired_means_retry_later(hub, idp):
    token = logged_in_with_server(hub)
    expire_soon(hub, seconds=-1)
    idp.fail["refresh_token"] = [503]
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 503 and "tries again in" in message(answer)
    assert 1 <= int(answer.headers["Retry-After"]) <= 30
    # Within the back-off the hub does not ask IAM again.
    assert hub.run(hub.tokens(token)).status_code == 503
    assert idp.count("refresh_token") == 1


def test_a_refresh_token_iam_refuses_means_log_in_again(hub, idp):
    token = logged_in_with_server(hub)
    expire_soon(hub)
    idp.fail["refresh_token"] = [400]
    answer = hub.run(hub.tokens(token))
    assert answer.status_code == 401 and message(answer) == SESSION_ENDED
