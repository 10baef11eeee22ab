"""dlaas-xcache-serve's restart logic, run as the real command with a tiny real program standing in for xrootd (which
refuses to run as root and listens on every interface): it starts on a checked list only, restarts on a changed
list (a Kubernetes-style `..data` symlink swap with the old mtime), keeps the running cache on a broken list, and
forwards SIGTERM/SIGINT. The same CacheRunner runs the local data lake's real XCache (tests/integration/test_xcache.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlaas_xcache.allow_list import Origin
from dlaas_xcache.authdb import authdb

WAIT = 30.0

# Records each start (pid, the rules and pss.permit lines it found through its -c config, its extra arguments) in
# the journal, as xrootd would load them; on SIGTERM/SIGINT does what STAND_IN_ON_SIGNAL says.
STAND_IN = """\
import json, os, signal, sys, time
argv = sys.argv[1:]
config = open(argv[argv.index("-c") + 1]).read().splitlines()
loaded = {d.split()[0]: open(d.split()[1]).read() for d in config if d.split()[:1] in (["acc.authdb"], ["continue"])}
journal = os.environ["STAND_IN_JOURNAL"]
def note(**entry):
    with open(journal, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), **entry}) + "\\n")
def on_signal(signum, frame):
    note(event="signal", signum=signum)
    if os.environ.get("STAND_IN_ON_SIGNAL") != "ignore":
        sys.exit(int(os.environ.get("STAND_IN_ON_SIGNAL", "0")))
signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
note(event="start", authdb=loaded["acc.authdb"], permits=loaded["continue"], args=argv[2:])
if "STAND_IN_EXIT" in os.environ:
    sys.exit(int(os.environ["STAND_IN_EXIT"]))
while True:
    time.sleep(0.05)
"""

LIST_A = "# from CRIC\npss.permit 127.0.0.1:40000\n"
LIST_B = "# from CRIC\npss.permit 127.0.0.1:40000\npss.permit eos.example.org\n"


class ConfigMapDir:
    """A directory laid out as the kubelet mounts a ConfigMap: origins.cfg -> ..data/origins.cfg, ..data -> a
    timestamped directory, replaced by renaming a new ..data symlink over the old one."""

    def __init__(self, root: Path):
        self.root, self.generation = root, 0
        root.mkdir()
        (root / "origins.cfg").symlink_to("..data/origins.cfg")

    @property
    def file(self) -> Path:
        return self.root / "origins.cfg"

    def publish(self, text: str, mtime: float | None = None) -> None:
        self.generation += 1
        version = self.root / f"..2024_01_01_00_00_{self.generation:02d}.000"
        version.mkdir()
        (version / "origins.cfg").write_text(text)
        if mtime is not None:
            os.utime(version / "origins.cfg", (mtime, mtime))
        (self.root / "..data_tmp").symlink_to(version.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")


class Serve:
    """dlaas-xcache-serve as a child process, its stderr in a file, the stand-in's journal beside it."""

    def __init__(self, tmp: Path, origins: Path, env: dict | None = None, config_lines: list[str] | None = None):
        self.tmp, self.origins = tmp, origins
        self.authdb, self.permits = tmp / "run" / "origins.authdb", tmp / "run" / "origins.cfg"
        self.journal, self.stderr_path = tmp / "journal", tmp / "serve.err"
        stand_in = tmp / "xrootd-stand-in"
        stand_in.write_text(f"#!{sys.executable}\n{STAND_IN}")
        stand_in.chmod(0o755)
        self.config = tmp / "xcache.cfg"
        lines = (
            config_lines
            if config_lines is not None
            else ["all.role server", "ofs.authorize 1", f"acc.authdb {self.authdb}", f"continue {self.permits}"]
        )
        self.config.write_text("\n".join(lines) + "\n")
        self.argv = [
            sys.executable,
            "-m",
            "dlaas_xcache.serve",
            "--config",
            str(self.config),
            "--origins",
            str(origins),
            "--authdb",
            str(self.authdb),
            "--permit-file",
            str(self.permits),
            "--xrootd",
            str(stand_in),
            "--interval",
            "0.1",
            "--stop-timeout",
            "2",
            "--",
            "-n",
            "xcache",
        ]
        self.env = {**os.environ, "STAND_IN_JOURNAL": str(self.journal), **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Serve:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "wb"),  # noqa: SIM115 - the child's stderr, for as long as it runs
        )
        return self

    def run(self) -> int:
        return self.start().proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for entry in self.entries():  # never leave a stand-in behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(entry["pid"], signal.SIGKILL)

    def entries(self, event: str | None = None) -> list[dict]:
        lines = self.journal.read_text().splitlines() if self.journal.exists() else []
        return [e for e in map(json.loads, lines) if event in (None, e["event"])]

    def stderr(self) -> list[str]:
        return self.stderr_path.read_text().splitlines() if self.stderr_path.exists() else []

    def wait_for(self, what, description: str):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = what()
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {description}; serve: {self.proc.poll()}, stderr: {self.stderr()}, journal: {self.entries()}")

    def wait_starts(self, n: int) -> list[dict]:
        return self.wait_for(lambda: len(self.entries("start")) >= n and self.entries("start"), f"start #{n}")


@pytest.fixture
def configmap(tmp_path):
    mount = ConfigMapDir(tmp_path / "origins")
    mount.publish(LIST_A)
    return mount


