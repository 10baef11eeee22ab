"""The account sync's metrics, as a Prometheus text file written at the end of each full run (`--metrics-file`).

The sync is a CronJob: a process that lives a few seconds every ten minutes, which no Prometheus can scrape, and
no Pushgateway runs here. So each run rewrites one file in the text exposition format (atomically: a reader sees
the previous run's file or this one's), for node-exporter's textfile collector or any server that serves the
file's directory. The file carries the last run (its time, duration, outcome, changes by kind, users refused) and
counters over all runs, continued from the file the previous run left (a lost file restarts them at zero, which
Prometheus treats as a counter reset). `dlaas_sync_last_success_timestamp_seconds` keeps the time of the last run
that did its work, so "no successful sync for 30 minutes" is one alert - it also fires when the job stops running.

Only full runs write it: dry runs change nothing, and the hub's one-user runs at first logins are counted by the
hub (dlaas_onboarding_runs_total).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from dlaas_sync.plan import TEXT
from dlaas_sync.sync import Report

#: Change actions (dlaas_sync.plan.TEXT) -> label values
KINDS = {
    action: action.replace("identity+", "identity_added").replace("identity-", "identity_removed") for action in TEXT
}
#: Report.exit_code -> outcome: 0 done, 3 done but some IAM users refused, 1 refused or failed
OUTCOMES = {0: "ok", 3: "users_refused", 1: "failed"}


def outcome(report: Report) -> str:
    return OUTCOMES.get(report.exit_code, "failed")


def previous(path: Path) -> dict[tuple[str, str], float]:
    """The samples of the file a previous run left, keyed by (sample name, label value); {} when there is none."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    found = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, next(iter(sample.labels.values()), ""))] = sample.value
    except ValueError:
        return {}  # not ours, or cut short: start over
    return found


class RunCollector:
    """The metrics of one run, given the previous file's samples."""

    def __init__(self, report: Report, *, started: float, finished: float, before: dict):
        self.report, self.started, self.finished, self.before = report, started, finished, before

    def collect(self):
        report, before = self.report, self.before
        result = outcome(report)
        done = result != "failed"
        changes = dict.fromkeys(KINDS.values(), 0)
        for change in report.changes:
            changes[KINDS.get(change.action, change.action)] += 1

        runs = CounterMetricFamily("dlaas_sync_runs", "Account sync runs, by outcome.", labels=["outcome"])
        for name in OUTCOMES.values():
            runs.add_metric([name], before.get(("dlaas_sync_runs_total", name), 0.0) + (name == result))
        total = CounterMetricFamily("dlaas_sync_changes", "Changes made in Rucio, by kind.", labels=["kind"])
        last = GaugeMetricFamily(
            "dlaas_sync_last_run_changes", "Changes made by the last run, by kind.", labels=["kind"]
        )
        for kind, count in changes.items():
            total.add_metric([kind], before.get(("dlaas_sync_changes_total", kind), 0.0) + count)
            last.add_metric([kind], count)
        yield runs
        yield total
        yield last
        yield GaugeMetricFamily(
            "dlaas_sync_last_run_timestamp_seconds", "When the last run ended (Unix time).", value=self.finished
        )
        yield GaugeMetricFamily(
            "dlaas_sync_last_run_duration_seconds", "How long the last run took.", value=self.finished - self.started
        )
        yield GaugeMetricFamily(
            "dlaas_sync_last_run_success",
            "1 when the last run did its work (some users may be refused), else 0.",
            value=float(done),
        )
        yield GaugeMetricFamily(
            "dlaas_sync_last_run_users_refused",
            "IAM users the last run refused (name collisions, names Rucio cannot take).",
            value=len(report.refused),
        )
        last_success = self.finished if done else before.get(("dlaas_sync_last_success_timestamp_seconds", ""), 0.0)
        yield GaugeMetricFamily(
            "dlaas_sync_last_success_timestamp_seconds",
            "When the last run that did its work ended (Unix time; 0: none known).",
            value=last_success,
        )


def write(path: str | Path, report: Report, *, started: float, finished: float) -> None:
    """Rewrite the metrics file at `path` for this run (atomically); OSError when it cannot be written."""
    path = Path(path)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(report, started=started, finished=finished, before=previous(path)))
    write_to_textfile(str(path), registry)
