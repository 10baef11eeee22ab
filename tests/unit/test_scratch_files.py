"""The registration service's walk of one user's scratch directory: never leaves it, never follows a link."""

import hashlib
import os
import zlib

import pytest

from dlaas_registrar.scratch_files import ScratchPathError, collect, open_user_directory, split_path


@pytest.fixture
def area(tmp_path):
    """<root>/alice with a few files, <root>/bob with a secret, and a file outside the root."""
    root = tmp_path / "scratch"
    (root / "alice" / "plots").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "alice" / "hist.root").write_bytes(b"alice's histogram\n" * 100)
    (root / "alice" / "plots" / "a.png").write_bytes(b"png a")
    (root / "alice" / "plots" / "b.png").write_bytes(b"png b")
    (root / "alice" / "plots" / ".ipynb_checkpoints").mkdir()
    (root / "alice" / "plots" / ".ipynb_checkpoints" / "a-checkpoint.png").write_bytes(b"old")
    (root / "bob" / "secret.root").write_bytes(b"bob's secret\n")
    (tmp_path / "outside.txt").write_bytes(b"outside\n")
    fd = open_user_directory(str(root), "alice")
    yield root, fd
    os.close(fd)


def test_files_and_folders_are_found_with_their_checksums(area):
    root, fd = area
    files = collect(fd, ["hist.root", "plots/"])
    assert [f.path for f in files] == ["hist.root", "plots/a.png", "plots/b.png"]  # hidden entries skipped
    data = (root / "alice" / "hist.root").read_bytes()
    assert files[0].bytes == len(data)
    assert files[0].adler32 == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert files[0].md5 == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    "path, message",
    [
        ("../bob/secret.root", "not a plain path"),
        ("plots/../../bob/secret.root", "not a plain path"),
        ("/etc/passwd", "is absolute"),
        ("plots//a.png", "not a plain path"),
        ("./hist.root", "not a plain path"),
        ("", "empty path"),
        ("bad name.root", "cannot be uploaded"),
        (".hidden", "cannot be uploaded"),
        ("plots\\..\\x", "cannot be uploaded"),
        ("h%2e%2e", "cannot be uploaded"),
    ],
)
def test_paths_that_could_leave_the_directory_are_refused_before_any_lookup(area, path, message):
    with pytest.raises(ScratchPathError, match=message):
        split_path(path)
    with pytest.raises(ScratchPathError):
        collect(area[1], [path])


def test_a_planted_symlink_to_another_users_file_is_refused(area):
    root, fd = area
    (root / "alice" / "stolen.root").symlink_to(root / "bob" / "secret.root")
    with pytest.raises(ScratchPathError, match="is a symbolic link"):
        collect(fd, ["stolen.root"])


def test_a_symlinked_folder_on_the_way_is_refused(area):
    root, fd = area
    (root / "alice" / "bobs").symlink_to(root / "bob", target_is_directory=True)
    with pytest.raises(ScratchPathError, match="is a symbolic link"):
        collect(fd, ["bobs/secret.root"])


def test_a_symlink_inside_an_uploaded_folder_is_refused(area):
    root, fd = area
    (root / "alice" / "plots" / "c.png").symlink_to(root.parent / "outside.txt")
    with pytest.raises(ScratchPathError, match="plots/c.png is a symbolic link"):
        collect(fd, ["plots"])


def test_a_folder_swapped_for_a_symlink_after_opening_the_user_directory_is_not_followed(area):
    root, fd = area
    os.rename(root / "alice" / "plots", root / "alice" / "old-plots")
    (root / "alice" / "plots").symlink_to(root / "bob", target_is_directory=True)
    with pytest.raises(ScratchPathError, match="symbolic link"):
        collect(fd, ["plots/secret.root"])


def test_the_user_directory_itself_must_not_be_a_link(tmp_path):
    (tmp_path / "bob").mkdir()
    (tmp_path / "alice").symlink_to(tmp_path / "bob", target_is_directory=True)
    with pytest.raises(ScratchPathError, match="cannot be used"):
        open_user_directory(str(tmp_path), "alice")
    with pytest.raises(ScratchPathError, match="not a user name"):
        open_user_directory(str(tmp_path), "../bob")


def test_hard_links_fifos_and_missing_files_are_refused(area):
    root, fd = area
    os.link(root / "bob" / "secret.root", root / "alice" / "linked.root")
    os.mkfifo(root / "alice" / "pipe")
    with pytest.raises(ScratchPathError, match="other hard links"):
        collect(fd, ["linked.root"])
    with pytest.raises(ScratchPathError, match="not a regular file"):
        collect(fd, ["pipe"])
    with pytest.raises(ScratchPathError, match="no such file"):
        collect(fd, ["nothing.root"])


def test_too_many_files_is_a_clear_refusal(area):
    with pytest.raises(ScratchPathError, match="more than 2 files"):
        collect(area[1], ["plots", "hist.root"], max_files=2)
