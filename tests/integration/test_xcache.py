"""The latency-hiding layer: Rucio hands the local site XCache PFNs, the cache serves repeated reads, only origins
listed in CRIC are served, and the allow-list follows CRIC without ever losing the last good list.

Real components throughout: the Rucio server, XRootD 5.5 origin and XCache (Debian's), xrdcp, the rucio CLI, the
sample CRIC over HTTP and the dlaas-xcache-origin-sync command.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import pytest

from devstack.rucio_seed import REPLICA_RSE, SITE
from devstack.settings import VENVS

SCOPE = "xcache_test"
SYNC = VENVS / "main" / "bin" / "dlaas-xcache-origin-sync"


def xrdcp(url: str, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["xrdcp", "--force", "--nopbar", url, str(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XRD_REQUESTTIMEOUT": "20", "XRD_CONNECTIONRETRY": "1"},
    )


def sync(cache_layer, url: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(SYNC),
            "--cric-url",
            url or cache_layer.cric.url,
            "--output",
            str(cache_layer.origins_file),
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def own_file(cache_layer, root_client):
    """A file registered on EULAKE-1 for this test alone, so the test may delete it at the origin."""
    if SCOPE not in root_client.list_scopes():
        root_client.add_scope("root", SCOPE)
    name = f"cached-{uuid.uuid4().hex[:8]}.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)
    pfn = root_client.lfns2pfns(REPLICA_RSE, [f"{SCOPE}:{name}"], operation="write", scheme="file")
    pfn = pfn[f"{SCOPE}:{name}"]
    path = Path(pfn.removeprefix("file://localhost"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    root_client.add_replicas(
        REPLICA_RSE,
        [{"scope": SCOPE, "name": name, "bytes": len(content), "adler32": f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"}],
    )
    return {"scope": SCOPE, "name": name, "content": content, "path": path}


@pytest.fixture
def catalogue(cache_layer):
    """The sample CRIC's file; whatever a test writes there is undone (and re-synced) afterwards."""
    original = cache_layer.cric.file.read_text()
    yield cache_layer.cric.file
    cache_layer.cric.file.write_text(original)
    starts = cache_layer.xrootd.status()["cache_starts"]
    restored = sync(cache_layer)
    assert restored.returncode == 0, restored.stderr
    if "updated" in restored.stdout:
        cache_layer.xrootd.wait_cache_start(starts)  # the next test starts with a settled cache


def root_pfns(client, did: dict, monkeypatch, site: str | None) -> list[str]:
    """The root:// PFNs rucio-clients get in a user's server, where SITE_NAME is the server's site."""
    from rucio.common.client import detect_client_location

    if site:
        monkeypatch.setenv("SITE_NAME", site)
    else:
        monkeypatch.delenv("SITE_NAME", raising=False)
    [replica] = client.list_replicas([did], schemes=["root"], client_location=detect_client_location())
    return replica["rses"][REPLICA_RSE]


def test_the_local_site_reads_through_the_cache_and_the_second_read_is_served_from_it(
    cache_layer, own_file, root_client, monkeypatch, tmp_path
):
    xr = cache_layer.xrootd
    did = {"scope": own_file["scope"], "name": own_file["name"]}
    [direct] = root_pfns(root_client, did, monkeypatch, site=None)
    [cached] = root_pfns(root_client, did, monkeypatch, site=SITE)
    assert direct.startswith(f"root://127.0.0.1:{xr.origin_port}//{REPLICA_RSE}/")  # an absolute path
    assert cached == f"root://127.0.0.1:{xr.cache_port}//{direct}"

    first = xrdcp(cached, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "first").read_bytes() == own_file["content"]
    relative = direct.split("/", 3)[3].lstrip("/")  # the path at the origin: the cache keeps files by path
    in_cache = xr.cache_dir / relative
    assert in_cache.read_bytes() == own_file["content"]
    assert in_cache.with_name(in_cache.name + ".cinfo").exists()

    # Gone at the origin: a direct read fails, the cached PFN still gives the whole file.
    own_file["path"].unlink()
    assert xrdcp(direct, tmp_path / "direct").returncode != 0
    second = xrdcp(cached, tmp_path / "second")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "second").read_bytes() == own_file["content"]


