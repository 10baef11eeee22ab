"""Token exchange at the dev IAM follows INDIGO IAM's rules, under both token profiles: `scope` is required, the
exchange grant is enabled per client, requested scopes are checked against the client registrations (not the
subject token), and offline_access is refused when a client exchanges its own token.

Own dev IAM per profile (real node process), scripted browser-style logins.
"""

import jwt
import pytest
import requests

from devstack.iam import DevIAM
from devstack.iam_login import code_flow_tokens, exchange, token_request
from devstack.settings import Settings
from hub_plugins.token_exchange import GRANT_TYPE
from tests.helpers import TEST_REDIRECT


@pytest.fixture(scope="module", params=["iam", "wlcg"])
def strict_iam(request, tmp_path_factory):
    iam = DevIAM(Settings(state_dir=tmp_path_factory.mktemp(f"iam-{request.param}"), iam_port=0), profile=request.param)
    iam.add_client("portal", [TEST_REDIRECT], token_exchange=True)  # registered like the hub
    iam.add_client("agent", [TEST_REDIRECT], token_exchange=True, scopes=["openid", "profile", "offline_access"])
    iam.add_client("no-exchange", [TEST_REDIRECT])
    iam.add_client("narrow", [TEST_REDIRECT], scopes=["openid", "profile", "offline_access"])
    iam.start()
    yield iam
    iam.stop()


@pytest.fixture(scope="module")
def login(strict_iam):
    """`login(client_id, scope=...)` -> alice's token answer from a real login at that client (cached)."""
    cache = {}

    def get(client_id: str, scope: str = "openid profile email offline_access") -> dict:
        if (client_id, scope) not in cache:
            cache[client_id, scope] = code_flow_tokens(
                strict_iam, strict_iam.client(client_id), "alice", "alice-pass", scope=scope
            )
        return cache[client_id, scope]

    return get


def _ask(iam, client_id: str, subject: str, **form) -> requests.Response:
    client = iam.client(client_id)
    return requests.post(
        f"{iam.url}/token",
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
        data={
            "grant_type": GRANT_TYPE,
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            **form,
        },
    )


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_the_hubs_exchange_for_rucio_and_eos_still_works(strict_iam, login):
    subject = login("portal")["access_token"]
    for audience in ("rucio", "eos"):
        answer = exchange(strict_iam, strict_iam.client("portal"), subject, audience=audience, scope="openid profile")
        assert answer["scope"] == "openid profile"
        claims = _claims(answer["access_token"])
        assert claims["aud"] == audience and claims["sub"] == strict_iam.user("alice")["sub"]


@pytest.mark.parametrize("form", [{}, {"scope": ""}])
def test_an_exchange_without_scope_is_refused_with_iams_message(strict_iam, login, form):
    answer = _ask(strict_iam, "portal", login("portal")["access_token"], audience="rucio", **form)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "The scope parameter is required for a token exchange request!",
    }


def test_a_client_without_the_exchange_grant_is_refused_as_iam_refuses_it(strict_iam, login):
    answer = _ask(
        strict_iam, "no-exchange", login("no-exchange")["access_token"], audience="rucio", scope="openid profile"
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    assert answer.json()["error_description"] == f"Unauthorized grant type: {GRANT_TYPE}"


def test_a_client_cannot_exchange_its_own_token_for_offline_access(strict_iam, login):
    subject = login("portal")["access_token"]
    answer = _ask(strict_iam, "portal", subject, scope="openid offline_access")
    assert answer.status_code == 403
    assert answer.json() == {
        "error": "access_denied",
        "error_description": "Token exchange not allowed: same client and offline_access requested",
    }
    assert "refresh_token" not in answer.json()
    # The same request without offline_access goes through, with an ID token and no refresh token (as in IAM).
    without = _ask(strict_iam, "portal", subject, scope="openid")
    assert without.status_code == 200
    assert "id_token" in without.json() and "refresh_token" not in without.json()


def test_offline_access_on_an_exchange_by_another_client_is_refused_too_stricter_than_iam(strict_iam, login):
    answer = _ask(strict_iam, "agent", login("portal")["access_token"], scope="openid offline_access")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope" and "offline_access" in answer.json()["error_description"]


def test_scopes_beyond_the_subject_tokens_but_within_the_clients_registration_are_granted(strict_iam, login):
    subject = login("portal", scope="openid profile")["access_token"]
    answer = _ask(strict_iam, "portal", subject, audience="rucio", scope="openid profile email")
    assert answer.status_code == 200
    assert answer.json()["scope"] == "openid profile email"


def test_a_scope_the_requesting_client_is_not_registered_for_is_refused(strict_iam, login):
    answer = _ask(strict_iam, "agent", login("portal")["access_token"], audience="rucio", scope="openid email")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"
    assert answer.json()["error_description"] == "Invalid scope: email"


def test_a_scope_the_subject_tokens_client_is_not_registered_for_is_refused(strict_iam, login):
    subject = login("narrow", scope="openid profile")["access_token"]
    answer = _ask(strict_iam, "portal", subject, audience="rucio", scope="openid email")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"
    assert answer.json()["error_description"] == "scope not allowed by origin client configuration: email"
    # Another client may exchange the token within both registrations; `act` names it.
    ok = _ask(strict_iam, "portal", subject, audience="rucio", scope="openid profile")
    assert ok.status_code == 200
    assert _claims(ok.json()["access_token"])["act"] == {"sub": "portal"}


def test_delegation_is_not_supported(strict_iam, login):
    subject = login("portal")["access_token"]
    answer = _ask(
        strict_iam,
        "portal",
        subject,
        scope="openid",
        actor_token=subject,
        actor_token_type="urn:ietf:params:oauth:token-type:access_token",
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_request", "error_description": "Delegation not supported"}


def test_an_exchange_without_audience_gets_iams_default_audience(strict_iam, login):
    answer = _ask(strict_iam, "portal", login("portal")["access_token"], scope="openid profile")
    assert answer.status_code == 200
    claims = _claims(answer.json()["access_token"])
    if strict_iam.profile == "wlcg":
        assert claims["aud"] == "https://wlcg.cern.ch/jwt/v1/any"
    else:
        assert "aud" not in claims


def test_an_id_token_and_a_refresh_token_are_never_accepted_as_subject_tokens(strict_iam, login):
    tokens = login("portal")
    for token in (tokens["id_token"], tokens["refresh_token"]):
        answer = _ask(strict_iam, "portal", token, scope="openid")
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_a_refreshed_token_can_still_be_exchanged(strict_iam, login):
    client = strict_iam.client("portal")
    refreshed = token_request(
        strict_iam, client, {"grant_type": "refresh_token", "refresh_token": login("portal")["refresh_token"]}
    )
    answer = exchange(strict_iam, client, refreshed["access_token"], audience="rucio", scope="openid profile")
    assert _claims(answer["access_token"])["aud"] == "rucio"
