"""A loopback TCP proxy that adds a fixed one-way delay in each direction (tc netem is not available here).

Used between a cache and its origin in tests and benchmarks, so "far away" storage can be simulated on one machine.
Every chunk is held for `delay` seconds after it arrives, then forwarded in arrival order; a bounded queue per
direction applies back-pressure instead of buffering without limit.

    proxy = LatencyProxy(("127.0.0.1", origin_port), delay=0.025)
    port = proxy.start()          # runs in a background thread; 127.0.0.1:port now reaches the origin, delayed
    ...
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

CHUNK = 64 * 1024
QUEUE_CHUNKS = 256


class LatencyProxy:
    def __init__(
        self, target: tuple[str, int], delay: float = 0.025, host: str = "127.0.0.1", port: int = 0, sock=None
    ):
        """`sock`: an already bound, listening socket to serve instead of binding host:port (e.g. one bound in
        another network namespace)."""
        if delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        self.target, self.delay, self.host, self.port, self.sock = target, delay, host, port, sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)

        async def receive():
            try:
                while data := await reader.read(CHUNK):
                    await queue.put((time.monotonic() + self.delay, data))
            finally:
                await queue.put((time.monotonic() + self.delay, b""))

        async def send():
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await asyncio.gather(receive(), send())

    async def _handle(self, client_reader, client_writer) -> None:
        self._writers.add(client_writer)
        try:
            origin_reader, origin_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(client_reader, origin_writer), self._pipe(origin_reader, client_writer))
        finally:
            self._tasks.discard(task)
            self._writers.discard(client_writer)
            for w in (client_writer, origin_writer):
                w.close()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            if self.sock is not None:
                serve = asyncio.start_server(self._handle, sock=self.sock)
            else:
                serve = asyncio.start_server(self._handle, self.host, self.port)
            self._server = self._loop.run_until_complete(serve)
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def start(self) -> int:
        """Start in a background thread; returns the port the proxy listens on (127.0.0.1)."""
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self) -> None:
        if self._loop is None or not self._loop.is_running():
            return

        async def shutdown():
            self._server.close()
            for writer in list(self._writers):  # Python 3.11's Server.close() leaves accepted connections open
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(10)
