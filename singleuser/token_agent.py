"""Keep the user's Data Lake tokens fresh as files inside the user's server.

The agent asks the hub's token API (authorised by this server's own API token) for the user's exchanged access
tokens and writes them atomically, mode 0600, into a memory-backed directory:

- the Rucio token (no trailing newline), read by rucio-jupyterlab and by rucio-clients through BEARER_TOKEN_FILE;
- the EOS token file named by OAUTH2_TOKEN, `oauth2:<token>:<issuer>/userinfo`.

It rewrites them when half of the shortest remaining lifetime has passed (the Rucio extension caches a token until
its `exp` with no margin, so the file must hold a new token well before), retries with exponential backoff when the
hub is unreachable, and never logs a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Dict, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from singleuser.token_files import eos_token_line, write_secret_file


class TokenAPIError(Exception):
    """The hub's token API did not give us tokens; `retry_after` says how long to wait before asking again."""

    def __init__(self, message: str, *, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


class TokenAgent(LoggingConfigurable):
    api_url = Unicode(
        help="""URL of the hub's token API. Set by the spawner in DLAAS_TOKEN_API_URL."""
    ).tag(config=True)

    @default("api_url")
    def _api_url_default(self):
        return os.environ.get("DLAAS_TOKEN_API_URL", "")

    api_token = Unicode(
        help="""This server's own hub API token (JUPYTERHUB_API_TOKEN), which authorises the token API call.
        It is the server's credential towards the hub, not a Data Lake token."""
    )

    @default("api_token")
    def _api_token_default(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    token_dir = Unicode(
        help="""Memory-backed directory for the token files (DLAAS_TOKEN_DIR); created 0700 if missing."""
    ).tag(config=True)

    @default("token_dir")
    def _token_dir_default(self):
        return os.environ.get("DLAAS_TOKEN_DIR", "")

    files = Dict(
        help="""Token API target name -> file. Relative paths are inside token_dir. A target whose file is the
        one named by OAUTH2_TOKEN is written in the EOS format `oauth2:<token>:<issuer>/userinfo`."""
    ).tag(config=True)

    @default("files")
    def _files_default(self):
        files = {"rucio": os.environ.get("BEARER_TOKEN_FILE") or "rucio_token"}
        eos = os.environ.get("OAUTH2_TOKEN", "")
        files["eos"] = eos.removeprefix("FILE:") if eos else "eos_token"
        return files

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
    max_backoff = Float(60.0, help="Longest wait between retries after a failed call (seconds).").tag(config=True)
    request_timeout = Float(10.0, help="Timeout of one token API call (seconds).").tag(config=True)

    def path_for(self, target: str) -> Path:
        path = Path(self.files.get(target, f"{target}_token"))
        return path if path.is_absolute() else Path(self.token_dir) / path

    def check_config(self) -> None:
        missing = [name for name, value in (("DLAAS_TOKEN_API_URL", self.api_url), ("DLAAS_TOKEN_DIR",
                   self.token_dir), ("JUPYTERHUB_API_TOKEN", self.api_token)) if not value]
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
                    f"the hub refused to hand out tokens ({e.code}): {detail or 'log in to the hub again'}"
                ) from None
            raise TokenAPIError(f"token API answered {e.code} {detail}".strip()) from None
        except (OSError, asyncio.TimeoutError) as e:
            raise TokenAPIError(f"token API unreachable at {self.api_url}: {e}") from None
        try:
            body = json.loads(response.body)
            tokens = body["tokens"]
            if not isinstance(tokens, dict) or not tokens:
                raise ValueError
            for target, info in tokens.items():
                if not isinstance(info.get("access_token"), str) or not info["access_token"]:
                    raise ValueError
                float(info["expires_at"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenAPIError("token API returned a malformed answer") from None
        return body

    def write(self, body: dict) -> None:
        issuer = body.get("issuer", "")
        for target, info in body["tokens"].items():
            if target in self.eos_targets:
                if not issuer:
                    self.log.warning("token API gave no issuer: cannot write the EOS token file for %s", target)
                    continue
                content = eos_token_line(info["access_token"], issuer)
            else:
                content = info["access_token"]
            write_secret_file(self.path_for(target), content)

    def next_delay(self, body: dict, now: float | None = None) -> float:
        """Seconds until the next fetch: a fraction of the shortest remaining lifetime, within bounds."""
        now = time.time() if now is None else now
        remaining = min(float(info["expires_at"]) for info in body["tokens"].values()) - now
        delay = remaining * self.refresh_fraction
        return max(self.min_interval, min(self.max_interval, delay))

    def backoff(self, failures: int) -> float:
        return min(self.max_backoff, self.min_interval * 2 ** max(0, failures - 1))

    async def refresh_once(self) -> float:
        """Fetch and write the tokens once; returns the delay until the next refresh."""
        body = await self.fetch()
        self.write(body)
        delay = self.next_delay(body)
        self.log.info("token files updated for %s; next refresh in %.0fs", ", ".join(sorted(body["tokens"])), delay)
        return delay

    async def run(self) -> None:
        """Refresh forever; log (without tokens) and back off on failures."""
        try:
            self.check_config()
        except TokenAPIError as e:
            self.log.error("%s", e)
            return
        failures = 0
        while True:
            try:
                delay = await self.refresh_once()
                failures = 0
            except TokenAPIError as e:
                failures += 1
                delay = self.backoff(failures)
                self.log.warning("%s; retrying in %.0fs", e, delay)
            except OSError as e:
                failures += 1
                delay = self.backoff(failures)
                self.log.error("cannot write token files in %s: %s; retrying in %.0fs", self.token_dir, e, delay)
            await asyncio.sleep(delay)
