"""dlaas-xcache-serve: run the XCache's xrootd on the current allow-list, and restart it when the list changes.

xrootd reads its configuration once. The allow-list changes when CRIC does: dlaas-xcache-origin-sync rewrites a file
(locally) or the cache's ConfigMap (Kubernetes, where the kubelet swaps the mounted file in place through a `..data`
symlink). The cache notices the change itself, by the content's digest, so nothing else needs the right to restart
it (in Kubernetes: to change its pod template). The local data lake's supervisor (devstack.xrootd_supervisor) runs
its cache through the same `CacheRunner`.

The list is data and is checked before every start (dlaas_xcache.allow_list: comments and `pss.permit
<host>[:<port>]` lines only, at least one origin). xrootd never reads the list itself: from the checked list this
writes the path rules (`--authdb`, see dlaas_xcache.authdb) and the `pss.permit` lines (`--permit-file`), which the
xrootd configuration must load (`acc.authdb <authdb>`, `ofs.authorize 1`, `continue <permit-file>`; checked at
start). A start on an unusable list is refused; an unusable new list keeps the running cache (one log line).

    dlaas-xcache-serve --config xcache.cfg --origins /etc/xcache/origins/origins.cfg \\
        --authdb /var/run/xrootd/origins.authdb --permit-file /var/run/xrootd/origins.cfg -- -l - -n xcache

Exit status: xrootd's own once it exits, also after SIGTERM/SIGINT (forwarded to it); 128+N when a signal N ended it;
1 when the cache could not be started (the reason on one line); 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dlaas_fs.atomic import write_atomically
from dlaas_xcache import allow_list, authdb
from dlaas_xcache.allow_list import AllowListError

PROG = "dlaas-xcache-serve"


def terminate(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
    """Send `sig`, wait up to `timeout` seconds, then kill; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


class CacheRunner:
    """One xrootd on the checked allow-list at `origins`; `check()` restarts it when the list's content changed."""

    def __init__(
        self,
        origins: Path,
        authdb_path: Path,
        permit_file: Path,
        spawn: Callable[[], subprocess.Popen],
        stop_timeout: float = 10.0,
        log: Callable[[str], None] = print,
    ):
        self.origins, self.authdb_path, self.permit_file = Path(origins), Path(authdb_path), Path(permit_file)
        self.spawn, self.stop_timeout, self.log = spawn, stop_timeout, log
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.running_digest = self.seen_digest = ""

    def _read(self) -> str | None:
        try:
            return self.origins.read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def _check_list(self, text: str | None) -> list[allow_list.Origin]:
        if text is None:
            raise AllowListError("it cannot be read")
        return allow_list.parse(text)

    def start(self) -> None:
        """Start xrootd on the list; AllowListError (one line) when the list is unusable."""
        text = self._read()
        try:
            origins = self._check_list(text)
        except AllowListError as e:
            raise AllowListError(f"{self.origins}: {e}; refusing to start the cache") from None
        self._start(text, origins)

    def _start(self, text: str, origins: list[allow_list.Origin]) -> None:
        authdb.write(self.authdb_path, origins)
        permits = "".join(f"pss.permit {o.netloc}\n" for o in origins)
        write_atomically(
            self.permit_file,
            f"# Checked copy of {self.origins}, written by {PROG}.\n" + permits,
            mode=0o644,
            dir_mode=0o755,
        )
        self.proc = self.spawn()
        self.starts += 1
        self.running_digest = self.seen_digest = _digest(text)

    def check(self) -> bool:
        """Restart xrootd if the list changed and is usable; returns whether it did."""
        text = self._read()
        digest = _digest(text)
        if digest == self.seen_digest:
            return False
        self.seen_digest = digest
        if digest == self.running_digest:
            return False
        try:
            origins = self._check_list(text)
        except AllowListError as e:
            self.log(f"{self.origins} changed but {e}; keeping the running cache")
            return False
        self.stop()
        self._start(text, origins)
        self.log(f"allow-list changed ({len(origins)} origins); cache restarted (pid {self.proc.pid})")
        return True

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return terminate(self.proc, self.stop_timeout, sig) if self.proc else None


