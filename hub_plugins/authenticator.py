"""ESCAPE IAM login for JupyterHub: OpenID Connect with PKCE, token exchange per Data Lake service, refresh ahead
of expiry, and hub accounts pinned to their IAM identity.

A thin subclass of oauthenticator's GenericOAuthenticator, registered as the `escape-iam` authenticator:

- endpoints come from the issuer's discovery document, read when a login first needs them (discovery.py): an IAM
  that is down when the hub starts gives a clear "try again" page, and logins work once it is back;
- IAM groups (the `groups` claim) drive allowed_groups and manage_groups; IAM operators get the `dlaas-operator`
  hub role (hub_roles.py), never JupyterHub's admin role unless `allow_hub_admins` says so;
- at login and at every refresh, the IAM access token is exchanged (RFC 8693) for one token per configured target,
  concurrently, and every exchanged token is verified (token_checks.py) before it is kept under `exchanged` in the
  encrypted auth_state;
- a hub account belongs to the IAM `sub` of its first login: a later login or refresh with another `sub` for the
  same username is refused;
- `refresh_user` refreshes and re-exchanges *before* an exchanged token gets within `refresh_margin` of expiry. A
  refresh token IAM rotated is kept even when the exchange after it fails; a failed refresh is not retried for
  `refresh_backoff` seconds, and while the old exchanged tokens are valid the user stays logged in;
- logout drops the IAM tokens and revokes the refresh token (logout.py); the token API (token_api.py) answers only
  running servers' own tokens, whose ids are recorded at spawn (server_tokens.py);
- logins, exchanges and refreshes are counted on /hub/metrics (metrics.py); its handlers add the token agents'
  reports (agent_reports.py) and the operators' status page (admin_page.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import secrets
import time
import weakref
from dataclasses import dataclass

import jwt
from jupyterhub import orm, roles
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from sqlalchemy import inspect as sa_inspect
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Bool, Dict, Float, Integer, List, Set, TraitError, Unicode, default, validate

from hub_plugins import hub_roles, iam_groups, metrics, server_tokens
from hub_plugins.discovery import ENDPOINTS, OPTIONAL_ENDPOINTS, DiscoveryError, discover
from hub_plugins.logout import IAMLogoutHandler, revoke
from hub_plugins.onboarding import OnboardingWorker, onboard
from hub_plugins.token_checks import JWKS, TokenCheckError, check
from hub_plugins.token_exchange import ExchangeError, Target, earliest_expiry, exchange_all

UNREACHABLE = "ESCAPE IAM is not reachable right now; please try again in a minute"
UNUSABLE = (
    "ESCAPE IAM returned a token the hub cannot use, so the login was stopped; please try again in a few "
    "minutes, and tell the service operators if this persists"
)
OTHER_IDENTITY = (
    "This hub account belongs to another ESCAPE IAM identity than the one you logged in with (your "
    "IAM account was probably renamed or recreated). Your files were not opened. Please contact the "
    "service operators: they can move the hub account to your current identity."
)
#: auth_state keys that outlive a login: the pinned identity and the running servers' token ids
PERSISTENT_KEYS = ("sub", server_tokens.KEY)
FIRST_LOGIN = "dlaas_first_login"  # a mark on the login's model, never stored
COUNTED = "dlaas_counted"  # a mark on a login's error page: its outcome is counted already
#: Whether the exchanges running now belong to a login or to a refresh (for the failures the status page lists).
_exchange_context = contextvars.ContextVar("dlaas_exchange_context", default="login")


def _login_error(outcome: str, status: int, message: str) -> web.HTTPError:
    """The error page of a failed login, counted under `outcome` (hub_plugins.metrics.LOGIN_OUTCOMES)."""
    metrics.LOGINS.labels(outcome).inc()
    error = web.HTTPError(status, message)
    setattr(error, COUNTED, True)
    return error


def _login_unavailable(log, error: DiscoveryError) -> web.HTTPError:
    """The error page for a login that cannot start or finish because of the IAM's discovery document."""
    log.warning("login: %s", error)
    if error.unreachable:
        return _login_error("iam_unreachable", 503, UNREACHABLE)
    return _login_error(
        "misconfigured", 503, "The hub's ESCAPE IAM settings are wrong; please tell the service operators"
    )


