"""What the integration tests share besides their fixtures: the test session's own IAM clients and hub service.

Driving the hub (scripted logins, starting a user's server, reading its environment or auth_state) is
devstack.hub_client, which the benchmarks use too; waiting for a condition is devstack.ports.wait_for.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from pathlib import Path

from devstack.hub_client import admin_service
from devstack.rucio_seed import DESTINATION_RSE
from devstack.settings import VENVS

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
