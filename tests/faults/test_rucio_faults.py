"""Rucio's side of the lake fails under a user: its server killed (also in the middle of a `datalakectl upload`),
kept down while alice's sidebar asks it, its daemons killed while a transfer is under way, its PostgreSQL restarted
while requests keep coming.

On the fault suite's supervised lake (tests/faults/conftest.py): supervisord restarts what is killed. alice's
uploads run the real `datalakectl` in her server's environment, from her scratch directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest
import requests

from devstack.pidfiles import pid_alive
from devstack.ports import wait_for
from devstack.procs import group_alive
from devstack.rucio_seed import DEMO_SCOPE, DESTINATION_RSE, HIGGS_DATASET, SCRATCH_RSE, rse_dir
from devstack.settings import VENVS
from singleuser.rucio_unreachable import UNREACHABLE
from tests.faults.conftest import RUCIO_TIMEOUT, sidebar_search


def _answers(lake) -> bool:
    try:
        return requests.get(f"{lake.rucio.url}/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _kill_rucio(lake) -> float:
    """SIGKILL the Rucio server; wait until its orphaned workers went and the restarted one answers; seconds."""
    pid = lake.rucio.process.pid
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # gunicorn's workers notice their master is gone and exit; then the restarted master can bind the port.
    wait_for(lambda: not group_alive(pid), timeout=60, what="the killed server's workers to go")
    wait_for(lambda: lake.rucio.process.pid not in (None, pid) and _answers(lake), timeout=120, what="Rucio back")
    return time.monotonic() - killed


@pytest.fixture(scope="module")
def root_client(lake):
    return lake.rucio.root_client()


@pytest.fixture
def folder(alice):
    """A fresh folder in alice's scratch directory with five small files."""
    _, _, env = alice
    path = Path(env["DLAAS_SCRATCH_MOUNT"]) / f"f{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    for i in range(5):
        (path / f"part-{i}.txt").write_bytes(f"events {i}\n".encode() * (2000 + i))
    return path


def _ctl(*args) -> list[str]:
    return [str(VENVS / "singleuser" / "bin" / "datalakectl"), *args]


def _run(alice, tmp_path, *args, timeout=180) -> subprocess.CompletedProcess:
    _, _, env = alice
    return subprocess.run(
        _ctl(*args),
        env={**env, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env["DLAAS_SCRATCH_MOUNT"],
    )


def _upload_args(folder: Path) -> list[str]:
    return [
        "upload",
        str(folder),
        "--rse",
        DESTINATION_RSE,
        "--dataset",
        f"results-{folder.name}",
        "--name-prefix",
        f"{folder.name}-",
        "--json",
    ]


def _registered(root_client, folder: Path) -> tuple[set[str], set[str]]:
    """Alice's files of this folder in the catalogue, and those of them with a replica."""
    names = {d for d in root_client.list_dids("user.alice", {"name": f"{folder.name}-*"}, did_type="file")}
    if not names:
        return set(), set()
    dids = [{"scope": "user.alice", "name": n} for n in names]
    with_replica = {r["name"] for r in root_client.list_replicas(dids, all_states=True) if r["rses"]}
    return names, with_replica


def _destination_ok(root_client, folder: Path, timeout: float = 180) -> None:
    """The rule to the destination reaches OK and every destination file has the catalogue's adler32 (watched with
    root's client; test_scratch_full follows a copy with alice's `datalakectl status --wait`)."""
    dataset = f"results-{folder.name}"

    def destination_rule():
        rules = [r for r in root_client.list_did_rules("user.alice", dataset) if r["rse_expression"] == DESTINATION_RSE]
        return rules and rules[0]["state"] == "OK" and rules[0]

    rule = wait_for(destination_rule, timeout=timeout, interval=1, what="the rule to the destination to reach OK")
    assert rule["locks_ok_cnt"] == 5
    names, _ = _registered(root_client, folder)
    dids = [{"scope": "user.alice", "name": n} for n in names]
    for replica in root_client.list_replicas(dids, schemes=["file"]):
        path = Path(replica["rses"][DESTINATION_RSE][0].removeprefix("file://localhost"))
        assert f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}" == replica["adler32"]


