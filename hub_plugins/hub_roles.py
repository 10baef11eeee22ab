"""Who may do what on the hub: DLaaS's roles and scopes, set up by one function for every deployment.

JupyterHub's `admin` role cannot be narrowed: it carries `admin:auth_state` (every user's IAM refresh token) and
`tokens` (minting a token for anyone, `custom:dlaas-tokens` included). So members of the IAM operator group do not
become hub admins: they get the `dlaas-operator` role, which opens the admin page, lists and reads users, starts
and stops servers and manages users and groups - and cannot read auth_state, create or read other users' tokens,
or enter their servers (a server holds its user's Data Lake token files). Operators who need more list the extra
scopes in `EscapeIAMAuthenticator.operator_scopes`; the authenticator refuses `admin_users`/`admin_groups` unless
`allow_hub_admins` says the operator accepts what that role can read.

Users (and through them their servers' tokens) hold `custom:dlaas-tokens` for themselves only; the token API
answers only the token JupyterHub gave a running server (token_api.py), so a personal token holding the scope
still gets nothing.

Applied by hub_plugins.hub_config.configure(c), last in every deployment's hub configuration.
"""

from __future__ import annotations

SCOPE = "custom:dlaas-tokens"
SCOPE_DESCRIPTION = "Read your own short-lived Data Lake access tokens (user servers only)."
OPERATOR_ROLE = "dlaas-operator"
#: The JupyterHub service registering scratch uploads; users and their servers may call it.
REGISTRAR_SERVICE = "dlaas-registrar"
REGISTRAR_ACCESS = f"access:services!service={REGISTRAR_SERVICE}"
#: Dask Gateway (docs/dask.md): users and their servers may create, see and stop their own clusters there.
DASK_GATEWAY_SERVICE = "dask-gateway"
DASK_GATEWAY_ACCESS = f"access:services!service={DASK_GATEWAY_SERVICE}"
#: The JupyterHub service Prometheus scrapes as (/hub/metrics, the registrar's metrics): it reads metrics only.
METRICS_SERVICE = "prometheus"

USER_SCOPES = ["self", f"{SCOPE}!user", REGISTRAR_ACCESS, DASK_GATEWAY_ACCESS]
#: JupyterHub's defaults for a server's token, plus the token API and the registrar, each for this server only.
SERVER_TOKEN_SCOPES = [
    "access:servers!server",
    "users:activity!user",
    f"{SCOPE}!server",
    REGISTRAR_ACCESS,
    DASK_GATEWAY_ACCESS,
]
#: The admin page, users (read, list, delete), servers (read, start, stop), groups - no auth_state, tokens or
#: access to anyone's server.
OPERATOR_SCOPES = [
    "admin-ui",
    "list:users",
    "read:users",
    "users",
    "delete:users",
    "servers",
    "admin:groups",
    "read:roles",
    "read:hub",
    "list:services",
    "read:services",
    "read:metrics",
]
#: Scopes that reach users' IAM or Data Lake tokens: named in a warning when an operator adds them.
SENSITIVE_SCOPES = {
    "admin:users",
    "admin:auth_state",
    "tokens",
    "access:servers",
    "shares",
    "inherit",
    "admin:services",
    SCOPE,
}
DEFAULT_TOKEN_MAX_AGE = 30 * 24 * 3600


def operator_role(groups, extra_scopes=()) -> dict:
    return {
        "name": OPERATOR_ROLE,
        "description": "DLaaS operators: admin page, users, groups and servers; no auth_state, tokens or servers",
        "scopes": OPERATOR_SCOPES + [s for s in extra_scopes if s not in OPERATOR_SCOPES],
        "groups": sorted(groups),
    }


def roles(load_roles, *, operator_groups=(), operator_scopes=()) -> list[dict]:
    """`load_roles` with the user role narrowed to DLaaS's needs and the operator role added."""
    result = []
    for role in load_roles:
        if role.get("name") == OPERATOR_ROLE:
            raise ValueError(
                f"the {OPERATOR_ROLE} role is built by hub_plugins.hub_roles: add scopes through "
                "EscapeIAMAuthenticator.operator_scopes and groups through operator_groups instead"
            )
        if role.get("name") == "user":
            others = [s for s in role.get("scopes", []) if s.partition("!")[0] != SCOPE and s not in USER_SCOPES]
            role = {**role, "scopes": USER_SCOPES + others}
        result.append(role)
    if not any(r.get("name") == "user" for r in result):
        result.insert(0, {"name": "user", "scopes": list(USER_SCOPES)})
    if operator_groups:
        result.append(operator_role(operator_groups, operator_scopes))
    return result


def apply(c, *, token_max_age: int = DEFAULT_TOKEN_MAX_AGE) -> None:
    """Set DLaaS's custom scope, roles and server token scopes in the hub configuration `c`.

    Reads `EscapeIAMAuthenticator.operator_groups` and `operator_scopes` from `c`, so call it after they are set.
    `token_max_age` caps the lifetime of tokens users create (`JupyterHub.token_expires_in_max_seconds`) unless
    the configuration already sets it.
    """
    auth = c.EscapeIAMAuthenticator
    hub = c.JupyterHub
    hub.custom_scopes = {**hub.get("custom_scopes", {}), SCOPE: {"description": SCOPE_DESCRIPTION}}
    hub.load_roles = roles(
        hub.get("load_roles", []),
        operator_groups=auth.get("operator_groups", ()),
        operator_scopes=auth.get("operator_scopes", ()),
    )
    services = hub.get("services", [])
    if any(s.get("name") == METRICS_SERVICE for s in services) and METRICS_SERVICE not in {
        r.get("name") for r in hub.load_roles
    }:
        metrics_role = {"name": METRICS_SERVICE, "services": [METRICS_SERVICE], "scopes": ["read:metrics"]}
        hub.load_roles = [*hub.load_roles, metrics_role]
    if any(s.get("name") == DASK_GATEWAY_SERVICE for s in services) and DASK_GATEWAY_SERVICE not in {
        r.get("name") for r in hub.load_roles
    }:
        # Dask Gateway reads whether a user's server runs (it stops the clusters of ended sessions), nothing else.
        gateway_role = {"name": DASK_GATEWAY_SERVICE, "services": [DASK_GATEWAY_SERVICE], "scopes": ["read:servers"]}
        hub.load_roles = [*hub.load_roles, gateway_role]
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)
    if "token_expires_in_max_seconds" not in hub:
        hub.token_expires_in_max_seconds = token_max_age


def configuration_problem(app, operator_groups, operator_scopes) -> str | None:
    """Why the hub `app`'s loaded roles are not what apply() makes of these operator settings, or None."""
    if SCOPE not in (app.custom_scopes or {}):
        return f"the custom scope {SCOPE} is not defined"
    loaded = {r.get("name"): r for r in app.load_roles}
    user = loaded.get("user")
    if not user or f"{SCOPE}!user" not in user.get("scopes", []):
        return f"the user role lacks {SCOPE}!user"
    if any(s.partition("!")[0] == SCOPE and s != f"{SCOPE}!user" for s in user.get("scopes", [])):
        return f"the user role holds {SCOPE} beyond the user's own"
    operator = loaded.get(OPERATOR_ROLE)
    expected = operator_role(operator_groups, operator_scopes) if operator_groups else None
    if (operator and {k: operator.get(k) for k in ("scopes", "groups")}) != (
        expected and {k: expected[k] for k in ("scopes", "groups")}
    ):
        return f"the {OPERATOR_ROLE} role does not match EscapeIAMAuthenticator.operator_groups/operator_scopes"
    return None
