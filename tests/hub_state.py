"""Read a local hub's auth_state straight from its database, decrypted with its crypt key.

Tests check what the hub stores without giving any hub role `admin:auth_state`: the test hub runs with the
production roles, and this reads <state>/hub/jupyterhub.sqlite with the key devstack.hub keeps in <state>/hub/crypt_key.
"""

from __future__ import annotations

import json
import sqlite3

from jupyterhub.crypto import CryptKeeper


def auth_state(hub, username: str) -> dict | None:
    """The decrypted auth_state of `username` on the LocalHub `hub` (None when it has none)."""
    with sqlite3.connect(f"file:{hub.dir / 'jupyterhub.sqlite'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT encrypted_auth_state FROM users WHERE name = ?", (username,)).fetchone()
    if row is None:
        raise LookupError(f"the hub has no user {username!r}")
    if row[0] is None:
        return None
    keeper = CryptKeeper(keys=[(hub.dir / "crypt_key").read_text().strip()])
    return json.loads(keeper.fernet.decrypt(row[0]))  # what CryptKeeper.decrypt does, without its thread pool
