"""Spawners that return from start() once the new server accepts connections, so the hub finds it up at its first
look instead of seconds later.

After a spawner's start() returns, JupyterHub checks the server's address with exponential back-off and full
jitter (waits of up to 0.2, 0.4, ... 5 s between tries). A user server needs a few seconds after its process or pod
starts before Jupyter Server binds its port, so the hub used to notice a ready server 1-2.5 s after it came up
(measured: 1.29 s in one spawn; docs/benchmarks.md, time to JupyterLab). Jupyter Server binds its port only when it
is ready to answer, so a cheap TCP connect every `ready_poll_interval` seconds inside start() tells the moment.
Used by the local stack's spawner (devstack.local_spawner) and by KubeSpawner in production
(hub_plugins.kube_spawner); the hub's own HTTP check still decides whether the server is up.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from traitlets import Float
from traitlets.config import LoggingConfigurable


async def wait_listening(
    host: str, port: int, *, interval: float, timeout: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Whether `host:port` accepted a connection within `timeout` seconds, trying every `interval` seconds while
    `alive()` holds (a server process that ended will never listen).

    Each try is a bare non-blocking connect to the addresses resolved once: about half the hub's CPU of an asyncio
    stream connection (measured 60 vs 113 us), which counts when a burst of spawns polls ten times a second each."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    addresses: list[tuple] = []
    while alive():
        try:
            if not addresses:  # a name the cluster's DNS does not know yet is tried again next time
                addresses = [(i[0], i[4]) for i in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
            for family, address in addresses:
                if await _connects(loop, family, address, min(5.0, timeout)):
                    return True
        except OSError:
            pass
        if time.monotonic() + interval >= deadline:
            return False
        await asyncio.sleep(interval)
    return False


async def _connects(loop: asyncio.AbstractEventLoop, family: int, address: tuple, timeout: float) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, address)
        except (TimeoutError, OSError):
            return False
    return True


class WaitsUntilListening(LoggingConfigurable):
    """Mixin for a Spawner (first in its bases): `wait_until_listening` inside start(), bounded by the spawner's own
    timeouts."""

    ready_poll_interval = Float(
        0.1,
        config=True,
        help="""Seconds between two looks, inside start(), at whether the new server accepts connections yet; start()
        returns once it does (or the server ended, or http_timeout passed). JupyterHub's own check, which backs off
        up to 5 s between tries, then finds the server up at its first try instead of up to seconds after it came
        up (docs/benchmarks.md, time to JupyterLab). 0: return at once, as the spawner without this mixin does.""",
    )

    async def wait_until_listening(self, host: str, port: int, alive: Callable[[], bool] = lambda: True) -> None:
        if self.ready_poll_interval <= 0:
            return
        # Within start_timeout, which bounds start(): a server that never answers is still JupyterHub's to report.
        timeout = min(self.http_timeout, max(1, self.start_timeout - 5))
        if not await wait_listening(host, port, interval=self.ready_poll_interval, timeout=timeout, alive=alive):
            self.log.info("%s:%s is not listening yet; the hub's own check takes over", host, port)
