"""Logging in to the hub with the dev IAM, the hub's roles, and the token API user servers get their tokens from.

A real JupyterHub (escape-iam authenticator, local process spawner, configurable-http-proxy, the production roles)
against the real dev IAM and Rucio; logins are scripted the way a browser does them (form post, cookies, redirects,
state). Attacks are played with normal accounts: alice, and `admin`, a member of the IAM operator group.
"""

import json
import time
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import pytest
import requests

from devstack.hub_client import (
    auth_state,
    hub_login,
    login_at_iam,
    personal_token,
    process_environ,
    service_session,
    start_server,
)
from devstack.ports import wait_for
from hub_plugins.token_api import LOGGED_OUT, NOT_A_SERVER_TOKEN
from tests.helpers import TEST_ADMIN_TOKEN


def test_alice_logs_in_and_her_auth_state_holds_exchanged_tokens(hub, hub_admin, iam):
    browser, answer = hub_login(hub, "alice", "alice-pass")
    assert answer.status_code == 302
    # To the hub's pages, or straight into her server if it already runs.
    assert urlparse(answer.headers["Location"]).path.startswith(("/hub/", "/user/alice/"))
    assert browser.get(f"{hub.url}/hub/home", timeout=10).status_code == 200
    state = auth_state(hub, "alice")
    assert state["sub"] == iam.user("alice")["sub"]  # the hub account is pinned to this IAM identity
    assert set(state["exchanged"]) == {"rucio", "eos"}
    for name, audience in (("rucio", "rucio"), ("eos", "eos")):
        claims = jwt.decode(state["exchanged"][name]["access_token"], options={"verify_signature": False})
        assert claims["aud"] == audience
        assert claims["sub"] == iam.user("alice")["sub"]
        assert state["exchanged"][name]["expires_at"] > time.time() + 3000
    user = hub_admin.get(f"{hub_admin.api}/users/alice", timeout=10).json()
    assert user["admin"] is False and user["groups"] == ["escape/users"]


def _at_the_callback(hub) -> tuple[requests.Session, dict]:
    """Alice logged in at the IAM, stopped before her browser follows the redirect back: (browser, its query)."""
    browser = requests.Session()
    callback = login_at_iam(hub, "alice", "alice-pass", browser)
    return browser, parse_qs(urlparse(callback).query)


def test_a_tampered_state_is_refused_without_a_server_error(hub):
    browser, query = _at_the_callback(hub)
    forged = f"{hub.url}/hub/oauth_callback?code={query['code'][0]}&state=forged"
    answer = browser.get(forged, allow_redirects=False, timeout=30)
    assert 400 <= answer.status_code < 500


def test_a_code_the_iam_refuses_gives_a_log_in_again_page_not_a_server_error(hub):
    browser, query = _at_the_callback(hub)
    bogus = f"{hub.url}/hub/oauth_callback?code=spent-or-forged&state={query['state'][0]}"
    answer = browser.get(bogus, allow_redirects=False, timeout=30)
    assert answer.status_code == 400
    assert "ESCAPE IAM did not accept this login" in answer.text


def test_a_user_outside_the_allowed_groups_is_refused_with_a_page_not_a_crash(hub):
    _, answer = hub_login(hub, "bob", "bob-pass")
    assert answer.status_code == 403
    assert "not in a group allowed to use this service (escape/users)" in answer.text


@pytest.fixture(scope="module")
def operator(hub):
    """`admin`, in the IAM operator group, logged in: (browser, an API session with a token of his own)."""
    browser, answer = hub_login(hub, "admin", "admin-pass")
    assert answer.status_code == 302
    made = personal_token(hub, browser, "admin", note="operator at work")
    assert made.status_code == 201, made.text
    return browser, service_session(hub, made.json()["token"])


def test_iam_operators_run_the_hub_without_becoming_hub_admins(hub, hub_admin, operator):
    browser, admin = operator
    user = hub_admin.get(f"{hub_admin.api}/users/admin", timeout=10).json()
    assert user["admin"] is False
    assert "escape/admins" in user["groups"]
    assert browser.get(f"{hub.url}/hub/admin", timeout=30).status_code == 200
    listed = admin.get(f"{admin.api}/users", timeout=10)
    assert listed.status_code == 200 and "alice" in {u["name"] for u in listed.json()}


def test_admin_cannot_read_alices_auth_state(hub, operator):
    hub_login(hub, "alice", "alice-pass")
    _, admin = operator
    alice = admin.get(f"{admin.api}/users/alice", timeout=10)
    assert alice.status_code == 200
    assert "auth_state" not in alice.json()
    assert "refresh_token" not in alice.text
    overwrite = admin.patch(f"{admin.api}/users/alice", json={"auth_state": {}}, timeout=10)
    assert overwrite.status_code == 403


