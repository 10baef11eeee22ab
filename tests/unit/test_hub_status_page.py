"""The operators' status page (/hub/dlaas/status, hub_plugins.admin_page) in a real JupyterHub (InProcessHub): an
operator sees users, token freshness (times only), exchange failures, upload rules and the cache hit ratio; a user
gets 403; no token ever reaches the page."""

import re

import pytest
from prometheus_client import start_http_server

from dlaas_xcache.exporter import CacheMetrics
from hub_plugins.admin_page import StatusPageHandler, cache_summary, samples, time_left
from hub_plugins.token_exchange import GRANT_TYPE

from .ops_hub import callback, expire_soon, operator_hub, operator_idp  # noqa: F401 - fixtures hub, idp


def page_settings(hub):
    [page] = [spec[2]["page"] for spec in hub.app.handlers if len(spec) > 2 and spec[1] is StatusPageHandler]
    return page


def status(hub, browser):
    return hub.run(hub.http("get", "/hub/dlaas/status", browser))


def test_an_operator_sees_users_with_servers_and_how_long_their_tokens_last_but_no_token(hub):
    hub.run(hub.login("alice"))
    hub.run(hub.spawn("alice"))
    expire_soon(hub, "alice", seconds=600)
    olga = hub.run(hub.login("olga"))
    answer = status(hub, olga)
    assert answer.status_code == 200, answer.text
    assert "Data Lake service status" in answer.text
    assert 'class="navbar' in answer.text and "jupyterhub-logo" in answer.text  # the hub's page, in its look
    row = re.search(r'<tr data-user="alice">(.*?)</tr>', answer.text, re.S).group(1)
    assert "(default)" in row  # her running server
    assert re.search(r"(9|10) min", row)  # rucio and eos tokens: about ten minutes left
    state = hub.run(hub.user("alice").get_auth_state())
    for secret in [
        state["access_token"],
        state["refresh_token"],
        *(t["access_token"] for t in state["exchanged"].values()),
    ]:
        assert secret not in answer.text
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_user_who_is_not_an_operator_gets_403(hub):
    alice = hub.run(hub.login("alice"))
    assert status(hub, alice).status_code == 403


def test_an_exchange_failure_appears_with_user_target_and_error_class(hub, idp):
    idp.fail[GRANT_TYPE] = [400]
    assert callback(hub, "bob").status_code == 503
    olga = hub.run(hub.login("olga"))
    table = re.search(r'<table[^>]*id="exchange-failures".*?</table>', status(hub, olga).text, re.S).group(0)
    assert "bob" in table and "refused" in table and "login" in table


def test_rules_in_flight_come_from_the_registrars_metrics_read_with_a_read_metrics_token(hub):
    from dlaas_registrar.metrics import RULES

    # The registrar's metrics served by a server that checks read:metrics: the hub's own /hub/metrics, which
    # serves the same default registry this test process put the registrar's families in.
    page_settings(hub).registrar_metrics_url = f"{hub.url}/hub/metrics"
    RULES.labels("replicating").set(2)
    RULES.labels("stuck").set(1)
    try:
        olga = hub.run(hub.login("olga"))
        text = status(hub, olga).text
    finally:
        RULES.labels("replicating").set(0)
        RULES.labels("stuck").set(0)
    assert re.search(r'id="rules-in-flight">\s*3\s*<', text), text
    assert "stuck 1" in text


def test_the_cache_hit_ratio_comes_from_the_exporter(hub):
    exporter = CacheMetrics()
    record = b'{"event":"file_close","b_hit":%d,"b_miss":%d,"b_bypass":0,"remotes":%s}'
    exporter.feed(record % (0, 1000, b'["127.0.0.1:1094"]'))
    exporter.feed(record % (3000, 0, b"[]"))
    server, _ = start_http_server(0, "127.0.0.1", registry=exporter.registry)
    page_settings(hub).cache_metrics_url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        olga = hub.run(hub.login("olga"))
        text = status(hub, olga).text
    finally:
        server.shutdown()
    assert re.search(r'id="cache-hit-ratio">\s*50 %', text), text  # one read of two never reached an origin
    assert "75 % of the bytes read were in the cache" in text


def test_an_unreachable_exporter_is_said_not_hidden(hub):
    page_settings(hub).cache_metrics_url = "http://127.0.0.1:9/metrics"
    olga = hub.run(hub.login("olga"))
    assert re.search(r'id="cache-hit-ratio">[^<]*unreachable', status(hub, olga).text)


@pytest.mark.parametrize(
    "seconds, text", [(None, "-"), (90, "90 s"), (600, "10 min"), (-300, "expired 5 min ago"), (9000, "2.5 h")]
)
def test_time_left_reads_like_people_write(seconds, text):
    assert time_left(seconds) == text


def test_a_cache_that_served_nothing_has_no_ratio():
    assert cache_summary(samples(""))["byte_hit_ratio"] is None