def test_a_killed_rucio_server_is_restarted_with_back_off_and_answers_again(lake, record_property):
    back = _kill_rucio(lake)
    assert lake.rucio.alive()
    record_property("rucio_back_s", round(back, 1))
    print(f"\n[faults] Rucio server killed: answering again after {back:.1f}s")


def test_an_upload_cut_by_a_killed_rucio_leaves_nothing_half_registered_and_a_rerun_completes(
    lake, alice, folder, tmp_path, root_client, record_property
):
    _, _, env = alice
    upload = subprocess.Popen(
        _ctl(*_upload_args(folder)),
        env={**env, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=env["DLAAS_SCRATCH_MOUNT"],
    )
    time.sleep(0.3)  # under way: the registration service is talking to Rucio
    back = _kill_rucio(lake)
    out, err = upload.communicate(timeout=180)
    if upload.returncode != 0:
        assert "Traceback" not in err, err
        assert len(err.strip().splitlines()) <= 2, err
    # Whatever got through, no file is in the catalogue without its replica.
    names, with_replica = _registered(root_client, folder)
    assert names == with_replica, f"half-registered: {sorted(names - with_replica)}"
    again = _run(alice, tmp_path, *_upload_args(folder))
    assert again.returncode == 0, again.stderr
    assert len(_registered(root_client, folder)[0]) == 5
    _destination_ok(root_client, folder)
    record_property("first_upload", (upload.returncode, err.strip()[-200:]))
    record_property("rucio_back_s", round(back, 1))
    print(f"\n[faults] upload cut by a Rucio kill: exit {upload.returncode} {err.strip()[-160:]!r}; rerun completed")


def _search_results(lake, browser) -> list | None:
    answer = sidebar_search(lake, browser)
    return answer.status_code == 200 and answer.json()


def test_the_sidebar_says_rucio_is_not_answering_while_it_is_down_and_recovers_by_itself(lake, alice, record_property):
    browser, _, _ = alice
    wait_for(lambda: _search_results(lake, browser), timeout=60, what="alice's sidebar search to answer")
    keeper = lake.supervisor.rpc().supervisor
    pid = lake.rucio.process.pid
    # Stopping in supervisord, so it stays down (a kill by PID alone is restarted at once): SIGTERM to its process
    # group; then, without waiting for gunicorn's graceful stop, SIGKILL to what is left of the group, its workers.
    keeper.stopProcess("rucio-server", False)
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not group_alive(pid), timeout=60, what="the stopped server's workers to go")
        wait_for(lambda: lake.supervisor.info("rucio-server")["statename"] == "STOPPED", timeout=60, what="STOPPED")
        assert not _answers(lake)
        down = sidebar_search(lake, browser)
        assert down.status_code == 503, (down.status_code, down.text[:300])
        said = down.json()
        assert said["error"] == UNREACHABLE
        assert "ConnectionPool" not in down.text and "Connection aborted" not in down.text, down.text[:300]
    finally:
        keeper.startProcess("rucio-server", False)
    started = time.monotonic()
    results = wait_for(lambda: _search_results(lake, browser), timeout=120, what="the sidebar's search to answer")
    back = time.monotonic() - started
    assert f"{DEMO_SCOPE}:{HIGGS_DATASET}" in {r["did"] for r in results}, results
    record_property("sidebar_during_rucio_outage", f"{down.status_code} {said['error']}")
    record_property("sidebar_back_after_rucio_start_s", round(back, 1))
    print(
        f"\n[faults] Rucio stopped: sidebar said {down.status_code} {said['error']!r}; results {back:.1f}s after start"
    )