def _retryable(code: int) -> bool:
    return code == 599 or code >= 500  # 599: tornado's code for timeouts and connection errors


class IAMLoginHandler(OAuthLoginHandler):
    """oauthenticator's login redirect, after making sure the IAM's endpoints are known (clear page if not)."""

    async def get(self):
        try:
            await self.authenticator.ensure_endpoints()
        except DiscoveryError as e:
            raise _login_unavailable(self.log, e) from None
        return super().get()


class RefreshFailed(Exception):
    """A refresh that did not produce new tokens; `final` when only a new login can help."""

    def __init__(self, reason: str, *, final: bool):
        super().__init__(reason)
        self.final = final


@dataclass(frozen=True)
class Failure:
    at: float
    final: bool


class EscapeIAMAuthenticator(GenericOAuthenticator):
    login_handler = IAMLoginHandler
    logout_handler = IAMLogoutHandler

    issuer = Unicode(
        config=True,
        help="""The IAM issuer URL, e.g. https://iam-escape.cloud.cnaf.infn.it/. The authorize, token, userinfo,
        JWKS and revocation endpoints are read from its /.well-known/openid-configuration unless set explicitly.""",
    )
    jwks_url = Unicode(
        config=True, help="The issuer's signing keys (JWKS), which every exchanged token must verify with."
    )
    revocation_url = Unicode(
        config=True,
        help="""The issuer's RFC 7009 revocation endpoint: logout revokes the user's IAM refresh token there.
        Empty: none (discovered when the issuer advertises one).""",
    )

    discovery_timeout = Float(10.0, config=True, help="Timeout (s) of a request for the issuer's discovery document.")

    exchange_targets = Dict(
        config=True,
        help="""Data Lake services that need their own token: name -> {"audience": ..., "scope": ...}. At login
        and at every refresh the IAM access token is exchanged (RFC 8693) for one token per target. User servers
        receive only these exchanged tokens, through the token API.""",
    )

    @default("exchange_targets")
    def _exchange_targets_default(self):
        return {"rucio": {"audience": "rucio", "scope": "openid profile"}}

    @validate("exchange_targets")
    def _validate_exchange_targets(self, proposal):
        try:
            for name, spec in proposal["value"].items():
                Target.parse(name, spec)
        except ValueError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    exchange_timeout = Float(10.0, config=True, help="Timeout (s) of one token exchange or revocation request.")
    exchange_retries = Integer(
        2, config=True, help="Retries of an exchange after a connection error, timeout or IdP 5xx (never on 4xx)."
    )
    clock_skew = Float(
        30.0,
        config=True,
        help="Seconds of clock difference with the IdP tolerated on a token's nbf/iat (never on its expiry).",
    )

    refresh_margin = Integer(
        300,
        config=True,
        help="""Refresh the IAM token and re-exchange once any exchanged token is this close (seconds) to its
        expiry. User servers then always hold tokens valid for at least this long.""",
    )

    @validate("refresh_margin")
    def _validate_refresh_margin(self, proposal):
        if proposal["value"] < 0:
            raise TraitError("refresh_margin must be >= 0 seconds")
        return proposal["value"]

    onboard_command = List(
        Unicode(),
        config=True,
        help="""Command giving a new member her Rucio account at her first login: run once with `--serve` appended,
        as a worker that takes one IAM sub per line (hub_plugins.onboarding), e.g. ["dlaas-rucio-sync",
        "--iam-url", ..., "--client-id", ..., "--client-secret-file", ...] with the sync's Rucio client
        configuration in the hub's environment.
        Empty: the scheduled sync alone creates accounts.""",
    )
    onboard_timeout = Float(
        30.0, config=True, help="Seconds a first login waits for onboarding before going on without it."
    )

    refresh_backoff = Float(
        30.0,
        config=True,
        help="""After a failed refresh, seconds during which the user's tokens are not refreshed again: requests
        meanwhile get the current tokens while they are valid and do not reach IAM (no retry storm when IAM is
        struggling).""",
    )

    operator_groups = Set(
        Unicode(),
        config=True,
        help="""IAM groups whose members operate the service: they get the `dlaas-operator` hub role (admin page,
        users, groups, start/stop servers), never the reading of other users' tokens. Applied by
        hub_plugins.hub_config.configure(c).""",
    )
    operator_scopes = List(
        Unicode(),
        config=True,
        help="""Scopes added to the `dlaas-operator` role on top of its defaults (opt-in: e.g. `admin:users` also
        lets operators read everyone's IAM tokens). Applied by hub_plugins.hub_config.configure(c).""",
    )
    allow_hub_admins = Bool(
        False,
        config=True,
        help="""Accept admin_users / admin_groups. JupyterHub's admin role cannot be narrowed: it reads every
        user's auth_state (IAM refresh tokens) and creates tokens for anyone. Without this, the hub refuses to
        start with them and removes the admin flag from existing users.""",
    )

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True

    @default("enable_pkce")
    def _enable_pkce_default(self):
        return True

    token_profile = Unicode(
        "iam",
        config=True,
        help="""The token profile the IAM serves: `iam` (groups in userinfo's `groups`) or `wlcg` (groups only as
        `wlcg.groups`, with a leading `/`, and only when the `wlcg.groups` scope is requested - which this
        authenticator then does). Group names are compared without the leading `/` under both.""",
    )

    @validate("token_profile")
    def _validate_token_profile(self, proposal):
        if proposal["value"] not in iam_groups.PROFILES:
            raise TraitError(f"token_profile must be one of {sorted(iam_groups.PROFILES)}, not {proposal['value']!r}")
        return proposal["value"]

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email", "offline_access", *iam_groups.PROFILE_SCOPES[self.token_profile]]

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("auth_state_groups_key")
    def _groups_key_default(self):
        return iam_groups.groups_reader(self.user_auth_state_key, self.token_profile)

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("login_service")
    def _login_service_default(self):
        return "ESCAPE IAM"

    @default("custom_403_message")
    def _custom_403_message_default(self):
        groups = ", ".join(sorted(self.allowed_groups)) or "none configured"
        return (
            f"Your ESCAPE IAM account is not in a group allowed to use this service ({groups}). "
            "Ask your IAM group manager to add you, then log in again."
        )

    @default("reconcile_auth_state_hook")
    def _reconcile_default(self):
        return _reconcile_hook

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._onboarding: OnboardingWorker | None = None  # started at the first onboarding
        from jupyterhub.crypto import CryptKeeper

        if self.enable_auth_state and not CryptKeeper.instance().keys:
            raise ValueError(
                "escape-iam keeps IAM tokens in encrypted auth_state: set JUPYTERHUB_CRYPT_KEY "
                "(e.g. `openssl rand -hex 32`) in the hub's environment"
            )
        if not self.enable_auth_state:
            raise ValueError("escape-iam needs enable_auth_state = True: the IAM refresh token must stay in the hub")
        if (self.admin_users or self.admin_groups) and not self.allow_hub_admins:
            raise ValueError(
                "escape-iam refuses admin_users/admin_groups: JupyterHub admins read every user's IAM refresh "
                "token. Put operators in EscapeIAMAuthenticator.operator_groups (role dlaas-operator), or set "
                "EscapeIAMAuthenticator.allow_hub_admins = True to accept that"
            )
        if self.reconcile_auth_state_hook is not _reconcile_hook:
            raise ValueError(
                "escape-iam sets reconcile_auth_state_hook itself (it keeps users pinned to their IAM "
                "identity): use modify_auth_state_hook for changes to auth_state"
            )
        app = self.parent
        if getattr(app, "load_roles", None) is not None and hasattr(app, "custom_scopes"):
            problem = hub_roles.configuration_problem(app, self.operator_groups, self.operator_scopes)
            if problem:
                raise ValueError(f"{problem}: call hub_plugins.hub_config.configure(c) last in the hub configuration")
        sensitive = sorted(hub_roles.SENSITIVE_SCOPES.intersection(s.partition("!")[0] for s in self.operator_scopes))
        if sensitive:
            self.log.warning(
                "operator_scopes grants %s to the dlaas-operator role: operators can reach users' tokens",
                ", ".join(sensitive),
            )
        self._targets = [Target.parse(name, spec) for name, spec in self.exchange_targets.items()]
        metrics.init_targets(t.name for t in self._targets)
        # Per-user state stays as small as the hub's current activity: a user's lock lives while someone holds or
        # waits for it, a failed refresh is remembered while its back-off lasts (oldest first).
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._failures: dict[str, Failure] = {}
        self._discovery_lock = asyncio.Lock()
        self._jwks = JWKS(
            lambda request: self.http_client.fetch(request), lambda: self.jwks_url, timeout=self.exchange_timeout
        )
        self._background: set[asyncio.Task] = set()

    def get_handlers(self, app):
        from hub_plugins.admin_page import StatusPage, StatusPageHandler
        from hub_plugins.agent_reports import AgentReportHandler
        from hub_plugins.token_api import TokenAPIHandler

        page = StatusPage(parent=self, services=list(getattr(app, "services", None) or []))
        return [
            *super().get_handlers(app),
            (r"/api/dlaas/tokens", TokenAPIHandler),
            (r"/api/dlaas/agent-report", AgentReportHandler),
            (r"/dlaas/status", StatusPageHandler, {"page": page}),
        ]

    def user_lock(self, name: str) -> asyncio.Lock:
        """Serialises this hub's changes to one user's auth_state (refresh, spawn, logout).

        The lock is forgotten as soon as nobody holds or waits for it (the caller keeps it alive with `async with`).
        """
        lock = self._user_locks.get(name)
        if lock is None:
            lock = self._user_locks[name] = asyncio.Lock()
        return lock

    # --- discovery -------------------------------------------------------------------------------------------

    async def ensure_endpoints(self) -> None:
        """Fill the endpoint traits left empty from the issuer's discovery document, once.

        Done when a login or refresh first needs them, asynchronously: an IdP that is down or slow never blocks
        the hub, and loading the configuration contacts nothing. Raises DiscoveryError.
        """
        missing = [trait for trait in ENDPOINTS if not getattr(self, trait)]
        if not missing:
            return
        async with self._discovery_lock:
            if not all(getattr(self, trait) for trait in missing):
                endpoints = await discover(self.http_client.fetch, self.issuer, timeout=self.discovery_timeout)
                for trait in [*ENDPOINTS, *OPTIONAL_ENDPOINTS]:
                    if not getattr(self, trait):
                        setattr(self, trait, endpoints[trait])
                self.log.info("endpoints of %s read from its discovery document", self.issuer)

    # --- login and exchange ----------------------------------------------------------------------------------

    async def exchange(self, subject_token: str, sub: str) -> dict[str, dict]:
        """One verified token per target for the identity `sub`; ExchangeError or TokenCheckError."""
        exchanged = await exchange_all(
            self.http_client.fetch,
            self.token_url,
            self.client_id,
            self.client_secret,
            subject_token,
            self._targets,
            timeout=self.exchange_timeout,
            retries=self.exchange_retries,
        )
        for target in self._targets:
            token = exchanged[target.name]
            try:
                kid = jwt.get_unverified_header(token["access_token"]).get("kid")
                claims = check(
                    token["access_token"],
                    await self._jwks.key(kid),
                    issuer=self.issuer,
                    audience=target.audience,
                    subject=sub,
                    leeway=self.clock_skew,
                )
            except jwt.exceptions.PyJWTError:
                error = TokenCheckError(f"the {target.name} token is not a JWT")
                error.target = target.name
                raise error from None
            except TokenCheckError as e:
                error = TokenCheckError(f"the {target.name} token: {e}")
                error.target = target.name
                raise error from None
            token["expires_at"] = min(float(token["expires_at"]), float(claims["exp"]))
        return exchanged

    async def update_auth_model(self, auth_model):
        """Called by oauthenticator at login and at refresh: pin the `sub`, add the verified exchanged tokens."""
        auth_state = auth_model["auth_state"]
        sub = (auth_state.get(self.user_auth_state_key) or {}).get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenCheckError("ESCAPE IAM's userinfo names no subject (sub)")
        auth_state["sub"] = sub
        expires_in = auth_state.get("token_response", {}).get("expires_in")
        auth_state["iam_expires_at"] = time.time() + float(expires_in) if expires_in else None
        started = time.monotonic()
        try:
            auth_state["exchanged"] = await self.exchange(auth_state["access_token"], sub)
        except (ExchangeError, TokenCheckError) as e:
            metrics.EXCHANGE_SECONDS.labels("failed").observe(time.monotonic() - started)
            error = e.kind if isinstance(e, ExchangeError) else "invalid_token"
            metrics.exchange_failed(auth_model["name"], getattr(e, "target", "?"), error, _exchange_context.get())
            raise
        metrics.EXCHANGE_SECONDS.labels("ok").observe(time.monotonic() - started)
        if not self.allow_hub_admins:
            auth_model["admin"] = False
        return auth_model

    async def authenticate(self, handler, data=None, **kwargs):
        try:
            await self.ensure_endpoints()
            model = await super().authenticate(handler, data, **kwargs)
        except TokenCheckError as e:
            self.log.warning("login: refused a token from IAM: %s", e)
            raise _login_error("unusable_token", 503, UNUSABLE) from None
        except ExchangeError as e:
            self.log.warning("login: %s", e)
            raise _login_error(
                "exchange_failed", 503, "ESCAPE IAM did not issue the Data Lake tokens; please try again in a minute"
            ) from None
        except DiscoveryError as e:
            raise _login_unavailable(self.log, e) from None
        except HTTPClientError as e:
            if _retryable(e.code):
                self.log.warning("login: IAM unavailable (%s)", e.code)
                raise _login_error("iam_unreachable", 503, UNREACHABLE) from None
            # e.g. the callback page reloaded: its one-time code is spent
            self.log.warning("login: IAM refused the authorization code (%s)", e.code)
            raise _login_error(
                "iam_refused_code",
                400,
                "ESCAPE IAM did not accept this login (it may have been used already or expired): please log in again",
            ) from None
        except OSError as e:
            self.log.warning("login: IAM unreachable (%s)", type(e).__name__)
            raise _login_error("iam_unreachable", 503, UNREACHABLE) from None
        existing = handler.find_user(model["name"]) if handler is not None else None
        pinned = ((await existing.get_auth_state()) or {}).get("sub") if existing is not None else None
        if pinned and pinned != model["auth_state"]["sub"]:
            self.log.warning(
                "login as %s refused: the hub account belongs to another IAM identity (sub)", model["name"]
            )
            raise _login_error("other_identity", 403, OTHER_IDENTITY)
        model["auth_state"]["session"] = secrets.token_urlsafe(16)
        self._failures.pop(model["name"], None)  # a new login starts without the last session's back-off
        if not pinned:
            model[FIRST_LOGIN] = True  # read (and dropped) by get_authenticated_user, after JupyterHub's checks
        return model

    async def get_authenticated_user(self, handler, data):
        """JupyterHub's login checks, then (first login of an allowed user) just-in-time onboarding; every login's
        outcome is counted (hub_plugins.metrics)."""
        try:
            model = await super().get_authenticated_user(handler, data)
        except Exception as e:
            if not getattr(e, COUNTED, False):
                forbidden = isinstance(e, web.HTTPError) and e.status_code == 403
                metrics.LOGINS.labels("not_allowed" if forbidden else "error").inc()
            raise
        if not model:
            metrics.LOGINS.labels("not_allowed").inc()
            return model
        if model.pop(FIRST_LOGIN, False) and self.onboard_command:
            if self._onboarding is None:
                self._onboarding = OnboardingWorker(self.onboard_command, self.log)
            await onboard(self._onboarding, model["auth_state"]["sub"], timeout=self.onboard_timeout)
        metrics.LOGINS.labels("success").inc()
        return model

    def reconcile(self, auth_model: dict, existing: dict | None) -> dict:
        """The auth_state to save for a login or refresh result (JupyterHub's reconcile_auth_state_hook).

        The pinned `sub` and the server token record always come from what is stored. A refresh result whose
        session ended meanwhile (logout, new login) is discarded: it must not bring back tokens.
        """
        existing = existing or {}
        state = dict(auth_model.get("auth_state") or {})
        if auth_model.get("dlaas_refresh") and existing.get("session") != state.get("session"):
            return existing
        for key in PERSISTENT_KEYS:
            if key in existing:
                state[key] = existing[key]
        return state

    def add_user(self, user):
        """At hub start (every known user) and for new users: no hub admins unless allow_hub_admins."""
        result = super().add_user(user)
        if not self.allow_hub_admins and isinstance(user, orm.User):
            admin_role = orm.Role.find(sa_inspect(user).session, "admin")
            if user.admin or (admin_role is not None and admin_role in user.roles):
                self.log.warning(
                    "removing JupyterHub admin from %s (EscapeIAMAuthenticator.allow_hub_admins is "
                    "off; operators get the dlaas-operator role)",
                    user.name,
                )
                user.admin = False
                if admin_role in user.roles:
                    roles.strip_role(sa_inspect(user).session, entity=user, rolename="admin")
        return result

    # --- servers and logout ----------------------------------------------------------------------------------

    async def pre_spawn_start(self, user, spawner):
        """Record which token JupyterHub gave this server (its database id, never the token)."""
        token = orm.APIToken.find(user.db, spawner.api_token) if spawner.api_token else None
        if token is None:
            self.log.warning("spawning %s's server %r: its API token is not in the database", user.name, spawner.name)
            return
        await self.record_server_token(user, spawner.name, token.id)

    async def post_spawn_stop(self, user, spawner):
        await self.record_server_token(user, spawner.name, None)

    async def record_server_token(self, user, server_name: str, token_id: int | None) -> None:
        async with self.user_lock(user.name):
            state = await user.get_auth_state()
            await user.save_auth_state(server_tokens.with_server_token(state, server_name, token_id))

    async def end_session(self, user) -> None:
        """Logout: drop the IAM and exchanged tokens from auth_state, then revoke the refresh token at IAM."""
        async with self.user_lock(user.name):
            state = await user.get_auth_state() or {}
            refresh_token = state.get("refresh_token")
            await user.save_auth_state({key: state[key] for key in PERSISTENT_KEYS if key in state})
        self._failures.pop(user.name, None)
        self.log.info("%s logged out: IAM and Data Lake tokens dropped", user.name)
        if refresh_token:
            task = asyncio.ensure_future(self._revoke(user.name, refresh_token))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _revoke(self, username: str, refresh_token: str) -> None:
        try:
            await self.ensure_endpoints()
        except DiscoveryError as e:
            self.log.warning("could not revoke %s's IAM refresh token: %s", username, e)
            return
        if not self.revocation_url:
            self.log.info("IAM advertises no revocation endpoint: %s's refresh token expires on its own", username)
            return
        problem = await revoke(
            self.http_client.fetch,
            self.revocation_url,
            self.client_id,
            self.client_secret,
            refresh_token,
            timeout=self.exchange_timeout,
        )
        if problem:
            self.log.warning("revoking %s's IAM refresh token failed (%s)", username, problem)
        else:
            self.log.info("revoked %s's IAM refresh token", username)

    # --- refresh ---------------------------------------------------------------------------------------------

    def needs_refresh(self, auth_state: dict, now: float | None = None) -> bool:
        """True when an exchanged token is missing or within refresh_margin of its expiry."""
        now = time.time() if now is None else now
        exchanged = auth_state.get("exchanged") or {}
        if set(exchanged) != {t.name for t in self._targets}:
            return True
        return earliest_expiry(exchanged) - now <= self.refresh_margin

    def recent_failure(self, username: str) -> Failure | None:
        """The user's last failed refresh while its back-off lasts, else None."""
        failure = self._failures.get(username)
        if failure is not None and time.monotonic() - failure.at < self.refresh_backoff:
            return failure
        self._failures.pop(username, None)
        return None

    def _record_failure(self, username: str, final: bool) -> Failure:
        """Remember a failed refresh for its back-off, forgetting every back-off that is over."""
        now = time.monotonic()
        while self._failures:  # oldest first: stop at the first one still running
            oldest, failure = next(iter(self._failures.items()))
            if now - failure.at < self.refresh_backoff:
                break
            del self._failures[oldest]
        self._failures.pop(username, None)  # to the end, in time order
        failure = self._failures[username] = Failure(now, final)
        return failure

    def _answer_after_failure(self, failure: Failure, auth_state: dict):
        """True (stay logged in) while a retryable failure leaves every exchanged token valid, else False."""
        if failure.final:
            return False
        exchanged = auth_state.get("exchanged") or {}
        valid = set(exchanged) == {t.name for t in self._targets} and earliest_expiry(exchanged) > time.time()
        return valid

    async def refresh_user(self, user, handler=None, **kwargs):
        auth_state = await user.get_auth_state()
        if not auth_state or not auth_state.get("refresh_token"):
            return False  # never logged in, or logged out
        if not self.needs_refresh(auth_state):
            return True
        async with self.user_lock(user.name):
            # Another request may have refreshed while this one waited: read what it saved.
            auth_state = await user.get_auth_state() or {}
            if not auth_state.get("refresh_token"):
                return False
            if not self.needs_refresh(auth_state):
                return True
            failure = self.recent_failure(user.name)
            if failure is not None:
                metrics.REFRESHES.labels("backoff").inc()
                return self._answer_after_failure(failure, auth_state)
            started = time.monotonic()
            context = _exchange_context.set("refresh")
            try:
                model = await self._refresh(user, auth_state)
            except RefreshFailed as e:
                metrics.REFRESH_SECONDS.labels("failed").observe(time.monotonic() - started)
                metrics.REFRESHES.labels("failed_final" if e.final else "failed_retryable").inc()
                failure = self._record_failure(user.name, e.final)
                if e.final:
                    self.log.warning("refresh for %s failed (%s); a new login is needed", user.name, e)
                else:
                    self.log.warning("refresh for %s failed (%s); next try in %g s", user.name, e, self.refresh_backoff)
                return self._answer_after_failure(failure, await user.get_auth_state() or {})
            finally:
                _exchange_context.reset(context)
            metrics.REFRESH_SECONDS.labels("ok").observe(time.monotonic() - started)
            metrics.REFRESHES.labels("ok").inc()
            self._failures.pop(user.name, None)
            return model

    async def _refresh(self, user, auth_state: dict) -> dict:
        """New IAM and exchanged tokens for `user`, saved; RefreshFailed when that is not possible."""
        username = user.name
        old_refresh_token = auth_state["refresh_token"]
        try:
            await self.ensure_endpoints()
            token_info = await self.get_token_info(None, self.build_refresh_token_request_params(old_refresh_token))
        except DiscoveryError as e:
            raise RefreshFailed(str(e), final=not e.unreachable) from None
        except HTTPClientError as e:
            raise RefreshFailed(f"IAM answered {e.code} to the refresh token", final=not _retryable(e.code)) from None
        except web.HTTPError as e:
            raise RefreshFailed(f"IAM refused the refresh token ({e.status_code})", final=True) from None
        except OSError as e:
            raise RefreshFailed(f"IAM unreachable ({type(e).__name__})", final=False) from None
        token_info["refresh_token"] = token_info.get("refresh_token") or old_refresh_token
        if token_info["refresh_token"] != old_refresh_token:
            # IAM rotated the refresh token and has already forgotten the old one: keep the new one whatever
            # happens next, or a failing exchange below would end the user's session.
            auth_state = {**auth_state, "refresh_token": token_info["refresh_token"]}
            await user.save_auth_state(auth_state)
        try:
            model = await self._token_to_auth_model(token_info)
        except HTTPClientError as e:
            raise RefreshFailed(f"IAM answered {e.code} at userinfo", final=not _retryable(e.code)) from None
        except ExchangeError as e:
            raise RefreshFailed(str(e), final=False) from None
        except TokenCheckError as e:
            raise RefreshFailed(f"IAM returned an unusable token: {e}", final=False) from None
        except (OSError, DiscoveryError, web.HTTPError) as e:
            raise RefreshFailed(f"IAM unavailable ({type(e).__name__})", final=False) from None
        except ValueError as e:
            raise RefreshFailed(f"IAM's answer names no user ({type(e).__name__})", final=True) from None
        if model["name"] != username:
            raise RefreshFailed("IAM returned another username", final=True)
        if auth_state.get("sub") and model["auth_state"]["sub"] != auth_state["sub"]:
            raise RefreshFailed("IAM returned another identity (sub) for this hub account", final=True)
        if not await self._still_allowed(username, model):
            raise RefreshFailed("no longer in an allowed IAM group", final=True)
        model["auth_state"]["session"] = auth_state.get("session") or secrets.token_urlsafe(16)
        model["dlaas_refresh"] = True
        model["auth_state"] = self.reconcile(model, {**auth_state, "session": model["auth_state"]["session"]})
        await user.save_auth_state(model["auth_state"])
        self.log.info("refreshed IAM and exchanged tokens for %s", username)
        return model

    async def _still_allowed(self, username: str, auth_model: dict) -> bool:
        """The login's group check, again at refresh: leaving the IAM group ends the Data Lake tokens too."""
        try:
            return bool(await self.check_allowed(username, auth_model))
        except web.HTTPError:
            return False


def _reconcile_hook(authenticator, auth_model, existing_auth_state):
    return authenticator.reconcile(auth_model, existing_auth_state)
