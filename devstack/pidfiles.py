"""Pidfiles that name one process for good: its PID and its start time, so a recycled PID is never mistaken for it.

`devstack up` and every service it starts leave one in <state>/run; `devstack down`, from another process, stops
exactly what they name (devstack.procs.stop_pidfile). The start time comes from /proc/<pid>/stat.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [2] process group, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the PID, it names one process for good."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat(pid)
    return bool(fields) and fields[0] != "Z"


def write_pidfile(pidfile: Path, pid: int, argv: list[str], group: bool = True) -> None:
    """Record a PID with its start time (atomically), so a later `stop_pidfile` can check it is the same process
    (a PID alone may have been reused). The command line is kept for people reading the file; `group` says whether
    the process leads a process group of its own (stopped as a whole)."""
    pidfile = Path(pidfile)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "start": start_time(pid), "argv": argv, "group": group}))
    os.replace(tmp, pidfile)


def read_pidfile(pidfile: Path) -> dict | None:
    """What `write_pidfile` recorded, or None when the file is missing or unreadable."""
    try:
        return json.loads(Path(pidfile).read_text())
    except (OSError, ValueError):
        return None


def same_process(info: dict) -> bool:
    """Whether the process a pidfile recorded still runs: same PID, same start time."""
    pid = int(info["pid"])
    return info.get("start") is not None and start_time(pid) == info["start"] and pid_alive(pid)


def pidfile_running(pidfile: Path) -> bool:
    """True if the process recorded in `pidfile` still runs (same PID and same start time)."""
    info = read_pidfile(pidfile)
    return info is not None and same_process(info)
