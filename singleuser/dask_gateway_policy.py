"""What the Dask Gateway server enforces for DLaaS users, whatever their notebooks ask: the cluster options offered,
how many clusters a user may run, and that clusters live only while their user's server runs.

Runs inside the Dask Gateway server (imported by its configuration: devstack/templates/dask_gateway_config.py.in
locally). The checks live there, in the server users cannot skip: the gateway validates every option against the
bounds before a cluster exists (an unknown environment or too many cores is refused with one line saying what is
allowed) and clamps every scale request to `ClusterConfig.cluster_max_workers` itself.

- `cluster_options()`: the environment (one of the deployment's: base, ROOT; each is a set of ClusterConfig
  overrides, e.g. which `dask` command runs the scheduler and the workers, so they have the notebook's packages),
  cores and memory per worker, each bounded.
- `DataLakeBackendMixin` (`DataLakeLocalBackend` for the local data lake): at most `max_clusters_per_user` active
  clusters per user, and every `server_check_period` seconds the users who have clusters are looked up at the hub
  (with the gateway's own service token, which may read servers and nothing more): the clusters of a user without a
  running server are stopped. So clusters, and the tokens on their workers, end with the session that made them,
  however the server ended (stopped, culled, killed); `ClusterConfig.idle_timeout` stops clusters nobody uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import UnsafeLocalBackend
from dask_gateway_server.options import Float, Integer, Options, Select
from traitlets import Float as FloatTrait
from traitlets import Integer as IntegerTrait
from traitlets.config import LoggingConfigurable

GIB = 2**30


def cluster_options(
    environments: dict[str, dict], *, max_worker_cores: int = 2, max_worker_memory_gib: float = 4.0
) -> Options:
    """The options users choose from: `environments` maps a name (the first is the default) to the ClusterConfig
    overrides that run that environment's scheduler and workers."""
    if not environments:
        raise ValueError("cluster_options needs at least one environment")

    def handler(options):
        return {
            **environments[options.environment],
            "worker_cores": options.worker_cores,
            "worker_threads": options.worker_cores,
            "worker_memory": int(options.worker_memory * GIB),
        }

    return Options(
        Select("environment", list(environments), label="Environment (the notebook's packages)"),
        Integer("worker_cores", default=1, min=1, max=max_worker_cores, label="Cores per worker"),
        Float("worker_memory", default=1.0, min=0.25, max=max_worker_memory_gib, label="Memory per worker (GiB)"),
        handler=handler,
    )


class DataLakeBackendMixin(LoggingConfigurable):
    """Per-user cluster limit and clusters bound to their user's running server, for any Dask Gateway backend."""

    max_clusters_per_user = IntegerTrait(
        2,
        config=True,
        help="""Active clusters one user may have at once; a request for one more is refused with a message saying
        to stop one. With ClusterConfig.cluster_max_workers this bounds the workers of one user.""",
    )
    server_check_period = FloatTrait(
        30.0,
        config=True,
        help="""Seconds between two checks at the hub of the users who have clusters: the clusters of a user
        without a running server are stopped (a cluster outlives its user's server by at most about this).""",
    )
    hub_request_timeout = FloatTrait(10.0, config=True, help="Timeout of one request to the hub's API (seconds).")

    async def setup(self, app):
        await super().setup(app)
        self._watch_task = asyncio.ensure_future(self._watch_servers())

    async def cleanup(self):
        task = getattr(self, "_watch_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().cleanup()

    async def start_cluster(self, user, cluster_options):
        active = await self.list_clusters(username=user.name)
        if len(active) >= self.max_clusters_per_user:
            raise PublicException(
                f"{user.name} already has {len(active)} Dask clusters, the most one user may run: stop one "
                "(cluster.shutdown(), or Gateway().stop_cluster(name)) and ask again"
            )
        return await super().start_cluster(user, cluster_options)

    async def _watch_servers(self):
        while True:
            await asyncio.sleep(self.server_check_period)
            try:
                await self.stop_clusters_without_server()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("checking the users' servers at the hub failed; trying again later")

    async def stop_clusters_without_server(self) -> list[str]:
        """Stop the active clusters of users who have no running server at the hub; returns the clusters stopped."""
        by_user: dict[str, list[str]] = {}
        for cluster in await self.list_clusters():
            by_user.setdefault(cluster.username, []).append(cluster.name)
        stopped = []
        for username, names in sorted(by_user.items()):
            if await self._server_running(username) is False:
                for name in names:
                    self.log.info("Stopping cluster %s: its user %s has no running server", name, username)
                    await self.stop_cluster(name)
                    stopped.append(name)
        return stopped

    async def _server_running(self, username: str) -> bool | None:
        """Whether the hub says `username` has a running server; None when the hub cannot say (then nothing is
        stopped). Clusters made with a service's token (`service:<name>`) have no server: False."""
        if ":" in username:
            return False
        import aiohttp

        auth = self.parent.authenticator
        url = f"{auth.jupyterhub_api_url.rstrip('/')}/users/{quote(username, safe='')}"
        headers = {"Authorization": f"token {auth.jupyterhub_api_token}"}
        timeout = aiohttp.ClientTimeout(total=self.hub_request_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers, ssl=auth.ssl_context) as resp,
            ):
                if resp.status == 404:
                    return False
                if resp.status >= 400:
                    self.log.warning("the hub answered %s for user %s; their clusters stay", resp.status, username)
                    return None
                data = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as e:
            self.log.warning("the hub is unreachable (%s); clusters stay until it answers", type(e).__name__)
            return None
        if "servers" not in data:
            self.log.warning("the gateway's hub service may not read servers (scope read:servers); clusters stay")
            return None
        return any(server.get("ready") or server.get("pending") == "spawn" for server in data["servers"].values())


class DataLakeLocalBackend(DataLakeBackendMixin, UnsafeLocalBackend):
    """The local data lake's backend: schedulers and workers are local processes of the gateway's own account
    (devstack/dask_gateway.py says why), with DLaaS's per-user limit and server binding."""
