"""datalakectl in alice's real server: the registration service registers her scratch files, Rucio and its daemons
copy them to the destination RSE, the greedy scratch copy goes, and every bad input is refused with the catalogue
left unchanged."""

import json
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from devstack.ports import wait_for
from devstack.rucio_seed import DESTINATION_RSE, SCRATCH_RSE
from devstack.settings import VENVS


@pytest.fixture
def scratch(alice_env):
    """A fresh folder inside alice's own scratch directory (her server's DLAAS_SCRATCH_MOUNT)."""
    path = Path(alice_env["DLAAS_SCRATCH_MOUNT"]) / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path


@pytest.fixture
def ctl(alice_env, tmp_path):
    """Run the real `datalakectl` in alice's server's environment, from her scratch directory."""
    env = {**alice_env, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}

    def run(*args, timeout=180):
        return subprocess.run(
            [str(VENVS / "singleuser" / "bin" / "datalakectl"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=alice_env["DLAAS_SCRATCH_MOUNT"],
        )

    return run


def _catalogue(root_client) -> set:
    return set(root_client.list_dids("user.alice", {"name": "*"}, did_type="all"))


def test_upload_reaches_the_destination_and_the_scratch_copy_goes(ctl, scratch, root_client):
    contents = {f"result-{i}.txt": f"histogram {i}\n".encode() * (100 + i) for i in range(5)}
    (scratch / "sub").mkdir()
    for i, (name, data) in enumerate(contents.items()):
        (scratch / ("sub" if i % 2 else "") / name).write_bytes(data)
    dataset = f"results-{scratch.name}"
    done = ctl(
        "upload",
        str(scratch),
        "--rse",
        DESTINATION_RSE,
        "--dataset",
        dataset,
        "--scratch-lifetime",
        "5s",
        "--name-prefix",
        f"{scratch.name}-",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert len(plan["files"]) == 5 and all(f["state"] == "registered" for f in plan["files"])
    assert len(plan["rules"]) == 2
    # Registered by the service for alice: in her scope, with her rules (her quota).
    assert {r["account"] for r in root_client.list_did_rules("user.alice", dataset)} == {"alice"}

    follow = ctl("status", f"user.alice:{dataset}", "--wait", "--timeout", "3m", "--json")
    assert follow.returncode == 0, follow.stderr
    dest = next(r for r in json.loads(follow.stdout) if r["rse_expression"] == DESTINATION_RSE)
    assert dest["state"] == "OK" and dest["ok"] == 5

    dids = [{"scope": "user.alice", "name": f["name"]} for f in plan["files"]]
    for replica in root_client.list_replicas(dids, schemes=["file"]):
        path = Path(replica["rses"][DESTINATION_RSE][0].removeprefix("file://localhost"))
        data = path.read_bytes()
        assert f"{zlib.adler32(data) & 0xFFFFFFFF:08x}" == replica["adler32"]
        assert data in contents.values()

    def scratch_copies_gone():
        replicas = list(root_client.list_replicas(dids, all_states=True))
        return all(SCRATCH_RSE not in r["rses"] for r in replicas) and not any(p.is_file() for p in scratch.rglob("*"))

    wait_for(scratch_copies_gone, timeout=120, what="the greedy reaper to clear the scratch copies")

    again = ctl("upload", str(scratch), "--rse", DESTINATION_RSE, "--dataset", dataset, "--json")
    assert again.returncode != 0 and "no files to upload" in again.stderr  # scratch was emptied by Rucio


def test_a_second_run_after_success_is_a_no_op(ctl, scratch, root_client):
    (scratch / "once.txt").write_bytes(b"only once\n")
    args = [
        "upload",
        str(scratch / "once.txt"),
        "--rse",
        DESTINATION_RSE,
        "--dataset",
        f"once-{scratch.name}",
        "--name-prefix",
        f"{scratch.name}-",
        "--json",
    ]
    first = json.loads(ctl(*args).stdout)
    before = _catalogue(root_client)
    second = ctl(*args)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["rules"] == first["rules"]
    assert _catalogue(root_client) == before


def test_dry_run_registers_nothing(ctl, scratch, root_client):
    (scratch / "maybe.txt").write_bytes(b"maybe\n")
    before = _catalogue(root_client)
    result = ctl(
        "upload", str(scratch), "--rse", DESTINATION_RSE, "--dataset", f"dry-{scratch.name}", "--dry-run", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["pfn"].endswith(f"/{scratch.name}/maybe.txt")
    assert _catalogue(root_client) == before


@pytest.mark.parametrize(
    "setup, extra, message",
    [
        ("outside", ["--rse", "NOWHERE-DISK"], "RSE 'NOWHERE-DISK' does not exist"),  # copied in, then removed
        ("missing", [], "no such file or folder"),
        ("ok", ["--rse", "NOWHERE-DISK"], "RSE 'NOWHERE-DISK' does not exist"),
        ("ok", ["--scope", "user.nobody"], "scope 'user.nobody' is not yours"),
        ("ok", ["--scope", "escape_demo"], "scope 'escape_demo' is not yours"),
        ("ok", ["--dataset", "bad name!"], "is not a valid dataset name"),
        ("badname", [], "cannot be uploaded"),
        ("ok", ["--lifetime", "-5"], "use a positive duration"),
        ("symlink", [], "is a symbolic link"),
        ("ok", ["--rse", SCRATCH_RSE], "the destination must be another RSE"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_registered(ctl, scratch, root_client, tmp_path, setup, extra, message):
    target = scratch / "data.txt"
    target.write_bytes(b"some data\n")
    if setup == "outside":
        target = tmp_path / "elsewhere.txt"
        target.write_bytes(b"not in scratch\n")
    elif setup == "missing":
        target = scratch / "missing.txt"
    elif setup == "badname":
        target = scratch / "bad name!.txt"
        target.write_bytes(b"x\n")
    elif setup == "symlink":
        outside = tmp_path / "secret.txt"
        outside.write_bytes(b"outside\n")
        target = scratch / "link.txt"
        target.symlink_to(outside)
    args = ["upload", str(target), "--dataset", f"bad-{scratch.name}", *extra]
    if "--rse" not in extra:
        args += ["--rse", DESTINATION_RSE]
    before = _catalogue(root_client)
    result = ctl(*args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 3
    assert _catalogue(root_client) == before


def test_an_existing_did_with_other_content_is_refused(ctl, scratch, root_client):
    (scratch / "clash.txt").write_bytes(b"first version\n")
    prefix = f"{scratch.name}-"
    first = ctl(
        "upload",
        str(scratch / "clash.txt"),
        "--rse",
        DESTINATION_RSE,
        "--dataset",
        f"v1-{scratch.name}",
        "--name-prefix",
        prefix,
    )
    assert first.returncode == 0, first.stderr
    (scratch / "clash.txt").write_bytes(b"second, different version\n")
    before = _catalogue(root_client)
    second = ctl(
        "upload",
        str(scratch / "clash.txt"),
        "--rse",
        DESTINATION_RSE,
        "--dataset",
        f"v2-{scratch.name}",
        "--name-prefix",
        prefix,
    )
    assert second.returncode != 0
    assert "already exists with another content" in second.stderr
    assert _catalogue(root_client) == before
