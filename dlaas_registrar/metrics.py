"""The registration service's metrics, served at <prefix>metrics (/services/dlaas-registrar/metrics) to a hub token
holding `read:metrics`.

Not open to anyone: in the chart, the registrar's NetworkPolicy admits the user pods to its port (datalakectl calls
it there), so an unauthenticated endpoint on that port would be open to every user. The scrape token is the one
that reads the hub's /hub/metrics (the same scope, checked through the hub like every request here), so Prometheus
needs one credential for both; the hub's operators hold `read:metrics` too.

Labels have small fixed value sets: an upload's outcome, a Rucio client call's name, a rule state. Never a user, a
path, a DID or a token.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from tornado import web

UPLOAD_OUTCOMES = (
    "registered",  # new files registered, rules made
    "unchanged",  # every file was registered already: nothing to do
    "dry_run",
    "refused",  # 400: a path, scope, RSE or name the service refused, or Rucio refused the registration
    "unauthorized",  # 401/403: no token, an unknown token, a token without access to the service
    "too_large",  # 413
    "rucio_unavailable",  # 502: Rucio did not answer
    "error",
)
UPLOADS = Counter("dlaas_registrar_uploads", "Upload requests, by outcome.", ["outcome"])
FILES = Counter("dlaas_registrar_files_registered", "Files registered in Rucio (new replicas on the scratch RSE).")
BYTES = Counter("dlaas_registrar_bytes_registered", "Bytes of the files registered in Rucio.")

#: The rucio-clients calls the service makes; anything else is counted as `other`.
RUCIO_CALLS = (
    "list_scopes_for_account",
    "get_rse",
    "get_protocols",
    "get_metadata_bulk",
    "get_did",
    "add_dataset",
    "attach_dids",
    "list_did_rules",
    "get_replication_rule",
)
RUCIO_SECONDS = Histogram(
    "dlaas_registrar_rucio_call_duration_seconds",
    "Time of the service's calls to the Rucio server, by client call.",
    ["call"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

RULE_STATES = ("ok", "replicating", "stuck", "suspended", "other")
RULES = Gauge(
    "dlaas_registrar_rules",
    "Upload rules (to the destination RSE) this service made and still follows, by their last seen state.",
    ["state"],
)
RULE_CHECKS = Counter("dlaas_registrar_rule_checks", "Looks at the followed rules' states in Rucio.", ["outcome"])

for _outcome in UPLOAD_OUTCOMES:
    UPLOADS.labels(_outcome)
for _call in (*RUCIO_CALLS, "other"):
    RUCIO_SECONDS.labels(_call)
for _state in RULE_STATES:
    RULES.labels(_state).set(0)
for _outcome in ("ok", "failed"):
    RULE_CHECKS.labels(_outcome)


def outcome_of(status: int) -> str:
    """What an upload answered with `status` counts as, when the handler did not say."""
    return {400: "refused", 401: "unauthorized", 403: "unauthorized", 413: "too_large", 502: "rucio_unavailable"}.get(
        status, "error"
    )


class TimedClient:
    """A rucio-clients Client whose calls are timed into RUCIO_SECONDS (label: the call's name)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        label = name if name in RUCIO_CALLS else "other"

        def timed(*args, **kwargs):
            started = time.monotonic()
            try:
                return attribute(*args, **kwargs)
            finally:
                RUCIO_SECONDS.labels(label).observe(time.monotonic() - started)

        return timed


class MetricsHandler(web.RequestHandler):
    """GET <prefix>metrics: the Prometheus exposition, for a hub token with read:metrics."""

    def initialize(self, hub_auth):
        self.hub_auth = hub_auth

    async def get(self):
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise web.HTTPError(401, "send a hub API token with the read:metrics scope")
        model = await self.hub_auth.user_for_token(token.strip(), sync=False)
        if not model or not self.hub_auth.check_scopes({"read:metrics"}, model):
            raise web.HTTPError(403, "this token lacks the read:metrics scope")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(generate_latest(REGISTRY))
