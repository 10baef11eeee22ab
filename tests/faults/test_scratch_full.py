"""alice uploads from her home through a scratch area that is full for her, and follows a copy for longer than her
tokens live.

The scratch area is made full for alice's `datalakectl` process alone, with RLIMIT_FSIZE (set in the child before it
runs): a write beyond the limit fails with EFBIG (Python ignores SIGXFSZ), as a full disk's writes fail with ENOSPC.
Nothing outside the test's own processes and state is touched; a loop-mounted image would need CAP_SYS_ADMIN and
loop devices, which CI containers usually lack (docs/reliability.md). On the fault suite's lake (conftest.py) tokens
live 12 s, so `datalakectl status --wait` over half a minute must read the token file the agent renews.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from devstack.rucio_seed import DESTINATION_RSE
from tests.faults.conftest import LIFETIME, token_exp
from tests.faults.test_rucio_faults import _ctl, _destination_ok, _registered, _upload_args

LIMIT = 64 * 1024  # bytes one file of alice's datalakectl may have: the last file below is larger


@pytest.fixture(scope="module")
def root_client(lake):
    return lake.rucio.root_client()


@pytest.fixture
def results(tmp_path):
    """Five files in a folder of alice's home (outside the scratch area), the last one larger than LIMIT."""
    path = tmp_path / "home" / f"h{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    for i in range(5):
        (path / f"part-{i}.txt").write_bytes(f"events {i}\n".encode() * (1000 if i < 4 else 20000))
    return path


def _ctl_run(alice, tmp_path, *args, fsize=None, popen=False):
    _, _, env = alice
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    options = dict(
        env={**env, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path / "home"),
        preexec_fn=limit,
    )
    if popen:
        return subprocess.Popen(_ctl(*args), **options)
    return subprocess.run(_ctl(*args), timeout=180, **options)


def _scratch_entries(scratch: Path) -> set[Path]:
    return set(scratch.rglob("*"))


def test_an_upload_through_a_full_scratch_area_fails_in_one_line_registers_nothing_and_a_rerun_completes(
    lake, alice, results, tmp_path, root_client, record_property
):
    _, _, env = alice
    scratch = Path(env["DLAAS_SCRATCH_MOUNT"])
    before = _scratch_entries(scratch)
    full = _ctl_run(alice, tmp_path, *_upload_args(results), fsize=LIMIT)
    error = full.stderr.strip()
    assert full.returncode != 0, full.stdout
    assert "Traceback" not in error and len(error.splitlines()) == 1, error
    assert str(scratch) in error and "part-4.txt" in error and f"after {LIMIT} of" in error, error
    assert _registered(root_client, results) == (set(), set())
    assert not [d for d in root_client.list_dids("user.alice", {"name": f"results-{results.name}"})]
    left = _scratch_entries(scratch) - before  # (the greedy reaper may remove earlier tests' files meanwhile)
    assert not left, f"the copy left files (or temporary files) in the scratch area: {sorted(left)}"

    again = _ctl_run(alice, tmp_path, *_upload_args(results))
    assert again.returncode == 0, again.stderr
    plan = json.loads(again.stdout)
    assert {f["path"].rsplit("/", 1)[-1] for f in plan["files"]} == {f"part-{i}.txt" for i in range(5)}
    assert all(f["path"].startswith("upload-") for f in plan["files"]), plan["files"]
    _destination_ok(root_client, results)
    record_property("scratch_full_error", error)
    print(f"\n[faults] scratch area full: exit {full.returncode} {error!r}; nothing left; rerun completed")


def test_alice_can_follow_a_copy_for_longer_than_her_token_lives(lake, alice, results, tmp_path, record_property):
    _, _, env = alice
    token_file = Path(env["BEARER_TOKEN_FILE"])
    done = _ctl_run(alice, tmp_path, *_upload_args(results))
    assert done.returncode == 0, done.stderr
    # The daemons frozen (SIGSTOP to their process group): the copy waits, and so does `status --wait`.
    daemons = lake.daemons.process.pid
    assert os.getpgid(daemons) == daemons, "the daemons are not a process group of their own"
    os.killpg(daemons, signal.SIGSTOP)
    try:
        first_exp = token_exp(token_file)
        follow = _ctl_run(
            alice,
            tmp_path,
            "status",
            f"user.alice:results-{results.name}",
            "--wait",
            "--timeout",
            "5m",
            "--json",
            popen=True,
        )
        time.sleep(2 * LIFETIME + 2)
        assert follow.poll() is None, follow.communicate()
    finally:
        os.killpg(daemons, signal.SIGCONT)
    out, err = follow.communicate(timeout=300)
    assert follow.returncode == 0, err
    assert "Traceback" not in err
    assert time.time() > first_exp, "the wait did not outlive the token read first"
    destination = next(r for r in json.loads(out) if r["rse_expression"] == DESTINATION_RSE)
    assert destination["state"] == "OK" and destination["ok"] == 5
    record_property("status_wait_over_token_lifetimes", True)
    print(f"\n[faults] status --wait across {2 * LIFETIME + 2} s of {LIFETIME}-s tokens: rule OK, exit 0")
