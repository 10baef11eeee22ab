"""What the tests share besides their fixtures: the test session's own IAM clients and hub service, a user's
`datalakectl upload`, and running XRootD scenarios in a private network namespace.

Driving the hub (scripted logins, starting a user's server, reading its environment or auth_state) is
devstack.hub_client, which the benchmarks use too; waiting for a condition is devstack.ports.wait_for.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from devstack.hub_client import admin_service
from devstack.rucio_seed import DESTINATION_RSE
from devstack.settings import REPO, VENVS

TEST_REDIRECT = "http://127.0.0.1:9/callback"  # never fetched: the scripted login stops before it
TEST_SCIM_ADMIN = "dlaas-test-scim-admin"  # changes users and group members through SCIM, as IAM administrators do

# A test-only hub service that starts and stops servers (and reads their pid from the server state) and makes tokens
# for tests. It cannot read auth_state: tests read that from the hub's database (devstack.hub_client.auth_state).
# Users and IAM operators have the production roles (hub_plugins.hub_roles).
_TEST_ADMIN, TEST_ADMIN_TOKEN = admin_service(
    "test-admin", ["admin:servers", "admin:server_state", "list:users", "read:users", "tokens"]
)


def hub_test_extra() -> dict:
    """The test hub service as LocalHub's `extra` configuration (a copy: callers add their own keys to it)."""
    return copy.deepcopy(_TEST_ADMIN)


def upload_as(env: dict, home, files: dict[str, bytes], dataset_prefix: str):
    """`datalakectl upload` as the user of `env` (her server's environment) runs it in a terminal: `files` written
    into a new folder of her scratch area, sent to the destination RSE as dataset `<prefix>-<folder>`. Returns the
    finished process (the caller checks it) and the folder."""
    folder = Path(env["DLAAS_SCRATCH_MOUNT"]) / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    done = subprocess.run(
        [str(VENVS / "singleuser" / "bin" / "datalakectl"), "upload", str(folder), "--rse", DESTINATION_RSE]
        + ["--dataset", f"{dataset_prefix}-{folder.name}", "--name-prefix", f"{folder.name}-"],
        env={**env, "HOME": str(home), "TMPDIR": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=env["DLAAS_SCRATCH_MOUNT"],
    )
    return done, folder


#: XRootD listens on every interface: tests that run it outside the stack's namespace use a private network.
needs_private_network = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("xrootd"),
    reason="needs root, unshare and xrootd (as `make up` does)",
)


def run_in_private_network(driver: str, *args, prefix: str, timeout: float = 300) -> dict:
    """Run the Python `driver` with `args` in a private network namespace (`unshare --net`, only `lo`), in a session
    of its own that is killed whole if it outlives `timeout`; the driver gets a work directory the xrootd user can
    enter as its first argument (removed afterwards) and prints a JSON report as its last line, which is returned."""
    work = Path(tempfile.mkdtemp(prefix=prefix))  # pytest's tmp_path is closed to the xrootd user
    work.chmod(0o755)
    proc = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-c", driver, str(work), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started: unshare, the driver and its xrootds
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, err[-3000:] + out[-3000:]
    return json.loads(out.strip().splitlines()[-1])
