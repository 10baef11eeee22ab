"""A researcher's server on a shared machine where another account created her directories first.

The real Jupyter server of .venvs/singleuser with DLaaS's configuration (server extension, Rucio extension) starts
on a free loopback port with its token directory, rucio.cfg directory or Rucio cache directory pre-created 0777 by
another uid. It must refuse it with one line, put nothing into it, and leave the Rucio extension out rather than
let it use someone else's cache. Stopped by PID at the end, even when the test fails.
"""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from devstack.ports import free_port, wait_for
from devstack.procs import stop_group
from devstack.settings import REPO, VENVS

ATTACKER = 65534  # nobody

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another uid's directories")


def _attackers_dir(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o777)
    os.chown(path, ATTACKER, ATTACKER)
    return path


@pytest.mark.parametrize(
    "taken, hint", [("tokens", "DLAAS_TOKEN_DIR"), ("rucio-cfg", "RUCIO_CONFIG"), ("rucio-cache", "RUCIO_CACHE_DIR")]
)
def test_alices_server_puts_nothing_into_a_directory_another_account_created_first(taken, hint):
    root = Path(tempfile.mkdtemp(prefix="dlaas-shared-"))
    home = root / "home"
    home.mkdir()
    dirs = {name: root / f"{name}-alice" for name in ("tokens", "rucio-cfg", "rucio-cache")}
    attacked = _attackers_dir(dirs[taken])
    port = free_port()
    env = {
        "PATH": f"{VENVS / 'singleuser' / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "JUPYTER_CONFIG_PATH": str(REPO / "singleuser" / "jupyter_config"),
        "JUPYTERHUB_SERVICE_PREFIX": "/",
        "DLAAS_TOKEN_API_URL": "http://127.0.0.1:9/hub/api/dlaas/tokens",
        "JUPYTERHUB_API_TOKEN": "not-used",
        "DLAAS_TOKEN_DIR": str(dirs["tokens"]),
        "BEARER_TOKEN_FILE": str(dirs["tokens"] / "rucio_token"),
        "OAUTH2_TOKEN": f"FILE:{dirs['tokens']}/eos_token",
        "RUCIO_BASE_URL": "http://127.0.0.1:9",
        "RUCIO_ACCOUNT": "alice",
        "RUCIO_CONFIG": str(dirs["rucio-cfg"] / "rucio.cfg"),
        "RUCIO_CACHE_DIR": str(dirs["rucio-cache"]),
    }
    log = root / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                str(VENVS / "singleuser" / "bin" / "jupyter-server"),
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--IdentityProvider.token=",
                "--ServerApp.open_browser=False",
            ],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: server.poll() is None and _up(port), timeout=90, what="the Jupyter server")
        lines = [
            line
            for line in log.read_text().splitlines()
            if f"{attacked} exists and belongs to uid {ATTACKER}, not to you" in line
        ]
        assert len(lines) == 1, log.read_text()
        assert lines[0].endswith(f"remove it or set {hint} to another path")
        assert list(attacked.iterdir()) == [], f"something was written into {attacked}"
        rucio_ext = requests.get(f"http://127.0.0.1:{port}/rucio-jupyterlab/instances", timeout=10).status_code
        # The Rucio extension is left out rather than run on a cache someone else controls.
        assert (rucio_ext == 404) == (taken == "rucio-cache")
        if taken == "rucio-cfg":  # the other directories were the server's to create: private
            assert (dirs["tokens"].stat().st_mode & 0o777, dirs["rucio-cache"].stat().st_mode & 0o777) == (0o700,) * 2
    finally:
        stop_group(server.pid, timeout=20, popen=server)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/status", timeout=2).status_code < 500
    except requests.RequestException:
        return False
