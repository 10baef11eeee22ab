"""The documentation stands alone in a clone: every relative link of README.md, CONTRIBUTING.md, CHANGELOG.md and
docs/ reaches a file (and heading) of this repository, and no file of the repository points at a folder beside it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from devstack.settings import REPO

DOCS = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...
# A folder beside the checkout, or the checkout's own absolute path (written so that this file does not match itself).
OUTSIDE = re.compile(r"\.\./shared\b|/work/(?:shared|main)\b")
SKIP_DIRS = {
    ".git",
    ".venvs",
    ".tools",
    ".devstack",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "test-artifacts",
    "build",
    "escape_dlaas.egg-info",
}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json", ".tpl", ".js", ".sh", ""}


def links(markdown: str) -> list[str]:
    text = FENCE.sub("", markdown)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(markdown: str) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.M)}


def problems(doc: Path, root: Path = REPO) -> list[str]:
    """What is wrong with each relative link of `doc`, a Markdown file of the repository at `root`."""
    found = []
    for target in links(doc.read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, fragment = target.partition("#")
        if path.startswith("/"):
            found.append(f"{target}: absolute path; link relative to {doc.relative_to(root)}")
            continue
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.is_relative_to(root.resolve()):
            found.append(f"{target}: outside the repository")
        elif not resolved.exists():
            found.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text()):
            found.append(f"{target}: no heading #{fragment} in {resolved.relative_to(root.resolve())}")
    return found


def test_the_guides_exist():
    for doc in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/architecture.md", "docs/benchmarks.md"):
        assert (REPO / doc).is_file(), doc


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_reaches_a_file_of_the_repository(doc):
    assert problems(doc) == []


def test_a_broken_link_an_escaping_link_and_a_missing_heading_are_caught(tmp_path):
    root = tmp_path / "clone"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "elsewhere.md").write_text("# beside the clone\n")
    (root / "README.md").write_text("# DLaaS\n\n## The two commands\n")
    doc = root / "docs" / "guide.md"
    doc.write_text(
        "[a](no-such.md) [b](../../elsewhere.md) [c](../README.md#no-such-heading) [d](/etc/hosts) "
        "[ok](../README.md#the-two-commands) [web](https://example.org/x.md) `[code](span.md)`\n"
        "```\n[fenced](fenced.md)\n```\n[ref]: missing-ref.md\n"
    )
    found = problems(doc, root)
    assert [f.split(":")[0] for f in found] == [
        "no-such.md",
        "../../elsewhere.md",
        "../README.md#no-such-heading",
        "/etc/hosts",
        "missing-ref.md",
    ], found


def repository_text_files(root: Path = REPO):
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]  # never descend into environments or installed packages
        for name in files:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or name in ("Dockerfile", "Makefile"):
                yield path


def outside_mentions(root: Path = REPO) -> list[str]:
    mentions = []
    for path in repository_text_files(root):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        mentions += [
            f"{path.relative_to(root)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for m in OUTSIDE.finditer(text)
        ]
    return mentions


def test_nothing_in_the_repository_points_at_a_folder_beside_it():
    assert outside_mentions() == []


def test_a_pointer_to_a_folder_beside_the_checkout_is_caught(tmp_path):
    beside = "/".join(["..", "shared", "ARCHITECTURE.md"])
    (tmp_path / "devstack").mkdir()
    (tmp_path / "devstack" / "settings.py").write_text(f'"""Addresses.\n\nSee {beside}."""\n')
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.md").write_text(beside)  # not ours: skipped
    assert outside_mentions(tmp_path) == [f"devstack/settings.py:3: {beside[:9]}"]
