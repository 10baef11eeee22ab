"""Fixtures shared by the unit tests of the hub plugins: an auth_state key, and an IdP at the HTTP layer.

`FakeIdP` answers the authenticator's HTTP client (oauthenticator's `http_client` trait) the way ESCAPE IAM does:
discovery, JWKS, authorization-code / refresh / RFC 8693 token-exchange grants with signed JWTs, userinfo and
RFC 7009 revocation. Tests script its failures and count its requests.
"""

import asyncio
import io
import json
import os
import time
import uuid
from urllib.parse import parse_qsl, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jupyterhub.crypto import CryptKeeper
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from hub_plugins.authenticator import EscapeIAMAuthenticator
from hub_plugins.token_exchange import GRANT_TYPE

ISSUER = "http://iam.test/"


@pytest.fixture
def crypt_key(monkeypatch):
    """A fresh auth_state key for this test (EscapeIAMAuthenticator refuses to run without one)."""
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", os.urandom(32).hex())
    CryptKeeper.clear_instance()
    yield
    CryptKeeper.clear_instance()


def new_key(kid: str) -> dict:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {"kid": kid, "private": private, "jwk": {**public, "kid": kid, "use": "sig", "alg": "RS256"}}


class FakeIdP:
    """ESCAPE IAM at the HTTP layer. `users`: username -> sub; `groups`: username -> IAM groups.

    Knobs: `rotate` (a refresh answers a new refresh token and forgets the old one), `fail[path or grant]` (a list
    of status codes to answer next, or exceptions to raise, as for a connection refused), `claims` (overrides of
    exchanged tokens' claims), `sign_with` (kid or key).
    """

    def __init__(self, users=None, groups=None):
        self.users = users or {"alice": "sub-alice", "bob": "sub-bob"}
        self.groups = groups or {"alice": ["escape/users"], "bob": ["escape/users"]}
        self.keys = {"k1": new_key("k1")}
        self.sign_with = "k1"
        self.rotate = False
        self.fail: dict[str, list[int]] = {}
        self.claims: dict = {}
        self.requests: list[tuple[str, dict]] = []
        self.refresh_tokens: dict[str, str] = {}  # valid refresh token -> username
        self.revoked: list[str] = []
        self.access: dict[str, str] = {}  # IAM access token -> username
        self.profile = "iam"  # "wlcg": userinfo has no `groups`, only `wlcg.groups` with a leading '/'

    def jwt(self, username: str, audience: str, *, ttl: float = 3600, **claims) -> str:
        key = self.keys[self.sign_with] if isinstance(self.sign_with, str) else self.sign_with
        now = time.time()
        payload = {
            "iss": ISSUER,
            "sub": self.users[username],
            "aud": audience,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + ttl),
            "jti": uuid.uuid4().hex,
            "scope": "openid profile",
            **claims,
        }
        return jwt.encode(payload, key["private"], algorithm="RS256", headers={"kid": key["kid"]})

    def login(self, username: str) -> dict:
        """What the token endpoint answers to an authorization code of `username`."""
        access = uuid.uuid4().hex
        self.access[access] = username
        refresh = uuid.uuid4().hex
        self.refresh_tokens[refresh] = username
        return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600}

    async def fetch(self, request: HTTPRequest, **kwargs) -> HTTPResponse:
        await asyncio.sleep(0)
        url = urlparse(request.url)
        form = dict(parse_qsl(request.body.decode())) if request.body else {}
        step = form.get("grant_type", url.path)
        self.requests.append((step, form))
        for key in (step, url.path):
            if self.fail.get(key):
                code = self.fail[key].pop(0)
                if isinstance(code, BaseException):  # e.g. ConnectionRefusedError(): what a client raises
                    raise code
                raise HTTPClientError(code, response=HTTPResponse(request, code, buffer=io.BytesIO(b"{}")))
        return HTTPResponse(request, 200, buffer=io.BytesIO(json.dumps(self.answer(url.path, form, request)).encode()))

    def answer(self, path: str, form: dict, request: HTTPRequest):
        if path == "/.well-known/openid-configuration":
            return {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}authorize",
                "token_endpoint": f"{ISSUER}token",
                "userinfo_endpoint": f"{ISSUER}userinfo",
                "jwks_uri": f"{ISSUER}jwk",
                "revocation_endpoint": f"{ISSUER}revoke",
            }
        if path == "/jwk":
            return {"keys": [k["jwk"] for k in self.keys.values()]}
        if path == "/userinfo":
            username = self.access.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
            if username is None:
                raise HTTPClientError(401, response=HTTPResponse(request, 401, buffer=io.BytesIO(b"{}")))
            if self.profile == "wlcg":
                return {
                    "sub": self.users[username],
                    "preferred_username": username,
                    "wlcg.groups": [f"/{g}" for g in self.groups[username]],
                }
            return {"sub": self.users[username], "preferred_username": username, "groups": self.groups[username]}
        if path == "/revoke":
            self.revoked.append(form["token"])
            self.refresh_tokens.pop(form["token"], None)
            return {}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            return self.login(form["code"])  # the tests' codes are usernames
        if grant == "refresh_token":
            username = self.refresh_tokens.get(form["refresh_token"])
            if username is None:
                raise HTTPClientError(
                    400, response=HTTPResponse(request, 400, buffer=io.BytesIO(b'{"error": "invalid_grant"}'))
                )
            answer = self.login(username)
            if self.rotate:
                del self.refresh_tokens[form["refresh_token"]]
            else:
                del self.refresh_tokens[answer["refresh_token"]]
                answer.pop("refresh_token")
            return answer
        if grant == GRANT_TYPE:
            username = self.access[form["subject_token"]]
            token = self.jwt(username, form["audience"], **self.claims)
            return {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "openid profile"}
        raise AssertionError(f"unexpected request {path} {grant}")

    def count(self, step: str) -> int:
        return sum(1 for s, _ in self.requests if s == step)


