"""/hub/dlaas/status: one page for the service operators, in the hub's look, showing how the service is doing now.

It shows the users with servers or a live IAM session and, per user, how long each of their exchanged tokens (and
the IAM access token) is still valid and whether a refresh is in its back-off - times only, read from auth_state
inside the hub, never a token: operators never get auth_state through the API, and this page does not give it to
them either. Below: the hub's own counters (logins, refreshes, token API, onboarding, token agents), the last token
exchange failures this hub saw (hub_plugins.metrics), the upload rules in flight from the registration service's
metrics, and the XCache hit ratio from its exporter's metrics (dlaas_xcache.exporter).

Who may see it: tokens and sessions with `admin-ui` and unfiltered `list:users` - the `dlaas-operator` role
(hub_plugins.hub_roles) and JupyterHub admins; everyone else gets 403. The registrar's metrics need `read:metrics`:
the page reads them as the operator viewing it, with a short-lived `read:metrics` token the hub makes for that
operator (JupyterHub lists it among the operator's tokens) and keeps in memory, never sending it to the browser.

    c.StatusPage.cache_metrics_url = "http://xcache-exporter:9932/metrics"   # optional
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import Scope, needs_scope
from prometheus_client.parser import text_string_to_metric_families
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from hub_plugins import metrics
from hub_plugins.hub_roles import REGISTRAR_SERVICE

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
TOKEN_NOTE = "dlaas status page: reads the registration service's metrics"
TOKEN_LIFETIME = 600


class StatusPage(LoggingConfigurable):
    registrar_metrics_url = Unicode(
        config=True,
        help=f"""The registration service's metrics (needs read:metrics). Default: from the `{REGISTRAR_SERVICE}`
        entry of JupyterHub.services, <its url>/services/{REGISTRAR_SERVICE}/metrics; empty when there is none.""",
    )
    services = List(help="JupyterHub.services, for the registration service's default URL.")

    @default("registrar_metrics_url")
    def _registrar_metrics_url_default(self):
        for service in self.services:
            if service.get("name") == REGISTRAR_SERVICE and service.get("url"):
                return f"{service['url'].rstrip('/')}/services/{REGISTRAR_SERVICE}/metrics"
        return ""

    cache_metrics_url = Unicode(
        "",
        config=True,
        help="""The XCache exporter's metrics (dlaas-xcache-exporter; unauthenticated, reachable from the hub only).
        Empty: the page says the cache is not configured.""",
    )
    max_users = Integer(
        200, config=True, help="Most users listed (most recently active first): each one's auth_state is decrypted."
    )
    fetch_timeout = Float(5.0, config=True, help="Timeout (s) of each metrics request the page makes.")


@dataclass
class Row:
    name: str
    servers: list[str]
    last_activity: str
    session: bool
    tokens: dict[str, float | None] = field(default_factory=dict)  # target -> seconds left (None: no token)
    iam_left: float | None = None
    backoff: str = ""

    @property
    def least_left(self) -> float:
        left = [v for v in self.tokens.values() if v is not None]
        return min(left) if left else float("-inf")


def time_left(seconds: float | None) -> str:
    """`seconds` of validity left, for people: "12 min", "expired 3 min ago", "-"."""
    if seconds is None:
        return "-"
    span = abs(seconds)
    text = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min" if span < 7200 else f"{span / 3600:.1f} h"
    return text if seconds > 0 else f"expired {text} ago"


def samples(text: str) -> dict[str, list[tuple[dict, float]]]:
    """The samples of a Prometheus text exposition, by sample name."""
    found: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def by_label(found: dict, name: str, label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in found.get(name, [])}


def cache_summary(found: dict) -> dict:
    """Hit ratios from the exporter's counters (since the exporter started)."""
    data = by_label(found, "dlaas_xcache_bytes_total", "source")
    accesses = by_label(found, "dlaas_xcache_accesses_total", "served_from")
    total, opened = sum(data.values()), sum(accesses.values())
    return {
        "byte_hit_ratio": data.get("hit", 0.0) / total if total else None,
        "bytes": data,
        "access_hit_ratio": accesses.get("cache", 0.0) / opened if opened else None,
        "accesses": accesses,
    }


