"""ESCAPE IAM goes away for longer than a token lifetime: running sessions keep working while their tokens are
valid, token files never hold an expired token, logins get the hub's 503 page, and everything recovers by itself
when the IAM is back.

The IAM is frozen by signal (SIGSTOP, then SIGCONT): it accepts connections and never answers, the worst case for
timeouts, and it keeps its sessions. (Stopping the dev IAM's process instead would also end every IAM session: it
keeps refresh tokens in memory, which INDIGO IAM does not; users then log in again, see docs/reliability.md.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from devstack.hub_client import hub_login, login_at_iam
from devstack.pidfiles import pid_alive
from devstack.ports import wait_for
from tests.faults.conftest import AGENT_BACKOFF, LIFETIME, fresh_token, sidebar_search, token_exp

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def in_terminal(lake, browser, line: str) -> tuple[str, int]:
    """What alice sees when she types `line` in a JupyterLab terminal of her server (a real one, through the hub's
    proxy): its output without terminal escapes, and its exit status."""
    base = f"{lake.hub.url}/user/alice"
    xsrf = browser.cookies.get("_xsrf", path="/user/alice/") or browser.cookies.get("_xsrf") or ""
    made = browser.post(f"{base}/api/terminals", headers={"X-XSRFToken": xsrf}, timeout=60)
    assert made.status_code == 200, made.text[:300]
    name = made.json()["name"]
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    url = f"{base.replace('http', 'ws', 1)}/terminals/websocket/{name}?_xsrf={xsrf}"

    async def typed() -> str:
        ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": cookies}, connect_timeout=60))
        seen = ""
        try:
            ws.write_message(json.dumps(["stdin", f"{line}; echo status=$?\r"]))
            while not re.search(r"status=\d+\s", ANSI.sub("", seen)):
                message = await asyncio.wait_for(ws.read_message(), timeout=120)
                assert message is not None, f"the terminal closed: {ANSI.sub('', seen)!r}"
                kind, *data = json.loads(message)
                seen += data[0] if kind == "stdout" else ""
        finally:
            ws.close()
        return ANSI.sub("", seen)

    try:
        seen = asyncio.run(typed())
    finally:
        browser.delete(f"{base}/api/terminals/{name}", headers={"X-XSRFToken": xsrf}, timeout=60)
    output = seen.split(f"{line}; echo status=$?", 1)[-1]
    return output, int(re.search(r"status=(\d+)\s", output).group(1))


def test_an_iam_outage_longer_than_a_token_lifetime_is_survived_and_recovers_by_itself(lake, alice, record_property):
    browser, server_pid, env = alice
    token_file = Path(env["BEARER_TOKEN_FILE"])
    last_exp = fresh_token(token_file)
    assert sidebar_search(lake, browser).status_code == 200  # Rucio has seen (validated) her current token
    login = requests.Session()
    callback = login_at_iam(lake.hub, "admin", "admin-pass", login)  # at the IAM's form when the IAM goes away
    iam_pid = lake.iam.process.pid
    os.kill(iam_pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # Until her token expires, alice's sidebar keeps working.
        during = sidebar_search(lake, browser)
        assert during.status_code == 200, during.text[:300]
        # A login under way meets the hub's 503 page, not a stack trace.
        answer = login.get(callback, allow_redirects=False, timeout=120)
        assert answer.status_code == 503, answer.status_code
        assert "ESCAPE IAM is not reachable" in answer.text
        # Once it expired, the file is gone: never an expired token in it.
        wait_for(lambda: not token_file.exists(), timeout=LIFETIME + AGENT_BACKOFF + 10, what="the expired file")
        assert time.time() >= last_exp - 2
        # Her sidebar now says to log in again, with the hub's login page (singleuser.expired_session).
        sidebar = sidebar_search(lake, browser)
        assert sidebar.status_code == 403, (sidebar.status_code, sidebar.text[:300])
        said_sidebar = sidebar.json()["error"]
        assert said_sidebar == f"Your Data Lake login has expired: log in again at {lake.hub.url}/hub/login"
        # `rucio` in her terminal says the same, and nothing else (singleuser.rucio_cli, first on her server's PATH).
        rucio = shutil.which("rucio", path=env["PATH"])
        cli = subprocess.run([rucio, "whoami"], env=env, capture_output=True, text=True, timeout=120)
        typed, typed_status = in_terminal(lake, browser, "rucio whoami")
        while time.monotonic() - stopped < 2 * LIFETIME:
            assert pid_alive(server_pid)
            time.sleep(1)
    finally:
        os.kill(iam_pid, signal.SIGCONT)
    back = time.monotonic()
    try:
        wait_for(lambda: (token_exp(token_file) or 0) > time.time() + 1, timeout=90, what="token files after the IAM")
    except TimeoutError:
        print("\n".join(lake.hub.process.log_tail(60).splitlines()))
        raise
    files_back = time.monotonic() - back
    assert sidebar_search(lake, browser).status_code == 200
    # With her token back, `rucio` is rucio-clients' CLI again, speaking to Rucio for her.
    whoami = subprocess.run([rucio, "whoami"], env=env, capture_output=True, text=True, timeout=120)
    assert whoami.returncode == 0, whoami.stdout[-500:] + whoami.stderr[-500:]
    assert re.search(r"\baccount\b\W+alice\b", whoami.stdout), whoami.stdout
    typed_back, typed_back_status = in_terminal(lake, browser, "rucio whoami")
    assert typed_back_status == 0 and re.search(r"\baccount\b\W+alice\b", typed_back), typed_back
    _, answer = hub_login(lake.hub, "admin", "admin-pass")
    assert answer.status_code == 302
    said = (cli.stdout + cli.stderr).strip().splitlines()[-1:] or [""]
    assert (cli.returncode, (cli.stdout + cli.stderr).strip()) == (1, said_sidebar), cli.stdout + cli.stderr
    # Typed in her terminal, the same line, and nothing from rucio-clients.
    assert typed_status == 1 and said_sidebar in typed.splitlines(), typed
    assert "OIDC" not in typed and "Traceback" not in typed, typed
    record_property("sidebar_after_expiry", (sidebar.status_code, said_sidebar))
    record_property("rucio_cli_after_expiry", (cli.returncode, said[0][:200]))
    record_property("token_files_back_after_iam_s", round(files_back, 1))
    print(
        f"\n[faults] IAM down {2 * LIFETIME}s: sidebar after expiry {sidebar.status_code} {said_sidebar!r}; "
        f"`rucio whoami` exit {cli.returncode}: {said[0][:200]!r}; token files back {files_back:.1f}s after its return"
    )