def _digest(text: str | None) -> str:
    return "unreadable" if text is None else hashlib.sha256(text.encode()).hexdigest()


def config_problem(config: Path, authdb_path: Path, permit_file: Path) -> str | None:
    """Why the xrootd configuration would not load the rules or the checked list, or None."""
    try:
        lines = {" ".join(line.split()) for line in config.read_text().splitlines()}
    except OSError as e:
        return f"cannot read {config}: {e.strerror}"
    missing = [d for d in ("ofs.authorize 1", f"acc.authdb {authdb_path}", f"continue {permit_file}") if d not in lines]
    if missing:
        return (
            f"{config} lacks {', '.join(f'`{d}`' for d in missing)}: without them the cache would not enforce "
            "the allow-list; add them"
        )
    return None


def exit_status(returncode: int) -> int:
    return returncode if returncode >= 0 else 128 - returncode


def serve(args: argparse.Namespace) -> int:
    def log(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    problem = config_problem(Path(args.config), Path(args.authdb), Path(args.permit_file))
    if problem:
        log(problem)
        return 1
    xrootd = shutil.which(args.xrootd)
    if xrootd is None:
        log(f"cannot find the xrootd program {args.xrootd!r}: give its path with --xrootd")
        return 1
    argv = [xrootd, "-c", args.config, *args.xrootd_args]
    runner = CacheRunner(
        Path(args.origins),
        Path(args.authdb),
        Path(args.permit_file),
        spawn=lambda: subprocess.Popen(argv, stdin=subprocess.DEVNULL),
        stop_timeout=args.stop_timeout,
        log=log,
    )
    stop: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stop.append(signum))
    try:
        runner.start()
    except AllowListError as e:
        log(str(e))
        return 1
    except OSError as e:
        log(f"cannot start the cache: {e}")
        runner.stop()
        return 1
    log(f"xrootd started (pid {runner.proc.pid}) on {args.origins}")
    next_check = time.monotonic() + args.interval
    while True:
        if stop:
            status = exit_status(runner.stop(stop[0]))
            log(f"stopped by signal {stop[0]}; xrootd exited with status {status}")
            return status
        if runner.proc.poll() is not None:
            status = exit_status(runner.proc.returncode)
            log(f"xrootd exited by itself with status {status}")
            return status
        if time.monotonic() >= next_check:
            try:
                runner.check()
            except OSError as e:  # the rules could not be written or xrootd not started again
                log(f"cannot restart the cache: {e}")
                runner.stop()
                return 1
            next_check = time.monotonic() + args.interval
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after `--` are passed to xrootd (e.g. -- -l - -n xcache).",
    )
    p.add_argument("--config", required=True, help="the cache's xrootd configuration (passed as xrootd -c)")
    p.add_argument(
        "--origins",
        required=True,
        help="the allow-list (pss.permit lines), e.g. the file of a mounted ConfigMap; watched",
    )
    p.add_argument("--authdb", required=True, help="where to write the path rules (writable; the config's acc.authdb)")
    p.add_argument(
        "--permit-file",
        required=True,
        help="where to write the checked pss.permit lines (writable; the config `continue`s it)",
    )
    p.add_argument("--xrootd", default="xrootd", help="the xrootd program (default: %(default)s)")
    p.add_argument(
        "--interval", type=float, default=10.0, help="seconds between looks at the allow-list (default: %(default)s)"
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        help="seconds xrootd gets to stop before it is killed (default: %(default)s)",
    )
    p.add_argument("xrootd_args", nargs="*", metavar="-- XROOTD-ARGS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.interval <= 0 or args.stop_timeout <= 0:
        p.error("--interval and --stop-timeout must be positive")
    if "-c" in args.xrootd_args:
        p.error("give the configuration with --config, not as an xrootd argument after --")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
