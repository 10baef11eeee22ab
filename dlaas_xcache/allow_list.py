"""The XCache's allow-list: the origins (host and port) it may forward to, one `pss.permit` line each.

One format for everything that touches the list: dlaas-xcache-origin-sync writes it from CRIC, dlaas-xcache-serve
checks it before the cache loads it, and the cache's path rules (dlaas_xcache.authdb) are derived from it.

    # whole-line comments only (xrootd reads a trailing `#` as an argument)
    pss.permit eos.example.org:1094
    pss.permit [2001:db8::1]:1095
    pss.permit origin.example.net          <- no port: 1094, XRootD's default

XRootD's own `pss.permit` check looks at the host only; the port matters to the path rules, which let through only
`<scheme>://<host>:<port>/` of a listed origin. The list is data, not configuration: `parse` refuses any other line
(an xrootd directive smuggled into the list would change the cache), and a list without an origin (an XCache
without `pss.permit` is an open proxy).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORT = 1094
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")  # no sign, no leading zero: one spelling per port
_NETLOC = re.compile(r"\[(?P<v6>[0-9a-fA-F:.]+)\](?::(?P<v6port>[^:]*))?|(?P<host>[^:\[\]]+)(?::(?P<port>[^:]*))?")


class AllowListError(ValueError):
    """The list cannot be used; the message is one line saying why."""


def canonical_host(host: str) -> str | None:
    """The one spelling of `host` the cache accepts (lower-case name, compressed IP), or None if it is not a host.

    Anything that could smuggle a directive or a path into the cache's configuration (spaces, `*`, `/`, `@`, `%`, a
    trailing dot, a newline) is not a host.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        host = host.lower()
        return host if _DNS_NAME.fullmatch(host) else None
    return None if getattr(address, "scope_id", None) else str(address)  # fe80::1%eth0: no zones


def split_netloc(netloc: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (canonical host, port or None).

    Raises AllowListError when the host is not a host or the port not a port.
    """
    m = _NETLOC.fullmatch(netloc)
    if m and m["v6"] is not None:
        host, port = m["v6"], m["v6port"]
        if ":" not in host:  # [127.0.0.1] is no IPv6 literal
            raise AllowListError(f"{netloc!r}: [{host}] is not an IPv6 address")
    elif m:
        host, port = m["host"], m["port"]
    elif netloc.count(":") > 1:  # a bare IPv6 address: no port possible
        host, port = netloc, None
    else:
        raise AllowListError(f"{netloc!r} is not host[:port]")
    canonical = canonical_host(host)
    if canonical is None:
        raise AllowListError(f"{host!r} is not a host name or IP address")
    if port is None:
        return canonical, None
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise AllowListError(f"{netloc!r}: {port!r} is not a port (1-65535, no leading zero)")
    return canonical, int(port)


@dataclass(frozen=True, order=True)
class Origin:
    host: str
    port: int = DEFAULT_PORT

    @property
    def hostpart(self) -> str:
        """The host as it appears in a URL (IPv6 in brackets)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def netloc(self) -> str:
        return f"{self.hostpart}:{self.port}"

    @classmethod
    def parse(cls, netloc: str) -> Origin:
        host, port = split_netloc(netloc)
        return cls(host, DEFAULT_PORT if port is None else port)


def parse(text: str) -> list[Origin]:
    """The origins of an allow-list, sorted and without duplicates; AllowListError for anything else in it."""
    origins: set[Origin] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] != "pss.permit" or len(words) != 2:
            raise AllowListError(
                f"line {number} is not `pss.permit <host>[:<port>]` or a whole-line comment: {line.strip()[:80]!r}"
            )
        try:
            origins.add(Origin.parse(words[1]))
        except AllowListError as e:
            raise AllowListError(f"line {number}: {e}") from None
    if not origins:
        raise AllowListError("it lists no `pss.permit` origin (an XCache without one is an open proxy)")
    return sorted(origins)


def render(origins, source: str) -> str:
    """The list as dlaas-xcache-origin-sync writes it: every port explicit, no timestamp (an unchanged catalogue
    gives byte-identical text, so nothing is rewritten and the cache is not restarted)."""
    origins = sorted(set(origins))
    header = [
        f"# Allowed origins of this XCache: {len(origins)} storage endpoints from {source}",
        "# Written by dlaas-xcache-origin-sync; edits are overwritten.",
    ]
    return "\n".join([*header, *(f"pss.permit {o.netloc}" for o in origins)]) + "\n"
