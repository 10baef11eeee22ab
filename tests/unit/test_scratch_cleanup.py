"""Scratch cleanup: old files and empty folders go, recent ones stay, symlinks are never followed."""

import os
import time

import pytest

from singleuser.scratch_cleanup import cleanup, main

DAY = 86400


def _age(path, days):
    t = time.time() - days * DAY
    os.utime(path, (t, t), follow_symlinks=False)


def test_old_files_and_empty_folders_go_recent_ones_stay(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "old" / "deep").mkdir(parents=True)
    (scratch / "new").mkdir()
    old_file, new_file = scratch / "old" / "deep" / "a.root", scratch / "new" / "b.root"
    old_file.write_bytes(b"x" * 10)
    new_file.write_bytes(b"y")
    _age(old_file, 3)
    _age(scratch / "old" / "deep", 3)
    _age(scratch / "old", 3)
    removed = cleanup(scratch, 2 * DAY)
    assert removed == {"files": 1, "dirs": 2, "bytes": 10}
    assert not (scratch / "old").exists()
    assert new_file.exists()


def test_symlinks_out_of_scratch_are_removed_as_links_never_followed(tmp_path):
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    precious = outside / "precious.dat"
    precious.write_bytes(b"keep me")
    _age(precious, 10)
    _age(outside, 10)
    (scratch / "to-file").symlink_to(precious)
    (scratch / "to-dir").symlink_to(outside, target_is_directory=True)
    _age(scratch / "to-file", 10)
    _age(scratch / "to-dir", 10)
    cleanup(scratch, 2 * DAY)
    assert precious.read_bytes() == b"keep me"
    assert not (scratch / "to-file").is_symlink() and not (scratch / "to-dir").is_symlink()


def test_dry_run_removes_nothing(tmp_path):
    old = tmp_path / "old.txt"
    old.write_text("x")
    _age(old, 5)
    assert cleanup(tmp_path, 2 * DAY, dry_run=True)["files"] == 1
    assert old.exists()


def test_cli_reports_and_refuses_a_missing_area(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "dlaas-scratch-cleanup:" in capsys.readouterr().err
    assert main([str(tmp_path), "--max-age", "2d"]) == 0
    assert "removed 0 files" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--max-age", "soon"])
