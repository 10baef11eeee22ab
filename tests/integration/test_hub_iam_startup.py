"""A hub that starts while ESCAPE IAM is down: it starts, answers logins with a clear page at once (no 500, no
frozen hub), and logins work as soon as the IAM is back - no hub restart.

Its own dev IAM and hub (no Rucio needed), on free loopback ports.
"""

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devstack.hub import LocalHub, register_hub_client
from devstack.iam import DevIAM
from devstack.procs import free_port
from devstack.settings import Settings
from tests.conftest import hub_test_extra

from .test_hub import auth_state, hub_login


@pytest.fixture(scope="module")
def hub_without_iam():
    state = Path(tempfile.mkdtemp(prefix="dlaas-iamdown-"))
    settings = Settings(state_dir=state, iam_port=0, hub_port=free_port(), rucio_port=0, postgres_port=0)
    iam = DevIAM(settings)
    register_hub_client(iam, settings.hub_url)
    hub = None
    try:
        iam.start()  # once, to learn its issuer URL and port; then the IAM goes away before the hub starts
        iam.stop()
        hub = LocalHub(settings, iam=iam, extra=hub_test_extra()).start()
        admin = requests.Session()
        admin.headers["Authorization"] = f"token {hub_test_extra()['services'][0]['api_token']}"
        admin.api = f"{hub.url}/hub/api"
        yield iam, hub, admin
    finally:
        if hub:
            hub.stop()
        iam.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_the_hub_starts_without_the_iam_and_logins_work_once_it_is_back(hub_without_iam):
    iam, hub, admin = hub_without_iam
    started = time.monotonic()
    answer = requests.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    assert time.monotonic() - started < 5
    assert answer.status_code == 503
    assert "ESCAPE IAM is not reachable right now; please try again in a minute" in answer.text
    assert requests.get(f"{hub.url}/hub/health", timeout=5).status_code == 200

    iam.restart()
    _, callback = hub_login(hub, "alice", "alice-pass")
    assert callback.status_code == 302
    assert set(auth_state(admin, "alice")["exchanged"]) == {"rucio", "eos"}
    log = hub.process.log_path.read_text()
    assert "Traceback" not in log
