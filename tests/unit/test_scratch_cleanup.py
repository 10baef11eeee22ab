"""Scratch cleanup: old files and empty folders go, recent ones stay, symlinks are never followed."""

import argparse
import os
import time

import pytest

from singleuser.scratch_cleanup import cleanup, main, parse_age

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


def _victim_and_scratch(tmp_path):
    """bob's old files outside the area, and alice's old folder inside it with files of the same names."""
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    (scratch / "alice" / "run").mkdir(parents=True)
    outside.mkdir()
    for name in ("a.root", "b.root"):
        (scratch / "alice" / "run" / name).write_bytes(b"old")
        (outside / name).write_bytes(b"bob's data")
        _age(scratch / "alice" / "run" / name, 10)
        _age(outside / name, 10)
    _age(scratch / "alice" / "run", 10)
    return scratch, outside


def test_a_folder_swapped_for_a_symlink_during_the_deletions_cannot_redirect_them(tmp_path, monkeypatch):
    scratch, outside = _victim_and_scratch(tmp_path)
    walked = tmp_path / "walked"
    real_unlink, swaps = os.unlink, []

    def alice_swaps_her_folder(path, *args, **kwargs):
        # Just before the first deletion in her folder, alice renames it away and puts a link to bob's files there.
        if not swaps:
            os.rename(scratch / "alice" / "run", walked)
            (scratch / "alice" / "run").symlink_to(outside, target_is_directory=True)
            swaps.append(path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", alice_swaps_her_folder)
    cleanup(scratch, 2 * DAY)
    assert swaps, "the swap did not happen: the test proves nothing"
    assert sorted(p.read_bytes() for p in outside.iterdir()) == [b"bob's data"] * 2
    assert list(walked.iterdir()) == [], "the deletions went to the folder that was walked"


def test_a_folder_swapped_for_a_symlink_before_the_walk_enters_it_is_not_entered(tmp_path, monkeypatch):
    scratch, outside = _victim_and_scratch(tmp_path)
    real_open, real_scandir, swaps = os.open, os.scandir, []

    def swap_once():
        # The folder was listed as a folder; by the time the walk enters it, it is a link to bob's files.
        if not swaps:
            os.rename(scratch / "alice" / "run", tmp_path / "walked")
            (scratch / "alice" / "run").symlink_to(outside, target_is_directory=True)
            swaps.append(True)

    def open_hook(path, flags, *args, **kwargs):  # a walker that enters folders by descriptor
        if str(path).endswith("run"):
            swap_once()
        return real_open(path, flags, *args, **kwargs)

    def scandir_hook(path="."):  # a walker that enters folders by path
        if isinstance(path, (str, os.PathLike)) and str(path).endswith("run"):
            swap_once()
        return real_scandir(path)

    monkeypatch.setattr(os, "open", open_hook)
    monkeypatch.setattr(os, "scandir", scandir_hook)
    cleanup(scratch, 2 * DAY)
    assert swaps, "the swap did not happen: the test proves nothing"
    assert sorted(p.read_bytes() for p in outside.iterdir()) == [b"bob's data"] * 2


def test_a_symlinked_scratch_root_is_refused(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "scratch").symlink_to(tmp_path / "real", target_is_directory=True)
    assert main([str(tmp_path / "scratch")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_dry_run_counts_the_folders_that_would_become_empty(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "f").write_text("x")
    _age(tmp_path / "old" / "f", 5)
    _age(tmp_path / "old", 5)
    assert cleanup(tmp_path, 2 * DAY, dry_run=True) == {"files": 1, "dirs": 1, "bytes": 1}
    assert (tmp_path / "old" / "f").exists()


@pytest.mark.parametrize("text, seconds", [("3600", 3600), ("90s", 90), ("30m", 1800), ("48h", 172800), ("2d", 172800)])
def test_max_age_is_read_as_datalakectl_reads_durations(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-2d", "2 days", "1.5h", "2D"])
def test_a_max_age_that_is_not_a_positive_duration_is_refused_with_examples(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"use a positive duration such as 3600, 30m, 12h or 2d"):
        parse_age(text)
