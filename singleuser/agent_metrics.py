"""What the token agent counts about its renewals, and its report of the counts to the hub.

The agent counts each round's outcome (OUTCOMES) and, at most every `report_interval`, posts the counts not yet
reported to the hub's /hub/api/dlaas/agent-report with this server's own API token; the hub adds them to
`dlaas_token_agent_renewals_total` on /hub/metrics (hub_plugins.agent_reports says why the counts are pushed to the
hub rather than scraped from every server). A report holds outcome names and numbers only - never a token, a path
or a user name. When the hub cannot take a report now, the counts wait for the next one; counts the hub refuses
(an older hub without the endpoint, a stopped server) are dropped, and the agent works as before.

Standard library and tornado only: the hub imports OUTCOMES from here.
"""

from __future__ import annotations

import json
from collections import Counter

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: One per round of the agent; the hub accepts these and no other.
OUTCOMES = (
    "renewed",  # token files written with fresh tokens
    "refused",  # the hub refused (401/403: the user logged out, her IAM session ended)
    "hub_unavailable",  # the hub answered 503: IAM could not renew the tokens right now
    "hub_error",  # another error answer, or an answer that is not tokens
    "hub_unreachable",  # no answer from the hub (connection error, timeout)
    "write_failed",  # the token files could not be written
    "expired",  # a token file removed because its token expired before a renewal
)
MAX_COUNT = 1000  # per outcome and report (the hub refuses more); the rest waits for the next report


class RenewalCounts:
    """Counts not yet reported to the hub."""

    def __init__(self):
        self.pending: Counter[str] = Counter()

    def count(self, outcome: str, n: int = 1) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown token agent outcome {outcome!r}")
        self.pending[outcome] += n

    def take(self) -> dict[str, int]:
        """Up to MAX_COUNT of each outcome, removed from the pending counts."""
        taken = {outcome: min(n, MAX_COUNT) for outcome, n in self.pending.items() if n}
        self.pending.subtract(taken)
        self.pending = +self.pending  # drop zeros
        return taken

    def give_back(self, counts: dict[str, int]) -> None:
        self.pending.update(counts)


async def send(url: str, api_token: str, counts: dict[str, int], *, timeout: float) -> str:
    """Post `counts` to the hub's report endpoint: "sent", "retry" (not taken now) or "refused" (drop them)."""
    request = HTTPRequest(
        url,
        method="POST",
        body=json.dumps({"renewals": counts}),
        headers={"Authorization": f"token {api_token}", "Content-Type": "application/json"},
        request_timeout=timeout,
        connect_timeout=timeout,
    )
    try:
        await AsyncHTTPClient().fetch(request)
    except HTTPClientError as e:
        return "retry" if e.code in (429, 599) or e.code >= 500 else "refused"
    except (OSError, TimeoutError):
        return "retry"
    return "sent"
