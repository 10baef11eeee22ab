"""Keep the user's Data Lake tokens fresh as files inside the user's server.

The agent asks the hub's token API (authorised by this server's own API token) for the user's exchanged access
tokens and writes them atomically, mode 0600, into a memory-backed directory:

- the Rucio token (no trailing newline), read by rucio-jupyterlab and by rucio-clients (the bearer token file);
- the EOS token file (singleuser.contract names both), `oauth2:<token>:<host>/<path of IAM's userinfo endpoint>`
  (no scheme: EOS adds `https://` itself and splits the line on ':').

It rewrites them when half of the shortest remaining lifetime has passed (the Rucio extension caches a token until
its `exp` with no margin, so the file must hold a new token well before) and never logs a token. When the hub is
unreachable or failing, the files stay while their tokens are valid and go when they expire; retries back off up to
`max_backoff`. When the hub refuses (401/403: the user's session ended), the files go at once, the log says "log in
to the hub again" once, and the agent asks again only rarely (backing off up to `max_auth_backoff`).

Each round's outcome is counted and reported to the hub with the server's own API token (singleuser.agent_metrics),
which adds the counts to its metrics: numbers by outcome, never a token.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Dict, Float, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from singleuser import agent_metrics, contract
from singleuser.private_dirs import UnsafePathError
from singleuser.server_settings import ServerSettings
from singleuser.token_files import eos_token_line, remove_private_file, write_private_file

#: What the one-line refusal of an unsafe token directory tells the user to do instead.
DIR_HINT = f"set {contract.TOKEN_DIR.name} to another path"
#: A token with less than this left (seconds) counts as expired: its file goes.
EXPIRY_MARGIN = 1.0


class TokenAPIError(Exception):
    """The hub's token API did not give us tokens. `refused`: the hub said no (401/403), the session is over;
    `fatal`: the agent cannot run at all; `outcome`: what the round counts as (singleuser.agent_metrics)."""

    def __init__(
        self, message: str, *, fatal: bool = False, refused: bool = False, detail: str = "", outcome: str = "hub_error"
    ):
        super().__init__(message)
        self.fatal = fatal
        self.refused = refused
        self.detail = detail
        self.outcome = "refused" if refused else outcome


class TokenAgent(LoggingConfigurable):
    settings = Instance(ServerSettings, help="What the hub told this server (its environment).")

    @default("settings")
    def _settings_default(self):
        return ServerSettings(parent=self)

    api_url = Unicode(help="URL of the hub's token API (ServerSettings.token_api_url).").tag(config=True)

    @default("api_url")
    def _api_url_default(self):
        return self.settings.token_api_url

    api_token = Unicode(
        help="""This server's own hub API token, which authorises the token API call (ServerSettings.hub_api_token).
        It is the server's credential towards the hub, not a Data Lake token."""
    )

    @default("api_token")
    def _api_token_default(self):
        return self.settings.hub_api_token

    token_dir = Unicode(
        help="""Memory-backed directory for the token files (ServerSettings.token_dir); created 0700 if missing,
        refused if it exists and is not a directory of this user's alone (singleuser.private_dirs)."""
    ).tag(config=True)

    @default("token_dir")
    def _token_dir_default(self):
        return self.settings.token_dir

    files = Dict(
        help="""Token API target name -> file. Relative paths are inside token_dir. Targets in eos_targets are
        written in the EOS format `oauth2:<token>:<host>/<userinfo path>`."""
    ).tag(config=True)

    @default("files")
    def _files_default(self):
        return {
            "rucio": self.settings.rucio_token_file or "rucio_token",
            "eos": self.settings.eos_token_file or "eos_token",
        }

    eos_targets = Dict(
        default_value={"eos": True},
        help="""Targets written in the EOS `oauth2:` format rather than as a bare token.""",
    ).tag(config=True)

    refresh_fraction = Float(
        0.5,
        help="""Fetch new tokens once this fraction of the shortest token lifetime has passed. The Rucio
        extension uses a cached token until its very expiry, so the file must be renewed well before.""",
    ).tag(config=True)

    min_interval = Float(1.0, help="Never ask the hub more often than this (seconds).").tag(config=True)
    max_interval = Float(600.0, help="Ask the hub at least this often (seconds), even for long-lived tokens.").tag(
        config=True
    )
    max_backoff = Float(
        60.0, help="Longest wait between retries while the hub is unreachable or failing (seconds)."
    ).tag(config=True)
    max_auth_backoff = Float(
        600.0,
        help="""Longest wait between calls once the hub has refused (401/403: the user's IAM session ended or the
        server's credential is no longer accepted). Until the user logs in again nothing will change, so the agent
        backs off up to this instead of asking every few seconds; after a new login the files return within it.""",
    ).tag(config=True)
    request_timeout = Float(10.0, help="Timeout of one token API call (seconds).").tag(config=True)

    report_url = Unicode(
        help="""Where the agent reports its renewal counts (hub_plugins.agent_reports): by default the token API's
        sibling /hub/api/dlaas/agent-report. Empty: no reports."""
    ).tag(config=True)

    @default("report_url")
    def _report_url_default(self):
        base, sep, last = self.api_url.rstrip("/").rpartition("/")
        return f"{base}/agent-report" if sep and last == "tokens" else ""

    report_interval = Float(
        60.0, help="Seconds between two reports of renewal counts to the hub (the hub takes one per 5 s at most)."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._expiry: dict[str, float] = {}  # target -> expires_at of the token now in its file
        self._logged: dict[str, str] = {}  # what was last logged once per kind (EOS line, directory)
        self.failures = 0  # failed calls in a row (hub unreachable or failing, files not writable)
        self.refusals = 0  # refused calls in a row (401/403)
        self.counts = agent_metrics.RenewalCounts()  # outcomes not yet reported to the hub
        self._last_report = float("-inf")  # time.monotonic() of the last report attempt

    def path_for(self, target: str) -> Path:
        path = Path(self.files.get(target, f"{target}_token"))
        return path if path.is_absolute() else Path(self.token_dir) / path

    def check_config(self) -> None:
        missing = [
            var.name
            for var, value in (
                (contract.TOKEN_API_URL, self.api_url),
                (contract.TOKEN_DIR, self.token_dir),
                (contract.HUB_API_TOKEN, self.api_token),
            )
            if not value
        ]
        if missing:
            raise TokenAPIError(
                f"token agent disabled: {', '.join(missing)} not set; the hub's spawner sets them "
                "(see hub_plugins.spawner_env)",
                fatal=True,
            )

    async def fetch(self) -> dict:
        request = HTTPRequest(
            self.api_url,
            headers={"Authorization": f"token {self.api_token}", "Accept": "application/json"},
            request_timeout=self.request_timeout,
            connect_timeout=self.request_timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            detail = ""
            if e.response is not None and e.response.body:
                try:
                    detail = json.loads(e.response.body).get("message", "")
                except (ValueError, AttributeError):
                    detail = ""
            if e.code in (401, 403):
                raise TokenAPIError(
                    f"the hub refused to hand out tokens ({e.code}): {detail or 'no reason given'}",
                    refused=True,
                    detail=f"{e.code}: {detail}" if detail else str(e.code),
                ) from None
            outcome = {503: "hub_unavailable", 599: "hub_unreachable"}.get(e.code, "hub_error")
            raise TokenAPIError(f"token API answered {e.code} {detail}".strip(), outcome=outcome) from None
        except (OSError, TimeoutError) as e:
            raise TokenAPIError(f"token API unreachable at {self.api_url}: {e}", outcome="hub_unreachable") from None
        try:
            body = json.loads(response.body)
            tokens = body["tokens"]
            if not isinstance(tokens, dict) or not tokens:
                raise ValueError
            for info in tokens.values():
                if not isinstance(info.get("access_token"), str) or not info["access_token"]:
                    raise ValueError
                float(info["expires_at"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenAPIError("token API returned a malformed answer") from None
        return body

    def write(self, body: dict) -> list[str]:
        """Write the token files; returns the targets written. The EOS file needs a userinfo endpoint EOS can
        reach: without one it is not written (one log line) and an old one is removed."""
        userinfo = body.get("userinfo_endpoint") or (
            f"{body['issuer'].rstrip('/')}/userinfo" if body.get("issuer") else ""
        )
        written = []
        for target, info in body["tokens"].items():
            path = self.path_for(target)
            if target in self.eos_targets:
                try:
                    content = eos_token_line(info["access_token"], userinfo)
                except ValueError as e:
                    self._remove(target)
                    self._log_once("eos", "EOS token file %s not written: %s", path, e)
                    continue
                self._logged.pop("eos", None)
            else:
                content = info["access_token"]
            write_private_file(path, content, hint=DIR_HINT)
            self._expiry[target] = float(info["expires_at"])
            written.append(target)
        return written

    def remove_files(self) -> list[str]:
        """Remove every token file this agent writes (configured or written); returns the targets removed."""
        return [target for target in sorted(set(self.files) | set(self._expiry)) if self._remove(target)]

    def remove_expired(self, now: float | None = None) -> list[str]:
        """Remove the files whose token has expired (or expires within a second): never leave a dead token."""
        now = time.time() if now is None else now
        return [t for t, exp in sorted(self._expiry.items()) if exp <= now + EXPIRY_MARGIN and self._remove(t)]

    def _remove(self, target: str) -> bool:
        self._expiry.pop(target, None)
        try:
            return remove_private_file(self.path_for(target), hint=DIR_HINT)
        except UnsafePathError:
            return False  # not a directory of ours: nothing of ours in it to remove

    def _log_once(self, key: str, message: str, *args) -> None:
        text = message % args
        if self._logged.get(key) != text:
            self._logged[key] = text
            self.log.error("%s", text)

    def next_delay(self, body: dict, now: float | None = None) -> float:
        """Seconds until the next fetch: a fraction of the shortest remaining lifetime, within bounds."""
        now = time.time() if now is None else now
        remaining = min(float(info["expires_at"]) for info in body["tokens"].values()) - now
        delay = remaining * self.refresh_fraction
        return max(self.min_interval, min(self.max_interval, delay))

    def backoff(self, failures: int, limit: float | None = None) -> float:
        """Wait after `failures` failed calls in a row: doubling from min_interval, up to `limit` (max_backoff)."""
        limit = self.max_backoff if limit is None else limit
        return min(limit, self.min_interval * 2 ** max(0, min(failures, 64) - 1))

    def until_next_expiry(self, delay: float, now: float | None = None) -> float:
        """`delay`, shortened so that the agent wakes when the first token it holds in a file expires."""
        now = time.time() if now is None else now
        if self._expiry:
            delay = min(delay, max(0.0, min(self._expiry.values()) - EXPIRY_MARGIN - now))
        return delay

    async def refresh_once(self) -> float:
        """Fetch and write the tokens once; returns the delay until the next refresh."""
        body = await self.fetch()
        written = self.write(body)
        delay = self.next_delay(body)
        self.log.info("token files updated for %s; next refresh in %.0fs", ", ".join(sorted(written)) or "none", delay)
        return delay

    async def run(self) -> None:
        """Refresh forever; log (without tokens) and back off on failures."""
        try:
            self.check_config()
        except TokenAPIError as e:
            self.log.error("%s", e)
            return
        while True:
            delay = await self.step()
            try:
                await self.report()
            except Exception as e:  # a report must never stop the renewals
                self.log.warning("renewal counts not reported to the hub: %s", type(e).__name__)
            await asyncio.sleep(delay)

    async def report(self, now: float | None = None) -> str | None:
        """Send the renewal counts not yet reported, at most every report_interval; the send's result or None."""
        now = time.monotonic() if now is None else now
        if not self.report_url or not self.counts.pending or now - self._last_report < self.report_interval:
            return None
        self._last_report = now
        counts = self.counts.take()
        result = await agent_metrics.send(self.report_url, self.api_token, counts, timeout=self.request_timeout)
        if result == "retry":
            self.counts.give_back(counts)
        elif result == "refused":
            self._log_once("report", "the hub does not take renewal reports at %s; counts dropped", self.report_url)
        return result

    async def step(self) -> float:
        """One round: drop expired files, ask the hub, write or remove files; returns the wait before the next."""
        try:
            for target in self.remove_expired():
                self.counts.count("expired")
                self.log.warning("token file for %s removed: its token expired before the hub gave a new one", target)
            delay = await self.refresh_once()
            self.counts.count("renewed")
            if self.refusals:
                self.log.info("the hub hands out tokens again: token files restored")
            self.failures = self.refusals = 0
            self._logged.pop("dir", None)
        except TokenAPIError as e:
            self.counts.count(e.outcome)
            if e.refused:
                self.refusals += 1
                if self.refusals == 1:
                    self.remove_files()
                    self.log.warning(
                        "token files removed: log in to the hub again (the hub refused tokens: %s)", e.detail
                    )
                delay = self.backoff(self.refusals, self.max_auth_backoff)
            else:
                self.failures += 1
                delay = self.backoff(self.failures)
                self.log.warning("%s; retrying in %.0fs (the token files stay until their tokens expire)", e, delay)
        except UnsafePathError as e:
            self.counts.count("write_failed")
            self.failures += 1
            delay = self.backoff(self.failures, self.max_auth_backoff)
            self._log_once("dir", "token files not written: %s", e)
        except OSError as e:
            self.counts.count("write_failed")
            self.failures += 1
            delay = self.backoff(self.failures)
            self.log.error("cannot write token files in %s: %s; retrying in %.0fs", self.token_dir, e, delay)
        return self.until_next_expiry(delay)
