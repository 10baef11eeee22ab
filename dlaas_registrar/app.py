"""dlaas-registrar: the service that registers users' scratch files in Rucio, so that users never do it themselves.

A JupyterHub service (its own hub API token, its own Rucio account with the attribute `dlaas_registrar=True`). A user's
server (datalakectl) sends `POST <prefix>api/uploads` with its hub API token; the service asks the hub who that is
(and that the token carries `access:services!service=<this service>`), resolves the named paths inside THAT user's
scratch directory only (dlaas_registrar.scratch_files), computes sizes and checksums itself, and registers dataset,
replicas and rules owned by the user's Rucio account (dlaas_registrar.registration). The Rucio server's policy
package (dlaas_rucio_policy) refuses scratch registrations from anyone else, and from this service for paths outside
the owner's directory: this service is the courtesy that gives good messages, Rucio is the control.

    dlaas-registrar --scratch-root /scratch-root --scratch-rse DLAAS-SCRATCH [--ip 0.0.0.0 --port 8090]

Environment: JUPYTERHUB_API_TOKEN, JUPYTERHUB_API_URL, JUPYTERHUB_SERVICE_NAME / _PREFIX (set by the hub for managed
services, by the deployment otherwise) and RUCIO_CONFIG (the service account's rucio.cfg).

Metrics (dlaas_registrar.metrics) at <prefix>metrics for hub tokens with read:metrics: uploads by outcome, files and
bytes registered, Rucio call latency, and the states of the upload rules it made (dlaas_registrar.rule_watch).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Application

from dlaas_registrar import metrics
from dlaas_registrar.registration import Registration, RegistrationError
from dlaas_registrar.rule_watch import RuleWatch
from dlaas_registrar.scratch_files import ScratchPathError, collect, open_user_directory

SERVICE_NAME = "dlaas-registrar"
MAX_BODY = 256 * 1024


class UploadRequestError(ValueError):
    """The request body is not a usable upload request."""


def parse_request(body: bytes) -> dict:
    """The upload request's fields, checked for type; semantic checks happen in Registration.plan."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise UploadRequestError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise UploadRequestError("the request must be a JSON object")
    unknown = set(data) - {
        "paths",
        "destination_rse",
        "scope",
        "dataset",
        "lifetime",
        "scratch_lifetime",
        "name_prefix",
        "dry_run",
    }
    if unknown:
        raise UploadRequestError(f"unknown fields {sorted(unknown)}")
    paths = data.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise UploadRequestError("`paths` must be a non-empty list of paths relative to your scratch area")
    if not isinstance(data.get("destination_rse"), str) or not data["destination_rse"]:
        raise UploadRequestError("`destination_rse` is required (e.g. --rse DESY-DCACHE)")
    for key in ("scope", "dataset", "name_prefix"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UploadRequestError(f"`{key}` must be a string")
    for key in ("lifetime", "scratch_lifetime"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise UploadRequestError(f"`{key}` must be a whole number of seconds")
    if not isinstance(data.get("dry_run", False), bool):
        raise UploadRequestError("`dry_run` must be true or false")
    return data


class APIHandler(web.RequestHandler):
    def initialize(self, app: Registrar):
        self.app = app
        self.user: dict | None = None

    def check_xsrf_cookie(self):
        return  # token-authenticated only: cookies are never looked at

    def write_error(self, status_code, **kwargs):
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": reason}))

    async def prepare(self):
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise web.HTTPError(401, "send your server's hub API token: Authorization: token $JUPYTERHUB_API_TOKEN")
        model = await self.app.hub_auth.user_for_token(token.strip(), sync=False)
        if not model:
            raise web.HTTPError(403, "the hub does not know this token (expired, or your server was stopped)")
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "uploads are registered for users, not for services")
        if not self.app.hub_auth.check_scopes(self.app.hub_auth.access_scopes, model):
            raise web.HTTPError(
                403,
                f"this token may not use {self.app.service_name} "
                f"(it needs access:services!service={self.app.service_name})",
            )
        self.user = model


class UploadsHandler(APIHandler):
    outcome: str | None = None  # set when the request succeeds; errors are counted by their status

    def on_finish(self):
        metrics.UPLOADS.labels(self.outcome or metrics.outcome_of(self.get_status())).inc()

    async def post(self):
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, "request too large: upload fewer paths at once, or name folders")
        try:
            request = parse_request(self.request.body)
        except UploadRequestError as e:
            raise web.HTTPError(400, str(e)) from None
        username = self.user["name"]
        async with self.app.user_lock(username):
            try:
                result = await self.app.run(self.app.register, username, request)
            except (ScratchPathError, RegistrationError) as e:
                raise web.HTTPError(400, str(e)) from None
            except Exception as e:  # Rucio unreachable, server errors: nothing was registered
                self.app.log.warning("upload for %s failed: %s", username, type(e).__name__)
                raise web.HTTPError(
                    502, "the Data Lake catalogue (Rucio) did not answer; nothing was registered: try again in a minute"
                ) from None
        self.outcome, result = result
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.finish({"status": "ok"})