def test_an_origin_that_cric_does_not_list_is_refused_until_it_does(cache_layer, catalogue, own_file, tmp_path):
    xr = cache_layer.xrootd
    path = "/" + str(own_file["path"].relative_to(cache_layer.settings.state_dir / "rses"))
    stranger = f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.2:{xr.origin_port}/{path}"

    # Every time, not four times out of five: XRootD 5.5.3's pss.permit alone answers every fifth refused request
    # with the file of an earlier request (see dlaas_xcache.authdb); read a permitted file first so that
    # such a stale request exists.
    assert (
        xrdcp(
            f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.1:{xr.origin_port}/{path}", tmp_path / "permitted"
        ).returncode
        == 0
    )
    for attempt in range(12):
        refused = xrdcp(stranger, tmp_path / "refused")
        assert refused.returncode != 0 and "permission denied" in refused.stderr, (attempt, refused.stderr)
    assert not (tmp_path / "refused").exists()

    # A new storage endpoint appears in CRIC: after one sync, the cache serves it.
    before = xr.status()
    doc = json.loads(catalogue.read_text())
    doc["rses"]["EULAKE-2"] = {
        "name": "EULAKE-2",
        "protocols": [{"scheme": "root", "hostname": "127.0.0.2", "port": xr.origin_port, "prefix": "/EULAKE-1/"}],
    }
    catalogue.write_text(json.dumps(doc))
    result = sync(cache_layer)
    assert result.returncode == 0, result.stderr
    assert "updated" in result.stdout
    assert f"pss.permit 127.0.0.2:{xr.origin_port}" in cache_layer.origins_file.read_text().splitlines()
    after = xr.wait_cache_start(before["cache_starts"])
    assert after["cache_pid"] != before["cache_pid"]

    served = xrdcp(stranger, tmp_path / "served")
    assert served.returncode == 0, served.stderr
    assert (tmp_path / "served").read_bytes() == own_file["content"]

    # The same catalogue again: nothing is rewritten and the cache keeps running.
    again = sync(cache_layer)
    assert again.returncode == 0 and "unchanged" in again.stdout
    time.sleep(1.0)  # the supervisor looks at the list five times a second
    assert xr.status()["cache_pid"] == after["cache_pid"]


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("<html>CRIC is down for maintenance</html>", "not JSON"),
        ('{"rses": {}}', "lists no RSEs"),
        (
            '{"rses": {"X": {"protocols": [{"scheme": "https", "hostname": "web.example.org"}]}}}',
            "no root/xroot endpoint",
        ),
    ],
)
def test_a_bad_cric_answer_keeps_the_previous_allow_list_and_the_running_cache(cache_layer, catalogue, answer, reason):
    xr = cache_layer.xrootd
    before_list, before = cache_layer.origins_file.read_text(), xr.status()
    catalogue.write_text(answer)
    result = sync(cache_layer)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert reason in line and "previous allow-list stays in place" in line
    time.sleep(1.0)
    assert cache_layer.origins_file.read_text() == before_list
    assert xr.status()["cache_pid"] == before["cache_pid"]


def test_an_unreachable_cric_keeps_the_previous_allow_list(cache_layer):
    from devstack.ports import free_port

    before = cache_layer.origins_file.read_text()
    result = sync(cache_layer, url=f"http://127.0.0.1:{free_port()}/api/doma/rse/query/?json&preset=doma")
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "previous allow-list stays in place" in result.stderr
    assert cache_layer.origins_file.read_text() == before


def test_a_list_with_a_smuggled_directive_keeps_the_running_cache_and_its_path_rules(cache_layer, own_file, tmp_path):
    xr = cache_layer.xrootd
    path = "/" + str(own_file["path"].relative_to(cache_layer.settings.state_dir / "rses"))
    stranger = f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.2:{xr.origin_port}/{path}"
    good, before = cache_layer.origins_file.read_text(), xr.status()
    log = xr.process.log_path
    seen = log.read_text(errors="replace").count("keeping the running cache")
    try:
        # What a stolen origin-sync identity could write: the list plus xrootd configuration (no path rules).
        cache_layer.origins_file.write_text(good + "ofs.authorize 0\n")
        deadline = time.monotonic() + 30
        while log.read_text(errors="replace").count("keeping the running cache") == seen:
            assert time.monotonic() < deadline, f"the supervisor did not notice the list; see {log}"
            time.sleep(0.1)
        [line] = [ln for ln in log.read_text(errors="replace").splitlines() if "keeping the running cache" in ln][seen:]
        assert "is not `pss.permit <host>[:<port>]`" in line and "ofs.authorize 0" in line
        assert xr.status()["cache_pid"] == before["cache_pid"]
        refused = xrdcp(stranger, tmp_path / "refused")
        assert refused.returncode != 0 and "permission denied" in refused.stderr, refused.stderr
        assert not (tmp_path / "refused").exists()
    finally:
        cache_layer.origins_file.write_text(good)
    # Back to the list it runs on: nothing to restart.
    served = xrdcp(f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.1:{xr.origin_port}/{path}", tmp_path / "ok")
    assert served.returncode == 0 and (tmp_path / "ok").read_bytes() == own_file["content"], served.stderr
    assert xr.status()["cache_starts"] == before["cache_starts"]
