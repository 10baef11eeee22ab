"""A real JupyterHub in the test's process, for unit tests of the hub's own request handlers.

The hub is JupyterHub itself (initialised as `jupyterhub` does, minus the proxy and its own HTTP server: its
tornado application is served here on a loopback port), configured by hub_plugins.hub_config.configure with the
escape-iam authenticator talking to conftest.FakeIdP through oauthenticator's `http_client`. Logins go through the
hub's real /hub/oauth_login and /hub/oauth_callback; servers are spawned by JupyterHub's own User.spawn, which makes
their API tokens, OAuth clients and the authenticator's token record. Only the server process is left out: the
spawner below answers from the hub's own address, since what these tests look at is the hub's side.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs, urlparse

import requests
from jupyterhub.app import JupyterHub
from jupyterhub.spawner import Spawner
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets import Unicode
from traitlets.config import Config

from hub_plugins.hub_config import configure

from .conftest import ISSUER


class HubAddressSpawner(Spawner):
    """A server that 'runs' at `address` (the hub's own: any HTTP answer counts as up) until stopped."""

    address = Unicode(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._running = False

    async def start(self):
        self._running = True
        return self.address

    async def poll(self):
        return None if self._running else 0

    async def stop(self, now=False):
        self._running = False


class InProcessHub:
    def __init__(self, tmp_path, idp, **authenticator):
        self.tmp_path = tmp_path
        self.idp = idp
        self.authenticator_config = authenticator
        self.app: JupyterHub | None = None
        self.server: HTTPServer | None = None
        self.url = ""

    async def start(self) -> InProcessHub:
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        c = Config()
        c.JupyterHub.db_url = f"sqlite:///{self.tmp_path / 'jupyterhub.sqlite'}"
        c.JupyterHub.cookie_secret = os.urandom(32)
        c.JupyterHub.bind_url = self.url
        c.JupyterHub.spawner_class = HubAddressSpawner
        c.JupyterHub.allow_named_servers = True
        c.HubAddressSpawner.address = self.url
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:9"  # never started: User.spawn does not route
        c.ConfigurableHTTPProxy.auth_token = "unused"
        auth = c.EscapeIAMAuthenticator
        auth.issuer = ISSUER
        auth.client_id = "hub"
        auth.client_secret = "s"
        auth.oauth_callback_url = f"{self.url}/hub/oauth_callback"
        auth.allowed_groups = {"escape/users"}
        auth.exchange_targets = {
            "rucio": {"audience": "rucio", "scope": "openid profile"},
            "eos": {"audience": "eos", "scope": "openid profile"},
        }
        for name, value in self.authenticator_config.items():
            setattr(auth, name, value)
        configure(c, sqlite_wal=False)
        # JupyterHub switches tornado's HTTP client to curl for the whole process: undone in stop().
        self._http_client_config = AsyncHTTPClient._save_configuration()
        self.app = JupyterHub(config=c)
        await self.app.initialize(argv=[])
        self.app.authenticator.http_client = self.idp  # not a configurable trait; set before any request
        self.server = HTTPServer(self.app.tornado_application)
        self.server.add_sockets(sockets)
        return self

    async def stop(self) -> None:
        for user in list(self.app.users.values()):
            for name in list(user.spawners):
                if user.spawners[name].active:
                    await user.stop(name)
        self.server.stop()
        self.app.db.close()
        AsyncHTTPClient._restore_configuration(self._http_client_config)

    @property
    def authenticator(self):
        return self.app.authenticator

    def user(self, name: str):
        return self.app.users[name]

    async def http(self, method: str, path: str, session: requests.Session | None = None, **kwargs):
        """A request to the hub from a client (in a thread: the hub answers on this event loop)."""
        session = session or requests.Session()
        call = getattr(session, method)
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: call(self.url + path, allow_redirects=False, timeout=30, **kwargs)
        )

    async def login(self, username: str) -> requests.Session:
        """A browser's login through the hub's OAuth pages; the IdP's authorization code is the username."""
        browser = requests.Session()
        start = await self.http("get", "/hub/oauth_login", browser)
        assert start.status_code == 302, start.text
        state = parse_qs(urlparse(start.headers["Location"]).query)["state"][0]
        done = await self.http("get", f"/hub/oauth_callback?code={username}&state={state}", browser)
        assert done.status_code == 302, done.text
        return browser

    async def spawn(self, username: str, server_name: str = "", **spawner_traits) -> str:
        """Start `username`'s server as JupyterHub does; returns the API token JupyterHub gave it."""
        user = self.user(username)
        spawner = user.get_or_create_spawner(server_name, server_name)
        for name, value in spawner_traits.items():
            setattr(spawner, name, value)
        await user.spawn(server_name)
        return spawner.api_token

    async def tokens(self, token: str | None = None, session: requests.Session | None = None):
        headers = {"Authorization": f"token {token}"} if token else {}
        return await self.http("get", "/hub/api/dlaas/tokens", session, headers=headers)
