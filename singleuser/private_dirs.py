"""Per-user directories on a shared machine (/dev/shm, /tmp): ours alone, or refused with one clear line.

Anyone can create `/dev/shm/dlaas-alice` or `/tmp/dlaas-alice` before alice's server starts: a 0777 directory of
theirs, or a symlink to one, would receive her tokens or a rucio.cfg they can swap. So a directory is created with
os.mkdir (exclusive, 0700) and an existing one is accepted only if it is a real directory (not a symlink), owned by
us, in a parent owned by us or root; group/other access on a directory of ours is removed. The check runs on an
open descriptor of the directory (O_NOFOLLOW), and writers work relative to that descriptor, so a later swap of the
path cannot redirect them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(OSError):
    """A per-user path that someone else could control; the message is one line naming the path and what to do."""


def refusal(path: str | os.PathLike, what: str, hint: str) -> UnsafePathError:
    """The one-line refusal for `path` ("is a symbolic link", ...), ending with what the user can do."""
    return UnsafePathError(f"{path} {what}: remove it or {hint}")


def open_private_dir(path: str | os.PathLike, hint: str = "use another path", *, create: bool = True) -> int | None:
    """An open descriptor of `path`, a directory owned by us with mode 0700; the caller closes it.

    Missing directories (and missing parents) are created with os.mkdir, mode 0700. An existing directory of another
    uid (or in a parent of another uid), a symlink or a non-directory raises UnsafePathError("<path> ...: remove it
    or <hint>"). With create=False a missing directory gives None.
    """
    path = Path(os.path.abspath(path))
    if create:
        missing, candidate = [], path
        while not os.path.lexists(candidate):
            missing.append(candidate)
            candidate = candidate.parent
        for directory in reversed(missing):
            # Created meanwhile by someone: judged below like any existing directory.
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
            if directory != path:
                os.close(open_private_dir(directory, hint, create=False))
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refusal_for(path, hint) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise refusal(path, f"exists and belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})", hint)
        owner = os.stat(path.parent).st_uid  # whoever owns the parent can swap the directory for another
        if owner not in (0, os.geteuid()):
            raise refusal(path, f"lies in {path.parent}, which belongs to uid {owner}", hint)
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private_dir(path: str | os.PathLike, hint: str = "use another path") -> Path:
    """Create or accept `path` as open_private_dir does, for a program that then uses the path itself."""
    os.close(open_private_dir(path, hint))
    return Path(path)


def _refusal_for(path: Path, hint: str) -> UnsafePathError:
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return refusal(path, "is a symbolic link, not a directory of yours", hint)
    except OSError:
        pass
    return refusal(path, "exists and is not a directory", hint)
