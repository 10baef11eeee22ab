"""Stopping the lake stops everything by PID, users' servers included, although they outlive hub restarts.

It stops the shared lake, so it runs after the other modules that use it (pytest runs modules in name order). Users'
servers are not children of the hub's lifetime: the stack (and `make down`, tests/faults/test_supervision.py) stops
them by their own pidfiles.
"""

from __future__ import annotations

from devstack.pidfiles import pid_alive, read_pidfile


def test_stopping_the_lake_stops_alice_server_by_its_pidfile(lake, alice):
    _, server_pid, _ = alice
    pidfile = lake.settings.run_dir / "user-alice.pid"
    assert read_pidfile(pidfile)["pid"] == server_pid
    supervisord = lake.supervisor
    lake.stop()
    assert not pid_alive(server_pid), "alice's server outlived the stack"
    assert not pidfile.exists()
    assert not supervisord.alive()
    assert not list(lake.settings.run_dir.glob("*.pid")), "a service outlived the stack"
