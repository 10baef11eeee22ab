"""Login, the token files and Rucio, and refresh with rotation, under the two shapes an INDIGO IAM may give tokens.

The default test session runs the dev IAM's `iam` profile with a `scope` claim. Production may differ in both ways,
so each variant here gets its own complete local data lake (devstack.stack.Stack on free loopback ports, a
temporary state directory, short token lifetimes) and is driven through the real hub and a real user server:

- `wlcg`: INDIGO IAM's WLCG profile. Groups come only as `wlcg.groups` (`/escape/users`); tokens carry `scope`.
- `iam-scopeless`: IAM's own profile without a `scope` claim in access tokens (IAM's default). Rucio can only
  learn a token's scope by introspecting it at the IAM.

Both rotate refresh tokens, as IAM clients may: every refresh hands out a new refresh token and kills the old one.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests

from devstack.hub import HUB_CLIENT_ID
from devstack.hub_client import auth_state, hub_login, personal_token, process_environ, service_session, start_server
from devstack.ports import wait_for
from devstack.settings import VENVS, Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_ADMIN_TOKEN, hub_test_extra

VARIANTS = {
    "wlcg": {"iam_profile": "wlcg", "iam_rotate_refresh_tokens": True, "iam_scope_claim": True},
    "iam-scopeless": {"iam_profile": "iam", "iam_rotate_refresh_tokens": True, "iam_scope_claim": False},
}
LIFETIME = 20  # seconds every access token lives (IAM's own and the exchanged ones)
MARGIN = 12  # the hub refreshes once an exchanged token has less than this left
INTROSPECTED = "POST /introspect 200"
REFRESHED = "refreshed IAM and exchanged tokens for alice"
RUCIO_CLI = VENVS / "singleuser" / "bin" / "rucio"


@dataclass
class Lake:
    name: str
    stack: Stack
    admin: requests.Session  # the tests' hub service: starts and stops servers, reads users

    @property
    def iam(self):
        return self.stack.iam

    @property
    def hub(self):
        return self.stack.hub

    @property
    def scopeless(self) -> bool:
        """Whether Rucio must see tokens without a scope claim (what the variant promises, not its settings)."""
        return self.name == "iam-scopeless"

    def iam_log_offset(self) -> int:
        return self.iam.process.log_path.stat().st_size

    def iam_requests_since(self, offset: int) -> list[str]:
        with open(self.iam.process.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace").splitlines()


@pytest.fixture(scope="module", params=list(VARIANTS))
def lake(request):
    """A whole local data lake whose dev IAM shapes tokens as the variant says; stopped by PID afterwards."""
    with (
        temporary_state(request.param) as state,
        Stack(
            Settings.free_ports(state, **VARIANTS[request.param]),
            full_seed=False,
            iam_options={"access_token_ttl": LIFETIME},
            hub_options={
                "refresh_margin": MARGIN,
                "extra": {**hub_test_extra(), "EscapeIAMAuthenticator": {"refresh_backoff": 2}},
            },
        ) as stack,
    ):
        stack.start("all")  # a service that fails to start stops the ones already started
        yield Lake(request.param, stack, service_session(stack.hub, TEST_ADMIN_TOKEN))


@pytest.fixture(scope="module")
def alice_server(lake):
    """Alice logged in with her server running: (the server's environment, its pid). Stopped after the variant."""
    hub_login(lake.hub, "alice", "alice-pass")
    pid = start_server(lake.admin, "alice")
    try:
        env = process_environ(pid)
        wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=60, what="alice's Rucio token file")
        yield env, pid
    finally:
        lake.admin.delete(f"{lake.admin.api}/users/alice/server", timeout=60)
        try:
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="alice's server to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGTERM)  # the server this fixture started, by its pid


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _rucio_whoami(env: dict) -> subprocess.CompletedProcess:
    """`rucio whoami` from the server's venv, with the server's environment, as in a terminal of her server."""
    return subprocess.run(
        [str(RUCIO_CLI), "whoami"], env=env, capture_output=True, text=True, timeout=60, cwd=env.get("HOME", "/")
    )


def _account(output: str) -> str | None:
    found = re.search(r"^account\s*:\s*(\S+)\s*$", output, re.M)
    return found.group(1) if found else None


def _assert_rucio_asked_the_iam_only_when_it_had_to(lake: Lake, offset: int) -> None:
    """Rucio introspects a token exactly when the token carries no scope (the iam-scopeless variant)."""
    introspections = [line for line in lake.iam_requests_since(offset) if line.startswith("POST /introspect")]
    if lake.scopeless:
        assert INTROSPECTED in introspections, "Rucio accepted a scope-less token without asking the IAM"
    else:
        assert introspections == [], "Rucio introspected a token that carries its scope"


# --- login -----------------------------------------------------------------------------------------------------


