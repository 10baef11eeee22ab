"""ESCAPE IAM login for JupyterHub: OpenID Connect with PKCE, token exchange per Data Lake service, refresh ahead
of expiry.

A thin subclass of oauthenticator's GenericOAuthenticator, registered as the `escape-iam` authenticator:

- endpoints come from the issuer's discovery document, read when a login first needs them (discovery.py): an IAM
  that is down when the hub starts gives a clear "try again" page, and logins work once it is back;
- IAM groups (the `groups` claim) drive allowed_groups / admin_groups / manage_groups;
- at login and at every refresh, the IAM access token is exchanged (RFC 8693) for one token per configured target
  (e.g. `rucio` -> audience `rucio`), concurrently; the results live in the encrypted auth_state under `exchanged`;
- `refresh_user` refreshes the IAM token and re-exchanges *before* any exchanged token gets within
  `refresh_margin` of its expiry, and answers False (log in again) when that fails or the user has left the
  allowed IAM groups: never a stale token;
- the token API for user servers (`/hub/api/dlaas/tokens`, see token_api.py) is registered with the login handlers.
"""

from __future__ import annotations

import asyncio
import time

from jupyterhub.crypto import CryptKeeper
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthLoginHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Dict, Float, Integer, TraitError, Unicode, default, validate

from hub_plugins.discovery import ENDPOINTS, DiscoveryError, discover
from hub_plugins.token_exchange import ExchangeError, Target, earliest_expiry, exchange_all

UNREACHABLE = "ESCAPE IAM is not reachable right now; please try again in a minute"


def _login_unavailable(log, error: DiscoveryError) -> web.HTTPError:
    """The error page for a login that cannot start or finish because of the IAM's discovery document."""
    log.warning("login: %s", error)
    if error.unreachable:
        return web.HTTPError(503, UNREACHABLE)
    return web.HTTPError(503, "The hub's ESCAPE IAM settings are wrong; please tell the service operators")


class IAMLoginHandler(OAuthLoginHandler):
    """oauthenticator's login redirect, after making sure the IAM's endpoints are known (clear page if not)."""

    async def get(self):
        try:
            await self.authenticator.ensure_endpoints()
        except DiscoveryError as e:
            raise _login_unavailable(self.log, e) from None
        return super().get()


