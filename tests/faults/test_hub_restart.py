"""The hub dies or goes away for a while: users' servers stay up, keep their token files valid, and are found again.

On the fault suite's supervised lake (tests/faults/conftest.py) with alice's real server, started by the hub's local
spawner. Faults: SIGKILL of the hub (supervisord restarts it), the hub's program stopped in supervisord for an outage
of five token lifetimes, and the hub's SQLite database held locked by another writer. Measured times are printed
(`-s`) and kept as test properties; docs/reliability.md records them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import requests

from devstack.hub_client import hub_login
from devstack.pidfiles import pid_alive, read_pidfile
from devstack.ports import wait_for
from tests.faults.conftest import AGENT_BACKOFF, LIFETIME, MARGIN, sidebar_search, token_exp

OUTAGE = 60  # seconds the hub stays away in the long-outage test: five token lifetimes


def _save(lake, browser, name: str, text: str) -> requests.Response:
    """What JupyterLab's save does: PUT the file through the proxy, with the session cookie and its _xsrf."""
    xsrf = browser.cookies.get("_xsrf", path="/user/alice/") or browser.cookies.get("_xsrf")
    return browser.put(
        f"{lake.hub.url}/user/alice/api/contents/{name}",
        json={"type": "file", "format": "text", "content": text},
        headers={"X-XSRFToken": xsrf or ""},
        timeout=30,
    )


def _hub_healthy(lake) -> bool:
    try:
        return requests.get(f"{lake.hub.url}/hub/health", timeout=2).status_code < 300
    except requests.RequestException:
        return False


def _hub_sees_alice_ready(admin) -> bool:
    try:
        server = admin.get(f"{admin.api}/users/alice", timeout=5).json()["servers"].get("")
    except (requests.RequestException, ValueError):
        return False
    return bool(server and server["ready"])


def test_a_killed_hub_is_restarted_and_alice_keeps_her_server_her_work_and_fresh_tokens(
    lake, admin, alice, record_property
):
    browser, server_pid, env = alice
    token_file = Path(env["BEARER_TOKEN_FILE"])
    assert _save(lake, browser, "before.txt", "work before the fault").status_code in (200, 201)
    hub_pid = lake.hub.process.pid
    assert read_pidfile(lake.settings.run_dir / "user-alice.pid")["pid"] == server_pid

    os.kill(hub_pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not pid_alive(hub_pid), timeout=10, what="the killed hub to go")
    # The hub is gone: alice's open server still answers through the proxy and saves her work.
    during = _save(lake, browser, "during.txt", "work while the hub is away")
    assert during.status_code in (200, 201), during.text[:300]
    assert pid_alive(server_pid)

    wait_for(lambda: _hub_healthy(lake), timeout=90, what="supervisord to restart the hub")
    hub_back = time.monotonic() - killed
    assert lake.hub.process.pid not in (None, hub_pid)
    assert read_pidfile(lake.settings.run_dir / "jupyterhub.pid")["pid"] == lake.hub.process.pid
    wait_for(lambda: _hub_sees_alice_ready(admin), timeout=60, what="the restarted hub to find alice's server")
    assert pid_alive(server_pid), "alice's server did not survive the hub's restart"
    assert admin.get(f"{admin.api}/users/alice", timeout=10).json()["servers"][""]["state"]["pid"] == server_pid

    # Her token file is renewed after the hub is back, and her sidebar works with it.
    back = time.time()
    wait_for(lambda: (token_exp(token_file) or 0) > back + LIFETIME - MARGIN - 1, timeout=60, what="a renewed token")
    renewed = time.time() - back
    search = sidebar_search(lake, browser)
    assert search.status_code == 200, search.text[:300]
    for name in ("before.txt", "during.txt"):
        assert browser.get(f"{lake.hub.url}/user/alice/api/contents/{name}", timeout=30).status_code == 200
    restarts = [e for e in lake.supervisor.check() if e.name == "jupyterhub"]
    assert restarts and not restarts[0].gave_up
    record_property("hub_back_s", round(hub_back, 1))
    record_property("token_renewed_after_hub_back_s", round(renewed, 1))
    print(f"\n[faults] hub killed: healthy again after {hub_back:.1f}s; token renewed {renewed:.1f}s after that")


