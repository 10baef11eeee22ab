"""Access tokens without a `scope` claim (`DevIAM(scope_claim=False)`, INDIGO IAM's default): the IAM still knows
each token's scope, tells it through /introspect to the clients allowed to introspect, and the real Rucio server
accepts such a token only through that path (it introspects as its idpsecrets client `rucio`).

Own dev IAM, PostgreSQL and Rucio server on free loopback ports.
"""

import jwt
import pytest
import requests

from devstack.iam_login import code_flow_tokens, exchange
from devstack.settings import Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_REDIRECT


@pytest.fixture(scope="module")
def scopeless():
    """Core (IAM, PostgreSQL, seeded Rucio) with an IAM that leaves `scope` out of access tokens. The stack registers
    the client Rucio's idpsecrets.json names, with the secret the Rucio server keeps, as an introspecting client."""
    with (
        temporary_state("scopeless") as state,
        Stack(Settings.free_ports(state), full_seed=False, iam_options={"scope_claim": False}) as stack,
    ):
        stack.iam.add_client("portal", [TEST_REDIRECT], token_exchange=True)
        stack.start("core")
        yield stack.iam, stack.rucio


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _rucio_token(iam, user: str = "alice") -> str:
    login = code_flow_tokens(iam, iam.client("portal"), user, iam.user(user)["password"])
    return exchange(iam, iam.client("portal"), login["access_token"], audience="rucio", scope="openid profile")[
        "access_token"
    ]


def _introspect(iam, token: str, client: str = "rucio") -> dict:
    auth = (iam.client(client)["client_id"], iam.client(client)["client_secret"])
    answer = requests.post(f"{iam.url}/introspect", data={"token": token}, auth=auth, timeout=10)
    assert answer.status_code == 200
    return answer.json()


def _whoami(rucio, token: str) -> requests.Response:
    return requests.get(f"{rucio.url}/accounts/whoami", headers={"X-Rucio-Auth-Token": token}, timeout=60)


def test_login_and_exchanged_tokens_carry_no_scope_yet_userinfo_still_answers(scopeless):
    iam, _ = scopeless
    login = code_flow_tokens(iam, iam.client("portal"), "alice", "alice-pass")
    assert "scope" in login  # the token endpoint still says what was granted
    exchanged = exchange(iam, iam.client("portal"), login["access_token"], audience="rucio", scope="openid profile")
    assert exchanged["scope"] == "openid profile"
    for token in (login["access_token"], exchanged["access_token"]):
        assert "scope" not in _claims(token)
        info = requests.get(f"{iam.url}/userinfo", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert info.status_code == 200 and info.json()["preferred_username"] == "alice"


def test_introspection_tells_rucio_the_scope_and_audience(scopeless):
    iam, _ = scopeless
    answer = _introspect(iam, _rucio_token(iam))
    assert answer["active"] is True
    assert answer["scope"] == "openid profile" and answer["aud"] == "rucio"
    assert answer["sub"] == iam.user("alice")["sub"] and answer["username"] == "alice"
    assert answer["client_id"] == "portal"
    assert _introspect(iam, "junk") == {"active": False}


def test_a_client_not_allowed_to_introspect_gets_inactive_for_a_valid_token(scopeless):
    iam, _ = scopeless
    assert _introspect(iam, _rucio_token(iam), client="portal") == {"active": False}


def test_rucio_accepts_a_scope_less_token_through_introspection(scopeless):
    iam, rucio = scopeless
    answer = _whoami(rucio, _rucio_token(iam))
    assert answer.status_code == 200, answer.text
    assert answer.json()["account"] == "alice"


def test_rucio_refuses_a_scope_less_token_the_iam_reports_inactive(scopeless):
    iam, rucio = scopeless
    token = _rucio_token(iam, "bob")
    portal = iam.client("portal")
    revoked = requests.post(
        f"{iam.url}/revoke", data={"token": token}, timeout=10, auth=(portal["client_id"], portal["client_secret"])
    )
    assert revoked.status_code == 200
    # Signed by the IAM and unexpired: only introspection can tell Rucio it is no longer valid.
    assert _whoami(rucio, token).status_code == 401
