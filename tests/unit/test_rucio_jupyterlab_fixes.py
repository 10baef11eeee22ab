"""The fixes to rucio-jupyterlab apply once, change nothing on a second run, and refuse a file that changed upstream
(a new release must be reviewed, never patched blindly). Files here are made of the fixes' own anchors; the installed
extension is checked in tests/integration/test_analysis_environment.py."""

from pathlib import Path

import pytest

from singleuser.rucio_jupyterlab_fixes import FIXES, VERSION, FixError, apply, python_diff, target


def make_tree(root: Path, drop: str | None = None) -> tuple[Path, Path]:
    package, lab = root / "rucio_jupyterlab", root / "labextension"
    for fix in FIXES:
        path = target(fix, package, lab)
        path.parent.mkdir(parents=True, exist_ok=True)
        before = path.read_text() if path.exists() else "# upstream code\n"
        path.write_text(before + ("" if fix.old == drop else fix.old) + "\n# more upstream code\n")
    return package, lab


def test_every_fix_applies_once_and_a_second_run_changes_nothing(tmp_path):
    package, lab = make_tree(tmp_path)
    first = apply(package, lab, version=VERSION)
    assert all("applied now" in line for line in first), first
    texts = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    for fix in FIXES:
        text = target(fix, package, lab).read_text()
        assert fix.new in text and (fix.old in fix.new or fix.old not in text), fix.name
    second = apply(package, lab, version=VERSION)
    assert all(line.split(": ")[1].startswith("applied (") for line in second), second
    assert {p: p.read_text() for p in texts} == texts


def test_check_reports_without_changing_anything(tmp_path):
    package, lab = make_tree(tmp_path)
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert all("pending" in line for line in apply(package, lab, check=True, version=VERSION))
    assert {p: p.read_text() for p in before} == before


def test_a_file_that_changed_upstream_stops_the_build(tmp_path):
    fix = next(f for f in FIXES if f.name == "no-font-import")
    package, lab = make_tree(tmp_path, drop=fix.old)
    # the import is gone but so is nothing else: a removal looks applied; an insertion whose anchor vanished does not
    assert "no-font-import: applied" in "\n".join(apply(package, lab, check=True, version=VERSION))
    insertion = next(f for f in FIXES if f.name == "no-instance-needed")
    package, lab = make_tree(tmp_path / "other", drop=insertion.old)
    with pytest.raises(FixError, match="no-instance-needed does not apply"):
        apply(package, lab, version=VERSION)


def test_another_release_is_refused_with_what_to_review(tmp_path):
    package, lab = make_tree(tmp_path)
    with pytest.raises(FixError, match="rucio-jupyterlab 42.0.0 is installed, these fixes are for 41.0.0"):
        apply(package, lab, version="42.0.0")


def test_the_python_fixes_read_back_as_a_diff_for_upstream(tmp_path):
    package, lab = make_tree(tmp_path)
    apply(package, lab, version=VERSION)
    diff = python_diff(package)
    assert "--- a/rucio_jupyterlab/handlers/base.py" in diff and '+            "/file-browser",' in diff
    assert "+    def _wait_for_first_fetch(self, scope, name, did):" in diff
    assert "fonts.googleapis" not in diff  # the labextension's fixes are described in the docs, not diffed
