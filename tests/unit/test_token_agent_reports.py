"""The token agent counts each round's outcome and reports the counts to the hub (singleuser.agent_metrics), against
a real JupyterHub in this process (InProcessHub): the hub's token API and report endpoint answer the agent."""

import pytest

from hub_plugins import agent_reports, metrics
from singleuser.agent_metrics import MAX_COUNT, RenewalCounts
from singleuser.token_agent import TokenAgent

from .ops_hub import operator_hub, operator_idp  # noqa: F401 - fixtures hub, idp


def agent_of(hub, token, tmp_path, **kwargs):
    return TokenAgent(
        api_url=f"{hub.url}/hub/api/dlaas/tokens",
        api_token=token,
        token_dir=str(tmp_path),
        files={"rucio": "rucio_token", "eos": "eos_token"},
        **kwargs,
    )


def test_a_renewal_reaches_the_hubs_metrics_through_the_agents_report(hub, tmp_path):
    agent_reports._last_report.clear()
    hub.run(hub.login("alice"))
    agent = agent_of(hub, hub.run(hub.spawn("alice")), tmp_path)
    before = metrics.value("dlaas_token_agent_renewals_total", outcome="renewed")
    hub.run(agent.step())
    assert (tmp_path / "rucio_token").exists()
    assert hub.run(agent.report()) == "sent"
    assert metrics.value("dlaas_token_agent_renewals_total", outcome="renewed") == before + 1
    assert not agent.counts.pending
    hub.run(agent.step())
    assert hub.run(agent.report()) is None  # within report_interval: the count waits
    assert agent.counts.pending == {"renewed": 1}


def test_the_report_url_is_the_token_apis_sibling(tmp_path):
    agent = TokenAgent(api_url="http://hub:8081/hub/api/dlaas/tokens", api_token="t", token_dir=str(tmp_path))
    assert agent.report_url == "http://hub:8081/hub/api/dlaas/agent-report"
    assert TokenAgent(api_url="http://hub/elsewhere", api_token="t", token_dir=str(tmp_path)).report_url == ""


def test_an_unreachable_hub_is_counted_and_the_counts_wait_for_the_next_report(hub, tmp_path):
    agent = TokenAgent(
        api_url="http://127.0.0.1:9/hub/api/dlaas/tokens",
        api_token="t",
        token_dir=str(tmp_path),
        request_timeout=2,
        report_interval=0,
    )
    hub.run(agent.step())
    assert agent.counts.pending == {"hub_unreachable": 1}
    assert hub.run(agent.report()) == "retry"
    assert agent.counts.pending == {"hub_unreachable": 1}


def test_a_refused_session_is_counted_as_refused(hub, tmp_path):
    agent_reports._last_report.clear()
    hub.run(hub.login("alice"))
    agent = agent_of(hub, hub.run(hub.spawn("alice")), tmp_path, report_interval=0)
    hub.run(hub.authenticator.end_session(hub.user("alice")))  # logged out: the token API answers 401
    before = metrics.value("dlaas_token_agent_renewals_total", outcome="refused")
    hub.run(agent.step())
    assert agent.counts.pending == {"refused": 1}
    assert hub.run(agent.report()) == "sent"  # the server's own token still reports after a logout
    assert metrics.value("dlaas_token_agent_renewals_total", outcome="refused") == before + 1


def test_counts_a_hub_will_not_take_are_dropped(hub, tmp_path):
    hub.run(hub.login("alice"))
    agent = agent_of(hub, hub.run(hub.spawn("alice")), tmp_path, report_url=f"{hub.url}/hub/api/nothing-here")
    hub.run(agent.step())
    assert hub.run(agent.report()) == "refused"
    assert not agent.counts.pending


def test_a_report_holds_at_most_max_count_per_outcome_and_keeps_the_rest():
    counts = RenewalCounts()
    counts.count("renewed", MAX_COUNT + 5)
    assert counts.take() == {"renewed": MAX_COUNT}
    assert counts.pending == {"renewed": 5}
    with pytest.raises(ValueError):
        counts.count("alice@example.org")
