"""The local Prometheus (devstack.prometheus) against the real local data lake: after a small login storm, an upload,
a file read twice through the XCache and a run of the account sync, Prometheus itself (its HTTP API) has non-zero
series of every family our code exports - the hub's, the registration service's, the XCache exporter's and the
account sync's - scraped the way the chart scrapes them: the hub and the registration service with the read:metrics
token of a hub service that can do nothing else, the exporter beside the cache without one, the sync's file through
node-exporter's textfile collector.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.account_sync import AccountSync
from devstack.hub_client import hub_login
from devstack.ports import wait_for
from devstack.prometheus import sync_metrics_dir, token_file
from devstack.rucio_seed import REPLICA_RSE, rse_dir
from tests.helpers import upload_as


@pytest.fixture(scope="module")
def prometheus(stack, hub, registrar, cache_layer):
    """Prometheus started after the parts it scrapes (as `make up` starts it last)."""
    return stack.start("prometheus").prometheus


def query(prometheus, expr: str) -> list[dict]:
    answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["result"]


def value(prometheus, expr: str) -> float:
    """The single value of `expr` (a sum), 0 when Prometheus has no such series."""
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else 0.0


def xrdcp(url: str, dest: Path) -> None:
    done = subprocess.run(
        ["xrdcp", "--force", "--nopbar", url, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XRD_REQUESTTIMEOUT": "20", "XRD_CONNECTIONRETRY": "1"},
    )
    assert done.returncode == 0, done.stderr


def exporter_samples(url: str) -> dict[str, float]:
    text = requests.get(url, timeout=10).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name + "".join(f"{{{v}}}" for v in s.labels.values())] = s.value
    return found


@pytest.fixture(scope="module")
def activity(prometheus, hub, alice_env, cache_layer, settings, iam, rucio, tmp_path_factory):
    """A login storm, an upload, a file read twice through the cache and one run of the periodic account sync."""
    tmp = tmp_path_factory.mktemp("monitoring")
    for user in ("alice", "admin", "alice", "admin", "alice"):
        _, answer = hub_login(hub, user, f"{user}-pass")
        assert answer.status_code == 302, answer.text

    upload, _ = upload_as(alice_env, tmp, {"events.txt": b"events\n" * 1000}, "mon")
    assert upload.returncode == 0, upload.stderr

    xr = cache_layer.xrootd
    name = f"monitoring/{uuid.uuid4().hex[:8]}.bin"
    origin_file = rse_dir(settings, REPLICA_RSE) / name
    origin_file.parent.mkdir(parents=True, exist_ok=True)
    origin_file.write_bytes(os.urandom(2_000_000))
    cached = f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.1:{xr.origin_port}//{REPLICA_RSE}/{name}"
    xrdcp(cached, tmp / "first")
    xrdcp(cached, tmp / "second")

    # The account sync as `make up` runs it (the stack's `sync` part): its first run writes the metrics file.
    metrics_file = sync_metrics_dir(settings) / "dlaas-sync.prom"
    sync = AccountSync(settings, iam, rucio, every=3600, metrics_file=metrics_file).start()
    try:
        wait_for(metrics_file.exists, timeout=120, what="the account sync's metrics file")
    finally:
        sync.stop()
    return cached


def test_the_cache_exporter_on_the_local_xcache_counts_a_second_read_as_a_hit(activity, cache_layer):
    # The cache flushes its reports every 10 s (dlaas_xcache.exporter.cache_directives).
    found = wait_for(
        lambda: (
            (m := exporter_samples(cache_layer.xrootd.metrics_url))["dlaas_xcache_accesses_total{cache}"] >= 1 and m
        ),
        timeout=90,
        what="the cache's g-stream report of the second read",
    )
    assert found["dlaas_xcache_accesses_total{origin}"] >= 1
    assert found["dlaas_xcache_bytes_total{hit}"] >= 2_000_000
    assert found["dlaas_xcache_reports_total{summary}"] >= 1
    assert found["dlaas_xcache_client_bytes_total{out}"] >= 2 * 2_000_000


@pytest.mark.parametrize(
    "family, expr",
    [
        ("hub: logins", 'sum(dlaas_logins_total{outcome="success"})'),
        ("hub: token exchanges", 'sum(dlaas_token_exchange_duration_seconds_count{outcome="ok"})'),
        ("hub: token API", 'sum(dlaas_token_api_requests_total{outcome="ok"})'),
        ("hub: token agents", 'sum(dlaas_token_agent_renewals_total{outcome="renewed"})'),
        ("hub: JupyterHub's own", "sum(jupyterhub_running_servers)"),
        ("registrar: uploads", 'sum(dlaas_registrar_uploads_total{outcome="registered"})'),
        ("registrar: files", "sum(dlaas_registrar_files_registered_total)"),
        ("registrar: Rucio calls", "sum(dlaas_registrar_rucio_call_duration_seconds_count)"),
        ("xcache: hits", 'sum(dlaas_xcache_accesses_total{served_from="cache"})'),
        ("xcache: hit bytes", 'sum(dlaas_xcache_bytes_total{source="hit"})'),
        ("xcache: client bytes", 'sum(dlaas_xcache_client_bytes_total{direction="out"})'),
        ("account sync: last run", "sum(dlaas_sync_last_run_success)"),
        ("account sync: runs", 'sum(dlaas_sync_runs_total{outcome="ok"})'),
    ],
)
def test_prometheus_has_non_zero_series_of_every_family(activity, prometheus, family, expr):
    wait_for(lambda: value(prometheus, expr) > 0, timeout=120, what=f"{family} ({expr}) in Prometheus")


def test_prometheus_scrapes_every_part_with_the_right_credentials(activity, prometheus):
    def up():
        return {r["metric"]["job"]: r["value"][1] for r in query(prometheus, "up")}

    jobs = wait_for(lambda: (u := up()) and set(u) >= {"hub", "registrar", "xcache", "account-sync"} and u, timeout=60)
    assert jobs == {"hub": "1", "registrar": "1", "xcache": "1", "account-sync": "1"}
    assert query(prometheus, "dlaas_onboarding_runs_total")  # present at zero until a first login runs it
    # No label names a user: the metrics are counts by outcome.
    assert "alice" not in str(query(prometheus, '{__name__=~"dlaas_.+"}'))


def test_the_scrape_token_reads_metrics_and_nothing_else(activity, hub, settings):
    token = token_file(settings).read_text().strip()
    headers = {"Authorization": f"bearer {token}"}
    assert requests.get(f"{hub.url}/hub/metrics", headers=headers, timeout=30).status_code == 200
    assert requests.get(f"{hub.url}/hub/api/users", headers=headers, timeout=30).status_code == 403
    assert requests.get(f"{hub.url}/hub/api/users/alice", headers=headers, timeout=30).status_code in (403, 404)


def test_prometheus_listens_on_loopback_only(prometheus):
    port = f"{prometheus.port:04X}"
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        + Path("/proc/net/tcp6").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and line.split()[1].endswith(f":{port}")
    ]
    assert listening == [f"0100007F:{port}"]
