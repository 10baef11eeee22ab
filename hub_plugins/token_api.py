"""GET /hub/api/dlaas/tokens: a user's running server asks for its user's fresh Data Lake tokens.

Only the API token JupyterHub gave that running server is answered (server_tokens.py): personal tokens - made on
/hub/token or through the REST API, whatever their scopes -, other servers' tokens and stopped servers' tokens get
403, and so does a token whose `custom:dlaas-tokens` scope is filtered to another user or server. Browser cookies
are refused: tokens go to servers, not to web pages. After the user logs out the answer is 401; when IAM cannot
renew the tokens right now and they have expired, 503 with Retry-After.

The answer holds only the caller's own exchanged access tokens with their expiry, refreshed first when they are
close to expiry - never the IAM refresh, access or id token -, plus the issuer and its userinfo endpoint (the EOS
token file names it).
"""

from __future__ import annotations

import json
import math
import time

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from jupyterhub.user import User
from tornado import web

from hub_plugins import metrics, server_tokens
from hub_plugins.hub_roles import SCOPE

PUBLIC_FIELDS = ("access_token", "expires_at", "audience", "scope")
NOT_A_SERVER_TOKEN = (
    "Only the API token JupyterHub gave your running server can fetch Data Lake tokens; personal "
    "tokens (from /hub/token or the REST API) cannot, whatever their scopes"
)
LOGGED_OUT = "You logged out of the hub: log in again to give your servers Data Lake tokens"
SESSION_ENDED = "Your ESCAPE IAM session has ended: log in to the hub again"


OUTCOME = "dlaas_outcome"  # on a refusal: what the token API's request counter counts it as


def refused(outcome: str, status: int, message: str) -> web.HTTPError:
    """A refusal of the token API, to be counted under `outcome` (hub_plugins.metrics.TOKEN_API_OUTCOMES)."""
    error = web.HTTPError(status, message)
    setattr(error, OUTCOME, outcome)
    return error


def may_read(parsed_scopes, username: str, server_name: str, db=None) -> bool:
    """Whether a token with `parsed_scopes` may read the tokens of `username`'s server `server_name`."""
    return bool(has_scope(f"{SCOPE}!server={username}/{server_name}", parsed_scopes, db=db))


class TokenAPIHandler(APIHandler):
    def check_xsrf_cookie(self):
        # Token-authenticated only (see get): no cookie session can reach the tokens, so no XSRF to check.
        return

    async def get(self):
        """The tokens, or a refusal; either is counted (hub_plugins.metrics)."""
        try:
            await self.answer()
        except web.HTTPError as e:
            metrics.TOKEN_API.labels(getattr(e, OUTCOME, "error")).inc()
            raise
        metrics.TOKEN_API.labels("ok").inc()

    async def answer(self):
        user = self.current_user
        if user is None:
            raise refused(
                "not_server_token", 403, "Unknown or expired hub token (a server's token ends when the server stops)"
            )
        if not getattr(self, "_token_authenticated", False):
            raise refused(
                "not_server_token", 403, "The token API answers user servers only: use the server's API token"
            )
        if not isinstance(user, User):
            raise refused("not_server_token", 403, "Only a user's own server can ask for that user's tokens")

        authenticator = self.authenticator
        # Decrypting auth_state is the expensive part of this request: do it once, and refresh only when needed.
        auth_state = await user.get_auth_state() or {}
        server_name = await self._server_of_token(user, auth_state)
        if not may_read(self.parsed_scopes, user.name, server_name, self.db):
            raise refused(
                "missing_scope", 403, f"This token lacks the {SCOPE} scope for {user.name}'s server {server_name!r}"
            )
        if not auth_state.get("refresh_token"):
            raise refused("logged_out", 401, LOGGED_OUT)
        if authenticator.needs_refresh(auth_state):
            refreshed = await authenticator.refresh_user(user, self)
            if not refreshed:
                self._refresh_failed(user)
            if isinstance(refreshed, dict):
                await self.auth_to_user(refreshed, user)
                auth_state = refreshed["auth_state"]
            else:
                auth_state = await user.get_auth_state() or {}
        exchanged = auth_state.get("exchanged") or {}
        if not exchanged or min(float(t["expires_at"]) for t in exchanged.values()) <= time.time():
            self._refresh_failed(user)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        self.write(
            json.dumps(
                {
                    "tokens": {name: {k: t[k] for k in PUBLIC_FIELDS if k in t} for name, t in exchanged.items()},
                    "issuer": authenticator.issuer,
                    "userinfo_endpoint": authenticator.userdata_url,
                }
            )
        )

    async def _server_of_token(self, user, auth_state: dict) -> str:
        """The name of the running server this request's token was issued to; 403 when there is none."""
        orm_token = self.get_token()
        if orm_token is None or orm_token.user is None or orm_token.user.id != user.id:
            raise refused("not_server_token", 403, NOT_A_SERVER_TOKEN)
        name = server_tokens.recorded_server(auth_state, orm_token.id)
        if name is None:
            # Not recorded: maybe the record was lost to a concurrent save; JupyterHub's own hash decides.
            token = self.get_auth_token()
            for candidate, spawner in list(user.spawners.items()):
                if server_tokens.running_spawner(user, candidate) and server_tokens.issued_to(spawner, token):
                    name = candidate
                    self.log.info("re-recording the token of %s's server %r", user.name, name)
                    await self.authenticator.record_server_token(user, name, orm_token.id)
                    break
        if name is None:
            raise refused("not_server_token", 403, NOT_A_SERVER_TOKEN)
        if server_tokens.running_spawner(user, name) is None:
            raise refused(
                "stopped_server", 403, f"{user.name}'s server {name!r} is not running: only running servers get tokens"
            )
        return name

    def _refresh_failed(self, user):
        failure = self.authenticator.recent_failure(user.name)
        if failure is not None and not failure.final:
            wait = max(1, math.ceil(self.authenticator.refresh_backoff - (time.monotonic() - failure.at)))
            error = refused(
                "iam_unavailable",
                503,
                "ESCAPE IAM did not renew your Data Lake tokens (unreachable or failing); the "
                f"hub tries again in {wait} s",
            )
            error.headers = {"Retry-After": str(wait)}  # APIHandler.write_error sets them (the error clears ours)
            raise error
        raise refused("session_ended", 401, SESSION_ENDED)
