"""Dask Gateway clusters from a notebook, with the user's Data Lake tokens on every worker from the first task on.

    from singleuser.dask_clusters import new_cluster
    cluster = new_cluster(workers=2, environment="base")   # options: environment, worker_cores, worker_memory
    client = cluster.get_client()

Plain `Gateway().new_cluster()` works too; its workers then get the tokens within a few seconds (the server's
singleuser.dask_token_push), so a task submitted at once could start without them. This helper registers the token
plugin with the scheduler before asking for workers, so every worker has the files before it runs anything.
"""

from __future__ import annotations

from singleuser.dask_tokens import PLUGIN_NAME, from_server, introduce_to_rucio


def share_tokens(cluster) -> None:
    """Give the workers of `cluster` (a dask_gateway.GatewayCluster) the current token files of this server."""
    plugin = from_server()
    if "rucio_token" in plugin.files:
        introduce_to_rucio()
    with cluster.get_client(set_as_default=False) as client:
        client.register_plugin(plugin, name=PLUGIN_NAME)


def new_cluster(workers: int = 0, gateway=None, **options):
    """A new cluster of this user (options as the gateway offers them), tokens registered, scaled to `workers`."""
    from dask_gateway import Gateway

    cluster = (gateway or Gateway()).new_cluster(**options)
    try:
        share_tokens(cluster)
        if workers:
            cluster.scale(workers)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster
