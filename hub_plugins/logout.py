"""Logging out of the hub ends the Data Lake session too.

The user's IAM tokens and exchanged tokens leave auth_state at once (what pins the hub account to its IAM identity
and the record of the running servers' tokens stay), so the token API answers 401 to her servers from then on; the
IAM refresh token is revoked at the issuer's RFC 7009 `revocation_endpoint` when its discovery document advertises
one. Revocation runs in the background: a slow or failing IAM never holds up the logout, and its failure is logged
without the token.
"""

from __future__ import annotations

from urllib.parse import urlencode

from oauthenticator.oauth2 import OAuthLogoutHandler
from tornado.httpclient import HTTPClientError, HTTPRequest


class IAMLogoutHandler(OAuthLogoutHandler):
    async def handle_logout(self):
        await super().handle_logout()
        user = self.current_user
        if user is not None:
            await self.authenticator.end_session(user)


async def revoke(
    fetch, url: str, client_id: str, client_secret: str, refresh_token: str, *, timeout: float = 10.0
) -> str | None:
    """Revoke `refresh_token` at `url` (client authenticated); None when done, else why not (never the token)."""
    request = HTTPRequest(
        url,
        method="POST",
        body=urlencode({"token": refresh_token, "token_type_hint": "refresh_token"}),
        auth_username=client_id,
        auth_password=client_secret,
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
        request_timeout=timeout,
        connect_timeout=timeout,
    )
    try:
        await fetch(request)
    except HTTPClientError as e:
        return f"HTTP {e.code}"
    except OSError as e:
        return type(e).__name__
    return None
