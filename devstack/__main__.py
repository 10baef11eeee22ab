"""`python -m devstack up|down|status`: run the local data lake in the foreground, stop it, or show it.

`up` runs a supervised stack (devstack.supervision): a service that dies is restarted with back-off and the stack
stays up; only a service restarted too often, or one that cannot start again, stops everything, with the last lines
of its log. Users' servers are not the hub's children for good: they outlive a hub restart and `down` stops them
by their pidfiles like every other service.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from devstack.pidfiles import pidfile_running, write_pidfile
from devstack.procs import stop_pidfile
from devstack.service import ServiceError
from devstack.settings import Settings
from devstack.stack import PROFILES, Stack


def _up(settings: Settings, args: argparse.Namespace) -> int:
    supervisor = settings.run_dir / "devstack.pid"
    if pidfile_running(supervisor):
        print(f"the local data lake is already running (pidfile {supervisor}); `make down` stops it", file=sys.stderr)
        return 1
    stack = Stack(settings, full_seed=not args.small, supervised=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        stack.start(*args.profile, progress=lambda msg: print(f"[devstack] {msg}", flush=True))
        write_pidfile(supervisor, os.getpid(), _self_argv(), group=False)
        print(stack.summary(), flush=True)
        while True:
            for event in stack.supervisor.check():
                if event.gave_up:
                    print(
                        f"[devstack] {event.name} keeps dying ({event.restarts} restarts); stopping everything. "
                        f"The end of {settings.log_dir / (event.name + '.log')}:\n{event.log_tail}",
                        file=sys.stderr,
                    )
                    return 1
                print(f"[devstack] {event.name} died and was restarted (pid {event.pid})", file=sys.stderr, flush=True)
            dead = stack.dead()
            if dead:
                print(
                    f"[devstack] {dead} stopped unexpectedly; stopping everything (logs in {settings.log_dir})",
                    file=sys.stderr,
                )
                return 1
            time.sleep(1)
    except ServiceError as e:
        print(f"[devstack] {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug or an unexpected answer: still one clear line, and everything stopped
        print(
            f"[devstack] start failed: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            f" (logs in {settings.log_dir})",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("\n[devstack] stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        supervisor.unlink(missing_ok=True)


def _self_argv() -> list[str]:
    return [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]


def _down(settings: Settings) -> int:
    run_dir = settings.run_dir
    stopped = []
    supervisor = run_dir / "devstack.pid"
    if supervisor.exists() and stop_pidfile(supervisor, timeout=60):
        stopped.append("devstack")
    # Whatever a crashed `devstack up` left behind: supervisord first (it would restart the others), then each
    # service's own pidfile, users' servers included.
    keeper = run_dir / "supervisord.pid"
    if keeper.exists() and stop_pidfile(keeper, timeout=60):
        stopped.append("supervisord")
    for pidfile in sorted(run_dir.glob("*.pid")) if run_dir.exists() else []:
        if stop_pidfile(pidfile):
            stopped.append(pidfile.stem)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(settings: Settings) -> int:
    run_dir = settings.run_dir
    pidfiles = sorted(run_dir.glob("*.pid")) if run_dir.exists() else []
    running = [p.stem for p in pidfiles if pidfile_running(p)]
    print(f"running: {', '.join(running)}" if running else "nothing is running")
    return 0 if running else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="The local data lake in a box.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service in the foreground; Ctrl-C stops them")
    up.add_argument("--small", action="store_true", help="seed only a few demo files (faster first start)")
    up.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=list(PROFILES),
        help="start only this profile (repeatable; default: all): core = IAM, PostgreSQL, Rucio; daemons, cache, hub "
        "add to core; login = IAM and hub only",
    )
    sub.add_parser("down", help="stop what `up` started, by PID")
    sub.add_parser("status", help="list the running services")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if args.command == "up":
        return _up(settings, args)
    if args.command == "down":
        return _down(settings)
    return _status(settings)


if __name__ == "__main__":
    sys.exit(main())
