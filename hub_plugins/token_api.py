"""GET /hub/api/dlaas/tokens: a user's server asks for its user's fresh Data Lake tokens.

Authorised by the server's own API token (JUPYTERHUB_API_TOKEN), which must carry the custom scope
`custom:dlaas-tokens` (grant it through Spawner.server_token_scopes). The answer holds only the caller's own
exchanged access tokens with their expiry, refreshed first when they are close to expiry - never the IAM refresh,
access or id token. Browser cookies are refused: tokens go to servers, not to web pages.
"""

from __future__ import annotations

import json
import time

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

SCOPE = "custom:dlaas-tokens"
PUBLIC_FIELDS = ("access_token", "expires_at", "audience", "scope")


class TokenAPIHandler(APIHandler):
    def check_xsrf_cookie(self):
        # Token-authenticated only (see get): no cookie session can reach the tokens, so no XSRF to check.
        return

    async def get(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not getattr(self, "_token_authenticated", False):
            raise web.HTTPError(403, "The token API answers user servers only: use the server's API token")
        if not isinstance(user, User):
            raise web.HTTPError(403, "Only a user's own server can ask for that user's tokens")
        if SCOPE not in self.parsed_scopes:
            raise web.HTTPError(403, f"This token lacks the {SCOPE} scope (Spawner.server_token_scopes)")

        authenticator = self.authenticator
        # Decrypting auth_state is the expensive part of this request: do it once, and refresh only when needed.
        auth_state = await user.get_auth_state() or {}
        if authenticator.needs_refresh(auth_state):
            refreshed = await authenticator.refresh_user(user, self)
            if not refreshed:
                raise web.HTTPError(401, "Your ESCAPE IAM session has ended: log in to the hub again")
            if isinstance(refreshed, dict):
                await self.auth_to_user(refreshed, user)
                auth_state = refreshed["auth_state"]
            else:
                auth_state = await user.get_auth_state() or {}
        exchanged = auth_state.get("exchanged") or {}
        now = time.time()
        if not exchanged or min(float(t["expires_at"]) for t in exchanged.values()) <= now:
            raise web.HTTPError(401, "No valid Data Lake tokens: log in to the hub again")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({
            "tokens": {name: {k: t[k] for k in PUBLIC_FIELDS if k in t} for name, t in exchanged.items()},
            "issuer": authenticator.issuer,
        }))