@pytest.fixture
def serve(tmp_path, configmap):
    started = []

    def make(**kwargs) -> Serve:
        started.append(Serve(tmp_path, configmap.file, **kwargs))
        return started[-1]

    yield make
    for s in started:
        s.stop()


def rules_of(text: str) -> list[Origin]:
    return [Origin.parse(line.split()[1]) for line in text.splitlines() if line.startswith("pss.permit ")]


def test_the_cache_starts_with_rules_and_permits_from_the_list_and_its_own_arguments(serve):
    s = serve().start()
    [start] = s.wait_starts(1)
    assert start["authdb"] == authdb([Origin("127.0.0.1", 40000)])
    assert rules_of(start["permits"]) == [Origin("127.0.0.1", 40000)]
    assert start["args"] == ["-n", "xcache"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("# the sync never ran\n", "lists no `pss.permit` origin"),
        ("pss.permit 127.0.0.1:40000\nofs.authorize 0\n", "line 2 is not `pss.permit"),
        ("pss.permit *\n", "not a host name"),
    ],
)
def test_the_cache_does_not_start_on_a_list_that_is_not_only_origins(serve, configmap, text, reason):
    configmap.publish(text)
    s = serve()
    assert s.run() == 1
    [line] = s.stderr()
    assert reason in line and "refusing to start the cache" in line
    assert s.entries() == [] and not s.authdb.exists()


@pytest.mark.parametrize("drop", ["ofs.authorize 1", "acc.authdb", "continue"])
def test_the_cache_does_not_start_when_its_config_would_not_load_the_rules_or_the_checked_list(serve, tmp_path, drop):
    s = serve()
    lines = s.config.read_text().splitlines()
    s = serve(config_lines=[ln for ln in lines if not ln.startswith(drop)])
    assert s.run() == 1
    [line] = s.stderr()
    assert f"`{drop}" in line and "add them" in line
    assert s.entries() == []


def test_a_list_swapped_in_like_a_configmap_update_restarts_the_cache_on_the_new_rules(serve, configmap):
    s = serve().start()
    [first] = s.wait_starts(1)
    old_mtime = configmap.file.stat().st_mtime
    configmap.publish(LIST_B, mtime=old_mtime)  # same mtime: only the content tells
    starts = s.wait_starts(2)
    assert starts[1]["authdb"] == authdb([Origin("127.0.0.1", 40000), Origin("eos.example.org")])
    assert rules_of(starts[1]["permits"]) == [Origin("127.0.0.1", 40000), Origin("eos.example.org")]
    # The old xrootd got SIGTERM and was gone before the new one started.
    events = [(e["pid"], e["event"]) for e in s.entries()]
    assert events == [(first["pid"], "start"), (first["pid"], "signal"), (starts[1]["pid"], "start")]
    assert any("cache restarted" in line for line in s.stderr())


def test_a_broken_new_list_keeps_the_running_cache_with_one_line_and_a_good_one_is_still_picked_up(serve, configmap):
    s = serve().start()
    [first] = s.wait_starts(1)
    configmap.publish(LIST_A)  # same content, new files: nothing to do
    configmap.publish("pss.permit 127.0.0.1:40000\nacc.authdb /tmp/open.authdb\n")
    s.wait_for(lambda: [ln for ln in s.stderr() if "keeping the running cache" in ln], "log line")
    assert len([ln for ln in s.stderr() if "keeping the running cache" in ln]) == 1
    assert len(s.entries("start")) == 1 and s.entries("signal") == []
    assert s.authdb.read_text() == first["authdb"]
    configmap.publish(LIST_B)
    assert len(s.wait_starts(2)) == 2


def test_going_back_to_the_running_list_does_not_restart_the_cache(serve, configmap):
    s = serve().start()
    s.wait_starts(1)
    configmap.publish("# broken for a moment\n")
    s.wait_for(lambda: [ln for ln in s.stderr() if "keeping the running cache" in ln], "log line")
    configmap.publish(LIST_A)
    configmap.publish("# broken again\n")  # a second line shows the poller has seen LIST_A come back
    s.wait_for(lambda: len([ln for ln in s.stderr() if "keeping the running cache" in ln]) == 2, "second log line")
    assert len(s.entries("start")) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_forwarded_to_xrootd_and_serve_exits_with_its_status(serve, signum):
    s = serve(env={"STAND_IN_ON_SIGNAL": "7"}).start()
    [start] = s.wait_starts(1)
    s.proc.send_signal(signum)
    assert s.proc.wait(WAIT) == 7
    assert s.entries("signal") == [{"pid": start["pid"], "event": "signal", "signum": signum}]


def test_an_xrootd_that_ignores_sigterm_is_killed_after_the_stop_timeout(serve):
    s = serve(env={"STAND_IN_ON_SIGNAL": "ignore"}).start()
    [start] = s.wait_starts(1)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(WAIT) == 128 + signal.SIGKILL
    assert s.entries("signal")[0]["pid"] == start["pid"]


def test_serve_exits_with_xrootds_status_when_xrootd_exits_by_itself(serve):
    s = serve(env={"STAND_IN_EXIT": "3"})
    assert s.run() == 3
    assert "xrootd exited by itself with status 3" in s.stderr()[-1]


def test_a_missing_xrootd_program_is_one_line_saying_which(serve, tmp_path):
    s = serve()
    s.argv[s.argv.index("--xrootd") + 1] = str(tmp_path / "no-such-xrootd")
    assert s.run() == 1
    [line] = s.stderr()
    assert "no-such-xrootd" in line and "--xrootd" in line
