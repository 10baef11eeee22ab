"""The account sync's metrics file, written by the real command (`dlaas-rucio-sync --metrics-file`, as the CronJob
would run it) against the session's dev IAM and Rucio: a good run records its outcome and time; a refused run (IAM
lists nobody in the group) is recorded as failed and keeps the time of the last good one, which is what the
"no successful sync for 30 minutes" alert reads."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from devstack.account_sync import AccountSync


def read(path) -> dict:
    return {
        (s.name, next(iter(s.labels.values()), "")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_a_good_run_then_a_refused_one_leave_the_last_success_and_both_outcomes(settings, iam, rucio, tmp_path):
    path = tmp_path / "dlaas-sync.prom"
    good = AccountSync(settings, iam, rucio).run_once("--metrics-file", str(path))
    assert good.returncode == 0, good.stdout + good.stderr
    first = read(path)
    assert first[("dlaas_sync_runs_total", "ok")] == 1 and first[("dlaas_sync_last_run_success", "")] == 1
    assert first[("dlaas_sync_last_success_timestamp_seconds", "")] > 0

    refused = AccountSync(settings, iam, rucio, groups=("escape",)).run_once("--metrics-file", str(path))
    assert refused.returncode == 1  # IAM lists no active member of that group: nothing changes
    second = read(path)
    assert second[("dlaas_sync_runs_total", "ok")] == 1 and second[("dlaas_sync_runs_total", "failed")] == 1
    assert second[("dlaas_sync_last_run_success", "")] == 0
    assert (
        second[("dlaas_sync_last_success_timestamp_seconds", "")]
        == first[("dlaas_sync_last_success_timestamp_seconds", "")]
    )
    assert sum(v for (name, _), v in second.items() if name == "dlaas_sync_last_run_changes") == 0