class StatusPageHandler(BaseHandler):
    _tokens: dict[int, tuple[str, float]] = {}  # operator's user id -> (read:metrics token, expiry)

    def initialize(self, page: StatusPage):
        self.page = page

    @web.authenticated
    @needs_scope("admin-ui")
    async def get(self):
        if self.parsed_scopes.get("list:users") != Scope.ALL:
            raise web.HTTPError(403, "This page is for the service operators (role dlaas-operator)")
        registrar, cache = await asyncio.gather(self.registrar(), self.cache())
        failures = list(reversed(metrics.recent_exchange_failures))[:20]
        html = await self.render_template(
            "dlaas-status.html",
            rows=await self.rows(),
            failures=failures,
            counters=self.counters(),
            registrar=registrar,
            cache=cache,
            time_left=time_left,
            strftime=lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)),
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(html)

    def get_template(self, name, sync=False):
        """JupyterHub's templates, with this package's first (dlaas-status.html extends JupyterHub's page.html)."""
        key = "dlaas_jinja2_env_sync" if sync else "dlaas_jinja2_env"
        if key not in self.settings:
            from jinja2 import ChoiceLoader, FileSystemLoader

            hub_env = self.settings["jinja2_env_sync" if sync else "jinja2_env"]
            self.settings[key] = hub_env.overlay(loader=ChoiceLoader([FileSystemLoader(TEMPLATES), hub_env.loader]))
        return self.settings[key].get_template(name)

    async def rows(self) -> list[Row]:
        now = time.time()
        authenticator = self.authenticator
        targets = list(authenticator.exchange_targets)
        query = self.db.query(orm.User).order_by(orm.User.last_activity.desc().nulls_last())
        rows = []
        for orm_user in query.limit(self.page.max_users):
            user = self.users[orm_user]
            servers = [name or "(default)" for name, spawner in user.spawners.items() if spawner.active]
            state = await user.get_auth_state() or {}
            session = bool(state.get("refresh_token"))
            if not servers and not session:
                continue
            exchanged = state.get("exchanged") or {}
            row = Row(
                user.name,
                servers,
                orm_user.last_activity.strftime("%Y-%m-%d %H:%M") if orm_user.last_activity else "-",
                session,
                {t: float(exchanged[t]["expires_at"]) - now if t in exchanged else None for t in targets},
                float(state["iam_expires_at"]) - now if session and state.get("iam_expires_at") else None,
            )
            failure = authenticator.recent_failure(user.name)
            if failure is not None:
                row.backoff = "login needed" if failure.final else "retrying"
            rows.append(row)
        rows.sort(key=lambda r: (not r.servers, r.least_left))
        return rows

    def counters(self) -> dict[str, dict[str, float]]:
        def counts(name, outcomes):
            return {o: metrics.value(f"{name}_total", outcome=o) for o in outcomes}

        return {
            "Logins": counts("dlaas_logins", metrics.LOGIN_OUTCOMES),
            "Refreshes": counts("dlaas_refreshes", metrics.REFRESH_OUTCOMES),
            "Token API": counts("dlaas_token_api_requests", metrics.TOKEN_API_OUTCOMES),
            "Token agents": counts("dlaas_token_agent_renewals", metrics.AGENT_OUTCOMES),
            "Onboarding": counts("dlaas_onboarding_runs", metrics.ONBOARDING_OUTCOMES),
        }

    async def fetch_metrics(self, url: str, token: str | None = None) -> dict:
        headers = {"Authorization": f"token {token}"} if token else {}
        request = HTTPRequest(
            url, headers=headers, request_timeout=self.page.fetch_timeout, connect_timeout=self.page.fetch_timeout
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
            return {"samples": samples(response.body.decode())}
        except HTTPClientError as e:  # 599: tornado's code for timeouts and connection errors
            return {"error": "unreachable" if e.code == 599 else f"answered {e.code}"}
        except (OSError, ValueError) as e:
            return {"error": f"unreachable ({type(e).__name__})"}

    def metrics_token(self) -> str:
        """A short-lived read:metrics token of the operator viewing the page, kept in memory and reused."""
        user = self.current_user
        token, expires = self._tokens.get(user.id, ("", 0.0))
        if time.time() > expires - 60:
            token = user.new_api_token(note=TOKEN_NOTE, scopes=["read:metrics"], expires_in=TOKEN_LIFETIME)
            self._tokens[user.id] = token, time.time() + TOKEN_LIFETIME
        return token

    async def registrar(self) -> dict:
        if not self.page.registrar_metrics_url:
            return {"error": "not configured"}
        if "read:metrics" not in self.parsed_scopes:
            return {"error": "you lack read:metrics"}
        answer = await self.fetch_metrics(self.page.registrar_metrics_url, self.metrics_token())
        if "error" in answer:
            if answer["error"] in ("answered 401", "answered 403"):
                self._tokens.pop(self.current_user.id, None)  # revoked meanwhile: a new one next time
            return answer
        found = answer["samples"]
        return {
            "rules": by_label(found, "dlaas_registrar_rules", "state"),
            "uploads": by_label(found, "dlaas_registrar_uploads_total", "outcome"),
            "files": sum(v for _, v in found.get("dlaas_registrar_files_registered_total", [])),
        }

    async def cache(self) -> dict:
        if not self.page.cache_metrics_url:
            return {"error": "not configured (StatusPage.cache_metrics_url)"}
        answer = await self.fetch_metrics(self.page.cache_metrics_url)
        return answer if "error" in answer else cache_summary(answer["samples"])
