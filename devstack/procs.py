"""Start, watch and stop the local services as child processes.

Every service runs in its own session (process group) so that stopping it by PID also stops whatever it forked.
Each leaves a pidfile (devstack.pidfiles), so `devstack down` from another process stops exactly what `devstack up`
started and never a recycled PID. Ports and readiness checks are devstack.ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devstack.pidfiles import pid_alive, proc_stat, read_pidfile, same_process, write_pidfile
from devstack.service import ServiceError


class Process:
    """One long-running child process with a log file, a readiness check and a pidfile."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        run_dir: Path,
        log_dir: Path,
        ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        if user is not None:
            # Some servers (PostgreSQL, XRootD) refuse to run as root: drop privileges for them only.
            self.argv = ["runuser", "-u", user, "--", *self.argv]
        self.run_dir = Path(run_dir)
        self.log_path = Path(log_dir) / f"{name}.log"
        self.pidfile = self.run_dir / f"{name}.pid"
        self.ready = ready
        self.env = env
        self.cwd = cwd
        self.timeout = timeout
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Process:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - handed to the child; closed after Popen
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            raise ServiceError(
                f"cannot start {self.name}: {e.filename} not found; run `make up` to install it"
            ) from None
        finally:
            log.close()
        self._write_pidfile()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.name} exited with status {code} while starting; see {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready is None or self.ready():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} was not ready after {self.timeout:.0f}s; see {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _write_pidfile(self) -> None:
        write_pidfile(self.pidfile, self.proc.pid, self.argv)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_group(self.proc.pid, timeout, popen=self.proc, first_signal=self.stop_signal)
        self.pidfile.unlink(missing_ok=True)


def stop_group(
    pid: int,
    timeout: float = 10.0,
    popen: subprocess.Popen | None = None,
    group: bool = True,
    first_signal: signal.Signals = signal.SIGTERM,
) -> None:
    """Signal the process group led by `pid` (or only `pid`), then SIGKILL it after `timeout` seconds."""
    send = os.killpg if group else os.kill
    alive = _group_alive if group else pid_alive
    for sig, wait in ((first_signal, timeout), (signal.SIGKILL, 5.0)):
        try:
            send(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if popen is not None:
                if popen.poll() is not None and not alive(pid):
                    return
            elif not alive(pid):
                return
            time.sleep(0.05)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of our own children still count as "in the group" until reaped: treat a zombie leader as gone.
    fields = proc_stat(pgid)
    if fields and fields[0] == "Z":
        return any(_pgid_of(p) == pgid for p in _pids() if p != pgid)
    return True


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid_of(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[2]) if fields and fields[0] != "Z" else None


def stop_pidfile(pidfile: Path, timeout: float = 10.0) -> bool:
    """Stop the process recorded in `pidfile` if it is still the same program. Returns True if one was stopped."""
    info = read_pidfile(pidfile)
    if info is None:
        Path(pidfile).unlink(missing_ok=True)
        return False
    pid = int(info["pid"])
    stopped = False
    if same_process(info):
        stop_group(pid, timeout, group=info.get("group", True))
        stopped = True
    Path(pidfile).unlink(missing_ok=True)
    return stopped
