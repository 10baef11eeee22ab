"""RFC 8693 token exchange against ESCAPE IAM: one subject token in, one audience-restricted token per target out.

All targets are exchanged concurrently; each request has a timeout and is retried a bounded number of times, with
exponential backoff, only when retrying can help (connection errors, timeouts, HTTP 5xx). A malformed answer or a
4xx is final. The results carry absolute expiry times so the hub can refresh ahead of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

Fetch = Callable[[HTTPRequest], Awaitable[HTTPResponse]]


class ExchangeError(Exception):
    """A token exchange failed; `retryable` tells whether trying again later may succeed, `kind` is the IdP error
    class the hub's metrics count (refused, server_error, unreachable, malformed)."""

    def __init__(self, target: str, message: str, *, retryable: bool, kind: str = "refused"):
        super().__init__(f"token exchange for {target!r} failed: {message}")
        self.target = target
        self.retryable = retryable
        self.kind = kind


@dataclass(frozen=True)
class Target:
    name: str
    audience: str
    scope: str

    @classmethod
    def parse(cls, name: str, spec: dict) -> Target:
        """A target from configuration; ValueError with a one-line fix when INDIGO IAM would refuse its exchanges."""
        if not isinstance(spec, dict) or not isinstance(spec.get("audience"), str) or not spec["audience"].strip():
            raise ValueError(f"exchange target {name!r} needs an 'audience' string, e.g. {{'audience': 'rucio'}}")
        unknown = set(spec) - {"audience", "scope"}
        if unknown:
            raise ValueError(f"exchange target {name!r} has unknown keys {sorted(unknown)}; use audience and scope")
        scope = spec.get("scope")
        if not isinstance(scope, str) or not scope.split():
            # INDIGO IAM (>= 1.7.0) refuses every exchange request without scope.
            raise ValueError(
                f"exchange target {name!r} needs a 'scope' (IAM requires one on every exchange), e.g. 'openid profile'"
            )
        if "offline_access" in scope.split():
            # IAM refuses offline_access when the client exchanging also holds the subject token, as the hub does;
            # and a refresh token has no business in a user's server.
            raise ValueError(
                f"exchange target {name!r}: remove offline_access from its scope; exchanged tokens are "
                "short-lived access tokens, the hub refreshes them itself"
            )
        return cls(name, spec["audience"].strip(), " ".join(scope.split()))


def _parse_answer(target: Target, body: bytes, now: float) -> dict:
    try:
        answer = json.loads(body)
        token = answer["access_token"]
        expires_in = float(answer["expires_in"])
        if not isinstance(token, str) or not token or expires_in <= 0:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ExchangeError(
            target.name, "the IdP returned a malformed answer", retryable=False, kind="malformed"
        ) from None
    return {
        "access_token": token,
        "expires_at": now + expires_in,
        "scope": answer.get("scope", target.scope),
        "audience": target.audience,
    }


async def exchange_one(
    fetch: Fetch,
    token_url: str,
    client_id: str,
    client_secret: str,
    subject_token: str,
    target: Target,
    *,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
) -> dict:
    """Exchange `subject_token` for a token of `target`; returns access_token, expires_at, scope, audience."""
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": target.audience,
    }
    form["scope"] = target.scope
    request = HTTPRequest(
        token_url,
        method="POST",
        body=urlencode(form),
        auth_username=client_id,
        auth_password=client_secret,
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
        request_timeout=timeout,
        connect_timeout=timeout,
    )
    attempt = 0
    while True:
        attempt += 1
        started = time.time()
        try:
            response = await fetch(request)
            return _parse_answer(target, response.body, started)
        except HTTPClientError as e:
            if e.code == 599 or e.code >= 500:  # 599: tornado's code for timeouts and connection errors
                kind = "unreachable" if e.code == 599 else "server_error"
                error = ExchangeError(target.name, f"IdP answered {e.code}", retryable=True, kind=kind)
            else:
                detail = ""
                if e.response is not None and e.response.body:
                    try:
                        detail = json.loads(e.response.body).get("error_description", "")
                    except (ValueError, AttributeError):
                        detail = ""
                raise ExchangeError(target.name, f"IdP refused ({e.code}) {detail}".strip(), retryable=False) from None
        except (TimeoutError, OSError) as e:
            error = ExchangeError(
                target.name, f"IdP unreachable ({type(e).__name__})", retryable=True, kind="unreachable"
            )
        if attempt > retries:
            raise error
        await asyncio.sleep(backoff * 2 ** (attempt - 1))


async def exchange_all(
    fetch: Fetch,
    token_url: str,
    client_id: str,
    client_secret: str,
    subject_token: str,
    targets: list[Target],
    **kwargs,
) -> dict[str, dict]:
    """Exchange for every target concurrently; any failure fails the whole set (never half a set of tokens)."""
    results = await asyncio.gather(
        *(exchange_one(fetch, token_url, client_id, client_secret, subject_token, t, **kwargs) for t in targets),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return {t.name: r for t, r in zip(targets, results, strict=True)}


def earliest_expiry(exchanged: dict[str, dict]) -> float:
    return min((float(t["expires_at"]) for t in exchanged.values()), default=0.0)
