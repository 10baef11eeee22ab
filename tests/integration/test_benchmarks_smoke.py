"""Every benchmark still runs end to end, as its documented command, in a tiny variant (the real runs are long and
are not part of the test suite; their numbers live in docs/benchmarks.md), and appends its section - here to a
temporary results file, never to docs/benchmarks.md."""

import os
import shlex
import subprocess

import pytest

from devstack.settings import MAIN_PYTHON, REPO

SMOKE = [
    ("bench_login_storm.py", ["--users", "6", "--concurrency", "3", "--spawn", "1", "--returning"]),
    ("bench_login_storm.py", ["--users", "3", "--concurrency", "3", "--spawn", "0", "--onboarding"]),
    ("bench_token_api.py", ["--servers", "2", "--seconds", "2"]),
    ("bench_refresh_soak.py", ["--servers", "1", "--minutes", "0.5", "--lifetime", "20", "--margin", "8"]),
    ("bench_register.py", ["--files", "20"]),
    ("bench_xcache.py", ["--delay-ms", "5", "--size-mb", "2", "--files", "5", "--repeat", "1"]),
    ("bench_root_read.py", ["--delay-ms", "5", "--events", "2000", "--repeat", "1"]),
    ("bench_time_to_lab.py", ["--sizes", "1", "--rounds", "1"]),
    ("bench_dask_scale.py", ["--delay-ms", "5", "--workers", "1,2", "--rounds", "1", "--files", "20"]),
]
#: Columns a benchmark's table must have (beyond a header and a row of numbers).
FIELDS = {
    "bench_time_to_lab.py": ["bare median / max", "DLaaS median / max", "time ratio", "CPU/server", "CPU ratio"],
    "bench_dask_scale.py": ["analysis (s)", "speed-up vs 1 worker", "CPU per file (ms)"],
}
#: What a variant must also print.
SAYS = {"--onboarding": "Onboarding outcomes (hub metrics): cannot_run 0, failed 0, ok 3, timeout 0"}


@pytest.mark.parametrize("script, args", SMOKE, ids=[f"{s}{a[-1]}" if a[-1].startswith("--") else s for s, a in SMOKE])
def test_the_benchmark_runs_prints_its_table_and_appends_it_with_the_command(script, args, tmp_path):
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.read_text()
    results = tmp_path / "results.md"
    run = subprocess.run(
        [str(MAIN_PYTHON), str(REPO / "bench" / script), *args],
        cwd=REPO,
        env={**os.environ, "DLAAS_BENCH_RESULTS": str(results)},
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) >= 2, run.stdout  # a header and at least one row of numbers
    assert any(ch.isdigit() for ch in rows[-1])
    assert all(field in rows[0] for field in FIELDS.get(script, [])), rows[0]
    for flag, line in SAYS.items():
        assert flag not in args or line in run.stdout, run.stdout[-2000:]

    section = results.read_text()
    assert section.startswith("\n### ") and "Machine: " in section and rows[-1] in section
    # The command recorded is the one that ran: copy it, and the benchmark runs again the same way.
    assert f"Command: `{shlex.join(['.venvs/main/bin/python', f'bench/{script}', *args])}`" in section
    assert docs.read_text() == before


def test_the_import_comparison_names_the_modules_only_one_side_imports():
    """bench_time_to_lab.py --imports: one server of each side under PYTHONPROFILEIMPORTTIME; nothing appended."""
    docs = REPO / "docs" / "benchmarks.md"
    before = docs.read_text()
    run = subprocess.run(
        [str(MAIN_PYTHON), str(REPO / "bench" / "bench_time_to_lab.py"), "--imports"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "only DLaaS: " in run.stdout and "only bare: " in run.stdout, run.stdout[-2000:]
    assert "modules imported: bare " in run.stdout
    assert docs.read_text() == before
