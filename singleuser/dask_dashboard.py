"""The Dask sidebar's dashboards for Dask Gateway clusters: the extension's dashboard proxy, keeping the link's path.

dask-labextension 7.0.0 shows a cluster's dashboard through a proxy in the user's server,
`<base_url>dask/dashboard/<cluster id>/<path>`, which sends `/<path>` to the host and port of the cluster's
dashboard link and drops the link's own path. A Dask Gateway cluster's dashboard lives under a path
(`/services/dask-gateway/clusters/<name>/`), so the sidebar asked the hub's root for `individual-plots.json`, got
the hub's 404 page and said "Dashboard not connected" (reported upstream: dask-labextension#225,
dask-gateway#830).

This module puts a handler for that route first in the server's routing table: dask-labextension's own proxy
handler, subclassed, which for a cluster of the configured gateway sends the request to the gateway's address as
this server reaches it (contract.DASK_GATEWAY: the hub's proxy locally, `http://proxy-public/...` in a cluster) with
the dashboard link's path kept. Links to anything else go through the extension's handler unchanged. The dashboards
themselves are the gateway's (docs/security.md: they are not authenticated upstream; this proxy adds nothing to
what a link already opens), and only the server's owner reaches this route (Jupyter Server's authentication).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from dask_labextension.dashboardhandler import DaskDashboardHandler
from dask_labextension.manager import manager
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web
from tornado.routing import PathMatches, Rule


def gateway_target(dashboard_link: str, gateway_address: str) -> tuple[str, int, str] | None:
    """(host, port, path prefix) to proxy a dashboard of the gateway at `gateway_address` to, or None when
    `dashboard_link` is not one of that gateway's cluster dashboards (absolute, or a path as browsers use it)."""
    gateway, link = urlsplit(gateway_address), urlsplit(dashboard_link)
    if not gateway.hostname or (link.hostname and link.hostname != gateway.hostname):
        return None
    clusters = gateway.path.rstrip("/") + "/clusters/"
    if not re.fullmatch(re.escape(clusters) + r"[^/]+(/status)?/?", link.path):
        return None
    root = link.path.rstrip("/").removesuffix("/status")
    return gateway.hostname, gateway.port or (443 if gateway.scheme == "https" else 80), root


class GatewayDashboardHandler(DaskDashboardHandler):
    def __init__(self, *args, gateway_address: str, **kwargs):
        self.gateway_address = gateway_address
        super().__init__(*args, **kwargs)

    def _target(self, cluster_id: str) -> tuple[str, int, str] | None:
        model = manager.get_cluster(cluster_id)
        if not model:
            raise web.HTTPError(404, f"Dask cluster {cluster_id} not found")
        return gateway_target(model.get("dashboard_link") or "", self.gateway_address)

    def proxy(self, cluster_id, proxied_path):
        target = self._target(cluster_id)
        if target is None:
            return super().proxy(cluster_id, proxied_path)
        host, port, root = target
        return ProxyHandler.proxy(self, host, port, root + proxied_path)

    async def open(self, cluster_id, proxied_path):
        target = self._target(cluster_id)
        if target is None:
            return await super().open(cluster_id, proxied_path)
        host, port, root = target
        return await ProxyHandler.proxy_open(self, host, port, root + proxied_path)


def install(serverapp, gateway_address: str) -> None:
    """Route the extension's dashboard proxy of this server to GatewayDashboardHandler (first in the routing table,
    before dask-labextension's own rule for the same path)."""
    if not gateway_address:
        return
    app = serverapp.web_app
    cluster_id = r"(?P<cluster_id>\w+-\w+-\w+-\w+-\w+)"  # dask-labextension's cluster ids (UUIDs)
    pattern = url_path_join(app.settings["base_url"], f"dask/dashboard/{cluster_id}(?P<proxied_path>.+)")
    host = urlsplit(gateway_address).hostname
    kwargs = {"gateway_address": gateway_address, "host_allowlist": ["localhost", "127.0.0.1", host]}
    app.default_router.rules.insert(0, Rule(PathMatches(pattern), GatewayDashboardHandler, kwargs))
