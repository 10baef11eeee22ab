"""Start, watch and stop the local services as child processes.

Every service runs in its own session (process group) so that stopping it by PID also stops whatever it forked.
Each leaves a pidfile (devstack.pidfiles), so `devstack down` from another process stops exactly what `devstack up`
started and never a recycled PID. Ports and readiness checks are devstack.ports.

When the stack of the run directory is supervised (`make up`, the fault tests: devstack.supervision), a Process
hands its command to that supervisord instead of starting it itself, so that it is restarted when it dies; the
readiness check, the log file, the pidfile and `stop()` stay the same.
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
        direct: bool = False,
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
        # Started by its own supervisord, if the run directory is supervised; `direct`: always started here.
        self.direct = direct
        self.supervisor = None

    @property
    def pid(self) -> int | None:
        if self.supervisor is not None:
            info = self.supervisor.info(self.name)
            return info["pid"] or None if info else None
        return self.proc.pid if self.proc else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Process:
        from devstack.supervision import supervisor_for

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.supervisor = None if self.direct else supervisor_for(self.run_dir)
        if self.supervisor is not None:
            self.log_path.touch()  # devstack.launch appends to it: readiness checks may read it before then
            pid = self.supervisor.add(
                self.name,
                self.argv,
                env=self.env,
                cwd=self.cwd,
                log_path=self.log_path,
                pidfile=self.pidfile,
                stop_signal=self.stop_signal,
                stop_timeout=20.0,
            )
            write_pidfile(self.pidfile, pid, self.argv)
            return self._ready_or_stop()
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
        return self._ready_or_stop()

    def _ready_or_stop(self) -> Process:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _exit_status(self) -> int | None:
        """The exit status if the process ended (for good, when supervised: supervisord gave up), else None."""
        if self.supervisor is None:
            return self.proc.poll()
        info = self.supervisor.info(self.name)
        if info is None:
            return -1
        return info["exitstatus"] if info["statename"] in ("FATAL", "STOPPED", "UNKNOWN") else None

    def _running(self) -> bool:
        """Supervised: supervisord counts it as started (it stayed up its `startsecs`)."""
        info = self.supervisor.info(self.name)
        return info is not None and info["statename"] == "RUNNING"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        # Without a readiness check of its own, a supervised service is ready once supervisord counts it as started.
        ready = self.ready if self.ready is not None or self.supervisor is None else self._running
        while True:
            code = self._exit_status()
            if code is not None:
                how = (
                    f"exited with status {code}" if self.supervisor is None else "kept exiting (retried, then given up)"
                )
                raise ServiceError(f"{self.name} {how} while starting; see {self.log_path}:\n{self.log_tail()}")
            if ready is None or ready():
                return
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} was not ready after {self.timeout:.0f}s; see {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _write_pidfile(self) -> None:
        write_pidfile(self.pidfile, self.proc.pid, self.argv)

    def alive(self) -> bool:
        """Whether it runs (supervised: whether supervisord still runs or restarts it, i.e. has not given up)."""
        if self.supervisor is not None:
            try:
                return self._exit_status() is None
            except OSError:  # supervisord itself is gone
                return False
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.supervisor is not None:
            with contextlib.suppress(OSError):  # a supervisord that is gone: the pidfile below still stops it
                self.supervisor.remove(self.name)
            self.supervisor = None
            stop_pidfile(self.pidfile, timeout)
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
    alive = group_alive if group else pid_alive
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


def group_alive(pgid: int) -> bool:
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


def stop_leftovers(pidfile: Path, timeout: float = 10.0) -> list[int]:
    """SIGKILL what a dead process recorded in `pidfile` left running in its process group (e.g. gunicorn workers
    whose master was killed, still holding its port), as a container restart would; returns their PIDs.

    Only processes of that group started no earlier than the recorded leader count, so a recycled PID never is;
    nothing is done while the recorded process itself still runs or when it did not lead a group."""
    info = read_pidfile(pidfile)
    if info is None or not info.get("group", True) or info.get("start") is None or same_process(info):
        return []
    leader = int(info["pid"])
    left = []
    for pid in _pids():
        fields = proc_stat(pid)
        if fields and fields[0] != "Z" and int(fields[2]) == leader and int(fields[19]) >= info["start"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                left.append(pid)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
