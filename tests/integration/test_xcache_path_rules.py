"""An attacker who can reach the XCache gets nothing through it from an origin that is not on its allow-list, however
the origin is spelled, and never another request's file (XRootD 5.5.3's stale-URL behaviour).

Real components: the local XRootD origin and XCache (Debian's XRootD 5.5.3, the cache running under
dlaas_xcache.serve's CacheRunner with the path rules from dlaas_xcache.authdb), Debian's xrdcp, the sample CRIC and
dlaas-xcache-origin-sync. The allow-list is the local CRIC's (127.0.0.1:<origin port>) plus `LocalHost:<origin port>`
(a name, to try upper case and trailing dots on); 127.0.0.2 reaches the same origin server but is not permitted, as
is every other port of 127.0.0.1 (the origin itself listens on a second, inner one).

Each attack runs right after a permitted read of a fresh file (the stale URL the XRootD bug would answer with) and is
repeated 5 times (the bug showed on about every fifth request); every attempt must fail and write no byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from devstack.rucio_seed import REPLICA_RSE, rses_root
from devstack.settings import VENVS

SYNC = VENVS / "main" / "bin" / "dlaas-xcache-origin-sync"
REPEAT = 5

# Paths after root://<cache>/ ; {o}: the permitted origin port, {i}: another port the origin listens on, {p}: the
# attacked file's path at the origin (no leading slash). Every one must be refused.
ATTACKS = [
    # user-info in front of the host
    ("userinfo-permitted-host-port-at-other", "/root://127.0.0.1:{o}@127.0.0.2:{o}/{p}"),
    ("userinfo-permitted-host-port-at-other-double-slash", "/root://127.0.0.1:{o}@127.0.0.2:{o}//{p}"),
    ("userinfo-as-in-the-report", "/root://127.0.0.1:1094@127.0.0.2:1094/{p}"),
    ("userinfo-user-at-other", "/root://user@127.0.0.2:{o}//{p}"),
    ("userinfo-host-at-other", "/root://127.0.0.1@127.0.0.2:{o}//{p}"),
    ("userinfo-user-password-at-permitted", "/root://user:pw@127.0.0.1:{o}//{p}"),
    ("userinfo-permitted-at-permitted", "/root://127.0.0.1:{o}@127.0.0.1:{o}//{p}"),
    ("userinfo-name-at-other", "/root://localhost:{o}@127.0.0.2:{o}//{p}"),
    # ports
    ("other-port-of-permitted-host", "/root://127.0.0.1:{i}//{p}"),
    ("other-port-of-permitted-name", "/root://localhost:{i}//{p}"),
    ("no-port-means-1094-not-permitted", "/root://127.0.0.1//{p}"),
    ("port-1094-not-permitted", "/root://127.0.0.1:1094//{p}"),
    ("port-with-leading-zero", "/root://127.0.0.1:0{o}//{p}"),
    ("port-twice", "/root://127.0.0.1:{o}:{o}//{p}"),
    ("permitted-port-then-other-port", "/root://127.0.0.1:{o}:{i}//{p}"),
    # case
    ("upper-case-scheme", "/ROOT://127.0.0.1:{o}//{p}"),
    ("mixed-case-scheme", "/Root://127.0.0.1:{o}//{p}"),
    ("upper-case-xroot-scheme", "/XROOT://127.0.0.1:{o}//{p}"),
    ("upper-case-host", "/root://LOCALHOST:{o}//{p}"),
    ("mixed-case-host", "/root://LocalHost:{o}//{p}"),
    # trailing dots
    ("trailing-dot-on-address", "/root://127.0.0.1.:{o}//{p}"),
    ("trailing-dot-on-name", "/root://localhost.:{o}//{p}"),
    # IPv6 literals and other spellings of an address
    ("ipv6-loopback", "/root://[::1]:{o}//{p}"),
    ("ipv6-loopback-other-port", "/root://[::1]:{i}//{p}"),
    ("ipv6-mapped-other", "/root://[::ffff:127.0.0.2]:{o}//{p}"),
    ("ipv6-mapped-permitted", "/root://[::ffff:127.0.0.1]:{o}//{p}"),
    ("ipv6-mapped-permitted-hex", "/root://[::ffff:7f00:1]:{o}//{p}"),
    ("ipv6-bare", "/root://::1:{o}//{p}"),
    ("short-ipv4", "/root://127.1:{o}//{p}"),
    ("decimal-ipv4", "/root://2130706433:{o}//{p}"),
    ("hex-ipv4", "/root://0x7f.0.0.1:{o}//{p}"),
    ("zero-padded-ipv4", "/root://127.000.000.001:{o}//{p}"),
    # slashes
    ("triple-slash-after-cache", "//root://127.0.0.2:{o}//{p}"),
    ("triple-slash-after-scheme", "/root:///127.0.0.2:{o}//{p}"),
    ("four-slashes-after-scheme", "/root:////127.0.0.2:{o}//{p}"),
    ("one-slash-after-scheme", "/root:/127.0.0.2:{o}//{p}"),
    ("no-slash-after-scheme", "/root:127.0.0.2:{o}//{p}"),
    ("no-slash-after-cache", "root://127.0.0.2:{o}//{p}"),
    ("other-origin-in-the-path", "/root://127.0.0.1:{o}//root://127.0.0.2:{o}//{p}"),
    ("dot-dot-to-other-origin", "/root://127.0.0.1:{o}/../127.0.0.2:{o}//{p}"),
    ("dot-segment-before-scheme", "/./root://127.0.0.2:{o}//{p}"),
    # percent-encoding
    ("encoded-other-address", "/root://%31%32%37.0.0.2:{o}//{p}"),
    ("encoded-permitted-address", "/root://%31%32%37.0.0.1:{o}//{p}"),
    ("encoded-at", "/root://127.0.0.1:{o}%40127.0.0.2:{o}//{p}"),
    ("encoded-slash-then-at", "/root://127.0.0.1:{o}%2f@127.0.0.2:{o}//{p}"),
    ("encoded-upper-slash", "/root://127.0.0.1:{o}%2F..%2F127.0.0.2:{o}//{p}"),
    ("encoded-colon", "/root://127.0.0.1%3a{o}//{p}"),
    ("encoded-scheme-separator", "/root%3a%2f%2f127.0.0.2:{o}//{p}"),
    # the origin that is not permitted, plainly
    ("not-permitted-origin", "/root://127.0.0.2:{o}//{p}"),
    ("not-permitted-origin-single-slash", "/root://127.0.0.2:{o}/{p}"),
    ("not-permitted-origin-xroot", "/xroot://127.0.0.2:{o}//{p}"),
    ("roots-scheme", "/roots://127.0.0.1:{o}//{p}"),
    ("xroots-scheme", "/xroots://127.0.0.1:{o}//{p}"),
    ("http-scheme", "/http://127.0.0.1:{o}//{p}"),
    ("local-file", "/file:///etc/passwd"),
    # backslashes
    ("backslash-at", "/root://127.0.0.1:{o}\\@127.0.0.2:{o}//{p}"),
    ("backslashes-after-scheme", "/root:\\\\127.0.0.2:{o}//{p}"),
    ("backslash-after-port", "/root://127.0.0.1:{o}\\\\127.0.0.2:{o}//{p}"),
    # fragment and query
    ("fragment-at", "/root://127.0.0.1:{o}#@127.0.0.2:{o}//{p}"),
    ("query-other-then-permitted", "/root://127.0.0.2:{o}?@127.0.0.1:{o}//{p}"),
    ("query-permitted-then-other", "/root://127.0.0.1:{o}?@127.0.0.2:{o}//{p}"),
    ("query-naming-permitted-origin", "/root://127.0.0.2:{o}//{p}?/root:/127.0.0.1:{o}/"),
    ("query-right-after-port", "/root://127.0.0.1:{o}?//127.0.0.2:{o}//{p}"),
    # whitespace
    ("space-then-at", "/root://127.0.0.1:{o} @127.0.0.2:{o}//{p}"),
    ("tab-then-at", "/root://127.0.0.1:{o}\t@127.0.0.2:{o}//{p}"),
]

# The forms that must keep working: Rucio's PFNs through the cache, and the other permitted spellings.
PERMITTED = [
    ("rucio-pfn", "/root://127.0.0.1:{o}/{p}"),
    ("double-slash-path", "/root://127.0.0.1:{o}//{p}"),
    ("xroot-scheme", "/xroot://127.0.0.1:{o}//{p}"),
    ("name-from-cric-in-lower-case", "/root://localhost:{o}//{p}"),
]


def xrdcp(url: str, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["xrdcp", "--force", "--nopbar", url, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XRD_REQUESTTIMEOUT": "20", "XRD_CONNECTIONRETRY": "1"},
    )


def sync(cache_layer) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SYNC), "--cric-url", cache_layer.cric.url, "--output", str(cache_layer.origins_file), "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def resync(cache_layer) -> None:
    starts = cache_layer.xrootd.status()["cache_starts"]
    result = sync(cache_layer)
    assert result.returncode == 0, result.stderr
    if "updated" in result.stdout:
        cache_layer.xrootd.wait_cache_start(starts)


@pytest.fixture(scope="module")
def lake(cache_layer):
    """The allow-list plus LocalHost:<origin port> (as CRIC might spell it), and a directory of files at the origin."""
    xr = cache_layer.xrootd
    original = cache_layer.cric.file.read_text()
    doc = json.loads(original)
    doc["rses"]["EULAKE-LOCALNAME"] = {
        "name": "EULAKE-LOCALNAME",
        "protocols": [
            {"scheme": "root", "hostname": "LocalHost", "port": xr.origin_port, "prefix": f"/{REPLICA_RSE}/"}
        ],
    }
    cache_layer.cric.file.write_text(json.dumps(doc))
    try:
        resync(cache_layer)
        lines = cache_layer.origins_file.read_text().splitlines()
        assert f"pss.permit 127.0.0.1:{xr.origin_port}" in lines and f"pss.permit localhost:{xr.origin_port}" in lines
        directory = rses_root(cache_layer.settings) / REPLICA_RSE / "xcache-path-rules" / uuid.uuid4().hex[:8]
        directory.mkdir(parents=True)
        yield {
            "dir": directory,
            "rel": directory.relative_to(rses_root(cache_layer.settings)).as_posix(),
            "origin": xr.origin_port,
            "other": xr.status()["origin_inner_port"],
            "cache": xr.cache_url,
        }
    finally:
        cache_layer.cric.file.write_text(original)
        resync(cache_layer)


def new_file(lake, size: int) -> tuple[str, bytes]:
    name = f"{uuid.uuid4().hex[:12]}.bin"
    content = os.urandom(size)
    (lake["dir"] / name).write_bytes(content)
    return f"{lake['rel']}/{name}", content


def through_cache(lake, form: str, path: str) -> str:
    return lake["cache"] + "/" + form.format(o=lake["origin"], i=lake["other"], p=path)


@pytest.mark.parametrize("name, form", PERMITTED, ids=[n for n, _ in PERMITTED])
def test_a_permitted_origin_is_served_through_the_cache(lake, tmp_path, name, form):
    path, content = new_file(lake, 256 * 1024 + 7)
    result = xrdcp(through_cache(lake, form, path), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out").read_bytes() == content


@pytest.mark.parametrize("name, form", ATTACKS, ids=[n for n, _ in ATTACKS])
def test_an_attacker_gets_no_byte_through_the_cache_from_a_spelling_that_is_not_a_permitted_origin(
    lake, tmp_path, name, form
):
    # The permitted read just before: its URL is what XRootD 5.5.3's proxy would answer a refused request with.
    permitted_path, permitted = new_file(lake, 256 * 1024 + 3)
    warm = xrdcp(through_cache(lake, "/root://127.0.0.1:{o}/{p}", permitted_path), tmp_path / "permitted")
    assert warm.returncode == 0 and (tmp_path / "permitted").read_bytes() == permitted, warm.stderr
    target_path, target = new_file(lake, 128 * 1024 + 5)  # exists at the origin, never read through the cache
    url = through_cache(lake, form, target_path)
    for attempt in range(1, REPEAT + 1):
        out = tmp_path / f"attack-{attempt}"
        result = xrdcp(url, out)
        got = out.read_bytes() if out.exists() else b""
        what = (
            "the earlier permitted request's file (stale URL)"
            if got == permitted
            else "the attacked file"
            if got == target
            else f"{len(got)} bytes"
        )
        assert not got, f"attempt {attempt} of {url!r} got {what}"
        assert result.returncode != 0, f"attempt {attempt} of {url!r} succeeded: {result.stdout}"