class FakeUser:
    """What the authenticator touches of a JupyterHub user: name, auth_state (saved as JSON), spawners."""

    def __init__(self, name="alice", state=None):
        self.name = name
        self.saved = json.dumps(state) if state is not None else None
        self.spawners = {}

    async def get_auth_state(self):
        return json.loads(self.saved) if self.saved is not None else None

    async def save_auth_state(self, state):
        self.saved = json.dumps(state) if state is not None else None

    @property
    def state(self):
        return json.loads(self.saved) if self.saved is not None else None


class FakeHandler:
    """The OAuth callback handler as the authenticator sees it: the code, and the hub's users by name."""

    def __init__(self, code: str, users=()):
        self.code = code
        self.users = {u.name: u for u in users}

    def get_argument(self, name, default=None):
        return self.code if name == "code" else default

    def find_user(self, name):
        return self.users.get(name)


@pytest.fixture
def idp():
    return FakeIdP()


def make_authenticator(idp=None, **kw):
    """EscapeIAMAuthenticator as the hub configures it, its HTTP client the IdP `idp` (a FakeIdP by default)."""
    return EscapeIAMAuthenticator(
        **{
            "issuer": ISSUER,
            "client_id": "hub",
            "client_secret": "s",
            "enable_pkce": False,
            "oauth_callback_url": "http://hub/hub/oauth_callback",
            "allowed_groups": {"escape/users"},
            "exchange_targets": {
                "rucio": {"audience": "rucio", "scope": "openid profile"},
                "eos": {"audience": "eos", "scope": "openid profile"},
            },
            "http_client": idp or FakeIdP(),
            **kw,
        }
    )


async def log_in(auth, username="alice", users=()):
    """A login through the OAuth callback, as JupyterHub runs it; returns the saved user."""
    model = await auth.get_authenticated_user(FakeHandler(username, users), None)
    user = next((u for u in users if u.name == username), None) or FakeUser(username)
    existing = await user.get_auth_state()
    await user.save_auth_state(auth.reconcile(model, existing))
    return model, user
