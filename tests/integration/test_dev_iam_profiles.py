"""The dev IAM shapes userinfo and tokens as INDIGO IAM's `iam` and `wlcg` profiles do: under wlcg there is no
`groups` anywhere, `wlcg.ver` is on the tokens, and group membership (`/escape/users`) appears as `wlcg.groups`
only when the `wlcg.groups` scope was asked for and granted.

Own dev IAM per profile (real node process), scripted browser-style logins.
"""

import jwt
import pytest
import requests

from devstack.iam import DevIAM
from devstack.iam_login import LoginError, code_flow_tokens, exchange
from devstack.settings import Settings
from tests.helpers import TEST_REDIRECT

BASE = "openid profile email offline_access"


def _start(tmp_path_factory, profile: str) -> DevIAM:
    iam = DevIAM(Settings(state_dir=tmp_path_factory.mktemp(f"iam-{profile}"), iam_port=0), profile=profile)
    iam.add_client("portal", [TEST_REDIRECT], token_exchange=True)
    iam.add_client(
        "old-portal", [TEST_REDIRECT], token_exchange=True, scopes=["openid", "profile", "email", "offline_access"]
    )
    return iam.start()


@pytest.fixture(scope="module")
def iam_profile(tmp_path_factory):
    iam = _start(tmp_path_factory, "iam")
    yield iam
    iam.stop()


@pytest.fixture(scope="module")
def wlcg_profile(tmp_path_factory):
    iam = _start(tmp_path_factory, "wlcg")
    yield iam
    iam.stop()


def _verified(iam, token: str, audience: str | None = None) -> dict:
    jwks = requests.get(f"{iam.url}/jwk", timeout=5).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        issuer=iam.issuer,
        audience=audience,
        options={"verify_aud": audience is not None},
    )


def _userinfo(iam, access_token: str) -> dict:
    answer = requests.get(f"{iam.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    assert answer.status_code == 200
    return answer.json()


def _login(iam, user: str, scope: str, client: str = "portal") -> dict:
    return code_flow_tokens(iam, iam.client(client), user, iam.user(user)["password"], scope=scope)


def test_under_the_iam_profile_groups_are_in_userinfo_and_tokens_and_there_is_no_wlcg_claim(iam_profile):
    tokens = _login(iam_profile, "admin", BASE)
    access = _verified(iam_profile, tokens["access_token"])
    ident = _verified(iam_profile, tokens["id_token"], audience="portal")
    info = _userinfo(iam_profile, tokens["access_token"])
    for claims in (access, ident, info):
        assert claims["groups"] == ["escape/users", "escape/admins"]
        assert not any(name.startswith("wlcg.") for name in claims)
    assert access["scope"] == BASE


def test_under_the_wlcg_profile_tokens_carry_wlcg_ver_and_nobody_sees_groups_without_the_scope(wlcg_profile):
    tokens = _login(wlcg_profile, "alice", BASE)
    access = _verified(wlcg_profile, tokens["access_token"], audience="https://wlcg.cern.ch/jwt/v1/any")
    ident = _verified(wlcg_profile, tokens["id_token"], audience="portal")
    info = _userinfo(wlcg_profile, tokens["access_token"])
    assert access["wlcg.ver"] == "1.0" and ident["wlcg.ver"] == "1.0"
    assert access["scope"] == BASE and access["nbf"] <= access["iat"]
    for claims in (access, ident, info):
        assert "groups" not in claims and "wlcg.groups" not in claims
    assert info["preferred_username"] == "alice" and info["sub"] == wlcg_profile.user("alice")["sub"]


def test_under_the_wlcg_profile_the_wlcg_groups_scope_brings_group_names_with_a_leading_slash(wlcg_profile):
    tokens = _login(wlcg_profile, "admin", f"{BASE} wlcg.groups")
    access = _verified(wlcg_profile, tokens["access_token"])
    ident = _verified(wlcg_profile, tokens["id_token"], audience="portal")
    info = _userinfo(wlcg_profile, tokens["access_token"])
    for claims in (access, ident, info):
        assert claims["wlcg.groups"] == ["/escape/admins", "/escape/users"]
        assert "groups" not in claims
    assert "wlcg.groups" in access["scope"].split()
    bob = _userinfo(wlcg_profile, _login(wlcg_profile, "bob", "openid profile wlcg.groups")["access_token"])
    assert bob["wlcg.groups"] == ["/escape/guests"]


def test_under_the_wlcg_profile_an_exchanged_token_has_groups_only_if_the_exchange_asks_for_them(wlcg_profile):
    portal = wlcg_profile.client("portal")
    subject = _login(wlcg_profile, "alice", f"{BASE} wlcg.groups")["access_token"]
    plain = exchange(wlcg_profile, portal, subject, audience="rucio", scope="openid profile")["access_token"]
    claims = _verified(wlcg_profile, plain, audience="rucio")
    assert claims["wlcg.ver"] == "1.0" and claims["scope"] == "openid profile"
    assert "wlcg.groups" not in claims and "groups" not in claims
    assert "wlcg.groups" not in _userinfo(wlcg_profile, plain)
    grouped = exchange(wlcg_profile, portal, subject, audience="rucio", scope="openid profile wlcg.groups")
    assert _verified(wlcg_profile, grouped["access_token"], audience="rucio")["wlcg.groups"] == ["/escape/users"]
    assert _userinfo(wlcg_profile, grouped["access_token"])["wlcg.groups"] == ["/escape/users"]


@pytest.mark.parametrize("profile", ["iam", "wlcg"])
def test_a_client_not_registered_for_wlcg_groups_cannot_ask_for_it(profile, iam_profile, wlcg_profile):
    iam = iam_profile if profile == "iam" else wlcg_profile
    with pytest.raises(LoginError, match="requested scope is not allowed"):
        _login(iam, "alice", f"{BASE} wlcg.groups", client="old-portal")


def test_the_hubs_client_is_registered_for_wlcg_groups_only_under_the_wlcg_profile(tmp_path):
    settings = Settings(state_dir=tmp_path, iam_port=0)
    assert "wlcg.groups" not in DevIAM(settings).add_client("hub", [TEST_REDIRECT])["scopes"]
    assert "wlcg.groups" in DevIAM(settings, profile="wlcg").add_client("hub", [TEST_REDIRECT])["scopes"]


def test_impossible_profile_options_are_refused_with_one_clear_line(tmp_path):
    settings = Settings(state_dir=tmp_path, iam_port=0)
    with pytest.raises(ValueError, match="profile must be one of iam, wlcg"):
        DevIAM(settings, profile="keycloak")
    with pytest.raises(ValueError, match="WLCG profile tokens always carry scope"):
        DevIAM(settings, profile="wlcg", scope_claim=False)
