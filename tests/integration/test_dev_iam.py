"""The dev IAM behaves like INDIGO IAM where DLaaS depends on it: login form, PKCE, refresh, token exchange,
persistent keys. Real node process, scripted browser-style logins.

The session's dev IAM runs with the defaults (iam profile, no rotation, `scope` in access tokens); the stricter
rules and the options have their own modules (test_dev_iam_*.py)."""

import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.iam import DevIAM
from devstack.iam_login import LoginError, code_flow_tokens, exchange, token_request
from devstack.service import ServiceError
from devstack.settings import Settings
from hub_plugins.token_exchange import GRANT_TYPE
from tests.helpers import TEST_REDIRECT


def _verify(iam, token, audience):
    jwks = requests.get(f"{iam.url}/jwk", timeout=5).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=iam.issuer)


def test_discovery_uses_iam_endpoint_paths(iam):
    doc = requests.get(f"{iam.issuer}.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == iam.issuer
    for key, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwk"),
        ("introspection_endpoint", "/introspect"),
        ("revocation_endpoint", "/revoke"),
    ]:
        assert doc[key] == f"{iam.url}{path}"
    assert "S256" in doc["code_challenge_methods_supported"]
    assert GRANT_TYPE in doc["grant_types_supported"]


def test_alice_logs_in_through_the_form_and_gets_signed_tokens_with_her_groups(iam):
    tokens = code_flow_tokens(iam, iam.client("dlaas-test"), "alice", "alice-pass")
    assert {"access_token", "id_token", "refresh_token"} <= set(tokens)
    access = _verify(iam, tokens["access_token"], audience="urn:escape:dlaas:iam")
    assert access["sub"] == iam.user("alice")["sub"]
    assert access["groups"] == ["escape/users"]
    assert "offline_access" in access["scope"].split()
    ident = _verify(iam, tokens["id_token"], audience="dlaas-test")
    assert ident["preferred_username"] == "alice" and ident["groups"] == ["escape/users"]
    info = requests.get(
        f"{iam.url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=5
    ).json()
    assert info["preferred_username"] == "alice" and info["groups"] == ["escape/users"]


def test_a_public_client_must_use_pkce_and_a_wrong_verifier_is_refused(iam):
    client = iam.client("dlaas-public")
    assert "access_token" in code_flow_tokens(iam, client, "bob", "bob-pass")
    with pytest.raises(LoginError, match="invalid_grant"):
        code_flow_tokens(iam, client, "bob", "bob-pass", verifier="x" * 50)


def test_a_wrong_password_shows_the_form_again_with_a_clear_error(iam):
    with pytest.raises(LoginError, match="Wrong username or password"):
        code_flow_tokens(iam, iam.client("dlaas-test"), "alice", "not-her-password")
    with pytest.raises(LoginError, match="Wrong username or password"):
        code_flow_tokens(iam, iam.client("dlaas-test"), "mallory", "whatever")


def test_an_unknown_client_is_refused_before_any_login(iam):
    ghost = {"client_id": "ghost", "client_secret": "x", "redirect_uris": [TEST_REDIRECT]}
    with pytest.raises(LoginError, match=r"unexpected answer 400 at /authorize: invalid_client\Z"):
        code_flow_tokens(iam, ghost, "alice", "alice-pass")


