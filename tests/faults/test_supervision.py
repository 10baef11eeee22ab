"""The keeper of the local data lake (devstack.supervision, supervisord 4.3.0): what dies is restarted with back-off,
what keeps dying is given up with the end of its log, and `devstack down` still stops everything by PID.

Real supervisord, real child processes (small Python programs standing in for a service), in the test's own state
directory; faults injected by SIGKILL or by programs that exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from devstack.pidfiles import pid_alive, read_pidfile
from devstack.ports import wait_for
from devstack.procs import Process
from devstack.service import ServiceError
from devstack.settings import MAIN_PYTHON, REPO
from devstack.supervision import Supervisord, supervisor_for

SERVICE = "import time; print('serving', flush=True); time.sleep(600)"
DIES_AFTER_A_WHILE = "import time; time.sleep(1.5); print('boom: lost the database connection', flush=True)"
CANNOT_START = "import sys; print('cannot read /nonexistent/service.cfg', flush=True); sys.exit(3)"


@pytest.fixture
def keeper(tmp_path):
    """A supervisord for the run directory of a state dir of its own: short start time, few restarts allowed."""
    state = tmp_path / "state"
    keeper = Supervisord(
        state / "run", state / "logs", startsecs=1, startretries=2, max_restarts=2, restart_window=120
    ).start()
    try:
        yield keeper
    finally:
        keeper.stop()
    assert not keeper.alive()


def _process(keeper, name: str, code: str, timeout: float = 10) -> Process:
    return Process(name, [sys.executable, "-c", code], run_dir=keeper.run_dir, log_dir=keeper.log_dir, timeout=timeout)


def test_a_killed_service_is_restarted_and_its_pidfile_names_the_new_process(keeper):
    service = _process(keeper, "svc", SERVICE).start()
    assert service.supervisor is supervisor_for(keeper.run_dir)
    first = service.pid
    assert read_pidfile(service.pidfile)["pid"] == first
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: service.pid not in (None, first) and service.pid, timeout=30, what="a restart")
    assert service.alive()
    wait_for(lambda: read_pidfile(service.pidfile)["pid"] == second, timeout=10, what="the pidfile to follow")
    events = keeper.check()
    assert [(e.name, e.pid, e.gave_up) for e in events] == [("svc", second, False)]
    wait_for(lambda: service.log_path.read_text().count("serving") == 2, timeout=10, what="the restart's output")
    service.stop()
    assert not pid_alive(second)
    assert not service.pidfile.exists()


def test_a_service_that_keeps_dying_is_given_up_with_the_end_of_its_log(keeper):
    service = _process(keeper, "flaky", DIES_AFTER_A_WHILE).start()
    events = []

    def gave_up():
        events.extend(keeper.check())
        return any(e.gave_up for e in events)

    wait_for(gave_up, timeout=60, interval=0.2, what="the keeper to give up on a service that keeps dying")
    final = next(e for e in events if e.gave_up)
    assert final.name == "flaky"
    assert final.restarts > keeper.max_restarts
    assert "boom: lost the database connection" in final.log_tail
    assert not service.alive()
    assert keeper.info("flaky")["statename"] in ("STOPPED", "EXITED")
    service.stop()


def test_a_service_that_cannot_start_fails_with_its_log_after_backed_off_retries(keeper):
    service = _process(keeper, "broken", CANNOT_START, timeout=60)
    with pytest.raises(ServiceError) as failed:
        service.start()
    message = str(failed.value)
    assert "broken kept exiting (retried, then given up) while starting" in message
    assert "cannot read /nonexistent/service.cfg" in message
    # supervisord tried it 1 + startretries times, backing off between the tries
    assert service.log_path.read_text().count("cannot read") == 1 + keeper.startretries
    assert not service.pidfile.exists()


def test_devstack_down_stops_a_keeper_left_behind_and_what_it_keeps(keeper):
    """`devstack up` was killed (SIGKILL: no cleanup): `devstack down` stops supervisord first, then each service by
    its pidfile, so nothing is restarted behind its back."""
    service = _process(keeper, "svc", SERVICE).start()
    pid = service.pid
    state = keeper.run_dir.parent
    down = subprocess.run(
        [str(MAIN_PYTHON), "-m", "devstack", "down"],
        env={**os.environ, "DLAAS_STATE_DIR": str(state)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert "supervisord" in down.stdout
    time.sleep(2)  # long enough for a keeper that was still alive to restart it
    assert not pid_alive(pid)
    assert not keeper.alive()
    assert not list(keeper.run_dir.glob("*.pid"))
