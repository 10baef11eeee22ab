"""The operators' status page in a real headless Chromium against the local data lake: the IAM operator `admin` logs
in and sees alice's running server, how long her Data Lake tokens last, the upload she just made among the rules
in flight and the XCache's hit ratio after a file was read twice through it; alice gets 403. A screenshot is saved
under test-artifacts/ (the CI keeps it)."""

import re
import subprocess

import pytest
import requests
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from devstack.ports import wait_for
from devstack.rucio_seed import REPLICA_RSE
from tests.helpers import upload_as

from .browser import ARTIFACTS, Network, log_in

pytestmark = pytest.mark.e2e


def logged_in(browser, hub, username, password, network=None):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    if network is not None:
        network.watch(page)
    log_in(page, hub.url, username, password)
    page.wait_for_url(lambda url: url.startswith(hub.url))  # back from IAM: the spawn page, or a running server
    return page


def upload(alice_env, tmp_path) -> None:
    done, _ = upload_as(alice_env, tmp_path, {"result.txt": b"histogram\n" * 500}, "status")
    assert done.returncode == 0, done.stderr


def cache_hits(metrics_url: str) -> float:
    """Reads the XCache served from its disk, as its exporter counts them."""
    for family in text_string_to_metric_families(requests.get(metrics_url, timeout=10).text):
        for sample in family.samples:
            if sample.name == "dlaas_xcache_accesses_total" and sample.labels.get("served_from") == "cache":
                return sample.value
    return 0.0


def read_twice_through_the_cache(cache_layer, tmp_path) -> None:
    xr = cache_layer.xrootd
    demo = min((cache_layer.settings.state_dir / "rses" / REPLICA_RSE).rglob("*.root"))
    path = demo.relative_to(cache_layer.settings.state_dir / "rses").as_posix()
    url = f"{xr.cache_url}//root://127.0.0.1:{xr.origin_port}//{path}"
    for i in range(2):
        subprocess.run(["xrdcp", "--nopbar", "--force", url, str(tmp_path / f"read-{i}")], check=True, timeout=60)
    # the cache reports every 10 s (dlaas_xcache.exporter.cache_directives)
    wait_for(lambda: cache_hits(xr.metrics_url) >= 1, timeout=90, what="the cache's report of the second read")


def test_the_operator_sees_alices_server_her_token_freshness_the_upload_rules_and_the_cache(
    browser, hub, alice_env, cache_layer, tmp_path
):
    upload(alice_env, tmp_path)
    read_twice_through_the_cache(cache_layer, tmp_path)
    network = Network()
    page = logged_in(browser, hub, "admin", "admin-pass", network)
    network.failed.clear()  # the login's own pages are not this test's
    answer = page.goto(f"{hub.url}/hub/dlaas/status")
    assert answer.status == 200
    expect(page.get_by_role("heading", name="Data Lake service status")).to_be_visible()
    alice = page.locator('#token-freshness tr[data-user="alice"]')
    expect(alice).to_contain_text("(default)")  # her running server
    expect(alice).to_contain_text(re.compile(r"\d+ (s|min|h)"))  # time left of her tokens, never a token
    expect(page.locator("#rules-in-flight")).to_have_text(re.compile(r"^\s*\d+\s*$"))  # read from the registrar
    assert int(page.locator("#users-with-servers").inner_text()) >= 1
    expect(page.locator("#cache-hit-ratio")).to_have_text(re.compile(r"^\s*\d+ %\s*$"))  # from the exporter
    page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
    assert "eyJ" not in page.content()  # no JWT on the page
    assert network.problems() == []  # every request of the page answered, none left loopback


def test_alice_gets_403_on_the_status_page(browser, hub, alice_env):
    page = logged_in(browser, hub, "alice", "alice-pass")
    answer = page.goto(f"{hub.url}/hub/dlaas/status")
    assert answer.status == 403
    page.screenshot(path=str(ARTIFACTS / "status-page-403-alice.png"))
