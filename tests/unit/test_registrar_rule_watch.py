"""How the registration service follows the upload rules it made (dlaas_registrar.rule_watch) and times its Rucio
calls (dlaas_registrar.metrics): pure logic, with a stand-in for the Rucio client that answers rule states."""

import pytest
from rucio.common.exception import RuleNotFound

from dlaas_registrar import metrics
from dlaas_registrar.rule_watch import RuleWatch


class Rules:
    """Answers get_replication_rule from a dict of rule id -> state, and counts the questions."""

    def __init__(self, states):
        self.states = states
        self.asked = []

    def get_replication_rule(self, rule_id):
        self.asked.append(rule_id)
        if rule_id not in self.states:
            raise RuleNotFound(rule_id)
        return {"id": rule_id, "state": self.states[rule_id]}


def test_new_rules_count_as_replicating_until_rucio_says_otherwise():
    watch = RuleWatch()
    watch.follow(["r1", "r2", "r3"])
    assert watch.counts()["replicating"] == 3
    watch.check(Rules({"r1": "OK", "r2": "STUCK", "r3": "REPLICATING"}))
    assert {k: v for k, v in watch.counts().items() if v} == {"ok": 1, "stuck": 1, "replicating": 1}
    assert metrics.RULES.labels("stuck")._value.get() == 1


def test_a_rule_that_is_ok_is_not_asked_about_again_and_forgotten_later():
    watch = RuleWatch(keep_ok=100)
    watch.follow(["r1", "r2"], now=0)
    rucio = Rules({"r1": "OK", "r2": "REPLICATING"})
    watch.check(rucio, now=10)
    watch.check(rucio, now=20)
    assert rucio.asked == ["r1", "r2", "r2"]
    watch.check(rucio, now=200)
    assert "r1" not in watch.rules and "r2" in watch.rules


def test_a_rule_rucio_no_longer_knows_is_forgotten():
    watch = RuleWatch()
    watch.follow(["gone"])
    watch.check(Rules({}))
    assert watch.rules == {}


def test_the_number_of_followed_rules_is_bounded_dropping_finished_ones_first():
    watch = RuleWatch(max_rules=2)
    watch.follow(["a", "b"])
    watch.check(Rules({"a": "REPLICATING", "b": "OK"}))
    watch.follow(["c"])
    assert set(watch.rules) == {"a", "c"}


def test_rucio_down_during_a_look_is_counted_and_keeps_what_was_known():
    class Down:
        def get_replication_rule(self, rule_id):
            raise ConnectionError("refused")

    watch = RuleWatch()
    watch.follow(["r1"])
    before = metrics.RULE_CHECKS.labels("failed")._value.get()
    with pytest.raises(ConnectionError):
        watch.check(Down())
    assert metrics.RULE_CHECKS.labels("failed")._value.get() == before + 1
    assert watch.counts()["replicating"] == 1


def test_rucio_calls_are_timed_by_name_and_unknown_names_are_other():
    class Client:
        def get_rse(self, rse):
            return {"rse": rse}

        def whoami(self):
            return {}

    timed = metrics.TimedClient(Client())
    count = metrics.RUCIO_SECONDS.labels("get_rse")
    before = sum(b.get() for b in count._buckets)
    assert timed.get_rse("X") == {"rse": "X"}
    timed.whoami()
    assert sum(b.get() for b in count._buckets) == before + 1
    assert sum(b.get() for b in metrics.RUCIO_SECONDS.labels("other")._buckets) >= 1


@pytest.mark.parametrize(
    "status, outcome", [(400, "refused"), (401, "unauthorized"), (403, "unauthorized"), (502, "rucio_unavailable")]
)
def test_an_answer_status_names_the_upload_outcome(status, outcome):
    assert metrics.outcome_of(status) == outcome
