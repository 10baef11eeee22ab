"""The service's metrics in the real local data lake: after alice's login, her server's token API calls and an upload,
the hub's /hub/metrics and the registration service's metrics have non-zero series for their families; reading them
takes a token with read:metrics (an operator's here, as the Prometheus service's would be), and users get 403."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.hub_client import hub_login, personal_token
from devstack.ports import wait_for
from tests.helpers import upload_as


def parse(text: str) -> dict[str, float]:
    """Samples by `name{label=value,...}` (labels sorted), and every sample name summed under `name`."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
            found[s.name] = found.get(s.name, 0.0) + s.value
    return found


@pytest.fixture(scope="module")
def scrape_token(hub):
    """A read:metrics token of the IAM operator `admin` (role dlaas-operator), as made on /hub/token."""
    browser, answer = hub_login(hub, "admin", "admin-pass")
    assert answer.status_code == 302, answer.text
    made = personal_token(hub, browser, "admin", scopes=["read:metrics"], note="prometheus", expires_in=3600)
    assert made.status_code == 201, made.text
    return made.json()["token"]


def scrape(url: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=30)


def test_after_a_login_and_token_api_calls_the_hub_metrics_show_every_hub_family(hub, alice_env, scrape_token):
    def metrics():
        answer = scrape(f"{hub.url}/hub/metrics", scrape_token)
        assert answer.status_code == 200, answer.text
        return parse(answer.text)

    # Alice's server's token agent reports its first renewal right after it (singleuser.agent_metrics).
    found = wait_for(
        lambda: (m := metrics())["dlaas_token_agent_renewals_total{outcome=renewed}"] >= 1 and m,
        timeout=60,
        what="the token agent's report",
    )
    assert found["dlaas_logins_total{outcome=success}"] >= 1
    assert found["dlaas_token_exchange_duration_seconds_count{outcome=ok}"] >= 1
    assert found["dlaas_token_api_requests_total{outcome=ok}"] >= 1
    for family in (
        "dlaas_token_exchange_failures_total",
        "dlaas_refreshes_total",
        "dlaas_refresh_duration_seconds_count",
        "dlaas_onboarding_runs_total",
    ):
        assert family in found, family  # present (at zero until something happens): dashboards see them
    assert "alice" not in str(found)


def test_a_user_cannot_read_the_metrics(hub, alice_env):
    browser, _ = hub_login(hub, "alice", "alice-pass")
    assert browser.get(f"{hub.url}/hub/metrics", timeout=30).status_code == 403
    assert scrape(f"{hub.url}/hub/metrics", alice_env["JUPYTERHUB_API_TOKEN"]).status_code == 403


def test_an_upload_shows_in_the_registration_services_metrics(hub, alice_env, scrape_token, tmp_path):
    url = f"{hub.url}/services/dlaas-registrar/metrics"
    before = parse(scrape(url, scrape_token).text)
    files = {f"part-{i}.txt": b"events\n" * 1000 for i in range(3)}
    done, _ = upload_as(alice_env, tmp_path, files, "metrics")
    assert done.returncode == 0, done.stderr
    after = parse(scrape(url, scrape_token).text)

    def grew(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert grew("dlaas_registrar_uploads_total{outcome=registered}") == 1
    assert grew("dlaas_registrar_files_registered_total") == 3
    assert grew("dlaas_registrar_bytes_registered_total") == 3 * 7000
    assert grew("dlaas_registrar_rucio_call_duration_seconds_count{call=add_dataset}") == 1
    assert after["dlaas_registrar_rules"] >= 1  # its upload rule, followed until Rucio says it is OK


def test_the_registration_services_metrics_need_read_metrics(hub, alice_env):
    url = f"{hub.url}/services/dlaas-registrar/metrics"
    assert scrape(url, None).status_code == 401
    # Alice's server's token may call the service (uploads), not read its metrics.
    assert scrape(url, alice_env["JUPYTERHUB_API_TOKEN"]).status_code == 403
