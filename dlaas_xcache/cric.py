"""The Data Lake's storage endpoints in CRIC, read as the XCache's allowed origins.

CRIC, the Data Lake's storage catalogue, knows every RSE's endpoints and changes as sites come and go. `build`
reads its RSE query and derives the host and port of the RSEs' XRootD endpoints (1094 when CRIC gives none), as an
`AllowList` in the format of dlaas_xcache.allow_list. When CRIC is unreachable or its answer is not a usable catalogue
(not JSON, no RSEs, no XRootD endpoint), `SyncError` says why in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from dlaas_xcache import allow_list
from dlaas_xcache.allow_list import AllowListError, Origin

DEFAULT_SCHEMES = ("root", "xroot")


class SyncError(Exception):
    """The catalogue could not be used; the message is one line saying why and that the old list stays."""


@dataclass(frozen=True)
class AllowList:
    origins: tuple[Origin, ...]
    source: str

    def render(self) -> str:
        return allow_list.render(self.origins, self.source)


def _origin_of(hostname: str, port) -> Origin:
    """CRIC's `hostname` (`host`, `host:1094`, `[::1]:1094` or `root://host:1094/path`) and `port` -> the origin.

    A port inside `hostname` wins over the `port` field; neither means 1094. Raises AllowListError.
    """
    netloc = re.sub(r"\A[a-z][a-z0-9+.-]*://", "", hostname.strip()).split("/", 1)[0]
    host, embedded = allow_list.split_netloc(netloc)
    if embedded is not None:
        return Origin(host, embedded)
    if port in (None, ""):
        return Origin(host)
    return Origin.parse(f"{Origin(host).hostpart}:{port}")  # the same port checks as the list's


def origins_of(catalogue, schemes=DEFAULT_SCHEMES) -> tuple[list[Origin], list[str]]:
    """The sorted origins of every RSE protocol with one of `schemes`, and warnings about entries that were skipped.

    Accepts CRIC's `/api/doma/rse/query/?json&preset=doma` answer, `{"rses": {NAME: {"protocols": [...]}}}`, and the
    plain `{NAME: {...}}` form. A protocol is `{"scheme": "root", "hostname": "eos.example.org", "port": 1094, ...}`;
    `hostname` may also carry the scheme and port (`root://eos.example.org:1094`), as some CRIC entries do.
    """
    if not isinstance(catalogue, dict):
        raise SyncError("the answer is not a JSON object of RSEs")
    rses = catalogue.get("rses", catalogue)
    if not isinstance(rses, dict) or not rses:
        raise SyncError("the answer lists no RSEs")
    origins: set[Origin] = set()
    warnings: list[str] = []
    for name, rse in sorted(rses.items()):
        protocols = rse.get("protocols") if isinstance(rse, dict) else None
        if isinstance(protocols, dict):  # some CRIC presets key protocols by name
            protocols = list(protocols.values())
        if not isinstance(protocols, list):
            continue
        for proto in protocols:
            if not isinstance(proto, dict) or proto.get("scheme") not in schemes or not proto.get("hostname"):
                continue
            try:
                origins.add(_origin_of(str(proto["hostname"]), proto.get("port")))
            except AllowListError as e:
                warnings.append(f"skipped RSE {name}: {proto.get('hostname')!r} port {proto.get('port')!r}: {e}")
    if not origins:
        raise SyncError(f"the answer has {len(rses)} RSEs but no {'/'.join(schemes)} endpoint")
    return sorted(origins), warnings


def fetch(url: str, timeout: float) -> object:
    try:
        r = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as e:
        raise SyncError(f"CRIC at {url} is unreachable ({type(e).__name__})") from None
    if r.status_code != 200:
        raise SyncError(f"CRIC at {url} answered HTTP {r.status_code}")
    try:
        return r.json()
    except ValueError:
        raise SyncError(f"CRIC at {url} answered something that is not JSON") from None


def build(url: str, timeout: float, schemes=DEFAULT_SCHEMES) -> tuple[AllowList, list[str]]:
    origins, warnings = origins_of(fetch(url, timeout), schemes)
    return AllowList(tuple(origins), url), warnings
