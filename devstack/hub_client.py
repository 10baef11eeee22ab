"""A running local hub, driven the way its users and its services drive it; for the tests and the benchmarks.

- `hub_login` logs a person in as a browser does (the hub's IAM login, the IAM's form, the callback);
- `service_session` is an API session with a service's token, `admin_service` the configuration of such a service
  (with the scopes it needs) to merge into the hub's;
- `start_server` starts a user's server through the API and waits until it is ready; `process_environ` reads that
  server's environment, as a terminal inside it has it;
- `personal_token` does what the /hub/token page does;
- `auth_state` reads what the hub stores for a user, from its database: no hub role may read it through the API.

Every function takes the hub as devstack.hub.LocalHub (`.url`, `.dir`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import requests

from devstack.iam_login import login
from devstack.ports import wait_for


def login_at_iam(
    hub, username: str, password: str, browser: requests.Session, *, next_url: str | None = None, timeout=30
) -> str:
    """Follow the hub's IAM login through the IAM's form; returns the callback URL, not yet fetched."""
    start = f"{hub.url}/hub/oauth_login" + (f"?next={next_url}" if next_url else "")
    return login(browser, start, username, password, stop_at=f"{hub.url}/hub/oauth_callback", timeout=timeout)


def hub_login(
    hub,
    username: str,
    password: str,
    *,
    next_url: str | None = None,
    browser: requests.Session | None = None,
    timeout: float = 30,
) -> tuple[requests.Session, requests.Response]:
    """Log in through the hub's IAM login; returns the browser session and the hub's answer to the callback."""
    browser = browser or requests.Session()
    callback = login_at_iam(hub, username, password, browser, next_url=next_url, timeout=timeout)
    return browser, browser.get(callback, allow_redirects=False, timeout=timeout)


def service_session(hub, token: str) -> requests.Session:
    """A requests.Session authorised with a hub API token, with the hub's API URL as `.api`."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    session.api = f"{hub.url}/hub/api"
    return session


def admin_service(name: str, scopes: list[str], token: str | None = None) -> tuple[dict, str]:
    """A hub service `name` with a role of `scopes`, as LocalHub's `extra` configuration, and its API token."""
    token = token or secrets.token_hex(32)
    extra = {
        "JupyterHub": {
            "services": [{"name": name, "api_token": token}],
            "load_roles": [{"name": name, "services": [name], "scopes": list(scopes)}],
        }
    }
    return extra, token


def request_server(admin: requests.Session, username: str, timeout: float = 90) -> None:
    """Ask the hub to start `username`'s server (a service session with admin:servers); it may already run."""
    answer = admin.post(f"{admin.api}/users/{username}/server", timeout=timeout)
    if answer.status_code not in (201, 202) and "already running" not in answer.text:
        raise RuntimeError(f"the hub did not start {username}'s server: {answer.status_code} {answer.text[:300]}")


def wait_server(admin: requests.Session, username: str, timeout: float = 90) -> int:
    """Wait until `username`'s server is ready (needs read:users and admin:server_state); returns its PID."""

    def ready():
        server = admin.get(f"{admin.api}/users/{username}", timeout=10).json()["servers"].get("")
        return server if server and server["ready"] else None

    return wait_for(ready, timeout=timeout, interval=0.5, what=f"{username}'s server")["state"]["pid"]


def start_server(admin: requests.Session, username: str, timeout: float = 90) -> int:
    """Start `username`'s server and wait until it is ready; returns its PID (the local spawner's process)."""
    request_server(admin, username, timeout)
    return wait_server(admin, username, timeout)


def process_environ(pid: int) -> dict[str, str]:
    """The environment of a running process, as a terminal started inside it would have it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def personal_token(hub, browser: requests.Session, username: str, **body) -> requests.Response:
    """What the /hub/token page does: the logged-in browser asks the REST API for a token of `username`."""
    browser.get(f"{hub.url}/hub/token", timeout=30)  # a page: sets a fresh _xsrf cookie
    xsrf = browser.cookies.get("_xsrf", path="/hub/")
    return browser.post(
        f"{hub.url}/hub/api/users/{username}/tokens",
        json=body,
        timeout=30,
        headers={"X-XSRFToken": xsrf, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"},
    )


def auth_state(hub, username: str) -> dict | None:
    """The decrypted auth_state of `username` (None when it has none), read from <state>/hub/jupyterhub.sqlite with
    the key devstack.hub keeps in <state>/hub/crypt_key: tests check what the hub stores without giving any role
    `admin:auth_state`."""
    from jupyterhub.crypto import CryptKeeper

    with sqlite3.connect(f"file:{hub.dir / 'jupyterhub.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT encrypted_auth_state FROM users WHERE name = ?", (username,)).fetchone()
    if row is None:
        raise LookupError(f"the hub has no user {username!r}")
    if row[0] is None:
        return None
    keeper = CryptKeeper(keys=[(hub.dir / "crypt_key").read_text().strip()])
    return json.loads(keeper.fernet.decrypt(row[0]))  # what CryptKeeper.decrypt does, without its thread pool
