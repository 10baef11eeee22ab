"""The hub's roles: IAM operators run the hub without reaching users' tokens; users hold the token scope for
themselves only; one function sets it up for the local stack and for z2jh."""

import pytest
from jupyterhub.scopes import define_custom_scopes, expand_scopes, parse_scopes
from traitlets.config import Config

from hub_plugins import hub_roles
from hub_plugins.hub_roles import OPERATOR_ROLE, SCOPE
from hub_plugins.token_api import may_read


def applied(**auth):
    c = Config()
    for name, value in auth.items():
        setattr(c.EscapeIAMAuthenticator, name, value)
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", SCOPE]}, {"name": "culler", "scopes": ["servers"]}]
    hub_roles.apply(c)
    return c


def role(c, name):
    return next(r for r in c.JupyterHub.load_roles if r["name"] == name)


def test_operators_get_the_admin_page_users_groups_and_servers_but_no_tokens_auth_state_or_servers():
    c = applied(operator_groups={"escape/admins"})
    operator = role(c, OPERATOR_ROLE)
    assert operator["groups"] == ["escape/admins"]
    define_custom_scopes({SCOPE: {"description": hub_roles.SCOPE_DESCRIPTION}})  # as the hub defines it
    expanded = {s.partition("!")[0] for s in expand_scopes(operator["scopes"])}
    assert {
        "admin-ui",
        "list:users",
        "read:users",
        "start:servers",
        "delete:servers",
        "delete:users",
        "admin:groups",
    } <= expanded
    assert not expanded & {"admin:auth_state", "admin:users", "tokens", "read:tokens", "access:servers", SCOPE}


def test_extra_operator_scopes_are_an_explicit_opt_in():
    c = applied(operator_groups={"ops"}, operator_scopes=["admin:users"])
    assert "admin:users" in role(c, OPERATOR_ROLE)["scopes"]
    assert not any(r["name"] == OPERATOR_ROLE for r in applied().JupyterHub.load_roles)


def test_users_hold_the_token_scope_for_themselves_only_and_servers_for_themselves():
    c = applied()
    assert role(c, "user")["scopes"] == [
        "self",
        f"{SCOPE}!user",
        "access:services!service=dlaas-registrar",
        "access:services!service=dask-gateway",
    ]
    assert role(c, "culler")["scopes"] == ["servers"]
    assert f"{SCOPE}!server" in c.Spawner.server_token_scopes
    assert "access:services!service=dlaas-registrar" in c.Spawner.server_token_scopes
    assert c.JupyterHub.custom_scopes[SCOPE]["description"]
    assert c.JupyterHub.token_expires_in_max_seconds == 30 * 24 * 3600


def test_a_configured_token_lifetime_cap_is_kept():
    c = Config()
    c.JupyterHub.token_expires_in_max_seconds = 3600
    hub_roles.apply(c)
    assert c.JupyterHub.token_expires_in_max_seconds == 3600


def test_an_own_operator_role_is_refused():
    c = Config()
    c.JupyterHub.load_roles = [{"name": OPERATOR_ROLE, "scopes": ["inherit"]}]
    with pytest.raises(ValueError, match="operator_scopes"):
        hub_roles.apply(c)


class App:
    def __init__(self, c):
        self.load_roles = c.JupyterHub.get("load_roles", [])
        self.custom_scopes = c.JupyterHub.get("custom_scopes", {})


def test_the_authenticator_notices_a_configuration_that_skipped_or_preceded_apply():
    c = applied(operator_groups={"escape/admins"})
    assert hub_roles.configuration_problem(App(c), {"escape/admins"}, []) is None
    assert "operator_groups" in hub_roles.configuration_problem(App(c), {"escape/admins"}, ["admin:users"])
    assert "not defined" in hub_roles.configuration_problem(App(Config()), set(), [])


@pytest.mark.parametrize(
    "scopes, allowed",
    [
        ({f"{SCOPE}!user=alice"}, True),
        ({f"{SCOPE}!server=alice/"}, True),
        ({f"{SCOPE}!user=bob"}, False),
        ({f"{SCOPE}!server=alice/other"}, False),
        ({"read:users!user=alice"}, False),
    ],
)
def test_the_token_api_respects_scope_filters(scopes, allowed):
    assert may_read(parse_scopes(frozenset(scopes)), "alice", "") is allowed
