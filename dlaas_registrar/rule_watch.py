"""Follow the upload rules this service made, cheaply, so that its metrics say how many are OK, REPLICATING or STUCK.

Each registration hands over the id of its rule to the destination RSE. Every `interval` seconds one look asks Rucio
for the state of the rules not yet OK (one small request per rule, at most `max_rules` followed); a rule that is OK
is not asked about again and is forgotten `keep_ok` seconds later, as is a rule Rucio no longer knows (expired or
deleted). So the cost follows the uploads in flight, not the history. The counts are this process's: after a
restart the service follows the rules it makes from then on (the rules themselves live in Rucio, `rucio rule list
--account <user>` shows them all).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from dlaas_registrar.metrics import RULE_CHECKS, RULE_STATES, RULES

#: Rucio's rule states -> the metrics' label values
STATE_LABELS = {"OK": "ok", "REPLICATING": "replicating", "STUCK": "stuck", "SUSPENDED": "suspended"}


@dataclass
class Followed:
    state: str  # a label of RULE_STATES
    since: float  # time.monotonic() of the last state change


class RuleWatch:
    def __init__(self, *, max_rules: int = 1000, keep_ok: float = 3600.0):
        self.max_rules = max_rules
        self.keep_ok = keep_ok
        self.rules: dict[str, Followed] = {}  # rule id -> what was last seen, oldest first
        self._lock = threading.Lock()

    def follow(self, rule_ids, now: float | None = None) -> None:
        """Start following new rules (REPLICATING until looked at); the oldest go when there are too many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for rule_id in rule_ids:
                self.rules.setdefault(rule_id, Followed("replicating", now))
            while len(self.rules) > self.max_rules:
                done = next((r for r, f in self.rules.items() if f.state == "ok"), None)
                del self.rules[done if done is not None else next(iter(self.rules))]
            self._publish()

    def check(self, client, now: float | None = None) -> None:
        """One look at the rules not yet OK with a rucio-clients `client`; forgets what is done or gone."""
        from rucio.common.exception import RuleNotFound

        now = time.monotonic() if now is None else now
        with self._lock:
            pending = [r for r, f in self.rules.items() if f.state != "ok"]
        seen: dict[str, str | None] = {}
        try:
            for rule_id in pending:
                try:
                    state = str(client.get_replication_rule(rule_id).get("state", ""))
                except RuleNotFound:
                    state = None
                seen[rule_id] = None if state is None else STATE_LABELS.get(state.upper(), "other")
        except Exception:
            RULE_CHECKS.labels("failed").inc()
            raise
        finally:
            with self._lock:
                for rule_id, label in seen.items():
                    if label is None:
                        self.rules.pop(rule_id, None)
                    elif rule_id in self.rules and self.rules[rule_id].state != label:
                        self.rules[rule_id] = Followed(label, now)
                for rule_id in [r for r, f in self.rules.items() if f.state == "ok" and now - f.since > self.keep_ok]:
                    del self.rules[rule_id]
                self._publish()
        RULE_CHECKS.labels("ok").inc()

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(RULE_STATES, 0)
        for followed in self.rules.values():
            found[followed.state] += 1
        return found

    def _publish(self) -> None:
        for state, count in self.counts().items():
            RULES.labels(state).set(count)
