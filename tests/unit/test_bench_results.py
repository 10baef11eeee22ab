"""docs/benchmarks.md keeps each reference command's latest figure on top and every run below: append_results
replaces the current block of exactly the command that ran and adds the run to the history; the document in the
repository shows, for every benchmark, the latest run of its reference command."""

from __future__ import annotations

import re
import sys

import pytest

from bench.hub_stack import CURRENT_END, CURRENT_START, append_results
from devstack.settings import REPO

BENCHMARKS = REPO / "docs" / "benchmarks.md"
REGISTER = ".venvs/main/bin/python bench/bench_register.py --files 1000"
XCACHE = ".venvs/main/bin/python bench/bench_xcache.py --delay-ms 25"


def block(command: str, figure: str) -> str:
    return (
        f"{CURRENT_START.format(command=command)}### A run (2026-01-01 00:00 UTC)\n\nMachine: m.\n"
        f"Command: `{command}`\n\n| figure |\n| ---: |\n| {figure} |\n\n{CURRENT_END}\n"
    )


@pytest.fixture
def results(tmp_path, monkeypatch):
    path = tmp_path / "benchmarks.md"
    path.write_text(
        "# Benchmarks\n\n## Current results\n\n"
        + block(REGISTER, "old-register")
        + "\n"
        + block(XCACHE, "old-xcache")
        + "\n## History\n\n### A run (2026-01-01 00:00 UTC)\n\n"
        + f"Command: `{REGISTER}`\n\n| figure |\n| ---: |\n| old-register |\n"
    )
    monkeypatch.setenv("DLAAS_BENCH_RESULTS", str(path))
    return path


def run_as(monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", argv)
    return append_results(
        "Registering 1000 scratch files for upload",
        "Local Rucio.",
        "| figure |\n| ---: |\n| new-register |",
        after="Speed-up 9.9x.",
    )


def sections(text: str) -> tuple[str, str]:
    current, _, history = text.partition("\n## History\n")
    return current, history


def test_a_run_of_a_reference_command_replaces_its_current_figure_and_joins_the_history(results, monkeypatch):
    run_as(monkeypatch, ["/anywhere/bench/bench_register.py", "--files", "1000"])
    current, history = sections(results.read_text())
    assert "new-register" in current and "old-register" not in current
    assert "old-xcache" in current  # the other benchmark's figure stays
    assert current.count(CURRENT_END) == 2
    # The history keeps the old run and ends with the new one, table and note included.
    assert "old-register" in history
    assert history.rstrip().endswith("| new-register |\n\nSpeed-up 9.9x.")
    assert history.count(f"Command: `{REGISTER}`") == 2


def test_a_smaller_variant_goes_to_the_history_only(results, monkeypatch):
    before = sections(results.read_text())[0]
    run_as(monkeypatch, ["bench/bench_register.py", "--files", "20"])
    current, history = sections(results.read_text())
    assert current == before
    assert "Command: `.venvs/main/bin/python bench/bench_register.py --files 20`" in history


def test_a_new_results_file_starts_with_the_run(tmp_path, monkeypatch):
    path = tmp_path / "fresh.md"
    monkeypatch.setenv("DLAAS_BENCH_RESULTS", str(path))
    run_as(monkeypatch, ["bench/bench_register.py", "--files", "1000"])
    text = path.read_text()
    assert text.startswith("\n### Registering 1000 scratch files for upload (") and "Machine: " in text
    assert f"Command: `{REGISTER}`" in text


def current_blocks(text: str) -> dict[str, str]:
    start = re.escape(CURRENT_START.format(command="@")).replace("@", "(.+?)")
    return {m.group(1): m.group(2) for m in re.finditer(start + "(.*?)" + re.escape(CURRENT_END), text, re.S)}


def test_the_document_shows_every_benchmarks_latest_run_of_its_reference_command():
    text = BENCHMARKS.read_text()
    current, history = sections(text)
    assert text.index("## Current results") < text.index("\n## History\n")
    blocks = current_blocks(current)
    scripts = {re.search(r"bench/(\S+\.py)", command).group(1) for command in blocks}
    assert scripts == {p.name for p in (REPO / "bench").glob("bench_*.py")}
    runs = re.split(r"(?m)^(?=### )", history)[1:]
    for command, content in blocks.items():
        assert f"Command: `{command}`\n" in content
        latest = [run for run in runs if f"Command: `{command}`\n" in run][-1]
        heading, *rest = content.strip().splitlines()
        table = [line for line in rest if line.startswith("|")]
        assert latest.startswith(heading + "\n") and "\n".join(table) in latest, command
