"""Faster commits for a hub whose database is SQLite: write-ahead log, no fsync on every commit.

A login writes the hub's database several times (the user, its roles and groups, the encrypted auth_state), each a
commit, and the hub runs them on its one event loop. With SQLite's default rollback journal every commit waits for
several fsyncs: under a login storm that wait was the largest share of the hub's time (docs/benchmarks.md). In WAL
mode with synchronous=NORMAL a commit appends to the log without waiting for the disk; the database stays consistent
after a crash of the hub or of the machine, and at worst the last commits before a power cut are lost (the users
concerned log in again).

    use_wal()   # by hub_plugins.hub_config.configure, before the hub opens its database

Another writer holding the database (a backup, a slow commit, an operator's sqlite3 shell) makes the hub's writes
wait. Python's SQLite driver gives up after 5 s and the login (or spawn) that waited fails with HTTP 500;
`wait_for_locks()` lets the hub wait longer (20 s), so such a login succeeds late instead of failing. The hub runs its
database calls on its event loop, so it answers nothing else while it waits, as it does for the first 5 s already.

Only for a database on a local or block-storage volume (z2jh's sqlite-pvc on a ReadWriteOnce disk): WAL needs shared
memory between the processes using the file and must not be used on NFS. Other databases are left untouched.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

_installed = False
_busy_timeout_ms = 0

#: How long the hub waits for another writer's lock before a statement fails (seconds).
BUSY_TIMEOUT = 20.0


def _on_connect(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _on_connect_wait(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection) and _busy_timeout_ms:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {_busy_timeout_ms:d}")


def wait_for_locks(seconds: float = BUSY_TIMEOUT) -> None:
    """Make every SQLite database this process opens from now on wait up to `seconds` for another writer's lock."""
    global _busy_timeout_ms
    if not _busy_timeout_ms:
        event.listen(Engine, "connect", _on_connect_wait)
    _busy_timeout_ms = int(seconds * 1000)


def use_wal() -> None:
    """Put every SQLite database this process opens from now on in WAL mode (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Engine, "connect", _on_connect)
        _installed = True


def wal_enabled() -> bool:
    """Whether use_wal() has run in this process."""
    return _installed
