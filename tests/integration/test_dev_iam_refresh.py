"""Refresh tokens at the dev IAM as at INDIGO IAM: kept (default) or rotated (`rotate_refresh_tokens=True`, the
old one then fails with invalid_grant and the new one keeps working), and revoked at /revoke (RFC 7009) by the
client that holds them; revoked access tokens stop working at userinfo, introspection and token exchange.

Own dev IAMs (real node processes), scripted browser-style logins.
"""

import pytest
import requests

from devstack.iam import DevIAM
from devstack.iam_login import LoginError, code_flow_tokens, exchange, token_request
from devstack.settings import Settings
from tests.helpers import TEST_REDIRECT


@pytest.fixture(scope="module", params=[False, True], ids=["kept", "rotated"])
def iam(request, tmp_path_factory):
    iam = DevIAM(Settings(state_dir=tmp_path_factory.mktemp("iam"), iam_port=0), rotate_refresh_tokens=request.param)
    iam.add_client("portal", [TEST_REDIRECT], token_exchange=True)
    iam.add_client("other", [TEST_REDIRECT], token_exchange=True)
    iam.add_client("resource", grant_types=[], scopes=[], introspection=True)
    iam.start()
    yield iam
    iam.stop()


def _login(iam, client: str = "portal") -> dict:
    return code_flow_tokens(iam, iam.client(client), "alice", "alice-pass")


def _refresh(iam, refresh_token: str, client: str = "portal") -> dict:
    return token_request(iam, iam.client(client), {"grant_type": "refresh_token", "refresh_token": refresh_token})


def _post(iam, path: str, client: str | None, **form) -> requests.Response:
    auth = (iam.client(client)["client_id"], iam.client(client)["client_secret"]) if client else None
    return requests.post(f"{iam.url}{path}", data=form, auth=auth, timeout=10)


def test_refresh_keeps_or_rotates_the_refresh_token_as_configured(iam):
    first = _login(iam)["refresh_token"]
    second = _refresh(iam, first)
    if iam.rotate_refresh_tokens:
        assert second["refresh_token"] != first
        with pytest.raises(LoginError, match="invalid_grant"):
            _refresh(iam, first)
        # The old token coming back does not take the new one down with it (IAM deletes only the old token).
        third = _refresh(iam, second["refresh_token"])
        assert third["refresh_token"] not in (first, second["refresh_token"])
        assert "access_token" in _refresh(iam, third["refresh_token"])
    else:
        assert second.get("refresh_token", first) == first
        assert "access_token" in _refresh(iam, first)


def test_a_refresh_token_works_only_for_the_client_it_was_issued_to(iam):
    with pytest.raises(LoginError, match="invalid_grant"):
        _refresh(iam, _login(iam)["refresh_token"], client="other")


def test_discovery_advertises_the_revocation_endpoint(iam):
    doc = requests.get(f"{iam.issuer}.well-known/openid-configuration", timeout=5).json()
    assert doc["revocation_endpoint"] == f"{iam.url}/revoke"


def test_a_revoked_refresh_token_fails_at_the_token_endpoint(iam):
    tokens = _login(iam)
    answer = _post(iam, "/revoke", "portal", token=tokens["refresh_token"], token_type_hint="refresh_token")
    assert answer.status_code == 200
    with pytest.raises(LoginError, match="invalid_grant"):
        _refresh(iam, tokens["refresh_token"])
    # As in IAM, only the refresh token goes: the access token issued with it stays valid until it expires.
    info = requests.get(f"{iam.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5)
    assert info.status_code == 200


def test_revocation_without_a_hint_recognises_a_refresh_token(iam):
    refresh_token = _login(iam)["refresh_token"]
    assert _post(iam, "/revoke", "portal", token=refresh_token).status_code == 200
    with pytest.raises(LoginError, match="invalid_grant"):
        _refresh(iam, refresh_token)


def test_another_client_cannot_revoke_alices_refresh_token(iam):
    refresh_token = _login(iam)["refresh_token"]
    answer = _post(iam, "/revoke", "other", token=refresh_token, token_type_hint="refresh_token")
    assert answer.status_code == 403
    assert answer.json() == {"error": "Client is not allowed to revoke this token"}
    assert "access_token" in _refresh(iam, refresh_token)


def test_revocation_needs_client_authentication_and_ignores_unknown_tokens(iam):
    refresh_token = _login(iam)["refresh_token"]
    assert _post(iam, "/revoke", None, token=refresh_token).status_code == 401
    assert _post(iam, "/revoke", "portal", token="no-such-token").status_code == 200
    assert _post(iam, "/revoke", "portal").status_code == 400
    assert "access_token" in _refresh(iam, refresh_token)


def test_a_refresh_token_sent_with_the_access_token_hint_is_not_revoked(iam):
    # IAM obeys the hint: a client that sends the wrong one has revoked nothing, though it gets 200.
    refresh_token = _login(iam)["refresh_token"]
    assert _post(iam, "/revoke", "portal", token=refresh_token, token_type_hint="access_token").status_code == 200
    assert "access_token" in _refresh(iam, refresh_token)


def test_a_revoked_access_token_stops_working_everywhere_the_iam_checks_it(iam):
    access_token = _login(iam)["access_token"]
    assert _post(iam, "/revoke", "other", token=access_token).status_code == 403
    assert _post(iam, "/revoke", "portal", token=access_token).status_code == 200
    info = requests.get(f"{iam.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    assert info.status_code == 401
    assert _post(iam, "/introspect", "resource", token=access_token).json() == {"active": False}
    with pytest.raises(LoginError, match="invalid_grant.*revoked"):
        exchange(iam, iam.client("portal"), access_token, audience="rucio", scope="openid profile")


def test_introspection_by_an_allowed_client_reports_refresh_tokens_until_they_are_revoked(iam):
    tokens = _login(iam)
    active = _post(iam, "/introspect", "resource", token=tokens["refresh_token"]).json()
    assert active["active"] is True and active["client_id"] == "portal"
    _post(iam, "/revoke", "portal", token=tokens["refresh_token"])
    assert _post(iam, "/introspect", "resource", token=tokens["refresh_token"]).json() == {"active": False}


def test_no_refreshed_revoked_or_introspected_token_reaches_the_log(iam):
    tokens = _login(iam)
    refreshed = _refresh(iam, tokens["refresh_token"])
    _post(iam, "/introspect", "resource", token=refreshed["access_token"])
    _post(iam, "/revoke", "portal", token=refreshed["access_token"])
    _post(iam, "/revoke", "portal", token=refreshed.get("refresh_token", tokens["refresh_token"]))
    log = iam.process.log_path.read_text()
    for token in (
        tokens["access_token"],
        tokens["refresh_token"],
        refreshed["access_token"],
        refreshed.get("refresh_token", ""),
        iam.client("resource")["client_secret"],
    ):
        assert token and token not in log
    assert "POST /revoke 200" in log and "POST /introspect 200" in log
