"""EscapeIAMAuthenticator's own decisions, driven end to end against an IdP at the HTTP layer (conftest.FakeIdP):
configuration checks, verified exchanged tokens, hub accounts pinned to their IAM `sub`, refresh and its back-off,
logout."""

import asyncio
import json
import time

import pytest
from jupyterhub.crypto import CryptKeeper
from tornado import web
from traitlets import TraitError

from hub_plugins.authenticator import OTHER_IDENTITY, UNREACHABLE, UNUSABLE, EscapeIAMAuthenticator, Failure
from hub_plugins.token_exchange import GRANT_TYPE

from .conftest import ISSUER, FakeHandler, FakeIdP, FakeUser, log_in, make_authenticator, new_key


def expire_soon(user, seconds=10):
    """Make the user's exchanged tokens look close to expiry (within any refresh margin)."""
    state = user.state
    for token in state["exchanged"].values():
        token["expires_at"] = time.time() + seconds
    user.saved = json.dumps(state)


# --- configuration ------------------------------------------------------------------------------------------


def test_refuses_to_start_without_an_auth_state_key(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    CryptKeeper.clear_instance()
    with pytest.raises(ValueError, match="JUPYTERHUB_CRYPT_KEY"):
        make_authenticator()


def test_refuses_to_run_without_auth_state(crypt_key):
    with pytest.raises(ValueError, match="enable_auth_state"):
        make_authenticator(enable_auth_state=False)


def test_defaults_fit_iam(crypt_key):
    auth = EscapeIAMAuthenticator(issuer=ISSUER, client_id="h", client_secret="s")
    assert auth.enable_pkce and auth.manage_groups and not auth.allow_hub_admins
    assert auth.scope == ["openid", "profile", "email", "offline_access"]
    assert auth.username_claim == "preferred_username"
    assert auth.auth_state_groups_key({"oauth_user": {"groups": ["escape/users"]}}) == ["escape/users"]
    assert auth.login_service == "ESCAPE IAM"
    assert auth.refresh_backoff == 30


async def test_under_the_wlcg_profile_groups_come_from_wlcg_groups_which_the_login_requests(crypt_key):
    idp = FakeIdP(
        users={"alice": "sub-alice", "carol": "sub-carol"},
        groups={"alice": ["escape/users", "escape/dlaas-admins"], "carol": ["escape/guests"]},
    )
    idp.profile = "wlcg"
    auth = make_authenticator(idp, token_profile="wlcg")
    assert "wlcg.groups" in auth.scope  # IAM releases wlcg.groups only when asked for
    model, _ = await log_in(auth, "alice")
    assert sorted(model["groups"]) == ["escape/dlaas-admins", "escape/users"]  # leading '/' gone: same names as `iam`
    # Not in an allowed group: no user (JupyterHub answers the 403 page).
    assert await auth.get_authenticated_user(FakeHandler("carol", ()), None) is None
    # Reading `groups` under the WLCG profile would refuse everybody: the profile decides which claim counts.
    assert await make_authenticator(idp).get_authenticated_user(FakeHandler("alice", ()), None) is None


def test_an_unknown_token_profile_is_refused_at_start(crypt_key):
    with pytest.raises(TraitError, match="token_profile must be one of"):
        make_authenticator(token_profile="scitokens")


@pytest.mark.parametrize("setting", [{"admin_groups": {"escape/admins"}}, {"admin_users": {"alice"}}])
def test_hub_admins_are_refused_at_start_unless_the_operator_accepts_them(crypt_key, setting):
    with pytest.raises(ValueError, match="refuses admin_users/admin_groups.*allow_hub_admins = True"):
        make_authenticator(**setting)
    assert make_authenticator(**setting, allow_hub_admins=True).allow_hub_admins


def test_an_own_reconcile_hook_is_refused(crypt_key):
    with pytest.raises(ValueError, match="reconcile_auth_state_hook"):
        make_authenticator(reconcile_auth_state_hook=lambda a, m, e: m["auth_state"])


def test_bad_exchange_targets_are_refused_at_startup(crypt_key):
    with pytest.raises(TraitError, match="needs an 'audience'"):
        make_authenticator(exchange_targets={"rucio": {"scope": "openid"}})
    with pytest.raises(TraitError, match="needs a 'scope'"):  # INDIGO IAM refuses scope-less exchanges
        make_authenticator(exchange_targets={"rucio": {"audience": "rucio"}})
    with pytest.raises(TraitError, match="remove offline_access"):
        make_authenticator(exchange_targets={"rucio": {"audience": "rucio", "scope": "openid offline_access"}})


def test_negative_refresh_margin_is_refused(crypt_key):
    with pytest.raises(TraitError, match="refresh_margin"):
        make_authenticator(refresh_margin=-1)


def test_needs_refresh_within_the_margin_or_when_a_target_is_missing(crypt_key):
    auth = make_authenticator(refresh_margin=60)
    now = 1000.0
    fresh = {"exchanged": {"rucio": {"expires_at": now + 3600}, "eos": {"expires_at": now + 61}}}
    assert not auth.needs_refresh(fresh, now)
    assert auth.needs_refresh(
        {"exchanged": {"rucio": {"expires_at": now + 3600}, "eos": {"expires_at": now + 60}}}, now
    )
    assert auth.needs_refresh({"exchanged": {"rucio": {"expires_at": now + 3600}}}, now)
    assert auth.needs_refresh({}, now)


# --- login: verified tokens, pinned identity ------------------------------------------------------------------


async def test_login_keeps_verified_exchanged_tokens_and_pins_the_sub(crypt_key, idp):
    auth = make_authenticator(idp)
    model, user = await log_in(auth)
    state = user.state
    assert state["sub"] == "sub-alice" and state["session"]
    assert set(state["exchanged"]) == {"rucio", "eos"}
    assert state["exchanged"]["rucio"]["expires_at"] <= time.time() + 3600
    assert model["admin"] is False  # never a JupyterHub admin without allow_hub_admins
    assert auth.revocation_url == f"{ISSUER}revoke" and auth.jwks_url == f"{ISSUER}jwk"


@pytest.mark.parametrize(
    "tamper, reason",
    [
        ({"claims": {"aud": "someone-else"}}, "audience is not 'rucio'"),
        ({"claims": {"iss": "http://evil.test/"}}, "issuer is not"),
        ({"claims": {"sub": "sub-mallory"}}, "another identity"),
        ({"claims": {"exp": int(time.time()) - 5}}, "expired"),
        ({"forged": True}, "signature does not verify"),
    ],
)
async def test_a_token_with_the_wrong_audience_issuer_subject_expiry_or_signature_is_refused(
    crypt_key, idp, caplog, tamper, reason
):
    idp.claims = tamper.get("claims", {})
    if tamper.get("forged"):  # signed by an attacker's key that claims IAM's key id
        idp.sign_with = {**new_key("k1")}
    auth = make_authenticator(idp)
    with pytest.raises(web.HTTPError) as e:
        await log_in(auth)
    assert e.value.status_code == 503 and e.value.log_message == UNUSABLE
    assert reason in caplog.text


async def test_an_unknown_signing_key_refetches_the_keys_once(crypt_key, idp):
    auth = make_authenticator(idp)
    await log_in(auth)
    assert idp.count("/jwk") == 1
    idp.keys["k2"] = new_key("k2")  # IAM rotates its signing key
    idp.sign_with = "k2"
    await log_in(auth)
    assert idp.count("/jwk") == 2
    del idp.keys["k2"]
    idp.keys["k3"] = new_key("k3")
    idp.sign_with = {**new_key("k4")}  # a key IAM does not publish: one refetch, then refused
    with pytest.raises(web.HTTPError):
        await log_in(auth)
    assert idp.count("/jwk") == 3


DISCOVERY = "/.well-known/openid-configuration"
MISCONFIGURED = "The hub's ESCAPE IAM settings are wrong; please tell the service operators"
CODE_REFUSED = "ESCAPE IAM did not accept this login"
NO_DATA_LAKE_TOKENS = "ESCAPE IAM did not issue the Data Lake tokens; please try again in a minute"


@pytest.mark.parametrize(
    "fail, status, page",
    [
        # The IdP down or failing: a "try again" page, whichever request met it.
        ({DISCOVERY: [ConnectionRefusedError()]}, 503, UNREACHABLE),
        ({DISCOVERY: [599]}, 503, UNREACHABLE),  # tornado's code for a timeout or a connection error (curl)
        ({DISCOVERY: [502]}, 503, UNREACHABLE),
        ({"authorization_code": [500]}, 503, UNREACHABLE),
        ({"authorization_code": [599]}, 503, UNREACHABLE),
        ({"authorization_code": [ConnectionResetError()]}, 503, UNREACHABLE),
        ({"/userinfo": [503]}, 503, UNREACHABLE),
        ({GRANT_TYPE: [503]}, 503, NO_DATA_LAKE_TOKENS),
        ({GRANT_TYPE: [400]}, 503, NO_DATA_LAKE_TOKENS),
        # A discovery document that is not there: the hub's settings are wrong, not the IdP's availability.
        ({DISCOVERY: [404]}, 503, MISCONFIGURED),
        # The code refused (a reloaded callback page: its one-time code is spent): log in again.
        ({"authorization_code": [400]}, 400, CODE_REFUSED),
    ],
)
async def test_idp_errors_at_login_give_the_page_that_says_what_to_do(crypt_key, idp, caplog, fail, status, page):
    idp.fail = fail
    auth = make_authenticator(idp, exchange_retries=0)
    with pytest.raises(web.HTTPError) as e:
        await auth.get_authenticated_user(FakeHandler("alice"), None)
    assert e.value.status_code == status
    assert e.value.log_message.startswith(page)
    assert "Traceback" not in caplog.text
    # Nothing was kept of the failed login, and the next login works once IAM answers again.
    model, _ = await log_in(auth)
    assert set(model["auth_state"]["exchanged"]) == {"rucio", "eos"}


async def test_a_discovery_document_naming_another_issuer_is_a_settings_error(crypt_key, idp):
    auth = make_authenticator(idp, issuer="http://iam.test")  # without the trailing slash IAM's `iss` has
    with pytest.raises(web.HTTPError) as e:
        await auth.get_authenticated_user(FakeHandler("alice"), None)
    assert (e.value.status_code, e.value.log_message) == (503, MISCONFIGURED)


async def test_a_different_sub_with_the_same_username_is_refused(crypt_key, idp):
    auth = make_authenticator(idp)
    _, alice = await log_in(auth)
    idp.users["alice"] = "sub-of-a-new-alice"  # IAM account recreated, or another person given the username
    with pytest.raises(web.HTTPError) as e:
        await log_in(auth, users=[alice])
    assert e.value.status_code == 403 and e.value.log_message == OTHER_IDENTITY
    assert alice.state["sub"] == "sub-alice"


# --- refresh --------------------------------------------------------------------------------------------------


async def test_refresh_does_nothing_while_tokens_are_fresh(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    before = len(idp.requests)
    assert await auth.refresh_user(user) is True
    assert len(idp.requests) == before


async def test_refresh_renews_ahead_of_expiry_and_keeps_the_pin(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)
    old = user.state
    model = await auth.refresh_user(user)
    assert idp.count("refresh_token") == 1
    assert model["auth_state"]["refresh_token"] == old["refresh_token"], "no new refresh token: the old one stays"
    assert model["auth_state"]["sub"] == "sub-alice" and model["auth_state"]["session"] == old["session"]
    assert user.state["exchanged"]["rucio"]["expires_at"] > time.time() + 3000  # saved by the refresh itself


@pytest.mark.parametrize("code", [400, 401])
async def test_a_refused_refresh_token_forces_a_new_login(crypt_key, idp, code):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)
    idp.fail["refresh_token"] = [code]
    assert await auth.refresh_user(user) is False
    assert auth.recent_failure("alice").final


async def test_a_rotated_refresh_token_survives_a_failed_exchange(crypt_key, idp):
    idp.rotate = True
    auth = make_authenticator(idp, refresh_margin=60, exchange_retries=0)
    _, user = await log_in(auth)
    old_refresh = user.state["refresh_token"]
    expire_soon(user, seconds=30)
    idp.fail[GRANT_TYPE] = [503]
    # IAM rotated the refresh token, then the exchange failed: the user stays logged in on her valid tokens...
    assert await auth.refresh_user(user) is True
    assert user.state["refresh_token"] != old_refresh
    assert old_refresh not in idp.refresh_tokens and user.state["refresh_token"] in idp.refresh_tokens
    # ...and the new refresh token works once the back-off is over.
    auth._failures["alice"] = Failure(time.monotonic() - 31, False)
    model = await auth.refresh_user(user)
    assert isinstance(model, dict) and model["auth_state"]["exchanged"]["rucio"]["expires_at"] > time.time() + 3000


async def test_a_failed_refresh_is_not_retried_within_the_back_off(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60, exchange_retries=0, refresh_backoff=30)
    _, user = await log_in(auth)
    expire_soon(user, seconds=30)
    idp.fail["refresh_token"] = [503]
    calls = len(idp.requests)
    assert await auth.refresh_user(user) is True  # IAM down, tokens still valid: keep working
    for _ in range(5):
        assert await auth.refresh_user(user) is True
    assert len(idp.requests) == calls + 1, "a failed refresh was retried within the back-off"
    expire_soon(user, seconds=-1)  # once the tokens have expired, the answer is a failed refresh
    assert await auth.refresh_user(user) is False
    assert not auth.recent_failure("alice").final  # the token API answers 503, not "log in again"


async def test_a_refresh_returning_another_sub_is_refused(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)
    idp.users["alice"] = "sub-someone-else"
    assert await auth.refresh_user(user) is False
    assert user.state["sub"] == "sub-alice"


async def test_leaving_the_allowed_iam_group_ends_the_tokens_at_the_next_refresh(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)
    idp.groups["alice"] = ["escape/guests"]
    assert await auth.refresh_user(user) is False


async def test_concurrent_requests_refresh_once(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)

    async def storm():
        return await asyncio.gather(*(auth.refresh_user(user) for _ in range(10)))

    results = await storm()
    assert idp.count("refresh_token") == 1
    assert sum(isinstance(r, dict) for r in results) == 1 and results.count(True) == 9


async def test_no_refresh_token_means_log_in_again(crypt_key):
    auth = make_authenticator()
    assert await auth.refresh_user(FakeUser(state={"exchanged": {}})) is False
    assert await auth.refresh_user(FakeUser(state=None)) is False


# --- logout ---------------------------------------------------------------------------------------------------


async def test_logout_drops_the_tokens_keeps_the_pin_and_revokes_the_refresh_token(crypt_key, idp):
    auth = make_authenticator(idp)
    _, user = await log_in(auth)
    refresh_token = user.state["refresh_token"]

    async def logout():
        await auth.end_session(user)
        await asyncio.gather(*auth._background)

    await logout()
    assert user.state == {"sub": "sub-alice"}
    assert idp.revoked == [refresh_token]


async def test_a_refresh_finishing_after_logout_does_not_bring_the_tokens_back(crypt_key, idp):
    auth = make_authenticator(idp, refresh_margin=60)
    _, user = await log_in(auth)
    expire_soon(user)
    model = await auth.refresh_user(user)

    async def logout():
        await auth.end_session(user)
        await asyncio.gather(*auth._background)

    await logout()
    # JupyterHub saves the refresh result through the reconcile hook after refresh_user returned
    assert auth.reconcile(model, user.state) == {"sub": "sub-alice"}


async def test_a_failing_revocation_never_blocks_logout(crypt_key, idp, caplog):
    auth = make_authenticator(idp)
    _, user = await log_in(auth)
    idp.fail["/revoke"] = [503]
    refresh_token = user.state["refresh_token"]

    async def logout():
        await auth.end_session(user)
        await asyncio.gather(*auth._background)

    await logout()
    assert "refresh_token" not in user.state
    assert "revoking alice's IAM refresh token failed (HTTP 503)" in caplog.text
    assert refresh_token not in caplog.text


def test_existing_hub_admins_lose_the_admin_role_at_hub_start(crypt_key):
    from jupyterhub import orm, roles

    db = orm.new_session_factory("sqlite://")()
    for spec in roles.get_default_roles():
        roles.create_role(db, spec)
    former = orm.User(name="admin", admin=True)
    db.add(former)
    db.commit()
    roles.assign_default_roles(db, entity=former)
    assert "admin" in {r.name for r in former.roles}
    make_authenticator().add_user(former)  # what JupyterHub does for every user in its database when it starts
    assert former.admin is False and "admin" not in {r.name for r in former.roles}
    kept = orm.User(name="root", admin=True)
    db.add(kept)
    db.commit()
    make_authenticator(admin_users={"root"}, allow_hub_admins=True).add_user(kept)
    assert kept.admin is True


# --- hub state that grows ---------------------------------------------------------------------------------------


async def test_per_user_locks_and_failures_do_not_pile_up_over_many_users(crypt_key, idp):
    auth = make_authenticator(idp, refresh_backoff=0.05)
    n = 300

    async def refresh_all(batch):
        users = [FakeUser(f"user{batch}-{i}", {"refresh_token": f"rt-{batch}-{i}", "exchanged": {}}) for i in range(n)]
        idp.fail["refresh_token"] = [503] * n  # IAM failing: every refresh fails and starts a back-off
        return await asyncio.gather(*(auth.refresh_user(u) for u in users))

    assert await refresh_all(0) == [False] * n
    assert len(auth._user_locks) == 0, "a lock nobody holds or waits for is forgotten"
    assert 0 < len(auth._failures) <= n  # each failure backs off (early ones may be over already)
    time.sleep(0.1)  # longer than the back-off: those records are of no use any more
    await refresh_all(1)
    assert len(auth._user_locks) == 0
    assert 0 < len(auth._failures) <= n and all(name.startswith("user1-") for name in auth._failures)


async def test_a_lock_outlives_its_holders_only_as_long_as_someone_waits(crypt_key, idp):
    auth = make_authenticator(idp)

    async def hold():
        lock = auth.user_lock("alice")
        async with lock:
            waiter = asyncio.ensure_future(auth.user_lock("alice").acquire())
            await asyncio.sleep(0)
            assert auth.user_lock("alice") is lock and not waiter.done()
        await waiter
        lock.release()
        del lock, waiter

    await hold()
    assert "alice" not in auth._user_locks