def test_a_frozen_rucio_gives_the_sidebar_the_not_answering_line_and_waiting_searches_answer_once_it_goes_on(
    lake, alice, record_property
):
    """A Rucio that accepts connections and never answers (its processes stopped with SIGSTOP, as an overloaded or
    hung server behaves): the sidebar's search ends with the one line after RUCIO_TIMEOUT s instead of spinning
    for ever (singleuser.rucio_jupyterlab_fixes request-timeout); after SIGCONT it answers with results again."""
    browser, _, _ = alice
    wait_for(lambda: _search_results(lake, browser), timeout=60, what="alice's sidebar search to answer")
    pid = lake.rucio.process.pid
    os.killpg(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        frozen = sidebar_search(lake, browser)
        waited = time.monotonic() - started
        assert frozen.status_code == 503, (frozen.status_code, frozen.text[:300])
        assert frozen.json()["error"] == UNREACHABLE
        assert "timed out" not in frozen.text and "ConnectionPool" not in frozen.text, frozen.text[:300]
        assert waited >= RUCIO_TIMEOUT  # it waited for Rucio, then gave up
    finally:
        os.killpg(pid, signal.SIGCONT)
    results = wait_for(lambda: _search_results(lake, browser), timeout=60, what="the sidebar's search to answer")
    assert f"{DEMO_SCOPE}:{HIGGS_DATASET}" in {r["did"] for r in results}, results
    record_property("sidebar_frozen_rucio_answer_s", round(waited, 1))
    print(f"\n[faults] Rucio frozen: sidebar said {frozen.status_code} {UNREACHABLE!r} after {waited:.1f}s")


def test_a_rule_reaches_ok_with_correct_bytes_when_the_daemons_are_killed_mid_transfer(
    lake, alice, folder, tmp_path, root_client, record_property
):
    jobs = lake.settings.state_dir / "rucio" / "devcopy-jobs"  # <job>.job.json when handed over, <job>.json when done
    before = set(jobs.glob("*.job.json"))
    done = _run(alice, tmp_path, *_upload_args(folder))
    assert done.returncode == 0, done.stderr
    # Killed while the copy is under way: handed to the transfer tool and recorded by Rucio as submitted, not done
    # (each job waits TRANSFER_QUEUE seconds before it copies, as in FTS's queue).
    wait_for(lambda: set(jobs.glob("*.job.json")) - before, timeout=60, interval=0.02, what="a transfer handed over")
    wait_for(
        # states as Rucio's REST API spells them ("S": submitted); the client puts a list into the URL as it is
        lambda: list(root_client.list_requests(SCRATCH_RSE, DESTINATION_RSE, "S")),
        timeout=30,
        interval=0.05,
        what="Rucio to record the transfer as submitted",
    )
    handed_over = set(jobs.glob("*.job.json")) - before
    assert not [j for j in handed_over if j.with_name(j.name.replace(".job", "")).exists()], "copied before the kill"
    pid = lake.daemons.process.pid
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: lake.daemons.process.pid not in (None, pid), timeout=60, what="the daemons to be restarted")
    _destination_ok(root_client, folder, timeout=90)
    took = time.monotonic() - killed
    destination = rse_dir(lake.settings, DESTINATION_RSE)
    assert not list(destination.rglob("*.part")), "a killed copy left a temporary file behind"
    record_property("rule_ok_after_daemons_killed_s", round(took, 1))
    print(f"\n[faults] daemons killed mid-transfer: rule OK, bytes verified {took:.1f}s after the kill")


def test_rucio_rides_out_a_postgresql_restart_under_load_and_loses_no_rule(lake, root_client, record_property):
    rules_before = {r["id"]: r["state"] for r in root_client.list_replication_rules({"account": "alice"})}
    assert rules_before, "earlier tests made rules for alice"
    rucio_pid = lake.rucio.process.pid
    failures, successes, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                list(root_client.list_dids("user.alice", {"name": "*"}, did_type="all"))
                successes.append(time.monotonic())
            except Exception as e:  # counted: what clients see while the database restarts
                failures.append(type(e).__name__)
            time.sleep(0.1)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1)
        keeper = lake.supervisor.rpc().supervisor
        keeper.stopProcess("postgres", True)
        restarted = time.monotonic()
        keeper.startProcess("postgres", True)
        wait_for(lambda: successes and successes[-1] > restarted + 0.5, timeout=120, what="Rucio to answer again")
        recovered = time.monotonic() - restarted
    finally:
        stop.set()
        worker.join(timeout=60)
    assert lake.rucio.process.pid == rucio_pid and pid_alive(rucio_pid), "Rucio had to be restarted"
    rules_after = {r["id"]: r["state"] for r in root_client.list_replication_rules({"account": "alice"})}
    assert set(rules_before) <= set(rules_after), "a rule was lost"
    record_property("rucio_answers_after_postgres_restart_s", round(recovered, 1))
    record_property("failed_requests_during_restart", len(failures))
    print(
        f"\n[faults] PostgreSQL restarted under load: Rucio answered again {recovered:.1f}s after; "
        f"{len(failures)} requests failed meanwhile ({sorted(set(failures))})"
    )
