"""The issuer's discovery document: read when a login first needs it, never blocking, with clear errors."""

import asyncio
import io
import json
import socket
import time

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from hub_plugins.authenticator import EscapeIAMAuthenticator
from hub_plugins.discovery import DiscoveryError, discover

ISSUER = "http://iam.test/"
DOC = {
    "issuer": ISSUER,
    "authorization_endpoint": "http://iam.test/authorize",
    "token_endpoint": "http://iam.test/token",
    "userinfo_endpoint": "http://iam.test/userinfo",
    "jwks_uri": "http://iam.test/jwk",
}


def answering(answer, calls=None, delay=0.0):
    async def fetch(request: HTTPRequest) -> HTTPResponse:
        if calls is not None:
            calls.append(request.url)
        await asyncio.sleep(delay)
        if isinstance(answer, BaseException):
            raise answer
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return HTTPResponse(request, 200, buffer=io.BytesIO(body))

    return fetch


async def test_endpoints_come_from_the_document_at_the_well_known_url():
    calls = []
    endpoints = await discover(answering(DOC, calls), ISSUER)
    assert calls == ["http://iam.test/.well-known/openid-configuration"]
    assert endpoints == {
        "authorize_url": "http://iam.test/authorize",
        "token_url": "http://iam.test/token",
        "userdata_url": "http://iam.test/userinfo",
        "jwks_url": "http://iam.test/jwk",
        "revocation_url": "",
    }


async def test_a_revocation_endpoint_is_read_when_advertised():
    endpoints = await discover(answering({**DOC, "revocation_endpoint": "http://iam.test/revoke"}), ISSUER)
    assert endpoints["revocation_url"] == "http://iam.test/revoke"


@pytest.mark.parametrize(
    "answer, unreachable, message",
    [
        (HTTPClientError(599), True, "HTTP 599"),
        (HTTPClientError(503), True, "HTTP 503"),
        (ConnectionRefusedError(), True, "ConnectionRefusedError"),
        (b"<html>proxy error</html>", True, "is not JSON"),
        (HTTPClientError(404), False, "HTTP 404"),
        ({**DOC, "issuer": "http://iam.test"}, False, "names issuer 'http://iam.test', not 'http://iam.test/'"),
        ({k: v for k, v in DOC.items() if k != "token_endpoint"}, False, "lacks token_endpoint"),
        ({k: v for k, v in DOC.items() if k != "jwks_uri"}, False, "lacks jwks_uri"),
    ],
)
async def test_an_unusable_document_is_a_clear_error_that_tells_outage_from_misconfiguration(
    answer, unreachable, message
):
    with pytest.raises(DiscoveryError, match=message) as e:
        await discover(answering(answer), ISSUER)
    assert e.value.unreachable is unreachable


async def test_no_issuer_says_what_to_set():
    with pytest.raises(DiscoveryError, match="issuer is not set"):
        await discover(answering(DOC), "")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loading_the_configuration_contacts_nothing(crypt_key):
    started = time.monotonic()
    auth = EscapeIAMAuthenticator(issuer=f"http://127.0.0.1:{_closed_port()}/", client_id="hub", client_secret="s")
    assert time.monotonic() - started < 1
    assert (auth.authorize_url, auth.token_url, auth.userdata_url, auth.jwks_url) == ("", "", "", "")


async def test_an_unreachable_iam_fails_fast_and_a_later_attempt_succeeds(crypt_key):
    auth = EscapeIAMAuthenticator(
        issuer=f"http://127.0.0.1:{_closed_port()}/", client_id="hub", client_secret="s", discovery_timeout=2
    )
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="cannot read the IAM discovery document") as e:
        await auth.ensure_endpoints()
    assert e.value.unreachable
    assert time.monotonic() - started < 3
    assert auth.token_url == ""


async def test_endpoints_are_discovered_once_and_explicit_ones_are_kept(crypt_key):
    calls = []

    class Client:
        fetch = staticmethod(answering(DOC, calls, delay=0.05))

    auth = EscapeIAMAuthenticator(
        issuer=ISSUER,
        client_id="hub",
        client_secret="s",
        userdata_url="http://iam.test/custom-userinfo",
        http_client=Client(),
    )

    async def many():
        await asyncio.gather(*(auth.ensure_endpoints() for _ in range(5)))
        await auth.ensure_endpoints()

    await many()
    assert len(calls) == 1
    assert auth.token_url == "http://iam.test/token"
    assert auth.authorize_url == "http://iam.test/authorize"
    assert auth.userdata_url == "http://iam.test/custom-userinfo"
