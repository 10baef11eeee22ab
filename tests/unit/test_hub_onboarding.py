"""Just-in-time onboarding at a user's first login: run the account sync for her IAM sub, never block the login."""

import asyncio
import contextlib
import os
import signal
import sys
import time

import pytest

from .conftest import FakeHandler, FakeIdP, log_in, make_authenticator

RECORDER = """
import json, os, sys, time
calls, mode = sys.argv[1], sys.argv[2:]
assert mode.pop() == "--serve"
for line in sys.stdin:
    sub = line.strip()
    open(calls, "a").write(f"{os.getpid()} {sub}\\n")
    if "JUPYTERHUB_CRYPT_KEY" in os.environ:
        open(calls + ".secrets", "a").write("the hub's auth_state key\\n")
    if mode == ["slow"]:
        time.sleep(30)
    if mode == ["crash"]:
        sys.exit(1)
    code = int(mode[1]) if mode[:1] == ["exit"] else 0
    print(json.dumps({"sub": sub, "exit": code, "line": f"synced {sub}", "account": None}), flush=True)
"""


@pytest.fixture
def recorder(tmp_path):
    """A worker speaking dlaas-rucio-sync --serve's protocol (the real one runs in tests/integration/
    test_onboarding.py); it records its PID and each sub it got. Its workers are stopped by PID afterwards."""
    script = tmp_path / "sync.py"
    script.write_text(RECORDER)
    calls = tmp_path / "calls"
    calls.touch()
    started: list[int] = []
    yield [sys.executable, str(script), str(calls)], calls, started
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def close(auth) -> None:
    """End the authenticator's worker while the test's event loop still runs."""
    if auth._onboarding is not None:
        await auth._onboarding.close(timeout=2)


def recorded(calls) -> list[tuple[int, str]]:
    return [(int(pid), sub) for pid, sub in (line.split() for line in calls.read_text().splitlines())]


async def test_a_first_login_runs_the_sync_for_that_sub_and_a_second_does_not(crypt_key, recorder):
    command, calls, started = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=command)
    _, user = await log_in(auth, "alice")
    started.append(auth._onboarding.pid)
    assert [sub for _, sub in recorded(calls)] == ["sub-alice"]
    await log_in(auth, "alice", users=[user])  # her hub account exists: no onboarding again
    await close(auth)
    assert [sub for _, sub in recorded(calls)] == ["sub-alice"]


async def test_first_logins_are_onboarded_by_one_worker_that_stays(crypt_key, recorder, caplog):
    caplog.set_level("INFO")
    command, calls, started = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=command)
    await asyncio.gather(log_in(auth, "alice"), log_in(auth, "bob"))
    started.append(auth._onboarding.pid)
    pid = auth._onboarding.pid
    await close(auth)
    assert sorted(sub for _, sub in recorded(calls)) == ["sub-alice", "sub-bob"]
    assert {p for p, _ in recorded(calls)} == {pid}
    assert not calls.with_name("calls.secrets").exists()  # the hub's own secrets stay out of the worker
    assert "onboarding: synced sub-alice" in caplog.text and "onboarding: synced sub-bob" in caplog.text


async def test_a_user_outside_the_allowed_groups_is_not_onboarded(crypt_key, recorder):
    command, calls, _ = recorder
    idp = FakeIdP(users={"carol": "sub-carol"}, groups={"carol": ["escape/guests"]})
    auth = make_authenticator(idp, onboard_command=command)
    assert await auth.get_authenticated_user(FakeHandler("carol", ()), None) is None
    assert calls.read_text() == ""


@pytest.mark.parametrize("mode", [["exit", "1"], ["slow"], ["crash"]])
async def test_a_failing_slow_or_dead_worker_never_blocks_the_login(crypt_key, recorder, caplog, mode):
    command, calls, started = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=[*command, *mode], onboard_timeout=1.0)
    began = time.monotonic()
    model, _ = await log_in(auth, "alice")
    if auth._onboarding.pid:
        started.append(auth._onboarding.pid)
    await close(auth)
    assert model["name"] == "alice" and "dlaas_first_login" not in model
    assert time.monotonic() - began < 20  # the slow one was cut at the timeout, not waited for
    assert "onboarding:" in caplog.text
    assert [sub for _, sub in recorded(calls)] == ["sub-alice"]


async def test_a_worker_that_ended_is_started_again_for_the_next_first_login(crypt_key, recorder, caplog):
    command, calls, started = recorder
    auth = make_authenticator(FakeIdP(), onboard_command=[*command, "crash"], onboard_timeout=5.0)
    await log_in(auth, "alice")
    await log_in(auth, "bob")
    await close(auth)
    (first, _), (second, _) = recorded(calls)
    started += [first, second]
    assert first != second
    assert caplog.text.count("ended before it answered") == 2


async def test_without_a_command_nothing_runs(crypt_key):
    model, _ = await log_in(make_authenticator(FakeIdP()), "alice")
    assert "dlaas_first_login" not in model