def test_alice_is_admitted_through_the_group_claim_of_the_profile(lake):
    browser, answer = hub_login(lake.hub, "alice", "alice-pass")
    assert answer.status_code == 302, answer.text[:300]
    assert browser.get(f"{lake.hub.url}/hub/home", timeout=30).status_code == 200
    state = auth_state(lake.hub, "alice")
    userinfo, iam_token = state["oauth_user"], _claims(state["access_token"])
    if lake.name == "wlcg":
        assert iam_token["wlcg.ver"] == "1.0"
        assert "groups" not in userinfo and "groups" not in iam_token
        assert userinfo["wlcg.groups"] == ["/escape/users"]
    else:
        assert "wlcg.ver" not in iam_token
        assert userinfo["groups"] == ["escape/users"]
        assert "wlcg.groups" not in userinfo
    user = lake.admin.get(f"{lake.admin.api}/users/alice", timeout=10).json()
    assert user["groups"] == ["escape/users"] and user["admin"] is False
    assert set(state["exchanged"]) == {"rucio", "eos"}


def test_bob_outside_escape_users_gets_the_403_page(lake):
    _, answer = hub_login(lake.hub, "bob", "bob-pass")
    assert answer.status_code == 403
    assert "not in a group allowed to use this service (escape/users)" in answer.text
    assert lake.admin.get(f"{lake.admin.api}/users/bob", timeout=10).status_code == 404


def test_admin_operates_the_hub_as_dlaas_operator_not_as_hub_admin(lake):
    browser, answer = hub_login(lake.hub, "admin", "admin-pass")
    assert answer.status_code == 302, answer.text[:300]
    user = lake.admin.get(f"{lake.admin.api}/users/admin", timeout=10).json()
    assert user["admin"] is False
    assert set(user["groups"]) == {"escape/users", "escape/admins"}
    made = personal_token(lake.hub, browser, "admin", note="operator at work")
    assert made.status_code == 201, made.text
    operator = service_session(lake.hub, made.json()["token"])
    group = operator.get(f"{operator.api}/groups/escape%2Fadmins", timeout=10)
    assert group.status_code == 200, group.text
    assert group.json()["roles"] == ["dlaas-operator"]
    assert browser.get(f"{lake.hub.url}/hub/admin", timeout=30).status_code == 200
    assert operator.get(f"{operator.api}/users", timeout=10).status_code == 200
    alice, _ = hub_login(lake.hub, "alice", "alice-pass")
    assert alice.get(f"{lake.hub.url}/hub/admin", timeout=30).status_code == 403


# --- the server's Rucio token ------------------------------------------------------------------------------


def test_rucio_whoami_in_alices_server_answers_alice(lake, alice_server):
    env, _ = alice_server
    token_file = Path(env["BEARER_TOKEN_FILE"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    claims = _claims(token_file.read_text())
    assert claims["aud"] == "rucio" and claims["sub"] == lake.iam.user("alice")["sub"]
    assert ("scope" in claims) is not lake.scopeless
    offset = lake.iam_log_offset()
    whoami = _rucio_whoami(env)
    assert whoami.returncode == 0, whoami.stderr
    assert _account(whoami.stdout) == "alice", whoami.stdout
    _assert_rucio_asked_the_iam_only_when_it_had_to(lake, offset)


# --- refresh with rotation -----------------------------------------------------------------------------------


def test_the_hub_refreshes_with_a_rotated_refresh_token_and_rucio_takes_the_new_token(lake, alice_server):
    env, _ = alice_server
    hub, iam = lake.hub, lake.iam
    token_file = Path(env["BEARER_TOKEN_FILE"])
    before = auth_state(hub, "alice")
    old_token = token_file.read_text()
    refreshes = hub.process.log_path.read_text().count(REFRESHED)

    def refreshed():
        state, content = auth_state(hub, "alice"), token_file.read_text()
        changed = state["refresh_token"] != before["refresh_token"] and content not in ("", old_token)
        return changed and (state, content)

    # The token agent asks the hub; the hub, with tokens within MARGIN of expiry, refreshes at IAM meanwhile.
    state, new_token = wait_for(refreshed, timeout=90, what="a refresh that rewrites alice's Rucio token file")
    assert state["session"] == before["session"], "alice logged in again: that is not a refresh"
    assert hub.process.log_path.read_text().count(REFRESHED) > refreshes
    old, new = _claims(old_token), _claims(new_token)
    assert new["aud"] == "rucio" and new["sub"] == old["sub"]
    assert new["jti"] != old["jti"] and new["exp"] > old["exp"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    # Rucio takes the new token (its first use there: in the scope-less variant only through introspection).
    offset = lake.iam_log_offset()
    whoami = requests.get(
        f"{lake.stack.rucio.url}/accounts/whoami", headers={"X-Rucio-Auth-Token": new_token}, timeout=60
    )
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["account"] == "alice"
    _assert_rucio_asked_the_iam_only_when_it_had_to(lake, offset)
    cli = _rucio_whoami(env)
    assert cli.returncode == 0 and _account(cli.stdout) == "alice", cli.stdout + cli.stderr

    # IAM rotated: the refresh token the hub held before is dead at IAM's token endpoint.
    client = iam.client(HUB_CLIENT_ID)
    replay = requests.post(
        f"{iam.url}/token",
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
        data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"]},
    )
    assert replay.status_code == 400, replay.text
    assert replay.json()["error"] == "invalid_grant"
    assert "access_token" not in replay.text
