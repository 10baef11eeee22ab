"""Start the dev IAM (devstack/iam/server.js, an INDIGO-IAM-shaped OpenID provider) as a child process.

Clients are registered before start and written to <state>/iam/clients.json (mode 0600); their secrets are
generated there and never committed. The signing key persists in <state>/iam, so tokens survive a restart.

The dev IAM applies INDIGO IAM's rules by default (scope required on token exchange, the exchange grant and token
introspection enabled per client, scopes checked against the client's registration). Options mirror what an IAM
instance or client may be set up with: the `iam` or `wlcg` token profile, refresh-token rotation, and access
tokens without a `scope` claim (IAM's default; resource servers such as Rucio then introspect).

IAM's SCIM API (/scim/Users, /scim/Groups; devstack/iam/scim.js) answers access tokens with `scim:read` (reads) or
`scim:write` (creating users, changing group members). A client gets such a token with the client_credentials grant
when it is registered for the grant and the scope: `add_client(..., client_credentials=True, scopes=[SCIM_READ])`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from devstack.ports import ensure_port_free, http_ready
from devstack.procs import Process
from devstack.service import Service, ServiceError
from devstack.settings import NODE_MODULES, REPO, Settings
from dlaas_fs.atomic import write_secret_file
from hub_plugins.token_exchange import GRANT_TYPE as TOKEN_EXCHANGE

SERVER_JS = REPO / "devstack" / "iam" / "server.js"
USERS_FILE = REPO / "devstack" / "iam" / "users.json"
CLIENT_CREDENTIALS = "client_credentials"
PROFILES = ("iam", "wlcg")
BASE_SCOPES = ("openid", "profile", "email", "offline_access")
SCIM_READ, SCIM_WRITE = "scim:read", "scim:write"


class DevIAM(Service):
    def __init__(
        self,
        settings: Settings,
        *,
        clients: list[dict] | None = None,
        port: int | None = None,
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 30 * 24 * 3600,
        id_token_ttl: int = 3600,
        users_file: Path = USERS_FILE,
        profile: str | None = None,
        rotate_refresh_tokens: bool | None = None,
        scope_claim: bool | None = None,
    ):
        # Unless given here, as the settings say (DLAAS_IAM_PROFILE, DLAAS_IAM_ROTATE_REFRESH, DLAAS_IAM_SCOPE_CLAIM).
        profile = settings.iam_profile if profile is None else profile
        rotate_refresh_tokens = (
            settings.iam_rotate_refresh_tokens if rotate_refresh_tokens is None else rotate_refresh_tokens
        )
        scope_claim = settings.iam_scope_claim if scope_claim is None else scope_claim
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        if not scope_claim and profile != "iam":
            raise ValueError(
                "scope_claim=False applies to the iam profile only: WLCG profile tokens always carry scope"
            )
        self.profile = profile
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.scope_claim = scope_claim
        self.settings = settings
        self.port = settings.iam_port if port is None else port
        self.dir = settings.state_dir / "iam"
        self.ttls = (access_token_ttl, refresh_token_ttl, id_token_ttl)
        self.users_file = users_file
        self._clients: dict[str, dict] = {}
        self.process: Process | None = None
        self.issuer = ""
        for client in clients or []:
            self.add_client(**client)

    @property
    def users(self) -> list[dict]:
        return json.loads(self.users_file.read_text())

    def user(self, username: str) -> dict:
        return next(u for u in self.users if u["username"] == username)

    @property
    def url(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def default_scopes(self) -> list[str]:
        """What a client is registered for unless told otherwise: what DLaaS clients ask for under this profile."""
        return [*BASE_SCOPES, *(["wlcg.groups"] if self.profile == "wlcg" else [])]

    def add_client(
        self,
        client_id: str,
        redirect_uris: list[str] = (),
        *,
        public: bool = False,
        grant_types: list[str] | None = None,
        client_secret: str | None = None,
        scopes: list[str] | None = None,
        token_exchange: bool = False,
        introspection: bool = False,
        client_credentials: bool = False,
    ) -> dict:
        """Register a client (before start), as an IAM administrator would.

        Confidential clients get a generated secret, kept in the state dir. `grant_types` defaults to
        authorization_code and refresh_token; the token-exchange grant is added only with `token_exchange=True`
        (IAM: only an administrator enables it). `scopes` are those the client may ask for (default:
        `default_scopes`). `introspection=True` lets the client call /introspect (e.g. a resource server).
        `client_credentials=True` adds that grant (tokens of the client itself, e.g. for the SCIM API with
        `scopes=[SCIM_READ]`); a client registered for nothing else needs no redirect URI.
        """
        if grant_types is not None:
            grants = list(grant_types)
        elif client_credentials and not redirect_uris:
            grants = []  # a service client: no user logs in through it
        else:
            grants = ["authorization_code", "refresh_token"]
        if TOKEN_EXCHANGE in grants:
            raise ValueError("enable the token-exchange grant with token_exchange=True, not in grant_types")
        if token_exchange:
            grants.append(TOKEN_EXCHANGE)
        if client_credentials:
            if public:
                raise ValueError("the client_credentials grant needs a confidential client (public=False)")
            if CLIENT_CREDENTIALS not in grants:
                grants.append(CLIENT_CREDENTIALS)
        client = {
            "client_id": client_id,
            "redirect_uris": list(redirect_uris),
            "grant_types": grants,
            "scopes": list(self.default_scopes if scopes is None else scopes),
            "introspection": introspection,
        }
        if not public:
            client["client_secret"] = client_secret or self._stored_secret(client_id)
        self._clients[client_id] = client
        return client

    def add_introspecting_client(self, client_id: str, client_secret: str) -> dict:
        """A resource server's client (e.g. the `rucio` client of Rucio's idpsecrets.json): no grants, no scopes,
        allowed to introspect tokens, with the secret the resource server already holds."""
        return self.add_client(client_id, grant_types=[], scopes=[], client_secret=client_secret, introspection=True)

    def client(self, client_id: str) -> dict:
        return self._clients[client_id]

    def _stored_secret(self, client_id: str) -> str:
        path = self.dir / "client-secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        if client_id not in stored:
            stored[client_id] = secrets.token_urlsafe(32)
            write_secret_file(path, json.dumps(stored))
        return stored[client_id]

    def start(self) -> DevIAM:
        node = shutil.which("node")
        if node is None:
            raise ServiceError("Node.js not found: run `make up` (installs Node.js and the dev IAM's packages)")
        if not (NODE_MODULES / "oidc-provider").is_dir():
            raise ServiceError("the dev IAM's npm packages are missing: run `make up`")
        ensure_port_free(self.settings.host, self.port, "dev IAM", "DLAAS_IAM_PORT")
        clients_file = self.dir / "clients.json"
        write_secret_file(clients_file, json.dumps(list(self._clients.values())))
        access, refresh, id_ttl = self.ttls
        self.process = Process(
            "dev-iam",
            [
                node,
                str(SERVER_JS),
                "--host",
                self.settings.host,
                "--port",
                str(self.port),
                "--state-dir",
                str(self.dir),
                "--users",
                str(self.users_file),
                "--clients",
                str(clients_file),
                "--access-ttl",
                str(access),
                "--refresh-ttl",
                str(refresh),
                "--id-ttl",
                str(id_ttl),
                "--profile",
                self.profile,
                *(["--rotate-refresh-tokens"] if self.rotate_refresh_tokens else []),
                *([] if self.scope_claim else ["--no-scope-claim"]),
            ],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=self._ready,
            env={**os.environ, "NODE_ENV": "development", "NODE_NO_WARNINGS": "1"},
            cwd=REPO / "devstack",
            timeout=30,
        )
        self._log_offset = self.process.log_path.stat().st_size if self.process.log_path.exists() else 0
        self.process.start()
        return self

    def _ready(self) -> bool:
        if not self.issuer:
            with open(self.process.log_path, "rb") as f:
                f.seek(self._log_offset)
                found = re.search(rb"^READY (\S+)$", f.read(), re.M)
            if not found:
                return False
            self.issuer = found.group(1).decode()
            self.port = int(self.issuer.rstrip("/").rsplit(":", 1)[1])
        return http_ready(f"{self.issuer}.well-known/openid-configuration")()

    def restart(self) -> DevIAM:
        """Stop and start again on the same port (keys and clients persist)."""
        port = self.port
        self.stop()
        self.issuer, self.port = "", port
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start()
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
