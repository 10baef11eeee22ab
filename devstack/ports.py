"""Loopback ports and readiness: which port a service gets, whether it is free, and when the service answers.

Services that can bind port 0 and report the port they got do so; for the others `free_port` picks one up front.
`ensure_port_free` fails early with one line naming the variable that moves the port. The readiness checks are what
`devstack.procs.Process` polls until a service answers; `wait_for` polls any condition with a deadline.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from devstack.service import ServiceError

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (for services that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_port_free(host: str, port: int, what: str, env_var: str | None = None) -> None:
    """Fail early, with a useful message, when another program already listens on the port."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            hint = f" or set {env_var} to another port" if env_var else ""
            raise ServiceError(
                f"port {host}:{port} for {what} is already in use: stop what listens there (`make down`?){hint}"
            ) from None


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    """Ready once something accepts TCP connections on host:port."""

    def check() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str, ok_below: int = 500) -> Callable[[], bool]:
    """Ready once the URL answers with any status below `ok_below` (a 404 still proves the server is up)."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status < ok_below
        except urllib.error.HTTPError as e:
            return e.code < ok_below
        except (OSError, ValueError):
            return False

    return check


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5, what: str = "condition") -> T:
    """Call `predicate` until it returns something true, and return that; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
