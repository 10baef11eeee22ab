"""Short-lived tokens (6 s) stay fresh for as long as the user works: the hub refreshes the IAM token and
re-exchanges ahead of expiry, and the token agent in the user's server rewrites its token files in time.

Its own dev IAM (short lifetimes), Rucio and hub, with a real user server started by the hub's local spawner, whose
Rucio sidebar is queried all along.
"""

import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import jwt
import pytest
import requests

from devstack.hub_client import auth_state, hub_login, process_environ, service_session, start_server
from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE
from devstack.settings import Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_ADMIN_TOKEN, hub_test_extra

LIFETIME = 6
MARGIN = 3
WATCH_SECONDS = 24


@pytest.fixture(scope="module")
def short_stack():
    """Its own IAM (short token lifetimes), Rucio and hub (no registration service, no cache, no daemons)."""
    with (
        temporary_state("refresh") as state,
        Stack(
            Settings.free_ports(state),
            full_seed=False,
            iam_options={"access_token_ttl": LIFETIME},
            hub_options={
                "refresh_margin": MARGIN,
                "auth_refresh_age": 1,
                "extra": {**hub_test_extra(), "EscapeIAMAuthenticator": {"refresh_backoff": 2}},
            },
        ) as stack,
    ):
        stack.start("core", "login")
        yield stack.iam, stack.hub, service_session(stack.hub, TEST_ADMIN_TOKEN), stack.settings


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_tokens_stay_valid_across_many_refresh_cycles(short_stack):
    iam, hub, admin, _ = short_stack
    browser, _ = hub_login(hub, "alice", "alice-pass")
    env = process_environ(start_server(admin, "alice"))
    server_token = env["JUPYTERHUB_API_TOKEN"]
    assert browser.get(f"{hub.url}/user/alice/lab", timeout=60).status_code == 200
    rucio_file = Path(env["BEARER_TOKEN_FILE"])
    eos_file = Path(env["OAUTH2_TOKEN"].removeprefix("FILE:"))
    wait_for(rucio_file.exists, timeout=30, what="the token agent's first write")

    seen_api, seen_files = set(), set()
    searches = 0
    deadline = time.time() + WATCH_SECONDS
    while time.time() < deadline:
        now = time.time()
        answer = requests.get(
            f"{hub.url}/hub/api/dlaas/tokens", headers={"Authorization": f"token {server_token}"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        for name, token in answer.json()["tokens"].items():
            claims = _claims(token["access_token"])
            assert claims["aud"] == name
            assert claims["exp"] > now, "the token API handed out an expired token"
            assert token["expires_at"] - now > 0
            seen_api.add(token["access_token"])
        content = rucio_file.read_text()
        assert "\n" not in content
        assert stat.S_IMODE(rucio_file.stat().st_mode) == 0o600
        claims = _claims(content)
        assert claims["aud"] == "rucio"
        assert claims["exp"] >= int(now), "the Rucio token file held an expired token"
        seen_files.add(content)
        assert not eos_file.exists()  # the dev IAM's userinfo has a port, which the EOS line cannot carry
        # The Rucio sidebar keeps working with whatever token the file holds now.
        search = browser.get(
            f"{hub.url}/user/alice/rucio-jupyterlab/did-search",
            timeout=30,
            params={"namespace": "escape", "did": f"{DEMO_SCOPE}:higgs*", "type": "collection"},
        )
        assert search.status_code == 200, search.text
        assert "higgs-candidates" in search.text
        searches += 1
        time.sleep(0.5)
    assert searches >= 10
    cycles = WATCH_SECONDS // (LIFETIME - MARGIN)
    assert len(seen_files) >= cycles // 2, f"the token files were rewritten only {len(seen_files)} times"
    assert len({t for t in seen_api}) >= cycles
    state = auth_state(hub, "alice")
    assert state["refresh_token"] not in json.dumps(answer.json())
    log = Path(hub.process.log_path).read_text()
    assert "refreshed IAM and exchanged tokens for alice" in log
    assert state["refresh_token"] not in log
    # The hub's log also holds the user server's output (local spawner): no exchanged token in either.
    assert "token files updated for rucio;" in log
    assert not any(token in log for token in seen_api | seen_files)


def test_a_revoked_iam_session_gets_a_log_in_again_answer_never_a_stale_token(short_stack):
    iam, hub, admin, _ = short_stack
    hub_login(hub, "admin", "admin-pass")
    api_token = process_environ(start_server(admin, "admin"))["JUPYTERHUB_API_TOKEN"]

    def tokens():
        return requests.get(
            f"{hub.url}/hub/api/dlaas/tokens", headers={"Authorization": f"token {api_token}"}, timeout=30
        )

    assert tokens().status_code == 200
    # The user's IAM session ends (revoked at the IAM, as an IAM admin would).
    state = auth_state(hub, "admin")
    client = iam.client("dlaas-hub")
    revoked = requests.post(
        f"{iam.url}/revoke",
        auth=(client["client_id"], client["client_secret"]),
        data={"token": state["refresh_token"], "token_type_hint": "refresh_token"},
        timeout=10,
    )
    assert revoked.status_code == 200
    time.sleep(max(0.0, min(t["expires_at"] for t in state["exchanged"].values()) - MARGIN - time.time()) + 0.2)
    answer = tokens()
    assert answer.status_code == 401
    assert answer.json()["message"] == "Your ESCAPE IAM session has ended: log in to the hub again"
    assert "access_token" not in answer.text
    # Logging in again brings the tokens back (after the failed refresh's back-off).
    hub_login(hub, "admin", "admin-pass")
    again = wait_for(lambda: (r := tokens()).status_code == 200 and r, timeout=30, what="tokens after a new login")
    assert _claims(again.json()["tokens"]["rucio"]["access_token"])["exp"] > time.time()
    admin.delete(f"{admin.api}/users/admin/server", timeout=60)


# --- IAM rotates the refresh token, then the exchange fails ---------------------------------------------------


class TokenEndpointProxy:
    """The IAM token endpoint behind a loopback proxy that can fail token exchanges with 503 (`fail_exchanges`)
    and remembers the refresh tokens the hub used; everything else is passed on unchanged."""

    def __init__(self, target: str):
        self.target = target
        self.fail_exchanges = False
        self.failed = 0
        self.refreshed_with: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = dict(parse_qsl(body.decode()))
                if form.get("grant_type") == "refresh_token":
                    proxy.refreshed_with.append(form["refresh_token"])
                if proxy.fail_exchanges and form.get("grant_type", "").endswith(":token-exchange"):
                    proxy.failed += 1
                    return self._answer(503, b'{"error": "temporarily_unavailable"}', "application/json")
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "accept")
                }
                upstream = requests.post(proxy.target, data=body, headers=headers, timeout=30)
                self._answer(upstream.status_code, upstream.content, upstream.headers.get("Content-Type", ""))

            def _answer(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rotating_stack():
    """A dev IAM that rotates refresh tokens, its token endpoint behind TokenEndpointProxy, and a hub using it."""
    with (
        temporary_state("rotate") as state,
        Stack(
            Settings.free_ports(state), iam_options={"access_token_ttl": 120, "rotate_refresh_tokens": True}
        ) as stack,
    ):
        stack.start("iam")
        proxy = TokenEndpointProxy(f"{stack.iam.url}/token")
        try:
            # The hub's options may change until it starts: here, the proxy's address, known only now.
            # Refresh once a token has less than 115 s left, i.e. 5 s after it was issued: plenty of validity left.
            stack.hub_options.update(
                refresh_margin=115,
                auth_refresh_age=1,
                extra={**hub_test_extra(), "EscapeIAMAuthenticator": {"token_url": proxy.url, "refresh_backoff": 3}},
            )
            stack.start("login")
            yield stack.iam, stack.hub, proxy
        finally:
            stack.stop()  # the hub before the proxy it talks to
            proxy.stop()


def test_a_rotated_refresh_token_survives_a_failed_exchange(rotating_stack):
    iam, hub, proxy = rotating_stack
    browser, answer = hub_login(hub, "alice", "alice-pass")
    assert answer.status_code == 302
    before = auth_state(hub, "alice")
    proxy.fail_exchanges = True

    def rotated_and_kept():
        page = browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
        assert page.status_code == 200, "the user was logged out while her tokens were still valid"
        return auth_state(hub, "alice")["refresh_token"] != before["refresh_token"]

    # A page request refreshes (auth_refresh_age 1 s): IAM rotates the refresh token, the exchange then fails.
    wait_for(rotated_and_kept, timeout=60, what="a refresh that rotated the refresh token")
    assert proxy.failed >= 1
    kept = auth_state(hub, "alice")
    assert kept["exchanged"] == before["exchanged"], "the old, still valid, exchanged tokens were replaced"
    assert "refresh for alice failed" in hub.process.log_path.read_text()

    proxy.fail_exchanges = False

    def refreshed():
        assert browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30).status_code == 200
        return auth_state(hub, "alice")["exchanged"] != before["exchanged"]

    # After the back-off the hub refreshes with the refresh token it kept; the old one is dead at IAM.
    wait_for(refreshed, timeout=60, what="a refresh with the kept refresh token")
    assert kept["refresh_token"] in proxy.refreshed_with
    assert before["refresh_token"] in proxy.refreshed_with[:1]
