"""Exchanged tokens are checked against the issuer's published keys and the login before the hub keeps them."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tornado.httpclient import HTTPClientError

from hub_plugins.token_checks import JWKS, TokenCheckError, check

from .conftest import ISSUER, FakeIdP, new_key


def token(key, **claims):
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": "sub-alice", "aud": "rucio", "exp": now + 600, "iat": now, **claims}
    return jwt.encode(payload, key["private"], algorithm="RS256", headers={"kid": key["kid"]})


def verify(tok, key, **kw):
    return check(tok, jwt.PyJWK(key["jwk"]), **{"issuer": ISSUER, "audience": "rucio", "subject": "sub-alice", **kw})


def test_a_token_of_the_issuer_for_the_audience_and_the_login_passes():
    key = new_key("k1")
    assert verify(token(key), key)["sub"] == "sub-alice"
    assert verify(token(key, aud=["eos", "rucio"]), key)["aud"] == ["eos", "rucio"]  # aud *contains* the target


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"aud": "eos"}, "audience is not 'rucio'"),
        ({"iss": ISSUER.rstrip("/")}, "issuer is not"),  # the trailing slash counts
        ({"sub": "sub-bob"}, "another identity"),
        ({"exp": int(time.time()) - 1}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ],
)
def test_a_wrong_claim_is_refused_with_the_reason(claims, reason):
    key = new_key("k1")
    with pytest.raises(TokenCheckError, match=reason):
        verify(token(key, **claims), key)


def test_unsigned_and_symmetric_tokens_are_refused():
    key = new_key("k1")
    unsigned = jwt.encode(
        {"iss": ISSUER, "sub": "sub-alice", "aud": "rucio", "exp": time.time() + 60}, None, algorithm="none"
    )
    with pytest.raises(TokenCheckError, match="'none'"):
        verify(unsigned, key)
    # HS256 "signed" with the issuer's *public* key, the classic key-confusion attack (built by hand: PyJWT refuses)
    public_pem = key["private"].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    body = _b64(json.dumps({"iss": ISSUER, "sub": "sub-alice", "aud": "rucio", "exp": int(time.time()) + 60}).encode())
    mac = _b64(hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest())
    with pytest.raises(TokenCheckError, match="'HS256'"):
        verify(f"{header}.{body}.{mac}", key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_error_never_holds_the_token():
    key = new_key("k1")
    tok = token(key, aud="eos")
    with pytest.raises(TokenCheckError) as e:
        verify(tok, key)
    assert tok not in str(e.value) and tok.split(".")[1] not in str(e.value)


async def test_the_key_set_is_cached_and_fetched_again_once_for_an_unknown_key():
    idp = FakeIdP()
    keys = JWKS(idp.fetch, lambda: f"{ISSUER}jwk")
    await keys.key("k1")
    await keys.key("k1")
    assert idp.count("/jwk") == 1
    with pytest.raises(TokenCheckError, match="'k9', which the issuer does not publish"):
        await keys.key("k9")
    assert idp.count("/jwk") == 2


async def test_an_unreachable_key_set_is_a_clear_error():
    async def down(request):
        raise HTTPClientError(599)

    with pytest.raises(TokenCheckError, match="cannot read the issuer's signing keys \\(HTTP 599\\)"):
        await JWKS(down, lambda: f"{ISSUER}jwk").key("k1")
