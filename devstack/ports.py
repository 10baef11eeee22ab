"""Loopback ports and readiness: which port a service gets, whether it is free, and when the service answers.

Services that can bind port 0 and report the port they got do so; for the others `free_port` picks one up front,
outside the kernel's range for the local ports of outgoing connections: a port from that range (what binding port 0
gives) can be taken by any client connection between the pick and the service's bind, which made stacks fail with
"already in use" now and then.
`ensure_port_free` fails early with one line naming the variable that moves the port. The readiness checks are what
`devstack.procs.Process` polls until a service answers; `wait_for` polls any condition with a deadline.
"""

from __future__ import annotations

import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from devstack.service import ServiceError

T = TypeVar("T")


#: Where free_port looks when the kernel's range for outgoing connections leaves no room below it.
LOWEST_PORT = 10000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux: ip_local_port_range)."""
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now and outside the range of outgoing connections' local ports (for services that cannot
    bind port 0 and report it), chosen at random so that parallel test processes rarely pick the same one."""
    low, high = ephemeral_range()
    first, last = (LOWEST_PORT, low - 1) if low - 1 > LOWEST_PORT else (high + 1, 65535)
    for _ in range(200):
        port = random.randint(first, last)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a machine with no free port there: any free one
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
