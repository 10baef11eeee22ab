"""supervisord (supervisor 4.3.0) as the keeper of the local data lake's processes: a service that dies is restarted,
not the whole stack torn down.

Why supervisord, and what stays ours. supervisord spawns each service in a process group of its own, restarts it
when it exits (`autorestart`), backs off when it dies right after a start (1 s, 2 s, 3 s ... between `startretries`
tries, then the FATAL state), stops it by its PID and process group (`stopasgroup`, `killasgroup`, SIGKILL after
`stopwaitsecs`) and keeps its output in <state>/logs/<name>.log. It does not know when a service is ready, nor the
order in which parts must start, nor how to set one up (PostgreSQL's password, Rucio's schema, the hub's settings
file): that stays in devstack.stack and the services' own modules, which write their files first and then hand the
command to supervisord (devstack.procs.Process does so whenever the stack's run directory is supervised) and poll
their own readiness check. The XRootD pair is one program of supervisord: its own supervisor
(devstack.xrootd_supervisor) owns the network namespace and the cache's allow-list restarts, and exits when either
server dies, so supervisord restarts the pair with its allow-list.

Two more rules are ours:
- restarts are bounded (`Supervisord.check`, called every second by `devstack up`): a service restarted more than
  `max_restarts` times within `restart_window` seconds, or one that supervisord gave up on (FATAL), is stopped and
  reported with the last lines of its log;
- each service's pidfile (devstack.pidfiles) names its current PID after every restart (devstack.launch writes it
  before it becomes the service), so `make down` stops by PID even what a crashed supervisord left behind.

supervisord listens on a Unix socket in the run directory (mode 0700) and on no TCP port. `make down` stops it by its
pidfile; it stops its programs in reverse start order (`priority`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from devstack.service import ServiceError

# supervisord's process states (supervisor.states.ProcessStates), by name.
GONE = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}
GIVEN_UP = "FATAL"

_SUPERVISED: dict[Path, Supervisord] = {}


def supervisor_for(run_dir: Path) -> Supervisord | None:
    """The supervisord that runs the services of `run_dir`, if that stack is supervised."""
    return _SUPERVISED.get(Path(run_dir).resolve())


@dataclass
class Event:
    """What `Supervisord.check` saw: a restart of `name` (`pid`, the `restarts` counted in the window) or that it was
    given up (`gave_up`, with the `log_tail`)."""

    name: str
    pid: int = 0
    restarts: int = 0
    gave_up: bool = False
    log_tail: str = ""
    at: float = field(default_factory=time.monotonic)


class Supervisord:
    """One supervisord for one run directory; `start()` it before the services, `stop()` it after them."""

    def __init__(
        self,
        run_dir: Path,
        log_dir: Path,
        *,
        startsecs: int = 5,
        startretries: int = 5,
        max_restarts: int = 5,
        restart_window: float = 600.0,
    ):
        self.run_dir = Path(run_dir).resolve()
        self.log_dir = Path(log_dir)
        self.dir = self.run_dir / "supervisor"
        self.programs_dir = self.dir / "programs"
        self.socket = self.dir / "supervisor.sock"
        self.startsecs, self.startretries = startsecs, startretries
        self.max_restarts, self.restart_window = max_restarts, restart_window
        self.process = None  # devstack.procs.Process running supervisord itself
        self._priority = 0
        self._pids: dict[str, int] = {}
        self._restarts: dict[str, list[float]] = {}
        self._logs: dict[str, Path] = {}

    # --- supervisord itself --------------------------------------------------------------------------------------

    def config(self) -> str:
        return "\n".join(
            [
                "; Written by devstack/supervision.py on every start of the local data lake: edits here are lost.",
                "[unix_http_server]",
                f"file = {_value(self.socket)}",
                "chmod = 0700",
                "[supervisord]",
                "nodaemon = true",
                "silent = true",
                f"logfile = {_value(self.log_dir / 'supervisord-events.log')}",
                "logfile_maxbytes = 5MB",
                "logfile_backups = 1",
                f"pidfile = {_value(self.dir / 'supervisord.pid.txt')}",
                f"childlogdir = {_value(self.log_dir)}",
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                "[supervisorctl]",
                f"serverurl = unix://{_value(self.socket)}",
                "[include]",
                f"files = {_value(self.programs_dir)}/*.conf",
                "",
            ]
        )

    def start(self) -> Supervisord:
        from devstack.procs import Process

        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)
        self.programs_dir.mkdir(exist_ok=True, mode=0o700)
        for stale in self.programs_dir.iterdir():  # a crashed run's programs are not this run's
            stale.unlink()
        conf = self.dir / "supervisord.conf"
        conf.write_text(self.config())
        self.process = Process(
            "supervisord",
            [str(Path(sys.executable).parent / "supervisord"), "-n", "-c", str(conf)],
            run_dir=self.run_dir,
            log_dir=self.log_dir,
            ready=self._answers,
            timeout=30,
            direct=True,
        ).start()
        _SUPERVISED[self.run_dir] = self
        return self

    def _answers(self) -> bool:
        try:
            return self.rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)  # the host is not dialled

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        """Stop supervisord; it stops every program still registered, in reverse start order, by process group."""
        _SUPERVISED.pop(self.run_dir, None)
        if self.process is not None:
            self.process.stop(timeout=60)
            self.process = None

    # --- programs ------------------------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None,
        cwd: Path | None,
        log_path: Path,
        pidfile: Path,
        stop_signal: signal.Signals,
        stop_timeout: float,
    ) -> int:
        """Register and start a program; returns its first PID."""
        launch = self.programs_dir / f"{name}.launch.json"
        spec = {
            "name": name,
            "argv": argv,
            "env": env,
            "cwd": str(cwd) if cwd else None,
            "pidfile": str(pidfile),
            "log": str(log_path),
        }
        fd = os.open(launch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the hub's environment holds secrets
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        self._priority += 1
        program = [
            f"[program:{name}]",
            f"command = {_value(shlex.join([sys.executable, '-m', 'devstack.launch', str(launch)]))}",
            f"directory = {_value(Path(__file__).resolve().parent.parent)}",
            "autostart = true",
            "autorestart = true",
            f"startsecs = {self.startsecs}",
            f"startretries = {self.startretries}",
            f"stopsignal = {signal.Signals(stop_signal).name.removeprefix('SIG')}",
            f"stopwaitsecs = {max(1, round(stop_timeout))}",
            "stopasgroup = true",
            "killasgroup = true",
            f"priority = {self._priority}",
            # devstack.launch points the service's output at its log file itself (not through supervisord's pipe).
            "stdout_logfile = NONE",
            "redirect_stderr = true",
            "",
        ]
        (self.programs_dir / f"{name}.conf").write_text("\n".join(program))
        server = self.rpc().supervisor
        server.reloadConfig()
        try:
            server.addProcessGroup(name)
        except xmlrpc.client.Fault as e:
            raise ServiceError(f"supervisord did not take {name}: {e.faultString}") from None
        deadline = time.monotonic() + 10
        while (info := self.info(name)) is None or not info["pid"]:
            if info is not None and info["statename"] in GONE or time.monotonic() > deadline:
                raise ServiceError(f"supervisord could not start {name}: {info and info['spawnerr']}; see {log_path}")
            time.sleep(0.05)
        self._pids[name] = info["pid"]
        self._restarts[name] = []
        self._logs[name] = Path(log_path)
        return info["pid"]

    def info(self, name: str) -> dict | None:
        """supervisord's view of a program (`statename`, `pid`, `exitstatus`, `spawnerr`), or None."""
        try:
            return self.rpc().supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault:
            return None

    def remove(self, name: str) -> None:
        """Stop a program (by process group, SIGKILL after its stop timeout) and forget it."""
        server = self.rpc().supervisor
        with contextlib.suppress(xmlrpc.client.Fault):  # already stopped, or never started
            server.stopProcess(name, True)
        with contextlib.suppress(xmlrpc.client.Fault):
            server.removeProcessGroup(name)
        for path in (self.programs_dir / f"{name}.conf", self.programs_dir / f"{name}.launch.json"):
            path.unlink(missing_ok=True)
        self._pids.pop(name, None)
        self._restarts.pop(name, None)
        self._logs.pop(name, None)

    def programs(self) -> dict[str, dict]:
        return {info["name"]: info for info in self.rpc().supervisor.getAllProcessInfo()}

    def check(self) -> list[Event]:
        """One round of watching: count restarts, and give up on a program that supervisord gave up on or that
        restarted too often; the events say what happened."""
        events = []
        now = time.monotonic()
        for name, info in self.programs().items():
            if name not in self._pids:
                continue
            if info["statename"] == GIVEN_UP:
                events.append(self._give_up(name, info))
                continue
            pid = info["pid"]
            if pid and pid != self._pids[name]:
                self._pids[name] = pid
                recent = [t for t in self._restarts[name] if now - t < self.restart_window] + [now]
                self._restarts[name] = recent
                if len(recent) > self.max_restarts:
                    events.append(self._give_up(name, info))
                else:
                    events.append(Event(name, pid=pid, restarts=len(recent)))
        return events

    def _give_up(self, name: str, info: dict) -> Event:
        restarts = len(self._restarts.get(name, []))
        with contextlib.suppress(xmlrpc.client.Fault, OSError):
            self.rpc().supervisor.stopProcess(name, True)
        self._pids.pop(name, None)
        log = self._logs.get(name)
        return Event(name, restarts=restarts, gave_up=True, log_tail=_tail(log) if log else "")

    def restarts(self, name: str) -> int:
        """How often `name` was restarted within the window (as far as `check` saw)."""
        return len(self._restarts.get(name, []))


def _value(text: object) -> str:
    """A value for supervisord's configuration: its `%(name)s` expansion must not see a literal %."""
    return str(text).replace("%", "%%")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
