"""`python -m devstack up|down|status`, the commands behind `make up` and `make down`, as a user runs them."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devstack.ports import free_port
from devstack.settings import MAIN_PYTHON, REPO


@pytest.fixture
def stack_env():
    state = Path(tempfile.mkdtemp(prefix="dlaas-cli-"))
    state.chmod(0o755)
    names = (
        "IAM",
        "RUCIO",
        "POSTGRES",
        "HUB",
        "XROOTD",
        "XCACHE",
        "XCACHE_METRICS",
        "CRIC",
        "REGISTRAR",
        "DASK_GATEWAY",
        "PROMETHEUS",
    )
    ports = {name: free_port() for name in names}
    env = {**os.environ, "DLAAS_STATE_DIR": str(state), **{f"DLAAS_{k}_PORT": str(v) for k, v in ports.items()}}
    yield env, state, ports
    subprocess.run([str(MAIN_PYTHON), "-m", "devstack", "down"], env=env, cwd=REPO, capture_output=True, timeout=120)
    subprocess.run(["rm", "-rf", str(state)], check=False)


def _recorded_pids(state: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (state / "run").glob("*.pid")]


def _gone(pids: list[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _start(env) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(MAIN_PYTHON), "-m", "devstack", "up", "--small"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        out.append(line)
        if "Stop with Ctrl-C" in line:
            return proc, "".join(out)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("devstack up did not come up:\n" + "".join(out))


def test_up_prints_the_addresses_serves_them_and_down_stops_everything(stack_env):
    env, state, ports = stack_env
    proc, out = _start(env)
    try:
        assert f"http://127.0.0.1:{ports['IAM']}/" in out
        assert f"http://127.0.0.1:{ports['RUCIO']}" in out
        assert "alice / alice-pass" in out
        doc = requests.get(f"http://127.0.0.1:{ports['IAM']}/.well-known/openid-configuration", timeout=5).json()
        assert doc["issuer"] == f"http://127.0.0.1:{ports['IAM']}/"
        assert requests.get(f"http://127.0.0.1:{ports['RUCIO']}/ping", timeout=5).json()["version"] == "41.5.1"
        assert f"http://127.0.0.1:{ports['HUB']}" in out
        assert f"root://127.0.0.1:{ports['XROOTD']}" in out and f"root://127.0.0.1:{ports['XCACHE']}" in out
        assert f"Prometheus     http://127.0.0.1:{ports['PROMETHEUS']}" in out
        login = requests.get(f"http://127.0.0.1:{ports['HUB']}/hub/oauth_login", allow_redirects=False, timeout=10)
        assert login.headers["Location"].startswith(f"http://127.0.0.1:{ports['IAM']}/authorize?")
        status = subprocess.run(
            [str(MAIN_PYTHON), "-m", "devstack", "status"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert all(
            name in status.stdout
            for name in (
                "dev-iam",
                "postgres",
                "rucio-server",
                "rucio-daemons",
                "jupyterhub",
                "xrootd",
                "cric",
                "origin-sync",
            )
        )
        pids = _recorded_pids(state)
        assert len(pids) >= 9
    finally:
        down = subprocess.run(
            [str(MAIN_PYTHON), "-m", "devstack", "down"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
    assert proc.wait(timeout=60) == 0
    assert "stopped: devstack" in down.stdout
    assert _gone(pids), "some service outlived `devstack down`"
    assert not list((state / "run").glob("*.pid"))

    # A second start reuses the state: nothing is seeded again.
    proc, out = _start(env)
    try:
        assert "seeded:" not in out
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert proc.wait(timeout=60) == 0
    assert _gone(_recorded_pids(state) or pids)


def test_a_busy_port_fails_fast_with_one_clear_line_and_starts_nothing(stack_env):
    env, state, ports = stack_env
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["RUCIO"]))
        blocker.listen()
        result = subprocess.run(
            [str(MAIN_PYTHON), "-m", "devstack", "up", "--small"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert f"127.0.0.1:{ports['RUCIO']} for Rucio server is already in use" in errors[0]
    assert "DLAAS_RUCIO_PORT" in errors[0]
    assert not list(state.glob("run/*.pid")), "a failed start left a service behind"


def test_a_bad_port_variable_is_reported_by_name(stack_env):
    env, _, _ = stack_env
    result = subprocess.run(
        [str(MAIN_PYTHON), "-m", "devstack", "up"],
        env={**env, "DLAAS_IAM_PORT": "eighty"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DLAAS_IAM_PORT='eighty' is not a port number" in result.stderr