class Registrar(Application):
    name = SERVICE_NAME
    description = __doc__.splitlines()[0]

    ip = Unicode("127.0.0.1", config=True, help="Address to listen on (0.0.0.0 in a pod).")
    port = Integer(8090, config=True, help="Port to listen on.")
    scratch_root = Unicode(
        config=True,
        help="""Directory holding every user's scratch directory (<scratch_root>/<username>), read-only is enough:
        the service only reads files to check them; Rucio's reaper deletes them after the copy.""",
    )
    scratch_rse = Unicode("DLAAS-SCRATCH", config=True, help="The greedy, non-deterministic RSE of the scratch area.")
    max_files = Integer(1000, config=True, help="Most files one upload may register (Rucio handles 1000 per call).")
    workers = Integer(4, config=True, help="Threads doing file checksums and Rucio calls.")
    rule_check_interval = Float(
        60.0,
        config=True,
        help="""Seconds between two looks at the states of the upload rules this service made and are not OK yet
        (one Rucio request per such rule; dlaas_registrar.rule_watch). 0: no looks.""",
    )
    max_followed_rules = Integer(1000, config=True, help="Most upload rules followed for the metrics at once.")
    rucio_token_dir = Unicode(
        "",
        config=True,
        help="""Where rucio-clients caches this service's Rucio token (default: its own, under /tmp, shared by
        everyone on the machine). Give a private directory.""",
    )
    service_name = Unicode(config=True, help="The JupyterHub service name (JUPYTERHUB_SERVICE_NAME).")
    service_prefix = Unicode(config=True, help="URL prefix of the service (JUPYTERHUB_SERVICE_PREFIX).")

    @default("service_name")
    def _service_name_default(self):
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", SERVICE_NAME)

    @default("service_prefix")
    def _service_prefix_default(self):
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    aliases = {
        "ip": "Registrar.ip",
        "port": "Registrar.port",
        "scratch-root": "Registrar.scratch_root",
        "scratch-rse": "Registrar.scratch_rse",
        "config": "Registrar.config_file",
    }
    config_file = Unicode("", config=True, help="A Python config file (traitlets) to load.")

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
        if not self.scratch_root:
            raise SystemExit("dlaas-registrar: --scratch-root is required (the directory of users' scratch areas)")
        if not os.path.isdir(self.scratch_root):
            raise SystemExit(f"dlaas-registrar: {self.scratch_root} is not a directory: mount the scratch area there")
        if not os.environ.get("JUPYTERHUB_API_TOKEN"):
            raise SystemExit("dlaas-registrar: JUPYTERHUB_API_TOKEN is not set: give the service its hub API token")
        self.hub_auth = HubAuth(cache_max_age=30, access_scopes={f"access:services!service={self.service_name}"})
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="registrar")
        self._local = threading.local()
        self._locks: dict[str, asyncio.Lock] = {}
        self.rule_watch = RuleWatch(max_rules=self.max_followed_rules)

    # --- work ------------------------------------------------------------------------------------------------

    def rucio_client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from rucio.client import Client

            if self.rucio_token_dir:
                os.makedirs(self.rucio_token_dir, mode=0o700, exist_ok=True)
                prefix = os.path.join(self.rucio_token_dir, ".rucio_")

                class PrivateClient(Client):
                    TOKEN_PATH_PREFIX = prefix

                client = PrivateClient()
            else:
                client = Client()
            client = self._local.client = metrics.TimedClient(client)
        return client

    def register(self, username: str, request: dict) -> tuple[str, dict]:
        """Register the request's files for `username`: (outcome for the metrics, the answer to the client)."""
        fd = open_user_directory(self.scratch_root, username)
        try:
            files = collect(fd, request["paths"], max_files=self.max_files)
        finally:
            os.close(fd)
        registration = Registration(self.rucio_client(), scratch_rse=self.scratch_rse)
        plan = registration.plan(
            username,
            files,
            destination_rse=request["destination_rse"],
            scope=request.get("scope"),
            dataset=request.get("dataset"),
            lifetime=request.get("lifetime"),
            scratch_lifetime=request.get("scratch_lifetime") or 3600,
            name_prefix=request.get("name_prefix") or "",
        )
        dry_run = request.get("dry_run", False)
        new = plan.new_files
        if not dry_run and new:
            plan = registration.execute(plan)
            metrics.FILES.inc(len(new))
            metrics.BYTES.inc(sum(f.bytes for f in new))
            self.rule_watch.follow(plan.upload_rules)
            self.log.info(
                "registered %d files of %s in %s:%s -> %s",
                len(plan.files),
                username,
                plan.scope,
                plan.dataset,
                plan.destination_rse,
            )
        elif not dry_run:
            plan.rules = [r["id"] for r in registration.client.list_did_rules(plan.scope, plan.dataset)]
        outcome = "dry_run" if dry_run else "registered" if new else "unchanged"
        return outcome, {"dry_run": dry_run, **plan.as_dict()}

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def user_lock(self, username: str) -> asyncio.Lock:
        return self._locks.setdefault(username, asyncio.Lock())

    def check_rules(self) -> None:
        """One look at the followed upload rules (in a worker thread: the Rucio client is per thread)."""
        self.rule_watch.check(self.rucio_client())

    async def follow_rules(self) -> None:
        while True:
            await asyncio.sleep(self.rule_check_interval)
            try:
                await self.run(self.check_rules)
            except Exception as e:  # Rucio unreachable: counted, tried again at the next interval
                self.log.warning("could not look at the upload rules: %s", type(e).__name__)

    # --- serving ---------------------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        prefix = "/" + self.service_prefix.strip("/") + "/"
        return web.Application(
            [
                (prefix + "api/uploads", UploadsHandler, {"app": self}),
                (prefix + "api/health", HealthHandler),
                (prefix + "metrics", metrics.MetricsHandler, {"hub_auth": self.hub_auth}),
            ]
        )

    def start(self):
        async def serve():
            server = HTTPServer(self.web_app(), max_body_size=MAX_BODY + 1024)
            server.listen(self.port, self.ip)
            self.log.info("%s listening on http://%s:%d%s", self.name, self.ip, self.port, self.service_prefix)
            if self.rule_check_interval > 0:
                self._watching = asyncio.create_task(self.follow_rules())  # held: an unreferenced task may vanish
            await asyncio.Event().wait()

        asyncio.run(serve())


def main(argv=None) -> None:
    Registrar.launch_instance(argv)


if __name__ == "__main__":
    main()
