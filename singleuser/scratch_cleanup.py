"""dlaas-scratch-cleanup: delete files and empty folders of the scratch area older than two days.

Run by a Kubernetes CronJob (and usable locally). Users own the folders it walks and may rename or replace them
while it runs, so it never works by path: it holds a descriptor of each folder (opened with O_NOFOLLOW, checked to
be the folder it listed) and removes entries relative to that descriptor. A folder swapped for a symlink mid-walk
is not entered, and a removal goes to the folder that was walked, never through a link to somewhere outside. A link
is judged (and removed) as a link, never as what it points to; other file systems mounted inside are not entered.

    dlaas-scratch-cleanup /scratch [--max-age 2d] [--dry-run]
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from singleuser.durations import parse_duration

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Folder:
    fd: int
    name: str | None  # its name in the parent folder (None for the root)
    mtime: float  # as found, before anything in it was removed: removals make every folder look new
    pending: list[str] = field(default_factory=list)
    kept: int = 0  # entries that stay


def cleanup(root: Path, max_age: float, *, now: float | None = None, dry_run: bool = False) -> dict[str, int]:
    """Remove entries under `root` not modified for `max_age` seconds; returns counts of what went."""
    now = time.time() if now is None else now
    cutoff = now - max_age
    removed = {"files": 0, "dirs": 0, "bytes": 0}
    try:
        top = os.open(root, DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotADirectoryError(f"{root} is not a directory (a symlink is not followed)") from None
        raise
    device = os.fstat(top).st_dev
    stack = [_Folder(top, None, now, sorted(os.listdir(top)))]
    try:
        while stack:
            folder = stack[-1]
            if not folder.pending:
                stack.pop()
                os.close(folder.fd)
                if stack:
                    _finish(folder, stack[-1], cutoff, dry_run, removed)
                continue
            name = folder.pending.pop()
            try:
                st = os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                child = _enter(folder.fd, name, st, device)
                if child is None:
                    folder.kept += 1
                else:
                    stack.append(child)
            elif st.st_mtime < cutoff:
                if not dry_run:
                    try:
                        os.unlink(name, dir_fd=folder.fd)  # a symlink is unlinked itself; its target is never touched
                    except FileNotFoundError:
                        continue
                removed["files"] += 1
                removed["bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
            else:
                folder.kept += 1
    finally:
        for folder in stack:
            os.close(folder.fd)
    return removed


def _enter(parent_fd: int, name: str, st: os.stat_result, device: int) -> _Folder | None:
    """Open the folder `name` that was found as `st`; None if it is gone, was swapped, or is another mount."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)  # a symlink put there meanwhile fails here (ELOOP)
    except OSError:
        return None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or opened.st_dev != device:
        os.close(fd)
        return None
    try:
        names = sorted(os.listdir(fd))
    except OSError:
        os.close(fd)
        return None
    return _Folder(fd, name, st.st_mtime, names)


def _finish(folder: _Folder, parent: _Folder, cutoff: float, dry_run: bool, removed: dict[str, int]) -> None:
    """Remove a walked folder from its parent if nothing in it stays and it was old when found."""
    if folder.kept or folder.mtime >= cutoff:
        parent.kept += 1
        return
    if not dry_run:
        try:
            os.rmdir(folder.name, dir_fd=parent.fd)
        except OSError:  # something new arrived meanwhile (or the name is no longer a folder): it stays
            parent.kept += 1
            return
    removed["dirs"] += 1


def parse_age(text: str) -> int:
    """Seconds of --max-age (singleuser.durations); argparse's one-line error otherwise."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlaas-scratch-cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the scratch area, e.g. /scratch")
    parser.add_argument("--max-age", type=parse_age, default=2 * 86400, help="default: 2d")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    args = parser.parse_args(argv)
    try:
        removed = cleanup(args.root, args.max_age, dry_run=args.dry_run)
    except OSError as e:
        print(f"dlaas-scratch-cleanup: {e}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {removed['files']} files ({removed['bytes']} bytes) and {removed['dirs']} empty folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
