"""Write access tokens as files the Rucio extension, rucio-clients and EOS FUSE read.

Every write is atomic (a temporary file in the same directory, fsync, rename) and the file is mode 0600 from the
moment it exists, so a reader never sees a half-written or world-readable token.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, content: str, mode: int = 0o600, dir_mode: int = 0o700) -> None:
    """Atomically replace `path` with `content` (temporary file in the same directory, fsync, rename), with `mode`.

    mkstemp creates the file with mode 0600, so until the final chmod nobody else can read it, not even briefly.
    A missing directory is created with `dir_mode`. No newline is added.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_secret_file(path: str | os.PathLike, content: str) -> None:
    """Atomically replace `path` with `content`, readable by the owner only."""
    write_atomically(path, content, mode=0o600, dir_mode=0o700)


def eos_token_line(access_token: str, issuer: str) -> str:
    """The content EOS FUSEx expects in the file named by OAUTH2_TOKEN: `oauth2:<token>:<issuer>/userinfo`."""
    if ":" in access_token or not access_token:
        raise ValueError("an access token for EOS must be non-empty and contain no ':'")
    return f"oauth2:{access_token}:{issuer.rstrip('/')}/userinfo"
