"""Copy files from outside the scratch area (the home directory, say) into it, for `datalakectl upload`.

The registration service only registers files inside the user's scratch directory, so `datalakectl upload ~/plots`
copies them there first, into one new folder for this upload. Each file is written under a hidden temporary name in
its final directory, flushed to disk (fsync) and renamed into place, so no file appears under its real name unless
it was written completely. When a copy cannot complete - most often the scratch area is full or over quota (ENOSPC,
EDQUOT, EFBIG) - everything copied for this upload is removed and StagingError says which file, how much of it was
written and what to do; the caller then registers nothing.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BLOCK = 1024 * 1024
FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StagingError(Exception):
    """A copy into the scratch area failed; the message is one line for the user. Nothing of the upload is left."""


def upload_folder_name() -> str:
    """A new folder name for one upload, e.g. upload-20261202T040512-3fa9c1 (plain characters, sortable)."""
    return f"upload-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def sources(path: Path) -> Iterator[tuple[Path, Path]]:
    """(source file, path relative to the upload folder) for a file, or every non-hidden file under a folder, as
    the registration service would register them (it skips hidden names)."""
    if not path.is_dir():
        yield path, Path(path.name)
        return
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            source = Path(top) / name
            yield source, Path(path.name) / source.relative_to(path)


def copy_file(source: Path, target: Path, progress: Callable[[int], None] = lambda n: None) -> int:
    """Copy source to target atomically (temporary name beside it, fsync, rename); bytes written. On failure the
    temporary file is removed and OSError raised with `.written` (bytes written before it failed)."""
    temporary = target.with_name(f".{target.name}.part-{secrets.token_hex(4)}")
    written = 0
    try:
        with open(source, "rb") as src:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with open(fd, "wb", buffering=0) as dst:
                while block := src.read(BLOCK):
                    view = memoryview(block)
                    while view:
                        n = dst.write(view)
                        written += n
                        view = view[n:]
                        progress(n)
                os.fsync(dst.fileno())
        os.rename(temporary, target)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        e.written = written
        raise
    return written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage(paths: list[Path], scratch: Path, progress: Callable[[int], None] = lambda n: None) -> Path:
    """Copy PATHS (files, folders) into a new folder of the scratch area; that folder. StagingError (with the
    folder removed) when a copy fails."""
    folder = scratch / upload_folder_name()
    files = [pair for path in paths for pair in sources(path)]
    source = None
    try:
        folder.mkdir()
        for source, relative in files:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            copy_file(source, target, progress)
        for directory in {folder / r.parent for _, r in files} | {folder}:
            _fsync_dir(directory)
    except OSError as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise StagingError(_message(e, source, scratch)) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _message(error: OSError, source: Path | None, scratch: Path) -> str:
    written = getattr(error, "written", 0)
    if error.errno in FULL and source is not None:
        try:
            of = f" of {source.stat().st_size}"
        except OSError:
            of = ""
        return (
            f"the scratch area {scratch} is full ({os.strerror(error.errno)}): {source} was cut short after "
            f"{written}{of} bytes; its copies were removed and nothing was registered: free space in {scratch} "
            "or upload fewer files"
        )
    where = f"copying {source} into {scratch}" if source is not None else f"creating a folder in {scratch}"
    return f"{where} failed ({os.strerror(error.errno) if error.errno else error}); nothing was registered"
