"""A hub that starts while ESCAPE IAM is down: it starts, answers logins with a clear page at once (no 500, no
frozen hub), and logins work as soon as the IAM is back - no hub restart.

Its own dev IAM and hub (no Rucio needed), on free loopback ports.
"""

import json
import shutil
import time

import pytest
import requests

from devstack.hub_client import auth_state, hub_login
from devstack.iam import USERS_FILE
from devstack.ports import free_port
from devstack.settings import Settings
from devstack.stack import Stack, temporary_state
from tests.helpers import hub_test_extra


@pytest.fixture(scope="module")
def hub_without_iam():
    """A hub started while its IAM has never run (the IAM's port fixed in advance); the tests start the IAM."""
    with temporary_state("iamdown") as state:
        users = state / "users.json"  # a copy: a test gives an IAM account another identity
        shutil.copy(USERS_FILE, users)
        settings = Settings.free_ports(state, iam_port=free_port())
        with Stack(settings, iam_options={"users_file": users}, hub_options={"extra": hub_test_extra()}) as stack:
            stack.start("login", without=["iam"])
            yield stack


def test_the_hub_starts_without_the_iam_and_logins_work_once_it_is_back(hub_without_iam):
    hub = hub_without_iam.hub
    started = time.monotonic()
    answer = requests.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    assert time.monotonic() - started < 5
    assert answer.status_code == 503
    assert "ESCAPE IAM is not reachable right now; please try again in a minute" in answer.text
    assert requests.get(f"{hub.url}/hub/health", timeout=5).status_code == 200

    hub_without_iam.start("iam")  # the IAM comes up on the address the hub was told
    _, callback = hub_login(hub, "alice", "alice-pass")
    assert callback.status_code == 302
    assert set(auth_state(hub, "alice")["exchanged"]) == {"rucio", "eos"}
    log = hub.process.log_path.read_text()
    assert "Traceback" not in log


def test_a_different_sub_with_the_same_username_is_refused(hub_without_iam):
    iam, hub = hub_without_iam.start("iam").iam, hub_without_iam.hub
    _, callback = hub_login(hub, "alice", "alice-pass")
    assert callback.status_code == 302
    pinned = auth_state(hub, "alice")["sub"]
    # alice's IAM account is deleted and the username given to someone else (a new IAM identity, a new sub)
    users = json.loads(iam.users_file.read_text())
    for user in users:
        if user["username"] == "alice":
            user["sub"] = "0f0e0d0c-0000-4000-8000-00000000a11c"
    iam.users_file.write_text(json.dumps(users))
    iam.restart()
    browser, answer = hub_login(hub, "alice", "alice-pass")
    assert answer.status_code == 403
    assert "belongs to another ESCAPE IAM identity" in answer.text and "contact the service operators" in answer.text
    assert browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=10).status_code != 200
    assert auth_state(hub, "alice")["sub"] == pinned
