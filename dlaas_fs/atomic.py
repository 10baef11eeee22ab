"""Replace a file atomically, with its final mode from the start, never through a link.

A temporary file is created exclusively (O_EXCL, O_NOFOLLOW) next to the target through a descriptor of the
directory, given its mode with fchmod on the open descriptor, fsynced and renamed over the target. A reader never
sees a half-written file, nor a secret file that is readable by others for a moment.

`write_atomically` and `write_secret_file` are for directories that are not per-user (a state directory, a cache's
run directory). Per-user directories on a shared machine need their ownership checked first: the user server does
that (singleuser.token_files.write_private_file) and then writes with `replace_in`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(path: str | os.PathLike, content: str, mode: int = 0o600, dir_mode: int = 0o700) -> None:
    """Atomically replace `path` with `content`, with `mode`. A missing directory is created with `dir_mode`. No
    newline is added."""
    path = Path(path)
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        replace_in(dir_fd, path.name, content, mode)
    finally:
        os.close(dir_fd)


def write_secret_file(path: str | os.PathLike, content: str) -> None:
    """Atomically replace `path` with `content`, readable by the owner only (0600, in a 0700 directory if new)."""
    write_atomically(path, content, mode=0o600, dir_mode=0o700)


def replace_in(dir_fd: int, name: str, content: str, mode: int) -> None:
    """Atomically replace the file `name` in the directory open as `dir_fd` with `content`, with `mode`."""
    for _ in range(100):
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, TEMP_FLAGS, 0o600, dir_fd=dir_fd)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"cannot create a temporary file next to {name}")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
