"""Find an upload's files inside ONE user's scratch directory, without ever leaving it, and checksum them.

The registration service can read every user's scratch directory; a user names files by paths relative to their
own. Paths are checked as text first (no absolute paths, `..`, `.`, empty components or unusual characters), then
resolved component by component with directory file descriptors (`openat` with O_NOFOLLOW): a symbolic link anywhere
- planted beforehand or swapped in while we walk - is refused, never followed. Sizes and checksums are computed from
the very descriptor that was checked, so what is registered is what was verified. Files with other hard links are
refused too (a link to someone else's file would otherwise be registered, and later deleted, as this user's).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import zlib
from dataclasses import dataclass

# One path component of an uploadable file: no leading dot (hidden), nothing a URL or a shell would reinterpret.
COMPONENT = re.compile(r"[A-Za-z0-9_+@=,-][A-Za-z0-9._+@=,-]{0,254}")
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
BLOCK = 4 * 1024 * 1024


class ScratchPathError(ValueError):
    """A path the user named cannot be uploaded; the message says which and what to do."""


@dataclass(frozen=True)
class ScratchFile:
    path: str  # relative to the user's scratch directory, '/'-separated
    bytes: int
    adler32: str
    md5: str


def split_path(relpath: str) -> list[str]:
    """The components of a path relative to the scratch directory, or ScratchPathError."""
    if not isinstance(relpath, str) or not relpath.strip("/"):
        raise ScratchPathError("an empty path was given: name files or folders inside your scratch area")
    if relpath.startswith("/"):
        raise ScratchPathError(f"{relpath!r} is absolute: give paths relative to your scratch area")
    parts = relpath.rstrip("/").split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ScratchPathError(f"{relpath!r} is not a plain path inside your scratch area (no '..', '.' or '//')")
        if not COMPONENT.fullmatch(part):
            raise ScratchPathError(
                f"{relpath!r}: {part!r} cannot be uploaded; use letters, digits and . _ - + @ = ,"
                " (not starting with a dot) in file and folder names"
            )
    return parts


def open_user_directory(scratch_root: str, username: str) -> int:
    """A descriptor of `<scratch_root>/<username>`, which must be a real directory (not a link)."""
    if not USERNAME.fullmatch(username):
        raise ScratchPathError(f"{username!r} is not a user name with a scratch directory")
    root = os.open(scratch_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return os.open(username, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    except FileNotFoundError:
        raise ScratchPathError(
            "you have no scratch directory yet: start your server once, then put files in your scratch area"
        ) from None
    except (NotADirectoryError, OSError) as e:
        raise ScratchPathError(
            f"your scratch directory cannot be used ({os.strerror(e.errno)}): ask the operators"
        ) from None
    finally:
        os.close(root)


def _open_in(dir_fd: int, name: str, relpath: str, *, directory: bool) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_DIRECTORY if directory else 0)
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ScratchPathError(f"{relpath}: no such file or folder in your scratch area") from None
    except OSError as e:
        if e.errno == errno.ELOOP or _is_link(dir_fd, name):
            raise ScratchPathError(f"{relpath} is a symbolic link: only regular files are uploaded") from None
        if e.errno == errno.ENOTDIR:
            raise ScratchPathError(f"{relpath} is not a folder") from None
        raise ScratchPathError(f"{relpath}: cannot be read ({os.strerror(e.errno)})") from None


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def checksum(fd: int) -> tuple[int, str, str]:
    size, adler, md5 = 0, 1, hashlib.md5()
    while block := os.read(fd, BLOCK):
        size += len(block)
        adler = zlib.adler32(block, adler)
        md5.update(block)
    return size, f"{adler & 0xFFFFFFFF:08x}", md5.hexdigest()


class _Walk:
    def __init__(self, max_files: int):
        self.max_files = max_files
        self.files: list[ScratchFile] = []
        self.seen: set[tuple[int, int]] = set()

    def add(self, fd: int, relpath: str) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.directory(fd, relpath)
            return
        if not stat.S_ISREG(st.st_mode):
            raise ScratchPathError(f"{relpath} is not a regular file")
        if st.st_nlink != 1:
            raise ScratchPathError(f"{relpath} has other hard links: copy it (`cp`) to a new file and upload that")
        if (st.st_dev, st.st_ino) in self.seen:
            return
        if len(self.files) >= self.max_files:
            raise ScratchPathError(f"more than {self.max_files} files: upload them in several smaller batches")
        self.seen.add((st.st_dev, st.st_ino))
        size, adler32, md5 = checksum(fd)
        self.files.append(ScratchFile(relpath, size, adler32, md5))

    def directory(self, dir_fd: int, relpath: str) -> None:
        # Hidden entries (.ipynb_checkpoints, .git, ...) are not part of an upload of a folder.
        for name in sorted(n for n in os.listdir(dir_fd) if not n.startswith(".")):
            child = f"{relpath}/{name}"
            if not COMPONENT.fullmatch(name):
                raise ScratchPathError(
                    f"{child}: {name!r} cannot be uploaded; rename it using letters, digits and . _ - + @ = ,"
                )
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise ScratchPathError(f"{child} is a symbolic link: only regular files are uploaded")
            fd = _open_in(dir_fd, name, child, directory=stat.S_ISDIR(st.st_mode))
            try:
                self.add(fd, child)
            finally:
                os.close(fd)


def collect(user_dir_fd: int, relpaths: list[str], *, max_files: int = 1000) -> list[ScratchFile]:
    """The regular files named by `relpaths` (folders are walked) inside the directory `user_dir_fd`."""
    if not relpaths:
        raise ScratchPathError("no files to upload")
    walk = _Walk(max_files)
    for relpath in relpaths:
        parts = split_path(relpath)
        fds = [os.dup(user_dir_fd)]
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                fds.append(_open_in(fds[-1], part, "/".join(parts[: i + 1]), directory=not last))
            walk.add(fds[-1], "/".join(parts))
        finally:
            for fd in fds:
                os.close(fd)
    if not walk.files:
        raise ScratchPathError("no files to upload")
    return walk.files
