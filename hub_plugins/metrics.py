"""What the hub counts about logins, token exchanges, refreshes, the token API, onboarding and token agents.

The metrics live in prometheus_client's default registry, which JupyterHub already serves on /hub/metrics (to
tokens with the `read:metrics` scope, e.g. the Prometheus service's, and to operators), so no new endpoint and no
new credential is needed. Names start with `dlaas_`; every label has a small fixed set of values (an outcome, a
configured exchange target, an IdP error class), created at zero up front so that dashboards and alerts see every
series before the first event. User names, subs and tokens are never labels or values.

Besides counters, the hub keeps the last exchange failures in memory (`recent_exchange_failures`: time, user,
target, error class - never a token) for the operators' status page (hub_plugins.admin_page); they are this hub
process's own and start empty when it restarts.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Histogram

from singleuser.agent_metrics import OUTCOMES as AGENT_OUTCOMES

#: Seconds; an exchange or refresh includes retries with back-off, so the upper buckets matter.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LOGIN_OUTCOMES = (
    "success",  # logged in (tokens exchanged and verified)
    "not_allowed",  # IAM login fine, but not in an allowed group (or blocked): JupyterHub's 403 page
    "iam_unreachable",  # IAM or its discovery document did not answer (timeouts, 5xx, connection errors)
    "iam_refused_code",  # IAM refused the authorization code (reloaded callback, expired code)
    "exchange_failed",  # IAM did not issue the Data Lake tokens
    "unusable_token",  # IAM returned a token that failed verification (signature, audience, sub, expiry)
    "other_identity",  # the hub account belongs to another IAM sub
    "misconfigured",  # the hub's IAM settings are wrong (discovery document unusable)
    "error",  # anything else (e.g. a stale OAuth state cookie)
)
LOGINS = Counter("dlaas_logins", "Hub logins through ESCAPE IAM, by outcome.", ["outcome"])

EXCHANGE_ERRORS = (
    "refused",  # the IdP answered 4xx: final
    "server_error",  # the IdP answered 5xx (after retries)
    "unreachable",  # timeouts and connection errors (after retries)
    "malformed",  # an answer that is not a token
    "invalid_token",  # a token that failed verification
)
EXCHANGE_SECONDS = Histogram(
    "dlaas_token_exchange_duration_seconds",
    "Time to exchange the IAM token for every Data Lake target and verify the results (login and refresh).",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)
EXCHANGE_FAILURES = Counter(
    "dlaas_token_exchange_failures", "Failed token exchanges, by target and IdP error class.", ["target", "error"]
)

REFRESH_OUTCOMES = (
    "ok",  # new IAM and exchanged tokens saved
    "failed_retryable",  # IAM unreachable or failing: retried after the back-off, the user stays logged in
    "failed_final",  # refresh token refused, left the groups, another identity: a new login is needed
    "backoff",  # not tried: a failure of this user's less than refresh_backoff seconds ago
)
REFRESHES = Counter("dlaas_refreshes", "Refreshes of a user's IAM and exchanged tokens, by outcome.", ["outcome"])
REFRESH_SECONDS = Histogram(
    "dlaas_refresh_duration_seconds",
    "Time of a refresh (refresh grant, userinfo, exchanges, verification), tried ones only.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)

TOKEN_API_OUTCOMES = (
    "ok",  # a running server got its user's tokens
    "not_server_token",  # a personal token, another server's token, a cookie, a service
    "stopped_server",  # the token's server is not running
    "missing_scope",  # the token's custom:dlaas-tokens scope does not cover this server
    "logged_out",  # 401: the user logged out
    "session_ended",  # 401: the IAM session ended (refresh refused)
    "iam_unavailable",  # 503: IAM could not renew expired tokens right now
    "error",  # anything else
)
TOKEN_API = Counter("dlaas_token_api_requests", "Requests to /hub/api/dlaas/tokens, by outcome.", ["outcome"])

ONBOARDING_OUTCOMES = ("ok", "failed", "timeout", "cannot_run")
ONBOARDING = Counter("dlaas_onboarding_runs", "Just-in-time account syncs at first logins, by outcome.", ["outcome"])
ONBOARDING_SECONDS = Histogram(
    "dlaas_onboarding_duration_seconds",
    "Time a first login spent in the account sync.",
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0),
)

#: What user servers' token agents report (hub_plugins.agent_reports; outcomes: singleuser.agent_metrics.OUTCOMES).
AGENT_RENEWALS = Counter(
    "dlaas_token_agent_renewals",
    "Token file renewals reported by user servers' token agents, by outcome (self-reported by the servers).",
    ["outcome"],
)
AGENT_REPORTS = Counter(
    "dlaas_token_agent_reports", "Reports of token agents to the hub, accepted or refused.", ["outcome"]
)

for _counter, _values in (
    (LOGINS, LOGIN_OUTCOMES),
    (REFRESHES, REFRESH_OUTCOMES),
    (TOKEN_API, TOKEN_API_OUTCOMES),
    (ONBOARDING, ONBOARDING_OUTCOMES),
    (AGENT_RENEWALS, AGENT_OUTCOMES),
    (AGENT_REPORTS, ("accepted", "refused")),
):
    for _value in _values:
        _counter.labels(_value)
for _histogram in (EXCHANGE_SECONDS, REFRESH_SECONDS):
    for _value in ("ok", "failed"):
        _histogram.labels(_value)


def init_targets(targets) -> None:
    """Create the exchange failure series of every configured target at zero."""
    for target in targets:
        for error in EXCHANGE_ERRORS:
            EXCHANGE_FAILURES.labels(target, error)


@dataclass(frozen=True)
class ExchangeFailure:
    at: float  # time.time()
    user: str
    target: str
    error: str  # one of EXCHANGE_ERRORS
    context: str  # login | refresh


#: The last exchange failures of this hub process, newest last.
recent_exchange_failures: deque[ExchangeFailure] = deque(maxlen=50)


def exchange_failed(user: str, target: str, error: str, context: str) -> None:
    EXCHANGE_FAILURES.labels(target, error).inc()
    recent_exchange_failures.append(ExchangeFailure(time.time(), user, target, error, context))


def value(name: str, **labels) -> float:
    """The current value of a sample of the default registry (0 when it does not exist), e.g.
    value("dlaas_logins_total", outcome="success")."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
