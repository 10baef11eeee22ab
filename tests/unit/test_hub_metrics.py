"""What the hub counts (hub_plugins.metrics), in a real JupyterHub (hub_app.InProcessHub) with its real login pages
against an IdP at the HTTP layer: logins and their outcomes, exchanges and their failures, refreshes, the token
API's answers, token agents' reports - and that /hub/metrics shows them to a token with read:metrics only."""

import sys

import pytest

from hub_plugins import agent_reports, metrics
from hub_plugins.onboarding import OnboardingWorker, onboard
from hub_plugins.token_exchange import GRANT_TYPE

from .ops_hub import callback, expire_soon, operator_hub, operator_idp  # noqa: F401 - fixtures hub, idp

value = metrics.value


class Counts:
    """Samples of the default registry read now, to compare with later: `delta(name, **labels)`."""

    def __init__(self, *samples):
        self.before = {(name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples}

    def delta(self, name, **labels):
        return value(name, **labels) - self.before.get((name, tuple(sorted(labels.items()))), 0.0)


def login_counts():
    return Counts(*(("dlaas_logins_total", {"outcome": o}) for o in metrics.LOGIN_OUTCOMES))


def test_a_login_counts_as_a_success_and_its_exchange_is_timed(hub):
    counts = login_counts()
    exchanges = value("dlaas_token_exchange_duration_seconds_count", outcome="ok")
    hub.run(hub.login("alice"))
    assert counts.delta("dlaas_logins_total", outcome="success") == 1
    assert sum(counts.delta("dlaas_logins_total", outcome=o) for o in metrics.LOGIN_OUTCOMES) == 1
    assert value("dlaas_token_exchange_duration_seconds_count", outcome="ok") == exchanges + 1


def test_a_member_of_no_allowed_group_counts_as_not_allowed(hub):
    counts = login_counts()
    assert callback(hub, "carol").status_code == 403
    assert counts.delta("dlaas_logins_total", outcome="not_allowed") == 1
    assert counts.delta("dlaas_logins_total", outcome="success") == 0


def test_iam_down_at_the_callback_counts_as_iam_unreachable(hub, idp):
    hub.run(hub.login("alice"))  # endpoints known
    counts = login_counts()
    idp.fail["authorization_code"] = [ConnectionRefusedError()]
    assert callback(hub, "alice").status_code == 503
    assert counts.delta("dlaas_logins_total", outcome="iam_unreachable") == 1


def test_a_spent_authorization_code_counts_as_refused_by_iam(hub, idp):
    hub.run(hub.login("alice"))
    counts = login_counts()
    idp.fail["authorization_code"] = [400]
    assert callback(hub, "alice").status_code == 400
    assert counts.delta("dlaas_logins_total", outcome="iam_refused_code") == 1


def test_a_refused_exchange_is_counted_by_target_and_error_class_and_listed_for_operators(hub, idp):
    counts = Counts(
        ("dlaas_logins_total", {"outcome": "exchange_failed"}),
        *(("dlaas_token_exchange_failures_total", {"target": t, "error": "refused"}) for t in ("rucio", "eos")),
    )
    idp.fail[GRANT_TYPE] = [400]
    assert callback(hub, "bob").status_code == 503
    assert counts.delta("dlaas_logins_total", outcome="exchange_failed") == 1
    failed = sum(
        counts.delta("dlaas_token_exchange_failures_total", target=t, error="refused") for t in ("rucio", "eos")
    )
    assert failed == 1
    last = metrics.recent_exchange_failures[-1]
    assert (last.user, last.error, last.context) == ("bob", "refused", "login")
    assert last.target in ("rucio", "eos")


def test_a_token_that_fails_verification_counts_as_unusable(hub, idp):
    counts = Counts(("dlaas_logins_total", {"outcome": "unusable_token"}))
    idp.claims = {"aud": "someone-else"}
    assert callback(hub, "alice").status_code == 503
    assert counts.delta("dlaas_logins_total", outcome="unusable_token") == 1
    assert metrics.recent_exchange_failures[-1].error == "invalid_token"


def test_token_api_answers_and_refusals_are_counted_by_reason(hub):
    outcomes = ("ok", "not_server_token", "stopped_server", "logged_out")
    counts = Counts(*(("dlaas_token_api_requests_total", {"outcome": o}) for o in outcomes))
    hub.run(hub.login("alice"))
    token = hub.run(hub.spawn("alice"))
    assert hub.run(hub.tokens(token)).status_code == 200
    personal = hub.user("alice").new_api_token(note="personal", scopes=["custom:dlaas-tokens!user"])
    assert hub.run(hub.tokens(personal)).status_code == 403
    hub.run(hub.authenticator.end_session(hub.user("alice")))
    assert hub.run(hub.tokens(token)).status_code == 401
    hub.run(hub.user("alice").stop(""))
    other = hub.run(hub.spawn("alice", "second"))
    hub.run(hub.user("alice").stop("second"))
    hub.run(hub.tokens(other))  # JupyterHub deleted the token with the server: an unknown token
    assert [counts.delta("dlaas_token_api_requests_total", outcome=o) for o in outcomes] == [1, 2, 0, 1]


def test_refreshes_are_timed_and_a_failing_iam_puts_the_user_in_back_off(hub, idp):
    counts = Counts(*(("dlaas_refreshes_total", {"outcome": o}) for o in metrics.REFRESH_OUTCOMES))
    hub.run(hub.login("alice"))
    token = hub.run(hub.spawn("alice"))
    expire_soon(hub)
    assert hub.run(hub.tokens(token)).status_code == 200
    assert counts.delta("dlaas_refreshes_total", outcome="ok") == 1
    expire_soon(hub, seconds=-1)
    idp.fail["refresh_token"] = [503]
    assert hub.run(hub.tokens(token)).status_code == 503
    assert hub.run(hub.tokens(token)).status_code == 503  # within the back-off: IAM is not asked
    assert counts.delta("dlaas_refreshes_total", outcome="failed_retryable") == 1
    assert counts.delta("dlaas_refreshes_total", outcome="backoff") == 1
    assert idp.count("refresh_token") == 2


#: A worker speaking dlaas-rucio-sync --serve's protocol, answering every user with exit status argv[1].
ANSWERS = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    print(json.dumps({'sub': line.strip(), 'exit': int(sys.argv[1]), 'line': 'x'}), flush=True)"
)