def test_a_long_hub_outage_never_leaves_an_expired_token_in_a_file_and_recovers_by_itself(
    lake, admin, alice, record_property
):
    browser, server_pid, env = alice
    token_file = Path(env["BEARER_TOKEN_FILE"])
    keeper = lake.supervisor.rpc().supervisor
    keeper.stopProcess("jupyterhub", True)
    stopped = time.monotonic()
    worst_stale = 0.0  # the longest time a file held a token past its expiry
    removed_seen = False
    while time.monotonic() - stopped < OUTAGE:
        exp = token_exp(token_file)
        if exp is None:
            removed_seen = True
        else:
            worst_stale = max(worst_stale, time.time() - exp)
        assert pid_alive(server_pid), "alice's server stopped while the hub was away"
        time.sleep(0.5)
    keeper.startProcess("jupyterhub", False)
    started = time.monotonic()
    wait_for(lambda: _hub_healthy(lake), timeout=90, what="the hub to come back")
    hub_back = time.monotonic() - started
    wait_for(lambda: (token_exp(token_file) or 0) > time.time() + 1, timeout=60, what="token files after the outage")
    files_back = time.monotonic() - started
    wait_for(lambda: _hub_sees_alice_ready(admin), timeout=60, what="the hub to find alice's server")
    assert pid_alive(server_pid)
    assert removed_seen, "a token outlived the outage: the test did not outlast a token lifetime"
    # The agent wakes at a token's expiry and removes its file; one retry bound of slack for this 0.5-s sampling.
    assert worst_stale <= AGENT_BACKOFF + 1, f"a token file held an expired token for {worst_stale:.1f}s"
    assert _save(lake, browser, "after-outage.txt", "still here").status_code in (200, 201)
    record_property("outage_s", OUTAGE)
    record_property("worst_expired_token_in_file_s", round(max(worst_stale, 0.0), 1))
    record_property("token_files_back_after_hub_start_s", round(files_back, 1))
    print(
        f"\n[faults] {OUTAGE}s hub outage: hub healthy {hub_back:.1f}s after its start, token files back after "
        f"{files_back:.1f}s; a file held an expired token for at most {max(worst_stale, 0.0):.1f}s"
    )


def test_logins_wait_for_a_locked_hub_database_and_succeed(lake, alice, record_property):
    """Another writer holds the hub's SQLite database (as a backup or a slow commit would): logins queue."""
    hold = 8.0  # beyond the 5 s Python's SQLite driver waits by default; the hub waits 20 s (sqlite_tuning)
    db = sqlite3.connect(lake.hub.dir / "jupyterhub.sqlite", timeout=10, isolation_level=None)
    results = []

    def log_in(user: str):
        started = time.monotonic()
        _, answer = hub_login(lake.hub, user, f"{user}-pass", timeout=60)
        results.append((answer.status_code, started, time.monotonic()))

    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE users SET last_activity = last_activity WHERE name = 'alice'")
        logins = [threading.Thread(target=log_in, args=(user,)) for user in ("admin", "alice")]
        for thread in logins:
            thread.start()
        time.sleep(hold)
    finally:
        db.execute("COMMIT")
        released = time.monotonic()
        db.close()
    for thread in logins:
        thread.join(timeout=90)
    assert [status for status, _, _ in results] == [302, 302], results
    # They waited for the lock (their writes could not pass it), then went through.
    assert all(ended >= released for _, _, ended in results)
    took = [round(ended - started, 1) for _, started, ended in results]
    record_property("login_s_with_db_locked", took)
    print(f"\n[faults] hub database locked {hold:.0f}s: logins took {took}s, no 500")
