"""KubeSpawner as DLaaS runs it in production (`spawner_class: dlaas-kube`): z2jh's KubeSpawner, configured by the
chart's values as ever, whose start() returns once the user's pod accepts connections on the server's port
(hub_plugins.server_ready) instead of when the pod is Running, so the hub does not notice a ready server seconds
late."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from kubespawner import KubeSpawner

from hub_plugins.server_ready import WaitsUntilListening


class DataLakeKubeSpawner(WaitsUntilListening, KubeSpawner):
    def start(self):
        # KubeSpawner's start() hands back the future of its own start, which its progress() follows; the server's
        # URL comes when the pod runs, the wait for the port after it.
        return asyncio.ensure_future(self._listening(super().start()))

    async def _listening(self, started) -> str:
        url = await started
        address = urlsplit(url)
        port = address.port or (443 if address.scheme == "https" else 80)
        await self.wait_until_listening(address.hostname, port)
        return url
