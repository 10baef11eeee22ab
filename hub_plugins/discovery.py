"""The issuer's OpenID discovery document: where its authorize, token, userinfo, signing-key (JWKS) and revocation
endpoints are.

Fetched asynchronously, when a login or a refresh first needs it (never while the hub's configuration is loaded, so
checking a configuration contacts nothing, and never blocking the hub's event loop while the IdP is slow or down).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

#: authenticator trait -> discovery document key
ENDPOINTS = {
    "authorize_url": "authorization_endpoint",
    "token_url": "token_endpoint",
    "userdata_url": "userinfo_endpoint",
    "jwks_url": "jwks_uri",
}
#: endpoints an issuer may leave out (RFC 7009 revocation): empty when not advertised
OPTIONAL_ENDPOINTS = {
    "revocation_url": "revocation_endpoint",
}

Fetch = Callable[[HTTPRequest], Awaitable[HTTPResponse]]


class DiscoveryError(Exception):
    """The discovery document could not be used; `unreachable` tells an IdP outage from a misconfiguration."""

    def __init__(self, message: str, *, unreachable: bool):
        super().__init__(message)
        self.unreachable = unreachable


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse(body: bytes, issuer: str, url: str) -> dict[str, str]:
    """The endpoints (keyed like the authenticator's traits) from a discovery document of `issuer`."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise DiscoveryError(f"the IAM discovery document at {url} is not JSON", unreachable=True)
    if doc.get("issuer") != issuer:
        raise DiscoveryError(
            f"the discovery document at {url} names issuer {doc.get('issuer')!r}, not {issuer!r}: "
            "fix EscapeIAMAuthenticator.issuer (the trailing slash counts)",
            unreachable=False,
        )
    missing = [key for key in ENDPOINTS.values() if not isinstance(doc.get(key), str) or not doc[key]]
    if missing:
        raise DiscoveryError(f"the discovery document at {url} lacks {', '.join(missing)}", unreachable=False)
    endpoints = {trait: doc[key] for trait, key in ENDPOINTS.items()}
    for trait, key in OPTIONAL_ENDPOINTS.items():
        value = doc.get(key)
        endpoints[trait] = value if isinstance(value, str) else ""
    return endpoints


async def discover(fetch: Fetch, issuer: str, *, timeout: float = 10.0) -> dict[str, str]:
    """Fetch and check `issuer`'s discovery document; DiscoveryError when it cannot be used."""
    if not issuer:
        raise DiscoveryError(
            "EscapeIAMAuthenticator.issuer is not set: set it to the IAM issuer URL", unreachable=False
        )
    url = discovery_url(issuer)
    request = HTTPRequest(url, headers={"Accept": "application/json"}, request_timeout=timeout, connect_timeout=timeout)
    try:
        response = await fetch(request)
    except HTTPClientError as e:
        raise DiscoveryError(
            f"cannot read the IAM discovery document at {url}: HTTP {e.code}",
            unreachable=e.code == 599 or e.code >= 500,
        ) from None
    except OSError as e:
        raise DiscoveryError(
            f"cannot read the IAM discovery document at {url}: {type(e).__name__}", unreachable=True
        ) from None
    return parse(response.body, issuer, url)
