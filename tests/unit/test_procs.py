"""Process supervision: readiness, failed starts, stopping a whole process group by PID, port checks."""

import json
import os
import socket
import sys
import time

import pytest

from devstack.pidfiles import write_pidfile
from devstack.ports import ensure_port_free, tcp_ready
from devstack.procs import Process, stop_pidfile
from devstack.service import ServiceError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


SERVER = """
import socket, sys, time, subprocess
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[2], "w").write(str(child.pid))
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
time.sleep(300)
"""


def test_start_waits_for_readiness_and_stop_kills_the_whole_group(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child_pid_file = tmp_path / "child.pid"
    p = Process(
        "server",
        [sys.executable, "-c", SERVER, str(port), str(child_pid_file)],
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
        ready=tcp_ready("127.0.0.1", port),
        timeout=20,
    )
    try:
        p.start()
        assert tcp_ready("127.0.0.1", port)()
        assert p.pidfile.exists()
        grandchild = int(child_pid_file.read_text())
        assert _alive(grandchild)
    finally:
        p.stop()
    assert _wait_gone(p.pid)
    assert _wait_gone(grandchild), "a process forked by the service survived stop()"
    assert not p.pidfile.exists()


def test_a_process_that_dies_while_starting_reports_its_log(tmp_path):
    p = Process(
        "broken",
        [sys.executable, "-c", "import sys; print('config file is missing'); sys.exit(3)"],
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
        ready=lambda: False,
        timeout=20,
    )
    with pytest.raises(ServiceError, match=r"broken exited with status 3(.|\n)*config file is missing"):
        p.start()
    assert not p.pidfile.exists()


def test_a_process_never_ready_is_stopped_after_the_timeout(tmp_path):
    p = Process(
        "slow",
        [sys.executable, "-c", "import time; time.sleep(300)"],
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
        ready=lambda: False,
        timeout=1,
    )
    with pytest.raises(ServiceError, match="slow was not ready after 1s"):
        p.start()
    assert _wait_gone(p.pid)


def test_missing_executable_gives_a_clear_message(tmp_path):
    p = Process("ghost", ["/nonexistent/bin/ghost"], run_dir=tmp_path, log_dir=tmp_path)
    with pytest.raises(ServiceError, match="ghost.*not found.*make up"):
        p.start()


def test_port_in_use_is_reported_with_the_variable_to_change():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port} for dev IAM is already in use.*DLAAS_IAM_PORT"):
            ensure_port_free("127.0.0.1", port, "dev IAM", "DLAAS_IAM_PORT")


def test_stop_pidfile_never_kills_a_recycled_pid(tmp_path):
    bystander = Process(
        "bystander", [sys.executable, "-c", "import time; time.sleep(300)"], run_dir=tmp_path, log_dir=tmp_path
    ).start()
    try:
        pidfile = tmp_path / "stale.pid"
        # The pidfile names the bystander's PID but another start time: a PID the kernel reused.
        write_pidfile(pidfile, bystander.pid, ["some-service", "--that-exited"])
        info = json.loads(pidfile.read_text())
        pidfile.write_text(json.dumps({**info, "start": info["start"] - 1}))
        assert stop_pidfile(pidfile) is False
        assert _alive(bystander.pid)
        assert not pidfile.exists()
    finally:
        bystander.stop()


def test_stop_pidfile_stops_the_recorded_program(tmp_path):
    p = Process("svc", [sys.executable, "-c", "import time; time.sleep(300)"], run_dir=tmp_path, log_dir=tmp_path)
    p.start()
    assert stop_pidfile(p.pidfile) is True
    assert _wait_gone(p.pid)
