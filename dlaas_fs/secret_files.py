"""A generated secret kept in a file: created once (0600, atomically), then read back on every later use.

The local data lake keeps its passwords, API tokens and keys this way in its state directory, so a restart finds
the same ones and none is ever on a command line or in the repository.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from dlaas_fs.atomic import write_secret_file


def kept_secret(path: str | Path, nbytes: int = 32) -> str:
    """The secret in `path`, made of `nbytes` random bytes in hex (what JupyterHub reads for its keys) if new."""
    path = Path(path)
    if not path.exists():
        write_secret_file(path, secrets.token_hex(nbytes))
    return path.read_text().strip()
