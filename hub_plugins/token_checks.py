"""Every exchanged token is checked before the hub stores it or hands it to a server.

An RFC 8693 answer is only the IdP's word: the token inside must be signed by one of the issuer's published keys
(its JWKS, fetched when first needed, cached, fetched again once when a token names a key it does not know), name
the issuer as `iss`, carry the target's audience in `aud`, belong to the logged-in identity (`sub`) and not have
expired. A token failing any of these is refused with the reason (never the token) in the error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import jwt
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

#: Asymmetric algorithms only: never `none`, never an HMAC keyed with something public.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

Fetch = Callable[[HTTPRequest], Awaitable[HTTPResponse]]


class TokenCheckError(Exception):
    """A token the hub must not use; the message says why and never holds the token."""


class JWKS:
    """The issuer's signing keys by `kid`, fetched with the hub's async HTTP client."""

    def __init__(self, fetch: Fetch, url: Callable[[], str], *, timeout: float = 10.0):
        self._fetch = fetch
        self._url = url
        self._timeout = timeout
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> dict[str | None, jwt.PyJWK]:
        url = self._url()
        if not url:
            raise TokenCheckError("the issuer's signing keys are unknown (no jwks_uri)")
        request = HTTPRequest(
            url, headers={"Accept": "application/json"}, request_timeout=self._timeout, connect_timeout=self._timeout
        )
        try:
            response = await self._fetch(request)
            keys = json.loads(response.body)["keys"]
        except HTTPClientError as e:
            raise TokenCheckError(f"cannot read the issuer's signing keys (HTTP {e.code})") from None
        except OSError as e:
            raise TokenCheckError(f"cannot read the issuer's signing keys ({type(e).__name__})") from None
        except (ValueError, KeyError, TypeError):
            raise TokenCheckError("the issuer's JWKS document is not a JSON key set") from None
        found: dict[str | None, jwt.PyJWK] = {}
        for key in keys if isinstance(keys, list) else []:
            if not isinstance(key, dict) or key.get("use", "sig") != "sig":
                continue
            try:
                found[key.get("kid")] = jwt.PyJWK(key)
            except jwt.exceptions.PyJWTError:
                continue  # a key type PyJWT cannot use; tokens signed with it are refused below
        return found

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key `kid` names; the key set is fetched again (once per call) when it does not hold `kid`."""
        if self._keys is None or kid not in self._keys:
            async with self._lock:
                if self._keys is None or kid not in self._keys:
                    self._keys = await self._load()
        if kid is None and kid not in self._keys and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        try:
            return self._keys[kid]
        except KeyError:
            raise TokenCheckError(f"it is signed with key {kid!r}, which the issuer does not publish") from None


def check(
    token: str,
    key: jwt.PyJWK,
    *,
    issuer: str,
    audience: str,
    subject: str,
    now: float | None = None,
    leeway: float = 30.0,
) -> dict:
    """The claims of `token` once signature, issuer, audience, subject and expiry are right; else TokenCheckError.

    `leeway` allows for clock skew on `nbf`/`iat` only: a token past its `exp` is refused.
    """
    now = time.time() if now is None else now
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.exceptions.PyJWTError:
        raise TokenCheckError("it is not a JWT") from None
    if alg not in ALGORITHMS:
        raise TokenCheckError(f"it is signed with {alg!r}, not with one of the issuer's public-key algorithms")
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud", "sub"], "verify_exp": False},
        )
    except jwt.InvalidAudienceError:
        raise TokenCheckError(f"its audience is not {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise TokenCheckError(f"its issuer is not {issuer!r}") from None
    except jwt.InvalidSignatureError:
        raise TokenCheckError("its signature does not verify with the issuer's published key") from None
    except jwt.MissingRequiredClaimError as e:
        raise TokenCheckError(f"it has no {e.claim!r} claim") from None
    except jwt.ImmatureSignatureError:
        raise TokenCheckError("it is not valid yet (nbf/iat in the future)") from None
    except (jwt.exceptions.PyJWTError, ValueError, TypeError) as e:
        raise TokenCheckError(f"it cannot be verified ({type(e).__name__})") from None
    if claims["sub"] != subject:
        raise TokenCheckError("it belongs to another identity (sub) than the login")
    if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
        raise TokenCheckError("it has expired")
    return claims
