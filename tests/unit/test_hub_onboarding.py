"""Just-in-time onboarding at a user's first login: run the account sync for her IAM sub, never block the login."""

import sys
import time

import pytest

from .conftest import FakeHandler, FakeIdP, log_in, make_authenticator

RECORDER = """
import sys, time
open(sys.argv[1], "a").write(" ".join(sys.argv[2:]) + "\\n")
if sys.argv[2:3] == ["slow"]:
    time.sleep(30)
sys.exit(int(sys.argv[3]) if sys.argv[2:3] == ["exit"] else 0)
"""


@pytest.fixture
def recorder(tmp_path):
    script = tmp_path / "sync.py"
    script.write_text(RECORDER)
    calls = tmp_path / "calls"
    calls.touch()
    return [sys.executable, str(script), str(calls)], calls


async def test_a_first_login_runs_the_sync_for_that_sub_and_a_second_does_not(crypt_key, recorder):
    command, calls = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=command)
    _, user = await log_in(auth, "alice")
    assert calls.read_text().splitlines() == ["--sub sub-alice"]
    await log_in(auth, "alice", users=[user])  # her hub account exists: no onboarding again
    assert calls.read_text().splitlines() == ["--sub sub-alice"]


async def test_a_user_outside_the_allowed_groups_is_not_onboarded(crypt_key, recorder):
    command, calls = recorder
    idp = FakeIdP(users={"carol": "sub-carol"}, groups={"carol": ["escape/guests"]})
    auth = make_authenticator(idp, onboard_command=command)
    assert await auth.get_authenticated_user(FakeHandler("carol", ()), None) is None
    assert calls.read_text() == ""


@pytest.mark.parametrize("mode", [["exit", "1"], ["slow"]])
async def test_a_failing_or_slow_sync_never_blocks_the_login(crypt_key, recorder, caplog, mode):
    command, calls = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=[*command, *mode], onboard_timeout=1.0)
    started = time.monotonic()
    model, _ = await log_in(auth, "alice")
    assert model["name"] == "alice" and "dlaas_first_login" not in model
    assert time.monotonic() - started < 20  # the slow one was cut at the timeout, not waited for
    assert "onboarding:" in caplog.text


async def test_without_a_command_nothing_runs(crypt_key):
    model, _ = await log_in(make_authenticator(FakeIdP()), "alice")
    assert "dlaas_first_login" not in model
