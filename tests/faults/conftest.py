"""One supervised private data lake for the fault suite (tests/faults), shared by its modules.

supervisord (devstack.supervision) keeps every service, as under `make up`: a service killed by a test is restarted
with back-off. The dev IAM issues short-lived tokens (LIFETIME) and the user servers' token agents retry often
(AGENT_BACKOFF), so outages longer than a token lifetime take seconds, not hours. Parts: IAM, PostgreSQL, Rucio
(seeded), Rucio's daemons, the registration service and JupyterHub; alice is logged in with her server running.
Faults are injected by PID and signal, by stopping a program in supervisord, or by locking a file, and only ever
touch this stack's own temporary state directory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import jwt
import pytest
import requests

from devstack.hub_client import hub_login, process_environ, service_session, start_server
from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE
from devstack.settings import REPO, Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import TEST_ADMIN_TOKEN, hub_test_extra

LIFETIME = 12  # seconds an exchanged token lives
MARGIN = 4  # the hub refreshes this long before expiry
AGENT_BACKOFF = 2  # the token agents' longest wait between retries (their retry bound)
RUCIO_TIMEOUT = 5  # seconds alice's sidebar waits for Rucio's answer (DataLakeEnvironment.rucio_timeout)
TRANSFER_QUEUE = 3  # seconds each transfer job waits before it copies (test_rucio_faults kills the daemons then)


@pytest.fixture(scope="package")
def lake():
    extra = hub_test_extra()
    extra["EscapeIAMAuthenticator"] = {"refresh_backoff": 2}
    allow_root = ["--allow-root"] if os.geteuid() == 0 else []
    agent = [f"--TokenAgent.max_backoff={AGENT_BACKOFF}", f"--TokenAgent.max_auth_backoff={AGENT_BACKOFF}"]
    # The hub polls its users' servers every 5 s (JupyterHub's default: 30 s), so a dead one is noticed quickly.
    extra["Spawner"] = {"args": [*allow_root, *agent], "poll_interval": 5}
    # The sidebar gives up on a Rucio that does not answer after RUCIO_TIMEOUT s (production: 60 s).
    extra["DataLakeEnvironment"] = {"rucio_timeout": RUCIO_TIMEOUT}
    with (
        temporary_state("faults") as state,
        Stack(
            Settings.free_ports(state),
            full_seed=False,
            supervised=True,
            iam_options={"access_token_ttl": LIFETIME},
            hub_options={"refresh_margin": MARGIN, "auth_refresh_age": 1, "extra": extra},
            daemons_options={"transfer_queue_seconds": TRANSFER_QUEUE},
        ) as stack,
    ):
        try:
            stack.start("daemons", "hub")
            yield stack
        finally:
            # The services' logs outlive the temporary state, for reading after a failed run.
            shutil.copytree(state / "logs", REPO / "test-artifacts" / "faults-logs", dirs_exist_ok=True)


@pytest.fixture(scope="package")
def admin(lake):
    return service_session(lake.hub, TEST_ADMIN_TOKEN)


@pytest.fixture(scope="package")
def alice(lake, admin):
    """Alice logged in (a browser session) with her server running: (browser, server pid, server environment)."""
    browser, answer = hub_login(lake.hub, "alice", "alice-pass")
    assert answer.status_code == 302
    pid = start_server(admin, "alice")
    env = process_environ(pid)
    assert browser.get(f"{lake.hub.url}/user/alice/lab", timeout=60).status_code == 200
    wait_for(Path(env["BEARER_TOKEN_FILE"]).exists, timeout=30, what="alice's first token file")
    return browser, pid, env


def token_exp(path: Path) -> float | None:
    """The expiry of the token in a token file, or None when there is no (readable) file."""
    try:
        return jwt.decode(path.read_text(), options={"verify_signature": False})["exp"]
    except (OSError, jwt.PyJWTError):
        return None


def sidebar_search(lake, browser) -> requests.Response:
    """What alice's Rucio sidebar asks her server when she searches the demo datasets."""
    return browser.get(
        f"{lake.hub.url}/user/alice/rucio-jupyterlab/did-search",
        params={"namespace": "escape", "did": f"{DEMO_SCOPE}:higgs*", "type": "collection"},
        timeout=30,
    )


def fresh_token(path: Path) -> float:
    """Wait until the token file holds a token just renewed; returns its expiry."""
    return wait_for(
        lambda: (exp := token_exp(path)) and exp > time.time() + LIFETIME - MARGIN - 1 and exp,
        timeout=60,
        what="a freshly renewed token file",
    )


def pytest_collection_modifyitems(items):
    """test_stack_stop.py stops the shared lake: it runs right after the last other test of this suite."""
    here = Path(__file__).parent
    stop = [item for item in items if item.path.name == "test_stack_stop.py" and item.path.parent == here]
    rest = [item for item in items if item not in stop]
    ours = [i for i, item in enumerate(rest) if item.path.parent == here]
    if stop and ours:
        items[:] = rest[: ours[-1] + 1] + stop + rest[ours[-1] + 1 :]
