"""What every service of the local data lake is: something that starts, may die, and stops; and the error a start
raises when it cannot succeed.

Each service (dev IAM, PostgreSQL, Rucio, the hub, ...) runs one or more `devstack.procs.Process`; devstack.stack
starts them in dependency order and stops them in reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.procs import Process


class ServiceError(RuntimeError):
    """A service could not start; the message is one line that says what to do."""


class Service:
    """Base of the devstack's services: `start()` sets `process`; `alive()` and `stop()` follow from it."""

    process: Process | None = None
    stop_timeout: float = 10.0

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=self.stop_timeout)
            self.process = None
