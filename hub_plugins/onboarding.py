"""Just-in-time onboarding: a member's first login creates her Rucio account before her server starts.

The account sync (`dlaas-rucio-sync`, a CronJob every ten minutes) gives every member of the IAM groups a Rucio
account, identity and scope. A researcher who joined the group five minutes ago would otherwise log in, find a
Rucio sidebar that refuses her, and wait for the next run. So at a user's first login the hub has the same sync
made for that one identity, with a timeout, before it sends her on to her server.

The sync runs in a separate process with its own credentials (the IAM client secret and the Rucio account that may
manage accounts, in files named on its command line or its environment), so the hub process never holds them. It is
one long-lived worker, `<onboard_command> --serve`, started at the first onboarding and again whenever it ended: the
hub writes each user's IAM sub as one line on its stdin and reads one JSON line per user back (dlaas_sync.cli.serve).
It syncs up to four users at once, each of its threads keeping its IAM client token, IAM's discovery and its
Rucio client from one user to the next: a process per login cost 0.27 s of CPU each and held the logins of a storm
of first logins for 3.8 s (docs/benchmarks.md). It ends at the end of its stdin, i.e. with the hub.

A failing or slow sync never blocks the login: its outcome is logged in one line, and the next scheduled run
catches up. A worker that does not answer within the timeout keeps working on, and its late answer is dropped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence

from dlaas_sync import SUB  # the worker's own check of each line
from hub_plugins import metrics

#: The hub's own secrets, which the worker never needs: kept out of its environment.
HUB_SECRETS = frozenset({"JUPYTERHUB_CRYPT_KEY", "CONFIGPROXY_AUTH_TOKEN", "JPY_COOKIE_SECRET"})


class OnboardingWorker:
    """The long-lived `command --serve` process and the logins waiting for its answers."""

    def __init__(self, command: Sequence[str], log):
        self.command = [*command, "--serve"]
        self.log = log
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Future | None = None
        self._starting = asyncio.Lock()
        self._waiting: dict[str, list[asyncio.Future]] = {}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def close(self, timeout: float = 10) -> None:
        """End the worker: the end of its stdin, then SIGKILL if it is still there after `timeout` seconds. (The hub
        needs no call: its own end closes the worker's stdin.)"""
        process, reader = self._process, self._reader
        if process is None:
            return
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        if reader is not None:
            await reader
        self._process = self._reader = None

    async def _running(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self._process is None or self._process.returncode is not None:
                self._process = await asyncio.create_subprocess_exec(
                    *self.command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    # its errors, one line each, go to the hub's log (stderr)
                    env={k: v for k, v in os.environ.items() if k not in HUB_SECRETS},
                )
                self._reader = asyncio.ensure_future(self._read_answers(self._process))
            return self._process

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        while line := await process.stdout.readline():
            try:
                answer = json.loads(line)
                waiting = self._waiting.get(answer["sub"], [])
            except (ValueError, KeyError, TypeError):
                self.log.warning("onboarding: the worker said something that is not an answer; ignored")
                continue
            for future in waiting:  # the same user's logins at once all get the one answer
                if not future.done():
                    future.set_result(answer)
        await process.wait()  # its stdout ended: the worker is gone, and no answer will come
        for waiting in self._waiting.values():
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    async def sync(self, sub: str, timeout: float) -> str:
        """Have the worker sync `sub`; the outcome: ok, failed, timeout or cannot_run."""
        if not SUB.fullmatch(sub):
            self.log.warning("onboarding: %r is not an IAM user id; not onboarded", sub[:80])
            return "failed"
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(sub, []).append(future)
        try:
            async with asyncio.timeout(timeout):
                try:
                    process = await self._running()
                    process.stdin.write(f"{sub}\n".encode())
                    await process.stdin.drain()
                except OSError as e:  # could not start, or it ended while we wrote: the next login starts it again
                    self.log.warning("onboarding: cannot run %s (%s)", self.command[0], type(e).__name__)
                    return "cannot_run"
                answer = await future
        except TimeoutError:
            self.log.warning("onboarding: no answer in %.0f s; the scheduled sync will catch up", timeout)
            return "timeout"
        finally:
            waiting = self._waiting.get(sub, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiting.pop(sub, None)
        if answer is None:
            self.log.warning("onboarding: %s ended before it answered", self.command[0])
            return "failed"
        if answer.get("exit") != 0:
            self.log.warning("onboarding: %s exited %s: %s", self.command[0], answer.get("exit"), answer.get("line"))
            return "failed"
        self.log.info("onboarding: %s", answer.get("line"))
        return "ok"


async def onboard(worker: OnboardingWorker, sub: str, *, timeout: float) -> bool:
    """Onboard `sub` through `worker`; True when it was done within `timeout` seconds. Counted in
    hub_plugins.metrics (outcome and duration)."""
    started = time.monotonic()
    outcome = await worker.sync(sub, timeout)
    metrics.ONBOARDING.labels(outcome).inc()
    metrics.ONBOARDING_SECONDS.observe(time.monotonic() - started)
    return outcome == "ok"