def test_refresh_gives_a_new_access_token(iam):
    client = iam.client("dlaas-test")
    first = code_flow_tokens(iam, client, "alice", "alice-pass")
    refreshed = token_request(iam, client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refreshed["access_token"] != first["access_token"]
    assert _verify(iam, refreshed["access_token"], "urn:escape:dlaas:iam")["sub"] == iam.user("alice")["sub"]


def test_token_exchange_has_iam_shape_and_keeps_sub_and_iss(iam):
    client = iam.client("dlaas-test")
    subject = code_flow_tokens(iam, client, "alice", "alice-pass")["access_token"]
    answer = exchange(iam, client, subject, audience="rucio", scope="openid profile")
    assert answer["token_type"] == "Bearer"
    assert answer["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert answer["scope"] == "openid profile"
    assert 0 < answer["expires_in"] <= 3600
    claims = _verify(iam, answer["access_token"], audience="rucio")
    assert claims["sub"] == iam.user("alice")["sub"] and claims["iss"] == iam.issuer
    assert claims["client_id"] == "dlaas-test" and claims["act"] == {"sub": "dlaas-test"}
    assert claims["groups"] == ["escape/users"]
    ident = _verify(iam, answer["id_token"], audience="dlaas-test")
    assert ident["sub"] == claims["sub"] and ident["preferred_username"] == "alice"
    two = _verify(
        iam, exchange(iam, client, subject, audience="rucio eos", scope="openid")["access_token"], audience="eos"
    )
    assert two["aud"] == ["rucio", "eos"] and two["scope"] == "openid"


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"scope": ""}, "invalid_request: The scope parameter is required for a token exchange request!"),
        ({"actor_token": "something"}, "invalid_request: Delegation not supported"),
        ({"scope": "openid profile admin"}, "invalid_scope: Invalid scope: admin"),
        ({"subject_token": "not-a-jwt"}, "invalid_grant"),
        ({"subject_token": ""}, "invalid_request"),
    ],
)
def test_token_exchange_refuses_bad_requests(iam, extra, error):
    client = iam.client("dlaas-test")
    subject = code_flow_tokens(iam, client, "alice", "alice-pass")["access_token"]
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject,
        "audience": "rucio",
        "scope": "openid profile",
        **extra,
    }
    with pytest.raises(LoginError, match=error):
        token_request(iam, client, form)


def test_token_exchange_refuses_a_token_signed_by_another_key(iam):
    client = iam.client("dlaas-test")
    real = code_flow_tokens(iam, client, "alice", "alice-pass")["access_token"]
    header = jwt.get_unverified_header(real)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        jwt.decode(real, options={"verify_signature": False}),
        forger,
        algorithm="RS256",
        headers={"kid": header["kid"], "typ": "at+jwt"},
    )
    with pytest.raises(LoginError, match="invalid_grant.*not issued by this IAM"):
        exchange(iam, client, forged, audience="rucio", scope="openid profile")


def test_a_client_not_allowed_to_introspect_learns_nothing_and_an_anonymous_caller_is_refused(iam):
    client = iam.client("dlaas-test")
    tokens = code_flow_tokens(iam, client, "alice", "alice-pass")
    auth = (client["client_id"], client["client_secret"])
    answer = requests.post(f"{iam.url}/introspect", data={"token": tokens["access_token"]}, auth=auth, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"active": False}
    anonymous = requests.post(f"{iam.url}/introspect", data={"token": tokens["access_token"]}, timeout=5)
    assert anonymous.status_code == 401


def test_no_token_or_password_reaches_the_log(iam):
    tokens = code_flow_tokens(iam, iam.client("dlaas-test"), "alice", "alice-pass")
    log = iam.process.log_path.read_text()
    for secret in (
        tokens["access_token"],
        tokens["refresh_token"],
        "alice-pass",
        iam.client("dlaas-test")["client_secret"],
    ):
        assert secret not in log
    assert "POST /token 200" in log


@pytest.fixture
def short_lived_iam(tmp_path):
    settings = Settings(state_dir=tmp_path, iam_port=0)
    iam = DevIAM(settings, access_token_ttl=2)
    iam.add_client("dlaas-test", [TEST_REDIRECT], token_exchange=True)
    iam.start()
    yield iam
    iam.stop()


def test_an_expired_subject_token_cannot_be_exchanged(short_lived_iam):
    iam = short_lived_iam
    client = iam.client("dlaas-test")
    subject = code_flow_tokens(iam, client, "alice", "alice-pass")["access_token"]
    assert exchange(iam, client, subject, audience="rucio", scope="openid")["expires_in"] == 2
    time.sleep(3.1)
    with pytest.raises(LoginError, match="invalid_grant.*expired"):
        exchange(iam, client, subject, audience="rucio", scope="openid")


def test_the_signing_key_survives_a_restart(short_lived_iam):
    iam = short_lived_iam
    before = requests.get(f"{iam.url}/jwk", timeout=5).json()
    keys_file = iam.dir / "keys.json"
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    assert oct((iam.dir / "clients.json").stat().st_mode & 0o777) == "0o600"
    iam.restart()
    assert requests.get(f"{iam.url}/jwk", timeout=5).json() == before


def test_a_busy_port_gives_a_clear_error_and_leaves_nothing_running(iam, tmp_path):
    taken = DevIAM(Settings(state_dir=tmp_path, iam_port=iam.port))
    with pytest.raises(ServiceError, match=f"port 127.0.0.1:{iam.port} for dev IAM is already in use.*DLAAS_IAM_PORT"):
        taken.start()
    assert taken.process is None
