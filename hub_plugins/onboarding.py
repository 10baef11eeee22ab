"""Just-in-time onboarding: a member's first login creates her Rucio account before her server starts.

The account sync (`dlaas-rucio-sync`, a CronJob every ten minutes) gives every member of the IAM groups a Rucio
account, identity and scope. A researcher who joined the group five minutes ago would otherwise log in, find a
Rucio sidebar that refuses her, and wait for the next run. So at a user's first login the hub runs the same
command for that one identity (`--sub`), with a timeout, before it sends her on to her server.

The command runs as a separate process with its own credentials (the IAM client secret and the Rucio account that
may manage accounts, in files named on its command line or its environment), so the hub process never holds them.
A failing or slow sync never blocks the login: it is logged in one line, and the next scheduled run catches up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from hub_plugins import metrics


async def onboard(command: Sequence[str], sub: str, *, timeout: float, log) -> bool:
    """Run `command --sub <sub>`; True when it finished with status 0 within `timeout` seconds. Counted in
    hub_plugins.metrics (outcome and duration)."""
    started = time.monotonic()
    outcome = await _run(command, sub, timeout=timeout, log=log)
    metrics.ONBOARDING.labels(outcome).inc()
    metrics.ONBOARDING_SECONDS.observe(time.monotonic() - started)
    return outcome == "ok"


async def _run(command: Sequence[str], sub: str, *, timeout: float, log) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            "--sub",
            sub,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
    except OSError as e:
        log.warning("onboarding: cannot run %s (%s)", command[0], type(e).__name__)
        return "cannot_run"
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        log.warning("onboarding: %s did not finish in %.0f s; the scheduled sync will catch up", command[0], timeout)
        return "timeout"
    summary = (out.decode(errors="replace").strip().splitlines() or [""])[-1]
    if process.returncode != 0:
        reason = (err.decode(errors="replace").strip().splitlines() or [summary])[-1]
        log.warning("onboarding: %s exited %d: %s", command[0], process.returncode, reason)
        return "failed"
    log.info("onboarding: %s", summary)
    return "ok"
