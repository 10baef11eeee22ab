"""The site's XCache with a full disk: a file bigger than the cache's disk, read through the cache, gives the user
either the whole, correct file or a clear error in bounded time; the origin's own PFN gives the right bytes; and
once the disk is freed (the cache restarted without the limit) the same read through the cache works, with the
allow-list still in force.

A standalone XRootD origin and XCache (devstack.xrootd, free ports, the test's own state) whose cache data directory
is a small tmpfs, mounted by the supervisor in its private mount namespace (`cache_disk_bytes`, root only): the full
disk disappears with the supervisor's processes and nothing outside the test's state is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.settings import Settings
from devstack.xrootd import XRootDService
from devstack.xrootd_servers import log_path

DISK = 16 * 1024 * 1024  # the cache's disk: XCache 5.5 refuses to start on less than 10 MB
BIG = 48 * 1024 * 1024 + 7  # three times the disk
#: The client timeouts docs/reliability.md gives users for a bounded read.
BOUNDED = {"XRD_CONNECTIONWINDOW": "5", "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "15",
           "XRD_STREAMTIMEOUT": "10", "XRD_TIMEOUTRESOLUTION": "1"}  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("xrootd") or not shutil.which("xrdcp"),
    reason="needs root and XRootD (as `make up` does)",
)


def xrdcp(url: str, dest: Path) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        ["xrdcp", "--force", "--nopbar", url, str(dest)],
        env={**os.environ, **BOUNDED},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - started


def cache_mount(xr: XRootDService) -> str:
    """The cache's data directory as the cache process sees it (its mount namespace), or '' if not a mount."""
    pid = xr.status()["cache_pid"]
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(xr.cache_dir):
            return line
    return ""


@pytest.fixture
def state():
    path = Path(tempfile.mkdtemp(prefix="dlaas-xcache-disk-"))  # pytest's tmp_path is closed to the xrootd user
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_file_bigger_than_the_full_cache_disk_is_passed_through_whole_and_the_origin_and_freed_cache_serve_it(
    state, record_property
):
    settings = Settings(state_dir=state, xrootd_port=free_port(), xcache_port=free_port())
    data = state / "rses" / "EULAKE-1" / "faults"
    data.mkdir(parents=True)
    content = os.urandom(BIG)
    (data / "big.bin").write_bytes(content)
    origins = state / "origins.cfg"
    origins.write_text(f"pss.permit 127.0.0.1:{settings.xrootd_port}\n")
    common = dict(export_root=state / "rses", exports=["/EULAKE-1"], origins_file=origins, delay_ms=0)
    out = state / "out.bin"

    xr = XRootDService(settings, cache_disk_bytes=DISK, **common)
    try:
        xr.start()
        mount = cache_mount(xr)
        assert " tmpfs " in mount and f"size={DISK // 1024}k" in mount, mount
        assert not os.path.ismount(xr.cache_dir), "the cache's tmpfs must not show on the host"
        direct = f"{xr.origin_url}//EULAKE-1/faults/big.bin"
        cached = f"{xr.cache_url}//{direct}"

        through, seconds = xrdcp(cached, out)
        whole = through.returncode == 0 and out.read_bytes() == content
        record_property(
            "full_disk_read", f"rc={through.returncode} whole={whole} {seconds:.1f}s {through.stderr[-300:]}"
        )
        # XCache 5.5 passes the file through from the origin when it cannot write its blocks: whole and right
        assert through.returncode == 0, through.stderr
        assert whole, "a read through a full cache said success but gave wrong bytes"
        disk = shutil.disk_usage(f"/proc/{xr.status()['cache_pid']}/root{xr.cache_dir}")
        record_property("cache_disk_used", f"{disk.used} of {disk.total}")
        assert disk.free < 1024 * 1024, "the read should have filled the cache's disk"  # pfc.blocksize 1M
        assert "no space left on device" in log_path(xr.dir / "work", "cache").read_text()

        origin, _ = xrdcp(direct, out)
        assert origin.returncode == 0, origin.stderr
        assert out.read_bytes() == content
    finally:
        xr.stop()

    assert not os.path.ismount(xr.cache_dir)
    freed = XRootDService(settings, **common)  # the disk freed: the same cache without the limit
    try:
        freed.start()
        again, seconds = xrdcp(f"{freed.cache_url}//{freed.origin_url}//EULAKE-1/faults/big.bin", out)
        assert again.returncode == 0, again.stderr
        assert out.read_bytes() == content
        record_property("freed_read_s", f"{seconds:.1f}")
        other, _ = xrdcp(f"{freed.cache_url}//root://127.0.0.2:{freed.origin_port}//EULAKE-1/faults/big.bin", out)
        assert other.returncode != 0 and "permission denied" in other.stderr.lower(), other.stderr
    finally:
        freed.stop()
