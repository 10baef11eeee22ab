"""POST /hub/api/dlaas/agent-report: a running server's token agent tells the hub how its renewals went.

The token agent (singleuser.token_agent) is the only one that sees some failures: the hub unreachable from the
server, token files it could not write, files removed because their token expired before a renewal. It counts
them by outcome (singleuser.agent_metrics) and reports the counts here, where they are added to the hub's
`dlaas_token_agent_renewals_total` on /hub/metrics. Pushing to the hub, rather than Prometheus scraping every user
server, because:

- user servers come and go; scraping them needs a discovery of user pods and a NetworkPolicy hole into every one;
- through the hub's proxy, a scraper would need `access:servers` for every user - the scope that opens their
  servers, and with them their token files;
- the hub already authenticates each server's own token (the token API's rule: server_tokens.py), so a report
  costs one small request after a renewal and no new credential.

Only a running server's own API token is accepted (the same check as the token API). A report is counts and
nothing else: outcomes from a fixed list, whole numbers up to MAX_COUNT, at most one report per server every
MIN_INTERVAL seconds (429 otherwise). A user controls her server, so the counts are her server's word: a health
signal for operators, not an audit record.
"""

from __future__ import annotations

import json
import time

from jupyterhub.user import User
from tornado import web

from hub_plugins import metrics
from hub_plugins.hub_roles import SCOPE
from hub_plugins.token_api import TokenAPIHandler, may_read

MAX_BODY = 4096
MAX_COUNT = 1000  # per outcome and report: an agent renews at most about once a second
MIN_INTERVAL = 5.0  # seconds between two accepted reports of one server
_last_report: dict[tuple[str, str], float] = {}  # (user, server) -> time.monotonic() of its last accepted report


def parse_report(body: bytes) -> dict[str, int]:
    """The counts of a report body `{"renewals": {outcome: count}}`; ValueError with what is wrong."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        raise ValueError("the report is not JSON") from None
    renewals = data.get("renewals") if isinstance(data, dict) else None
    if not isinstance(renewals, dict) or set(data) != {"renewals"}:
        raise ValueError('a report is {"renewals": {outcome: count}}')
    unknown = set(renewals) - set(metrics.AGENT_OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcomes {sorted(unknown)[:5]}; known: {', '.join(metrics.AGENT_OUTCOMES)}")
    for count in renewals.values():
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise ValueError(f"counts are whole numbers from 0 to {MAX_COUNT}")
    return renewals


def _may_report(key: tuple[str, str], now: float) -> bool:
    last = _last_report.get(key)
    if last is not None and now - last < MIN_INTERVAL:
        return False
    if len(_last_report) > 10000:  # forget servers that have not reported for a while
        for old in [k for k, t in _last_report.items() if now - t >= MIN_INTERVAL]:
            del _last_report[old]
    _last_report[key] = now
    return True


class AgentReportHandler(TokenAPIHandler):
    SUPPORTED_METHODS = ("POST",)

    async def post(self):
        try:
            counts = await self.accept()
        except web.HTTPError:
            metrics.AGENT_REPORTS.labels("refused").inc()
            raise
        for outcome, count in counts.items():
            metrics.AGENT_RENEWALS.labels(outcome).inc(count)
        metrics.AGENT_REPORTS.labels("accepted").inc()
        self.set_status(204)

    async def accept(self) -> dict[str, int]:
        user = self.current_user
        if user is None or not getattr(self, "_token_authenticated", False) or not isinstance(user, User):
            raise web.HTTPError(403, "Only a running server's own API token may report")
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, "The report is too large")
        try:
            counts = parse_report(self.request.body)
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        server_name = await self._server_of_token(user, await user.get_auth_state() or {})
        if not may_read(self.parsed_scopes, user.name, server_name, self.db):
            raise web.HTTPError(403, f"This token lacks the {SCOPE} scope for {user.name}'s server {server_name!r}")
        if not _may_report((user.name, server_name), time.monotonic()):
            raise web.HTTPError(429, f"One report every {MIN_INTERVAL:g} s per server")
        return counts
