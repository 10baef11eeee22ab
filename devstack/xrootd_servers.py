"""The local data lake's two XRootD servers, the origin and the XCache, as the supervisor runs them in its network
namespace (devstack.xrootd_supervisor): their configuration files, filled in from devstack/templates, and their start.

    origin  serves <export root>/<export> read-only (the replica RSE EULAKE-1)
    cache   a forwarding proxy with a file cache; which origins it may forward to is the allow-list the
            CacheRunner (dlaas_xcache.serve) checks and turns into `permit_file` and `authdb`; it sends its
            monitoring (summary reports and the g-stream) to the XCache exporter at MONITOR_UDP, as the chart's
            cache does to its sidecar

Both run as the Debian package's `xrootd` user when started as root: xrootd refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path
from string import Template

from devstack.ports import tcp_ready
from devstack.settings import TEMPLATES
from dlaas_xcache.exporter import cache_directives

XROOTD = "/usr/bin/xrootd"
RUN_AS = "xrootd"  # the Debian package's user; xrootd refuses to run as root
READY_TIMEOUT = 30.0
#: Where the cache sends its UDP monitoring, inside the supervisor's namespace: the exporter listens there.
MONITOR_UDP = "127.0.0.1:9931"


def authdb_path(work: Path) -> Path:
    """The cache's path rules, derived by the CacheRunner from the allow-list."""
    return Path(work) / "cache" / "origins.authdb"


def permit_path(work: Path) -> Path:
    """The cache's `pss.permit` lines, written by the CacheRunner from the checked allow-list."""
    return Path(work) / "cache" / "origins.cfg"


def prepare(
    work: Path, *, origin_port: int, cache_port: int, export_root: Path, exports: list[str], cache_dir: Path
) -> None:
    """The directories of both servers (owned by RUN_AS when we are root) and their configuration files."""
    work = Path(work)
    user = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
    for d in (*(work / sub for sub in ("origin", "cache", "logs", "data")), Path(cache_dir)):
        d.mkdir(parents=True, exist_ok=True)
        if user:
            os.chown(d, user.pw_uid, user.pw_gid)
    origin = Template((TEMPLATES / "xrootd-origin.cfg.in").read_text()).substitute(
        port=origin_port,
        export_root=export_root,
        exports="\n".join(f"all.export {e} r/o" for e in exports),
        admin_dir=work / "origin",
    )
    (work / "origin" / "xrootd.cfg").write_text(origin)
    cache = Template((TEMPLATES / "xrootd-cache.cfg.in").read_text()).substitute(
        port=cache_port,
        cache_root=cache_dir,
        admin_dir=work / "cache",
        authdb=authdb_path(work),
        permit_file=permit_path(work),
    )
    (work / "cache" / "xrootd.cfg").write_text(with_monitoring(cache, cache_directives(MONITOR_UDP)))


def with_monitoring(config: str, directives: list[str]) -> str:
    """`config` with the monitoring `directives` just before its `continue` line: xrootd reads nothing of a file
    after `continue`, so lines added at the end would be ignored without a word."""
    lines = config.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if line.startswith("continue ")), len(lines))
    return "".join([*lines[:at], *(f"{d}\n" for d in directives), *lines[at:]])


def log_path(work: Path, name: str) -> Path:
    return Path(work) / "logs" / name / f"{name}.log"  # xrootd -n <name> logs into a subdirectory


def spawn(work: Path, name: str, port: int) -> subprocess.Popen:
    """Start the server `name` ("origin" or "cache") on `port` and wait until it listens; SystemExit if it does
    not within READY_TIMEOUT seconds."""
    work = Path(work)
    argv = [XROOTD, "-c", str(work / name / "xrootd.cfg"), "-l", str(work / "logs" / f"{name}.log"), "-n", name]
    if os.geteuid() == 0:
        argv[1:1] = ["-R", RUN_AS]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    listening = tcp_ready("127.0.0.1", port)
    while not listening():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"xrootd: the {name} did not start; see {log_path(work, name)}")
        time.sleep(0.05)
    return proc
