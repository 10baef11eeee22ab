"""The site's XCache goes down: a read through the cache PFN Rucio gives alice's server fails in bounded time with an
error, the direct PFN (Rucio asked without the site) still gives her the same bytes, and the cache comes back by
itself with its allow-list (the origin permitted, an origin CRIC does not list refused).

The cache part (sample CRIC, XRootD origin and XCache, devstack.cache_layer) joins the shared lake here. Under
supervisord the XRootD pair is one program (devstack.xrootd_supervisor): the cache is first frozen (SIGSTOP, a hung
cache: the origin keeps serving), then killed by PID, as a liveness probe would; the supervisor then exits and
supervisord restarts the pair. Client timeouts are the ones docs/reliability.md gives users: with xrdcp's defaults a
read through a dead cache waits for minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import pytest

from devstack.ports import wait_for
from devstack.rucio_seed import REPLICA_RSE
from tests.faults.conftest import fresh_token

SCOPE = "xcache_faults"
#: What docs/reliability.md tells users to set for a bounded read (xrdcp's defaults retry a dead door for minutes).
BOUNDED = {"XRD_CONNECTIONWINDOW": "5", "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "15",
           "XRD_STREAMTIMEOUT": "10", "XRD_TIMEOUTRESOLUTION": "1"}  # fmt: skip
PFN = """
import sys
from rucio.client import Client
from rucio.common.client import detect_client_location
[replica] = Client().list_replicas([{"scope": sys.argv[1], "name": sys.argv[2]}], schemes=["root"],
                                   client_location=detect_client_location())
print(replica["rses"][sys.argv[3]][0])
"""


@pytest.fixture(scope="module")
def cache(lake):
    """The cache part of the shared lake, started for this module."""
    return lake.start("cache").cache


@pytest.fixture(scope="module")
def own_file(lake, cache):
    """A file on EULAKE-1 registered for this module."""
    client = lake.rucio.root_client()
    if SCOPE not in client.list_scopes():
        client.add_scope("root", SCOPE)
    name = f"faults-{uuid.uuid4().hex[:8]}.bin"
    content = os.urandom(2 * 1024 * 1024 + 5)
    did = f"{SCOPE}:{name}"
    pfn = client.lfns2pfns(REPLICA_RSE, [did], operation="write", scheme="file")[did]
    path = Path(pfn.removeprefix("file://localhost"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    adler = f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"
    client.add_replicas(REPLICA_RSE, [{"scope": SCOPE, "name": name, "bytes": len(content), "adler32": adler}])
    return {"name": name, "content": content, "path": path}


def alice_pfn(env: dict, name: str, *, direct: bool) -> str:
    """The root:// PFN Rucio gives alice's server: through the site's cache, or, without SITE_NAME, the origin's."""
    env = {k: v for k, v in env.items() if not (direct and k == "SITE_NAME")}
    python = shutil.which("python", path=env["PATH"])  # the server's: the first on its PATH that has one
    done = subprocess.run(
        [python, "-c", PFN, SCOPE, name, REPLICA_RSE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout.strip()


def xrdcp(env: dict, url: str, dest: Path) -> tuple[subprocess.CompletedProcess, float]:
    """A copy as alice makes it in her server, with the bounded client timeouts; (result, seconds taken)."""
    started = time.monotonic()
    done = subprocess.run(
        ["xrdcp", "--force", "--nopbar", url, str(dest)],
        env={**env, **BOUNDED},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done, time.monotonic() - started


def test_a_dead_xcache_fails_reads_clearly_the_origin_still_serves_and_the_cache_returns_with_its_allow_list(
    lake, alice, cache, own_file, tmp_path, record_property
):
    _, _, env = alice
    fresh_token(Path(env["BEARER_TOKEN_FILE"]))
    xr = cache.xrootd
    cached, direct = alice_pfn(env, own_file["name"], direct=False), alice_pfn(env, own_file["name"], direct=True)
    assert cached.startswith(f"root://127.0.0.1:{xr.cache_port}//root://"), cached
    assert direct.startswith(f"root://127.0.0.1:{xr.origin_port}//EULAKE-1/"), direct
    warm, _ = xrdcp(env, cached, tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr

    before = xr.status()
    os.kill(before["cache_pid"], signal.SIGSTOP)  # the cache hangs: it takes connections and never answers
    try:
        failed, failed_after = xrdcp(env, cached, tmp_path / "through-cache")
        assert failed.returncode != 0
        error = failed.stderr.strip().splitlines()[-1]
        assert "[ERROR]" in error or "[FATAL]" in error, failed.stderr
        assert not (tmp_path / "through-cache").exists()
        # The origin gives the same bytes meanwhile, at Rucio's direct PFN as it comes (docs/analysis.md).
        served, _ = xrdcp(env, direct, tmp_path / "direct")
        assert served.returncode == 0, served.stderr
        assert (tmp_path / "direct").read_bytes() == own_file["content"]
    finally:
        os.kill(before["cache_pid"], signal.SIGKILL)  # as a liveness probe would
    killed = time.monotonic()

    def restarted():
        try:
            status = xr.status()
        except (OSError, ValueError):
            return None
        return status if status["cache_pid"] != before["cache_pid"] else None

    after = wait_for(restarted, timeout=120, what="the XCache restarted by supervisord")
    back = time.monotonic() - killed
    assert (after["cache_port"], after["origin_port"]) == (before["cache_port"], before["origin_port"])
    again, _ = xrdcp(env, cached, tmp_path / "again")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again").read_bytes() == own_file["content"]
    # The same allow-list: an origin CRIC does not list is still refused.
    path = direct.split("/", 3)[3]
    stranger = f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.2:{xr.origin_port}/{path}"
    refused, _ = xrdcp(env, stranger, tmp_path / "stranger")
    assert refused.returncode != 0 and "permission denied" in refused.stderr.lower(), refused.stderr
    assert not (tmp_path / "stranger").exists()

    record_property("xcache_hung_read_failed_after_s", round(failed_after, 1))
    record_property("xcache_hung_read_error", error[:200])
    record_property("xcache_back_after_kill_s", round(back, 1))
    print(
        f"\n[faults] XCache hung: a read through it failed after {failed_after:.1f}s with {error[:160]!r}, the "
        f"origin served the same bytes at Rucio's direct PFN; killed, it was back "
        f"(supervisord) {back:.1f}s later with its allow-list"
    )
