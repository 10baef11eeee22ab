"""Token exchange and refresh decisions against a mocked HTTP client: IdP 5xx, slow IdP, malformed answers."""

import asyncio
import json
import time

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from hub_plugins.token_exchange import GRANT_TYPE, ExchangeError, Target, earliest_expiry, exchange_all, exchange_one

TARGETS = [Target("rucio", "rucio", "openid profile"), Target("eos", "eos", "openid")]


class FakeIdP:
    """Plays the IdP's token endpoint: a script of answers per audience ('ok', a status code, 'slow', 'refused', or
    the bytes of a 200 answer's body)."""

    def __init__(self, script: dict[str, list]):
        self.script = {k: list(v) for k, v in script.items()}
        self.requests: list[dict] = []

    async def fetch(self, request: HTTPRequest) -> HTTPResponse:
        form = dict(p.split("=", 1) for p in request.body.decode().split("&"))
        self.requests.append(form)
        audience = form["audience"]
        step = self.script[audience].pop(0)
        if step == "slow":
            await asyncio.sleep(request.request_timeout + 0.05)
            raise HTTPClientError(599, "Timeout")
        if step == "refused":
            raise ConnectionRefusedError("connection refused")
        if isinstance(step, int):
            body = json.dumps({"error": "invalid_grant", "error_description": "subject token expired"}).encode()
            raise HTTPClientError(step, response=HTTPResponse(request, step, buffer=_buffer(body)))
        if isinstance(step, bytes):  # the token endpoint's body as given, e.g. a malformed answer
            return HTTPResponse(request, 200, buffer=_buffer(step))
        body = json.dumps(
            {
                "access_token": f"tok-{audience}",
                "expires_in": 600,
                "scope": form.get("scope", "openid"),
                "token_type": "Bearer",
            }
        ).encode()
        return HTTPResponse(request, 200, buffer=_buffer(body))


def _buffer(body: bytes):
    import io

    return io.BytesIO(body)


async def test_exchanges_every_target_concurrently_with_iam_parameters():
    idp = FakeIdP({"rucio": ["ok"], "eos": ["ok"]})
    before = time.time()
    result = await exchange_all(idp.fetch, "http://iam/token", "hub", "secret", "subject", TARGETS)
    assert set(result) == {"rucio", "eos"}
    assert result["rucio"]["access_token"] == "tok-rucio"
    assert result["rucio"]["audience"] == "rucio"
    assert before + 600 <= result["rucio"]["expires_at"] <= time.time() + 600
    rucio_request = next(r for r in idp.requests if r["audience"] == "rucio")
    assert rucio_request["grant_type"] == GRANT_TYPE.replace(":", "%3A")
    assert rucio_request["subject_token"] == "subject"
    assert rucio_request["scope"] == "openid+profile"
    assert next(r for r in idp.requests if r["audience"] == "eos")["scope"] == "openid"  # IAM requires a scope


async def test_a_5xx_is_retried_with_backoff_then_succeeds():
    idp = FakeIdP({"rucio": [502, 503, "ok"]})
    result = await exchange_one(
        idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS[0], retries=2, backoff=0.01
    )
    assert result["access_token"] == "tok-rucio"
    assert len(idp.requests) == 3


async def test_retries_are_bounded():
    idp = FakeIdP({"rucio": ["refused", "refused", "refused", "ok"]})
    with pytest.raises(ExchangeError, match="unreachable") as e:
        await exchange_one(idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS[0], retries=2, backoff=0.01)
    assert e.value.retryable
    assert len(idp.requests) == 3


async def test_a_slow_idp_times_out_and_counts_as_retryable():
    idp = FakeIdP({"rucio": ["slow", "slow"]})
    started = time.monotonic()
    with pytest.raises(ExchangeError) as e:
        await exchange_one(
            idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS[0], timeout=0.1, retries=1, backoff=0.01
        )
    assert e.value.retryable
    assert time.monotonic() - started < 2


async def test_a_4xx_is_final_and_says_why():
    idp = FakeIdP({"rucio": [400, "ok"]})
    with pytest.raises(ExchangeError, match="refused \\(400\\) subject token expired") as e:
        await exchange_one(idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS[0], backoff=0.01)
    assert not e.value.retryable
    assert len(idp.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"token_type": "Bearer", "expires_in": 600}',
        b'{"access_token": "", "expires_in": 600}',
        b'{"access_token": ["tok"], "expires_in": 600}',
        b'{"access_token": "tok"}',
        b'{"access_token": "tok", "expires_in": "soon"}',
        b'{"access_token": "tok", "expires_in": 0}',
        b'{"access_token": "tok", "expires_in": -60}',
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-token",
        "empty-token",
        "token-not-a-string",
        "no-expiry",
        "expiry-not-a-number",
        "already-expired",
        "negative-expiry",
    ],
)
async def test_a_malformed_answer_is_an_error_not_a_token(body):
    idp = FakeIdP({"rucio": [body, "ok"]})
    with pytest.raises(ExchangeError, match="the IdP returned a malformed answer") as e:
        await exchange_one(idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS[0], backoff=0.01)
    assert not e.value.retryable
    assert len(idp.requests) == 1  # final: not retried


async def test_one_failing_target_fails_the_whole_set():
    idp = FakeIdP({"rucio": ["ok"], "eos": [400]})
    with pytest.raises(ExchangeError, match="'eos'"):
        await exchange_all(idp.fetch, "http://iam/token", "hub", "s", "subject", TARGETS, backoff=0.01)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "needs an 'audience'"),
        ({"audience": ""}, "needs an 'audience'"),
        ({"audience": "rucio", "lifetime": 5}, "unknown keys"),
        ({"audience": "rucio", "scope": ""}, "needs a 'scope'"),
        ({"audience": "rucio"}, "needs a 'scope' \\(IAM requires one on every exchange\\)"),
        ({"audience": "rucio", "scope": "   "}, "needs a 'scope'"),
        ({"audience": "rucio", "scope": "openid offline_access"}, "remove offline_access"),
    ],
)
def test_bad_target_specs_are_refused_with_a_clear_message(spec, message):
    with pytest.raises(ValueError, match=message):
        Target.parse("rucio", spec)


def test_earliest_expiry():
    assert earliest_expiry({"a": {"expires_at": 50}, "b": {"expires_at": 20}}) == 20
    assert earliest_expiry({}) == 0
