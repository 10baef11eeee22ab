"""When the user's Data Lake token has expired (an IdP outage outlived it, or a session that ended), the Rucio sidebar
says "log in again" with the hub's login URL, instead of the Rucio extension's HTTP 500 "Token must be set".

The token agent (singleuser.token_agent) removes the Rucio token file when its token expires and writes it again
once the hub gives it a new token. While there is no valid token, this server answers the Rucio extension's API
requests that need Rucio itself with HTTP 403 and `{"error": "...log in again at <hub>/hub/login"}`: the sidebar
shows a JSON answer's `error` as it is, but replaces any 401 answer by its own "Perhaps you set an invalid
credential?", hence 403. A router placed first in the server's routing table looks at each such request; with a
valid token it declines and the Rucio extension's own handler answers as always, so nothing of the extension is
patched.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.routing import PathMatches, Router, Rule

from singleuser.login_message import hub_login_url, message
from singleuser.token_claims import unverified_exp

#: The Rucio extension's API paths that talk to Rucio with the user's token (the others are local settings).
NEEDS_TOKEN = (
    "files",
    "did",
    "did-search",
    "did/make-available",
    "open-replication-rule",
    "list-scopes",
    "list-rses",
    "oidc-auth-check",
    "upload",
)


def token_valid(path: str, now: float | None = None) -> bool:
    """Whether the token file holds a token that has not expired: its JWT `exp` when it has one (an opaque token is
    taken as valid; checking the signature is Rucio's job)."""
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return False
    exp = unverified_exp(token)
    return bool(token) if exp is None else exp > (time.time() if now is None else now)


def login_url(request) -> str:
    """The hub's login page as the user's browser reaches it: at the hub's public URL when the hub gives one, else
    at the address of the request that reached this server through the hub's proxy."""
    url = hub_login_url()
    return url if "://" in url else f"{request.protocol}://{request.host}{url}"


class ExpiredSessionHandler(APIHandler):
    """Answers any method with the one line the sidebar shows."""

    def _answer(self, *args, **kwargs) -> None:
        text = message(login_url(self.request))
        self.set_status(403)
        self.finish(json.dumps({"error": text, "message": text, "exception_class": "LoginExpired"}))

    get = post = put = delete = web.authenticated(_answer)


class ExpiredSessionRouter(Router):
    """Takes a request only while the token is missing or expired; otherwise the next rule (the extension's) does."""

    def __init__(self, app: web.Application, token_file: str):
        self.app, self.token_file = app, token_file

    def find_handler(self, request, **kwargs):
        if token_valid(self.token_file):
            return None
        return self.app.get_handler_delegate(request, ExpiredSessionHandler)


def install(serverapp, settings) -> None:
    """Put the router first in the server's routing table (the Rucio extension's handlers are added before it)."""
    if not settings.rucio_token_file:
        return  # no token file is configured: nothing can expire
    app = serverapp.web_app
    base = url_path_join(app.settings["base_url"], "rucio-jupyterlab")
    pattern = re.escape(base) + "/(?:" + "|".join(re.escape(p) for p in NEEDS_TOKEN) + r")(?:/.*)?$"
    app.default_router.rules.insert(0, Rule(PathMatches(pattern), ExpiredSessionRouter(app, settings.rucio_token_file)))
