"""Copying files into the scratch area for `datalakectl upload` (singleuser.scratch_copy), and how datalakectl sorts
the paths it is given and judges a token file. A full scratch area is a real write limit (RLIMIT_FSIZE, EFBIG) in a
child process."""

import json
import resource
import subprocess
import sys
import time

import click
import jwt
import pytest

from devstack.settings import REPO
from singleuser import datalakectl, scratch_copy


@pytest.fixture
def home(tmp_path):
    """A folder of results outside the scratch area: two files, a sub-folder and a hidden file."""
    path = tmp_path / "home" / "plots"
    (path / "sub").mkdir(parents=True)
    (path / "a.txt").write_bytes(b"a" * 1000)
    (path / "sub" / "b.txt").write_bytes(b"b" * 300_000)
    (path / ".hidden").write_bytes(b"not uploaded")
    return path


@pytest.fixture
def scratch(tmp_path):
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def test_files_from_home_land_whole_in_a_new_folder_of_the_scratch_area(home, scratch):
    copied = []
    folder = scratch_copy.stage([home], scratch, copied.append)
    assert folder.parent == scratch and folder.name.startswith("upload-")
    assert (folder / "plots" / "a.txt").read_bytes() == b"a" * 1000
    assert (folder / "plots" / "sub" / "b.txt").read_bytes() == b"b" * 300_000
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "plots/a.txt",
        "plots/sub/b.txt",
    ]
    assert sum(copied) == 301_000


def _stage_with_file_size_limit(sources, scratch, limit) -> subprocess.CompletedProcess:
    code = (
        "import json, sys; from pathlib import Path; from singleuser import scratch_copy\n"
        "try:\n"
        "    scratch_copy.stage([Path(p) for p in json.loads(sys.argv[1])], Path(sys.argv[2]))\n"
        "except scratch_copy.StagingError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps([str(s) for s in sources]), str(scratch)],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_full_scratch_area_stops_the_copy_with_one_line_and_leaves_nothing(home, scratch):
    done = _stage_with_file_size_limit([home], scratch, 100_000)
    assert done.returncode == 3, done.stderr
    line = done.stdout.strip()
    assert len(line.splitlines()) == 1
    assert f"the scratch area {scratch} is full" in line
    assert f"{home / 'sub' / 'b.txt'} was cut short after 100000 of 300000 bytes" in line
    assert f"free space in {scratch} or upload fewer files" in line
    assert list(scratch.iterdir()) == []  # a.txt, copied whole before, went too; no temporary file


def test_a_source_that_cannot_be_read_leaves_nothing(home, scratch):
    (home / "sub" / "z-broken.txt").symlink_to(home / "gone")  # copied after a.txt and b.txt, then fails
    with pytest.raises(scratch_copy.StagingError, match="z-broken.txt into .* failed .*nothing was registered"):
        scratch_copy.stage([home], scratch)
    assert list(scratch.iterdir()) == []


def test_paths_inside_the_scratch_area_are_named_relative_and_others_are_copied(home, scratch):
    (scratch / "mine.txt").write_bytes(b"x")
    relative, outside = datalakectl.scratch_relative([str(scratch / "mine.txt"), str(home)], scratch)
    assert relative == ["mine.txt"] and outside == [home]


@pytest.mark.parametrize(
    "name, message",
    [("missing", "does not exist"), ("parent", "contains your scratch area"), ("twice", "has the name of another")],
)
def test_paths_that_cannot_be_copied_in_are_refused_in_one_line(home, scratch, tmp_path, name, message):
    paths = {
        "missing": [str(tmp_path / "nothing")],
        "parent": [str(tmp_path)],
        "twice": [str(home), str(tmp_path / "other" / "plots")],
    }[name]
    (tmp_path / "other" / "plots").mkdir(parents=True)
    with pytest.raises(click.ClickException, match=message):
        datalakectl.scratch_relative(paths, scratch)


def _token(exp: float) -> str:
    return jwt.encode({"sub": "alice", "exp": int(exp)}, "k" * 32, algorithm="HS256")


@pytest.mark.parametrize(
    "content, expired",
    [
        (None, True),
        ("", True),
        (_token(time.time() + 30 * 86400), False),
        (_token(time.time() - 1), True),
        ("opaque", False),
    ],
)
def test_status_knows_when_there_is_no_valid_token(tmp_path, content, expired):
    path = tmp_path / "rucio_token"
    if content is not None:
        path.write_text(content)
    assert datalakectl._token_expired(str(path)) is expired


def test_an_expired_token_says_log_in_again_at_the_hub(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_URL", "https://lake.example/")
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/")
    assert "log in again at https://lake.example/hub/login" in datalakectl.TokenExpired().message
