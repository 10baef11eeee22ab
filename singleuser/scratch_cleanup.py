"""dlaas-scratch-cleanup: delete files and empty folders of the scratch area older than two days.

Run by a Kubernetes CronJob (and usable locally). It walks the scratch area without following symbolic links: a
link is judged (and removed) as a link, never as what it points to, so nothing outside the area is touched.

    dlaas-scratch-cleanup /scratch [--max-age 2d] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from pathlib import Path


def cleanup(root: Path, max_age: float, *, now: float | None = None, dry_run: bool = False) -> dict[str, int]:
    """Remove entries under `root` not modified for `max_age` seconds; returns counts of what went."""
    now = time.time() if now is None else now
    cutoff = now - max_age
    removed = {"files": 0, "dirs": 0, "bytes": 0}
    if not stat.S_ISDIR(os.lstat(root).st_mode):
        raise NotADirectoryError(f"{root} is not a directory")
    # Folder ages as found: removing what they contain would make every folder look new.
    folder_mtimes = {d: os.lstat(d).st_mtime for d, _, _ in os.walk(root, followlinks=False)}
    for dirpath, dirnames, filenames in os.walk(root, topdown=False, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime < cutoff and not stat.S_ISDIR(st.st_mode):
                if not dry_run:
                    os.unlink(path)  # a symlink is unlinked itself; its target is never touched
                removed["files"] += 1
                removed["bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
        if dirpath != str(root):
            if folder_mtimes.get(dirpath, now) < cutoff and not os.listdir(dirpath):
                if not dry_run:
                    os.rmdir(dirpath)
                removed["dirs"] += 1
    return removed


def parse_age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r}: use seconds or a duration like 48h or 2d") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlaas-scratch-cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the scratch area, e.g. /scratch")
    parser.add_argument("--max-age", type=parse_age, default=2 * 86400, help="default: 2d")
    parser.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    args = parser.parse_args(argv)
    try:
        removed = cleanup(args.root, args.max_age, dry_run=args.dry_run)
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"dlaas-scratch-cleanup: {e}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {removed['files']} files ({removed['bytes']} bytes) and {removed['dirs']} empty folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