def test_admin_cannot_mint_a_token_for_alice(hub, operator):
    _, admin = operator
    for body in ({"scopes": ["custom:dlaas-tokens!user=alice"]}, {"scopes": ["custom:dlaas-tokens"]}, {}):
        answer = admin.post(f"{admin.api}/users/alice/tokens", json=body, timeout=10)
        assert answer.status_code == 403, answer.text
        assert "token" not in answer.json()
    assert admin.get(f"{admin.api}/users/alice/tokens", timeout=10).status_code in (403, 404)


def test_admin_cannot_enter_alices_server(hub, operator, alice_server):
    browser, admin = operator
    lab = browser.get(f"{hub.url}/user/alice/lab", timeout=60)
    assert lab.status_code == 403, lab.url
    assert "JupyterLab" not in lab.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/steal", "//evil.example/steal", "/\\evil.example", "\\\\evil.example", "https:evil.example"],
)
def test_next_never_leads_off_site(hub, target):
    _, answer = hub_login(hub, "alice", "alice-pass", next_url=target)
    assert answer.status_code in (302, 303), answer.text[:300]
    location = answer.headers.get("Location", "")
    assert location, "a redirect without a Location"
    resolved = urljoin(f"{hub.url}/hub/oauth_callback", location)
    assert urlparse(resolved).netloc == urlparse(hub.url).netloc, location
    assert not location.startswith(("//", "/\\")) and "\\" not in location


# --- the token API, called with a real user server's own token ---------------------------------------------


@pytest.fixture(scope="module")
def alice_server(hub, hub_admin):
    """Alice logged in with her server running: (the API token JupyterHub gave the server, its pid)."""
    hub_login(hub, "alice", "alice-pass")
    pid = start_server(hub_admin, "alice")
    yield process_environ(pid)["JUPYTERHUB_API_TOKEN"], pid
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)


def _tokens(hub, token: str) -> requests.Response:
    return requests.get(f"{hub.url}/hub/api/dlaas/tokens", headers={"Authorization": f"token {token}"}, timeout=30)


def test_the_token_api_gives_a_server_its_users_exchanged_tokens_only(hub, iam, alice_server):
    token, _ = alice_server
    answer = _tokens(hub, token)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body["tokens"]) == {"rucio", "eos"}
    assert body["issuer"] == iam.issuer and body["userinfo_endpoint"] == f"{iam.url}/userinfo"
    state = auth_state(hub, "alice")
    assert body["tokens"]["rucio"]["access_token"] == state["exchanged"]["rucio"]["access_token"]
    text = answer.text
    for secret in (state["refresh_token"], state["access_token"], state["id_token"]):
        assert secret not in text, "an IAM token left the hub"
    assert answer.headers["Cache-Control"] == "no-store"


def test_the_token_api_refuses_cookies_other_scopes_and_strangers(hub, hub_admin, alice_server):
    browser, _ = hub_login(hub, "alice", "alice-pass")
    cookie_answer = browser.get(f"{hub.url}/hub/api/dlaas/tokens", timeout=10)
    assert cookie_answer.status_code == 403
    narrow = hub_admin.post(
        f"{hub_admin.api}/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]}, timeout=10
    ).json()["token"]
    assert _tokens(hub, narrow).status_code == 403
    assert _tokens(hub, "not-a-token").status_code == 403
    assert _tokens(hub, TEST_ADMIN_TOKEN).status_code == 403  # a service is nobody's server


def test_a_personal_token_cannot_fetch_data_lake_tokens(hub, alice_server):
    browser, _ = hub_login(hub, "alice", "alice-pass")
    for body in (
        {"scopes": ["custom:dlaas-tokens!user=alice"], "note": "copied into a script"},
        {"note": "inherits everything alice may do"},
        {"scopes": ["custom:dlaas-tokens!server=alice/"], "note": "filtered to her running server"},
    ):
        made = personal_token(hub, browser, "alice", **body)
        assert made.status_code == 201, made.text
        answer = _tokens(hub, made.json()["token"])
        assert answer.status_code == 403, body
        assert answer.json()["message"] == NOT_A_SERVER_TOKEN
        assert "access_token" not in answer.text
    # A token never carries more than its user holds: the unfiltered scope is refused when it is made.
    assert personal_token(hub, browser, "alice", scopes=["custom:dlaas-tokens"]).status_code == 400