@pytest.mark.parametrize(
    "command, outcome",
    [
        ([sys.executable, "-c", ANSWERS, "0"], "ok"),
        ([sys.executable, "-c", ANSWERS, "1"], "failed"),
        ([sys.executable, "-c", "import time; time.sleep(30)"], "timeout"),
        (["/nonexistent/dlaas-rucio-sync"], "cannot_run"),
    ],
)
async def test_onboarding_runs_are_counted_by_outcome(command, outcome):
    import logging

    before = value("dlaas_onboarding_runs_total", outcome=outcome)
    worker = OnboardingWorker(command, logging.getLogger("test"))
    try:
        await onboard(worker, "sub-x", timeout=2.0)
    finally:
        await worker.close(timeout=2)
    assert value("dlaas_onboarding_runs_total", outcome=outcome) == before + 1


def report(hub, token, body):
    return hub.run(
        hub.http("post", "/hub/api/dlaas/agent-report", headers={"Authorization": f"token {token}"}, json=body)
    )


def test_a_servers_token_agent_report_is_added_to_the_hubs_counters(hub):
    agent_reports._last_report.clear()
    renewed = value("dlaas_token_agent_renewals_total", outcome="renewed")
    unreachable = value("dlaas_token_agent_renewals_total", outcome="hub_unreachable")
    hub.run(hub.login("alice"))
    token = hub.run(hub.spawn("alice"))
    answer = report(hub, token, {"renewals": {"renewed": 3, "hub_unreachable": 2}})
    assert answer.status_code == 204, answer.text
    assert value("dlaas_token_agent_renewals_total", outcome="renewed") == renewed + 3
    assert value("dlaas_token_agent_renewals_total", outcome="hub_unreachable") == unreachable + 2
    # Right again: too soon; the counts are not added.
    assert report(hub, token, {"renewals": {"renewed": 1}}).status_code == 429
    assert value("dlaas_token_agent_renewals_total", outcome="renewed") == renewed + 3


@pytest.mark.parametrize(
    "body, status",
    [
        ({"renewals": {"renewed": 10**6}}, 400),  # more than an agent can do between reports
        ({"renewals": {"alice@example.org": 1}}, 400),  # only known outcomes: no free text reaches a label
        ({"renewals": {"renewed": -5}}, 400),
        ({"renewals": {"renewed": 1}, "user": "bob"}, 400),
    ],
)
def test_a_report_with_unknown_outcomes_or_odd_counts_is_refused(hub, body, status):
    agent_reports._last_report.clear()
    hub.run(hub.login("alice"))
    token = hub.run(hub.spawn("alice"))
    before = value("dlaas_token_agent_reports_total", outcome="refused")
    assert report(hub, token, body).status_code == status
    assert value("dlaas_token_agent_reports_total", outcome="refused") == before + 1


def test_a_personal_token_cannot_report_for_a_server(hub):
    agent_reports._last_report.clear()
    hub.run(hub.login("alice"))
    hub.run(hub.spawn("alice"))
    personal = hub.user("alice").new_api_token(note="personal", scopes=["custom:dlaas-tokens!user"])
    renewed = value("dlaas_token_agent_renewals_total", outcome="renewed")
    assert report(hub, personal, {"renewals": {"renewed": 1}}).status_code == 403
    assert value("dlaas_token_agent_renewals_total", outcome="renewed") == renewed


def test_hub_metrics_show_the_dlaas_families_to_read_metrics_tokens_only(hub):
    hub.run(hub.login("alice"))
    alice = hub.user("alice").new_api_token(note="alice", scopes=["self"])
    assert hub.run(hub.http("get", "/hub/metrics", headers={"Authorization": f"token {alice}"})).status_code == 403
    hub.run(hub.login("olga"))  # an operator (escape/admins: role dlaas-operator, which holds read:metrics)
    olga = hub.user("olga").new_api_token(note="scrape", scopes=["read:metrics"])
    answer = hub.run(hub.http("get", "/hub/metrics", headers={"Authorization": f"token {olga}"}))
    assert answer.status_code == 200
    for family in (
        "dlaas_logins_total",
        "dlaas_token_exchange_duration_seconds_bucket",
        "dlaas_token_exchange_failures_total",
        "dlaas_refreshes_total",
        "dlaas_refresh_duration_seconds_bucket",
        "dlaas_token_api_requests_total",
        "dlaas_onboarding_runs_total",
        "dlaas_token_agent_renewals_total",
    ):
        assert family in answer.text, family
    assert "alice" not in answer.text and "sub-alice" not in answer.text  # no user in a label
