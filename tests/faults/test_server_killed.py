"""The token agent dies (it runs inside the user's server: killing it is killing the server): the token files stay
whole (written atomically, never half a token), and the server started again gets fresh ones at its first fetch.

On the fault suite's lake, with the admin user's own server (alice's keeps running for the other modules).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import jwt

from devstack.hub_client import hub_login, process_environ, start_server
from devstack.pidfiles import pid_alive, read_pidfile
from devstack.ports import wait_for
from tests.faults.conftest import fresh_token


def _whole_token_or_none(path: Path) -> bool:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return True
    jwt.decode(text, options={"verify_signature": False})  # raises on half a token
    return "\n" not in text


def test_a_killed_token_agent_leaves_whole_token_files_and_the_restarted_server_renews_them(lake, admin):
    _, answer = hub_login(lake.hub, "admin", "admin-pass")
    assert answer.status_code == 302
    pid = start_server(admin, "admin")
    token_file = Path(process_environ(pid)["BEARER_TOKEN_FILE"])
    fresh_token(token_file)
    try:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the killed server to go")
        assert _whole_token_or_none(token_file)
        leftovers = [p.name for p in token_file.parent.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
        assert not leftovers, f"temporary files left in the token directory: {leftovers}"
        started = time.monotonic()
        # The hub notices the dead server at its next poll; then a start gives the admin a new one.
        wait_for(lambda: admin.get(f"{admin.api}/users/admin", timeout=10).json()["servers"] == {}, timeout=60)
        second = start_server(admin, "admin")
        assert second != pid
        assert read_pidfile(lake.settings.run_dir / "user-admin.pid")["pid"] == second
        wait_for(lambda: token_file.stat().st_mtime > time.time() - 5, timeout=60, what="a renewed token file")
        assert _whole_token_or_none(token_file)
        print(f"\n[faults] token agent (server) killed: new server and token files {time.monotonic() - started:.1f}s")
    finally:
        admin.delete(f"{admin.api}/users/admin/server", timeout=60)
    wait_for(lambda: not (lake.settings.run_dir / "user-admin.pid").exists(), timeout=60, what="the pidfile to go")
