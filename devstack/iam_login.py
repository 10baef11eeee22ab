"""Scripted, browser-style logins against the dev IAM: used by tests, benchmarks and the hub's integration tests.

`login()` behaves like a person at a browser: it follows redirects, reads the real login form, posts the
credentials and follows the redirects back until it reaches the client's redirect URI (which it does not fetch).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import requests

from hub_plugins.token_exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE


class LoginError(Exception):
    """The login did not reach the client: wrong credentials, an error page, or a redirect loop."""


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.fields: dict[str, str] = {}
        self.errors: list[str] = []
        self.heading = ""  # an error page's <h1>, e.g. the OAuth error code
        self._in_error = False
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = attrs.get("action", "")
        elif tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""
        elif attrs.get("role") == "alert":
            self._in_error = True
        elif tag == "h1" and not self.heading:
            self._in_heading = True

    def handle_endtag(self, tag):
        self._in_error = self._in_heading = False

    def handle_data(self, data):
        if self._in_error and data.strip():
            self.errors.append(data.strip())
        if self._in_heading:
            self.heading += data.strip()


def login(
    session: requests.Session, start_url: str, username: str, password: str, stop_at: str, timeout: float = 10
) -> str:
    """Follow `start_url` through the IAM login form; return the first URL starting with `stop_at`."""
    url, method, data = start_url, "GET", None
    for _ in range(20):
        if url.startswith(stop_at):
            return url
        r = session.request(method, url, data=data, allow_redirects=False, timeout=timeout)
        method, data = "GET", None
        if r.is_redirect:
            url = urljoin(url, r.headers["Location"])
            continue
        form = _FormParser()
        form.feed(r.text)
        if form.errors:
            raise LoginError(form.errors[0])
        if r.status_code >= 400 or form.action is None or "password" not in form.fields:
            heading = f": {form.heading}" if form.heading else ""
            raise LoginError(f"unexpected answer {r.status_code} at {urlparse(url).path}{heading}")
        form.fields.update(username=username, password=password)
        url, method, data = urljoin(url, form.action), "POST", form.fields
    raise LoginError("too many redirects during login")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def code_flow_tokens(
    iam,
    client: dict,
    username: str,
    password: str,
    scope: str = "openid profile email offline_access",
    verifier: str | None = None,
) -> dict:
    """Authorization code + PKCE for `client` as `username`; returns the token endpoint's JSON answer."""
    redirect_uri = client["redirect_uris"][0]
    real_verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with requests.Session() as browser:
        final = login(browser, f"{iam.url}/authorize?{urlencode(params)}", username, password, stop_at=redirect_uri)
    query = parse_qs(urlparse(final).query)
    if query.get("state") != [state]:
        raise LoginError("the state parameter came back changed")
    if "code" not in query:
        raise LoginError(query.get("error_description", query.get("error", ["no code returned"]))[0])
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier or real_verifier,
    }
    return token_request(iam, client, form)


def token_request(iam, client: dict, form: dict) -> dict:
    auth = (client["client_id"], client["client_secret"]) if client.get("client_secret") else None
    if auth is None:
        form = {**form, "client_id": client["client_id"]}
    r = requests.post(f"{iam.url}/token", data=form, auth=auth, timeout=10)
    body = r.json()
    if r.status_code != 200:
        raise LoginError(f"{body.get('error')}: {body.get('error_description', '')}")
    return body


def exchange(iam, client: dict, subject_token: str, audience: str | None = None, scope: str | None = None) -> dict:
    """RFC 8693 token exchange as INDIGO IAM does it (IAM requires `scope`; left out here, the IAM refuses it)."""
    form = {"grant_type": GRANT_TYPE, "subject_token": subject_token, "subject_token_type": ACCESS_TOKEN_TYPE}
    if audience:
        form["audience"] = audience
    if scope:
        form["scope"] = scope
    return token_request(iam, client, form)
