"""Keep the user's Dask clusters supplied with her current Data Lake tokens, from her server; stop them when the
server stops.

The token agent renews the token files in the server (singleuser.token_agent); this loop, in a thread of the same
server, notices when they change and registers the new files with every running cluster of the user
(singleuser.dask_tokens.DataLakeTokens, which replaces the previous one on each worker), and gives clusters made since
the last round the current ones. It asks Dask Gateway with the server's own hub API token, so it sees only this
user's clusters; a cluster started from a notebook with singleuser.dask_clusters has the tokens before its first
worker starts, one started with plain `Gateway().new_cluster()` gets them within `list_interval`. When the agent
removes the files (the user logged out), the workers' files go too. When the server exits normally its clusters
are stopped; the gateway stops the clusters of users without a running server anyway
(singleuser.dask_gateway_policy), whatever way the server ended.

Started by singleuser.server_extension when the hub gave a Dask Gateway address; never logs a token.
"""

from __future__ import annotations

import atexit
import threading
import time

from traitlets import Float, Instance
from traitlets.config import LoggingConfigurable

from singleuser.server_settings import ServerSettings


class ClusterTokenPusher(LoggingConfigurable):
    settings = Instance(ServerSettings, help="What the hub told this server (its token files, Rucio settings).")
    interval = Float(1.0, config=True, help="Seconds between two looks at the token files.")
    list_interval = Float(
        5.0, config=True, help="Seconds between two listings of the user's clusters (to find new ones)."
    )
    stop_timeout = Float(20.0, config=True, help="Seconds the server waits at exit for its clusters to stop.")
    connect_timeout = Float(10.0, config=True, help="Seconds to connect to a cluster's scheduler.")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pushed: dict[str, tuple] = {}  # cluster name -> fingerprint of what its workers have
        self._listed = float("-inf")
        self._stop = threading.Event()
        self._gateway = None
        self._clients: dict = {}  # cluster name -> distributed.Client, kept while the cluster runs

    def gateway(self):
        if self._gateway is None:
            from dask_gateway import Gateway

            self._gateway = Gateway()
        return self._gateway

    def step(self, now: float | None = None) -> list[str]:
        """One round: push the current tokens where they are not yet; returns the clusters pushed to."""
        from singleuser.dask_tokens import PLUGIN_NAME, fingerprint, from_server, introduce_to_rucio

        now = time.monotonic() if now is None else now
        plugin = from_server(self.settings)
        mark = fingerprint(plugin)
        stale = [name for name, pushed in self._pushed.items() if pushed != mark]
        if not stale and now - self._listed < self.list_interval:
            return []
        self._listed = now
        running = {c.name for c in self.gateway().list_clusters() if c.status.name == "RUNNING"}
        self._pushed = {name: pushed for name, pushed in self._pushed.items() if name in running}
        for name in set(self._clients) - running:
            self._forget(name)
        todo = [name for name in sorted(running) if self._pushed.get(name) != mark]
        if todo and "rucio_token" in plugin.files:
            introduce_to_rucio(self.log)
        pushed = []
        for name in todo:
            try:
                self.client(name).register_plugin(plugin, name=PLUGIN_NAME)
            except Exception:
                self._forget(name)  # connect again next round
                raise
            self._pushed[name] = mark
            pushed.append(name)
        if pushed:
            self.log.info("Data Lake token files sent to the workers of %s", ", ".join(pushed))
        return pushed

    def client(self, name: str):
        """A client of the cluster's scheduler, kept between rounds (with the cluster's own TLS credentials, which
        the gateway gives its owner only). A plain client: none of GatewayCluster's watchers."""
        client = self._clients.get(name)
        if client is None or client.status != "running":
            from distributed import Client

            report = self.gateway().get_cluster(name)
            client = Client(
                report.scheduler_address, security=report.security, set_as_default=False, timeout=self.connect_timeout
            )
            self._clients[name] = client
        return client

    def _forget(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None:
            try:
                client.close(timeout=self.connect_timeout)
            except Exception as e:
                self.log.debug("closing the client of %s: %s", name, type(e).__name__)

    def run(self) -> None:
        failures = 0
        while not self._stop.wait(self.interval if not failures else min(60.0, self.interval * 2**failures)):
            try:
                self.step()
                failures = 0
            except Exception as e:  # the gateway or a cluster is away: try again later, never with the token in a log
                failures = min(failures + 1, 6)
                self.log.warning("Dask clusters not given new tokens yet (%s: %s)", type(e).__name__, str(e)[:200])

    def stop_clusters(self) -> list[str]:
        """Stop every cluster of this user (at the server's exit)."""
        self._stop.set()
        for name in list(self._clients):
            self._forget(name)
        gateway = self.gateway()
        names = [c.name for c in gateway.list_clusters()]
        for name in names:
            gateway.stop_cluster(name)
        return names


def start(log, settings: ServerSettings | None = None) -> ClusterTokenPusher | None:
    """Start pushing tokens in a daemon thread if this server has a Dask Gateway; stop the clusters at exit."""
    import dask.config

    if not dask.config.get("gateway.address", None):
        return None
    pusher = ClusterTokenPusher(log=log, settings=settings or ServerSettings())
    threading.Thread(target=pusher.run, name="dlaas-dask-token-push", daemon=True).start()

    def stop_at_exit():
        try:
            stopped = pusher.stop_clusters()
        except Exception as e:
            log.warning("Dask clusters not stopped at exit (%s); the gateway stops them", type(e).__name__)
        else:
            if stopped:
                log.info("Dask clusters stopped with the server: %s", ", ".join(stopped))

    atexit.register(stop_at_exit)
    return pusher
