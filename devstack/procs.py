"""Start, watch and stop the local services as child processes.

Every service runs in its own session (process group) so that stopping it by PID also stops whatever it forked.
A pidfile records the PID and the command line, so `devstack down` from another process stops exactly what
`devstack up` started and never a recycled PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not start; the message is one line that says what to do."""


class Service:
    """Base of the devstack's services: `start()` sets `process`; `alive()` and `stop()` follow from it."""

    process: Process | None = None
    stop_timeout: float = 10.0

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=self.stop_timeout)
            self.process = None


def kept_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in the state directory: created once (mode 0600, atomically), then reused."""
    from singleuser.token_files import write_secret_file

    path = Path(path)
    if not path.exists():
        write_secret_file(path, secrets.token_hex(nbytes))  # hex: what JupyterHub reads for its keys
    return path.read_text().strip()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (for services that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_port_free(host: str, port: int, what: str, env_var: str | None = None) -> None:
    """Fail early, with a useful message, when another program already listens on the port."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            hint = f" or set {env_var} to another port" if env_var else ""
            raise ServiceError(
                f"port {host}:{port} for {what} is already in use: stop what listens there (`make down`?){hint}"
            ) from None


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str, ok_below: int = 500) -> Callable[[], bool]:
    """Ready once the URL answers with any status below `ok_below` (a 404 still proves the server is up)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status < ok_below
        except urllib.error.HTTPError as e:
            return e.code < ok_below
        except (OSError, ValueError):
            return False

    return check


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [2] process group, [19] start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _starttime(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the PID, it names one process for good."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


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
    alive = _group_alive if group else _pid_alive
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
    fields = _stat(pgid)
    if fields and fields[0] == "Z":
        return any(_pgid_of(p) == pgid for p in _pids() if p != pgid)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if fields and fields[0] != "Z" else None


def write_pidfile(pidfile: Path, pid: int, argv: list[str], group: bool = True) -> None:
    """Record a PID with its start time (atomically), so a later `stop_pidfile` can check it is the same process
    (a PID alone may have been reused). The command line is kept for people reading the file."""
    pidfile = Path(pidfile)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "start": _starttime(pid), "argv": argv, "group": group}))
    os.replace(tmp, pidfile)


def _read_pidfile(pidfile: Path) -> dict | None:
    try:
        return json.loads(Path(pidfile).read_text())
    except (OSError, ValueError):
        return None


def pidfile_running(pidfile: Path) -> bool:
    """True if the process recorded in `pidfile` still runs (same PID and same start time)."""
    info = _read_pidfile(pidfile)
    return info is not None and _same_process(info)


def _same_process(info: dict) -> bool:
    pid = int(info["pid"])
    return info.get("start") is not None and _starttime(pid) == info["start"] and _pid_alive(pid)


def stop_pidfile(pidfile: Path, timeout: float = 10.0) -> bool:
    """Stop the process recorded in `pidfile` if it is still the same program. Returns True if one was stopped."""
    info = _read_pidfile(pidfile)
    if info is None:
        Path(pidfile).unlink(missing_ok=True)
        return False
    pid = int(info["pid"])
    stopped = False
    if _same_process(info):
        stop_group(pid, timeout, group=info.get("group", True))
        stopped = True
    Path(pidfile).unlink(missing_ok=True)
    return stopped
