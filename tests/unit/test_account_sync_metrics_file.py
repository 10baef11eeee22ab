"""The account sync's metrics file (dlaas_sync.metrics_file): what one run writes, what carries over to the next,
and that only full runs write it (dlaas-rucio-sync --metrics-file)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from dlaas_sync import cli, metrics_file
from dlaas_sync.desired import Refused
from dlaas_sync.plan import Change
from dlaas_sync.sync import Report


def read(path) -> dict:
    return {
        (s.name, next(iter(s.labels.values()), "")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_a_run_writes_its_changes_by_kind_and_its_outcome(tmp_path):
    path = tmp_path / "sync.prom"
    done = [Change("carol", "create", "c@x"), Change("carol", "identity+", "SUB=c, ISS=i"), Change("dan", "suspend")]
    metrics_file.write(path, Report(done), started=100.0, finished=104.0)
    found = read(path)
    assert found[("dlaas_sync_last_run_changes", "create")] == 1
    assert found[("dlaas_sync_last_run_changes", "identity_added")] == 1
    assert found[("dlaas_sync_last_run_changes", "suspend")] == 1
    assert found[("dlaas_sync_runs_total", "ok")] == 1
    assert found[("dlaas_sync_last_run_success", "")] == 1
    assert found[("dlaas_sync_last_run_duration_seconds", "")] == 4
    assert found[("dlaas_sync_last_success_timestamp_seconds", "")] == 104


def test_counters_continue_from_the_last_file_and_a_failed_run_keeps_the_last_success(tmp_path):
    path = tmp_path / "sync.prom"
    metrics_file.write(path, Report([Change("carol", "create", "c@x")]), started=100.0, finished=101.0)
    metrics_file.write(path, Report(refused=[Refused("eve", "collision")]), started=200.0, finished=201.0)
    metrics_file.write(path, Report(error="IAM lists no active member"), started=300.0, finished=301.0)
    found = read(path)
    assert [found[("dlaas_sync_runs_total", o)] for o in ("ok", "users_refused", "failed")] == [1, 1, 1]
    assert found[("dlaas_sync_changes_total", "create")] == 1
    assert found[("dlaas_sync_last_run_success", "")] == 0
    assert found[("dlaas_sync_last_success_timestamp_seconds", "")] == 201  # the run with refused users did its work
    assert found[("dlaas_sync_last_run_timestamp_seconds", "")] == 301


def test_a_file_that_is_not_a_metrics_file_starts_the_counters_again(tmp_path):
    path = tmp_path / "sync.prom"
    path.write_text("this is { not prometheus\n")
    metrics_file.write(path, Report(), started=1.0, finished=2.0)
    assert read(path)[("dlaas_sync_runs_total", "ok")] == 1


def run_cli(monkeypatch, tmp_path, *extra):
    secret = tmp_path / "secret"
    secret.write_text("s")
    monkeypatch.setattr(cli, "sync_all", lambda config, dry_run=False: Report([Change("x", "create", "x@x")]))
    monkeypatch.setattr(cli, "sync_user", lambda config, **kw: Report())
    path = tmp_path / "sync.prom"
    argv = ["--iam-url", "https://iam.example.org/", "--client-id", "c", "--client-secret-file", str(secret)]
    return cli.main([*argv, "--metrics-file", str(path), *extra]), path


def test_a_full_run_writes_the_file(monkeypatch, tmp_path):
    status, path = run_cli(monkeypatch, tmp_path)
    assert status == 0 and read(path)[("dlaas_sync_changes_total", "create")] == 1


def test_dry_runs_and_one_user_runs_leave_the_file_alone(monkeypatch, tmp_path):
    for extra in (["--dry-run"], ["--sub", "abc"], ["--user", "carol"]):
        status, path = run_cli(monkeypatch, tmp_path, *extra)
        assert status == 0 and not path.exists()


def test_an_unwritable_file_is_said_in_one_line_and_the_exit_status_is_the_syncs(monkeypatch, tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("s")
    monkeypatch.setattr(cli, "sync_all", lambda config, dry_run=False: Report())
    argv = ["--iam-url", "https://iam.example.org/", "--client-id", "c", "--client-secret-file", str(secret)]
    assert cli.main([*argv, "--metrics-file", str(tmp_path / "missing-dir" / "sync.prom")]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "cannot write the metrics file" in line