def test_a_token_filtered_to_bob_or_to_another_server_gets_nothing(hub, alice_server):
    browser, _ = hub_login(hub, "alice", "alice-pass")
    to_bob = personal_token(hub, browser, "alice", scopes=["custom:dlaas-tokens!user=bob"])
    assert to_bob.status_code == 400  # alice does not hold bob's scope: no such token can exist
    other = personal_token(hub, browser, "alice", scopes=["custom:dlaas-tokens!server=alice/other"])
    assert other.status_code == 201, other.text
    assert _tokens(hub, other.json()["token"]).status_code == 403


def test_the_token_api_refuses_iam_tokens(hub, alice_server, rucio_token):
    # A real IAM token of Alice is not a hub credential, whatever the header says.
    iam_token = rucio_token("alice")
    for header in (f"token {iam_token}", f"Bearer {iam_token}"):
        answer = requests.get(f"{hub.url}/hub/api/dlaas/tokens", headers={"Authorization": header}, timeout=30)
        assert answer.status_code == 403
        assert "access_token" not in answer.text


def test_nothing_token_like_in_the_servers_environment_or_the_hub_log(hub, alice_server):
    _, pid = alice_server
    environ = process_environ(pid)
    state = auth_state(hub, "alice")
    secrets = [
        state["refresh_token"],
        state["access_token"],
        state["id_token"],
        *(t["access_token"] for t in state["exchanged"].values()),
    ]
    for secret in secrets:
        assert not any(secret in value for value in environ.values())
    assert "DLAAS_TOKEN_API_URL" in environ and "BEARER_TOKEN_FILE" in environ
    log = hub.process.log_path.read_text()
    for secret in secrets:
        assert secret not in log


def test_an_iam_outage_gives_a_clear_login_error_and_sessions_keep_working(hub, iam, alice_server):
    token, _ = alice_server
    browser = requests.Session()
    callback = login_at_iam(hub, "alice", "alice-pass", browser)
    iam.stop()
    try:
        answer = browser.get(callback, allow_redirects=False, timeout=60)
        assert answer.status_code == 503
        assert "ESCAPE IAM is not reachable" in answer.text
        # Alice's server still gets her (still valid) tokens while the IAM is away.
        assert _tokens(hub, token).status_code == 200
    finally:
        iam.restart()
    assert json.loads(_tokens(hub, token).text)["tokens"]["rucio"]["access_token"]


def test_after_logout_the_server_gets_401_and_the_refresh_token_is_revoked(hub, iam, alice_server):
    token, _ = alice_server
    browser, _ = hub_login(hub, "alice", "alice-pass")
    assert _tokens(hub, token).status_code == 200
    refresh_token = auth_state(hub, "alice")["refresh_token"]
    browser.get(f"{hub.url}/hub/logout", timeout=30)
    answer = _tokens(hub, token)
    assert answer.status_code == 401
    assert answer.json()["message"] == LOGGED_OUT
    state = auth_state(hub, "alice")
    assert set(state) <= {"sub", "server_token_ids"} and state["sub"] == iam.user("alice")["sub"]
    client = iam.client("dlaas-hub")

    def refused():
        r = requests.post(
            f"{iam.url}/token",
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        return r.status_code == 400

    wait_for(refused, timeout=30, what="the IAM to refuse the revoked refresh token")
    # Logging in again gives the same running server its tokens back.
    hub_login(hub, "alice", "alice-pass")
    assert _tokens(hub, token).status_code == 200


def test_the_hubs_sqlite_database_writes_ahead_instead_of_syncing_every_commit(hub):
    import sqlite3

    with sqlite3.connect(hub.dir / "jupyterhub.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent: set by the hub itself


def test_a_stopped_servers_token_gets_403_and_operators_stop_and_start_servers(hub, operator, alice_server):
    # Last in this module: alice's server is stopped and started again, with a new token.
    token, _ = alice_server
    _, admin = operator
    assert admin.delete(f"{admin.api}/users/alice/server", timeout=60).status_code in (202, 204)
    wait_for(
        lambda: not admin.get(f"{admin.api}/users/alice", timeout=10).json()["servers"],
        timeout=60,
        what="alice's server to stop",
    )
    answer = _tokens(hub, token)
    assert answer.status_code == 403
    assert "access_token" not in answer.text
    assert admin.post(f"{admin.api}/users/alice/server", timeout=90).status_code in (201, 202)
    wait_for(
        lambda: (admin.get(f"{admin.api}/users/alice", timeout=10).json()["servers"].get("") or {}).get("ready"),
        timeout=90,
        what="alice's server, started by an operator",
    )
    assert _tokens(hub, token).status_code == 403  # the old token stays dead