class EscapeIAMAuthenticator(GenericOAuthenticator):
    login_handler = IAMLoginHandler

    issuer = Unicode(
        config=True,
        help="""The IAM issuer URL, e.g. https://iam-escape.cloud.cnaf.infn.it/. The authorize, token and userinfo
        endpoints are read from its /.well-known/openid-configuration unless set explicitly.""",
    )

    discovery_timeout = Float(
        10.0, config=True, help="Timeout (s) of a request for the issuer's discovery document."
    )

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

    exchange_timeout = Float(10.0, config=True, help="Timeout (s) of one token exchange request.")
    exchange_retries = Integer(
        2, config=True, help="Retries of an exchange after a connection error, timeout or IdP 5xx (never on 4xx)."
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

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True

    @default("enable_pkce")
    def _enable_pkce_default(self):
        return True

    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email", "offline_access"]

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("auth_state_groups_key")
    def _groups_key_default(self):
        return f"{self.user_auth_state_key}.groups"

    @default("manage_groups")
    def _manage_groups_default(self):
        return True

    @default("login_service")
    def _login_service_default(self):
        return "ESCAPE IAM"

    @default("custom_403_message")
    def _custom_403_message_default(self):
        groups = ", ".join(sorted(self.allowed_groups)) or "none configured"
        return (f"Your ESCAPE IAM account is not in a group allowed to use this service ({groups}). "
                "Ask your IAM group manager to add you, then log in again.")

    # --- discovery -------------------------------------------------------------------------------------------

    async def ensure_endpoints(self) -> None:
        """Fill authorize_url, token_url and userdata_url from the issuer's discovery document, once.

        Done when a login or refresh first needs them, asynchronously: an IdP that is down or slow never blocks
        the hub, and loading the configuration contacts nothing. Raises DiscoveryError.
        """
        missing = [trait for trait in ENDPOINTS if not getattr(self, trait)]
        if not missing:
            return
        async with self._discovery_lock:
            if not all(getattr(self, trait) for trait in missing):
                endpoints = await discover(AsyncHTTPClient().fetch, self.issuer, timeout=self.discovery_timeout)
                for trait in missing:
                    if not getattr(self, trait):
                        setattr(self, trait, endpoints[trait])
                self.log.info("endpoints of %s read from its discovery document", self.issuer)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.enable_auth_state and not CryptKeeper.instance().keys:
            raise ValueError(
                "escape-iam keeps IAM tokens in encrypted auth_state: set JUPYTERHUB_CRYPT_KEY "
                "(e.g. `openssl rand -hex 32`) in the hub's environment"
            )
        if not self.enable_auth_state:
            raise ValueError("escape-iam needs enable_auth_state = True: the IAM refresh token must stay in the hub")
        self._targets = [Target.parse(name, spec) for name, spec in self.exchange_targets.items()]
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self._discovery_lock = asyncio.Lock()
        self._recent_models: dict[str, dict] = {}

    def get_handlers(self, app):
        from hub_plugins.token_api import TokenAPIHandler

        return [*super().get_handlers(app), (r"/api/dlaas/tokens", TokenAPIHandler)]

    # --- login and exchange ----------------------------------------------------------------------------------

    async def exchange(self, subject_token: str) -> dict[str, dict]:
        return await exchange_all(
            AsyncHTTPClient().fetch, self.token_url, self.client_id, self.client_secret, subject_token,
            self._targets, timeout=self.exchange_timeout, retries=self.exchange_retries,
        )

    async def update_auth_model(self, auth_model):
        """Called by oauthenticator at login and at refresh: add the exchanged tokens to auth_state."""
        auth_state = auth_model["auth_state"]
        now = time.time()
        expires_in = auth_state.get("token_response", {}).get("expires_in")
        auth_state["iam_expires_at"] = now + float(expires_in) if expires_in else None
        auth_state["exchanged"] = await self.exchange(auth_state["access_token"])
        return auth_model

    async def authenticate(self, handler, data=None, **kwargs):
        try:
            await self.ensure_endpoints()
            return await super().authenticate(handler, data, **kwargs)
        except ExchangeError as e:
            self.log.warning("login: %s", e)
            raise web.HTTPError(503, "ESCAPE IAM did not issue the Data Lake tokens; please try again in a minute")
        except DiscoveryError as e:
            raise _login_unavailable(self.log, e) from None
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:
                self.log.warning("login: IAM unavailable (%s)", e.code)
                raise web.HTTPError(503, UNREACHABLE) from None
            # e.g. the callback page reloaded: its one-time code is spent
            self.log.warning("login: IAM refused the authorization code (%s)", e.code)
            raise web.HTTPError(400, "ESCAPE IAM did not accept this login (it may have been used already or "
                                     "expired): please log in again") from None
        except OSError as e:
            self.log.warning("login: IAM unreachable (%s)", type(e).__name__)
            raise web.HTTPError(503, UNREACHABLE) from None

    # --- refresh ---------------------------------------------------------------------------------------------

    def needs_refresh(self, auth_state: dict, now: float | None = None) -> bool:
        """True when an exchanged token is missing or within refresh_margin of its expiry."""
        now = time.time() if now is None else now
        exchanged = auth_state.get("exchanged") or {}
        if set(exchanged) != {t.name for t in self._targets}:
            return True
        return earliest_expiry(exchanged) - now <= self.refresh_margin

    async def refresh_user(self, user, handler=None, **kwargs):
        auth_state = await user.get_auth_state()
        if not auth_state:
            return False
        if not self.needs_refresh(auth_state):
            return True
        lock = self._refresh_locks.setdefault(user.name, asyncio.Lock())
        async with lock:
            # Another request may have refreshed while we waited; JupyterHub saves its result only after
            # refresh_user returns, so also look at the last model this authenticator produced.
            auth_state = await user.get_auth_state()
            if auth_state and not self.needs_refresh(auth_state):
                return True
            recent = self._recent_models.get(user.name)
            if recent and not self.needs_refresh(recent["auth_state"]):
                return recent
            model = await self._refresh(user.name, auth_state or {})
            if model:
                self._recent_models[user.name] = model
            return model

    async def _refresh(self, username: str, auth_state: dict):
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            self.log.info("refresh for %s: no IAM refresh token; a new login is needed", username)
            return False
        try:
            await self.ensure_endpoints()
            token_info = await self.get_token_info(None, self.build_refresh_token_request_params(refresh_token))
            if not token_info.get("refresh_token"):
                token_info["refresh_token"] = refresh_token  # IAM may keep the refresh token unchanged
            auth_model = await self._token_to_auth_model(token_info)
        except (HTTPClientError, ExchangeError, DiscoveryError, OSError, web.HTTPError) as e:
            reason = getattr(e, "code", None) or getattr(e, "status_code", None) or type(e).__name__
            self.log.warning("refresh for %s failed (%s); a new login is needed", username, reason)
            return False
        if auth_model["name"] != username:
            self.log.warning("refresh for %s returned another identity; a new login is needed", username)
            return False
        if not await self._still_allowed(username, auth_model):
            self.log.warning("refresh for %s: no longer in an allowed IAM group; no more Data Lake tokens", username)
            return False
        self.log.info("refreshed IAM and exchanged tokens for %s", username)
        return auth_model

    async def _still_allowed(self, username: str, auth_model: dict) -> bool:
        """The login's group check, again at refresh: leaving the IAM group ends the Data Lake tokens too."""
        try:
            return bool(await self.check_allowed(username, auth_model))
        except web.HTTPError:
            return False
