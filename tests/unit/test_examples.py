"""The environment's example notebooks reach ~/examples once; a user's own copy is never overwritten."""

from singleuser.examples import install


def test_missing_examples_are_copied_and_a_users_edits_are_kept(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("higgs-4l.ipynb", "higgs-4l-cpp.ipynb"):
        (shipped / name).write_text(f"shipped {name}")
    home = tmp_path / "home"
    (home / "examples").mkdir(parents=True)
    (home / "examples" / "higgs-4l.ipynb").write_text("alice's edits")
    copied = install(home, sorted(shipped.iterdir()))
    assert [p.name for p in copied] == ["higgs-4l-cpp.ipynb"]
    assert (home / "examples" / "higgs-4l.ipynb").read_text() == "alice's edits"
    assert install(home, sorted(shipped.iterdir())) == []
