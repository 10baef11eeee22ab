"""The XCache exporter against Debian's real xrootd 5.5.3: the local data lake's cache configuration
(devstack/templates/xrootd-cache.cfg.in) plus the monitoring directives of dlaas_xcache.exporter.cache_directives,
run by dlaas-xcache-serve in front of a real origin. A file read twice through the cache shows one access that
reached the origin, then one served from the cache alone, with the bytes the cache served growing; the client
bytes and origin opens come from the summary reports.

XRootD listens on every interface, so the scenario runs in a private network namespace (`unshare --net`, only a
loopback interface; needs root, as the local data lake does). The driver below runs inside it and reports what it
saw as JSON.
"""

from __future__ import annotations

from devstack.settings import REPO, VENVS
from tests.helpers import needs_private_network, run_in_private_network

SERVE = VENVS / "main" / "bin" / "dlaas-xcache-serve"
TEMPLATE = REPO / "devstack" / "templates" / "xrootd-cache.cfg.in"

DRIVER = r'''
import json, os, pwd, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from string import Template

from dlaas_xcache.exporter import cache_directives
from prometheus_client.parser import text_string_to_metric_families

work, serve, template = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
user = pwd.getpwnam("xrootd")
for d in ("origin", "cache", "cache-data", "data/EULAKE-1", "logs", "run"):
    (work / d).mkdir(parents=True, exist_ok=True)
    os.chown(work / d, user.pw_uid, user.pw_gid)
content = os.urandom(3_000_000)
(work / "data/EULAKE-1/file.bin").write_bytes(content)
ORIGIN, CACHE, UDP = 21094, 21095, 9931
(work / "origin/xrootd.cfg").write_text(f"""xrd.port {ORIGIN}
all.role server
oss.localroot {work / "data"}
all.export /EULAKE-1 r/o
all.adminpath {work / "origin"}
all.pidpath {work / "origin"}
""")
config = Template(template.read_text()).substitute(
    port=CACHE, cache_root=work / "cache-data", admin_dir=work / "cache", authdb=work / "run/origins.authdb",
    permit_file=work / "run/origins.cfg",
)
# Before the `continue` line: xrootd reads nothing of this file after it.
lines = config.splitlines(keepends=True)
at = next(i for i, line in enumerate(lines) if line.startswith("continue "))
monitoring = [line + "\n" for line in cache_directives(f"127.0.0.1:{UDP}", every=1)]
(work / "xcache.cfg").write_text("".join(lines[:at] + monitoring + lines[at:]))
(work / "origins.cfg").write_text(f"pss.permit 127.0.0.1:{ORIGIN}\n")
report = {}
procs = []

def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

def wait(what, timeout=60):
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = {f.name: f.read_text(errors="replace")[-1500:] for f in (work / "logs").rglob("*.log")}
            print(json.dumps({**report, "timeout": True, **logs}))
            raise SystemExit(1)
        time.sleep(0.2)

def metrics():
    status = json.loads((work / "exporter.json").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{status['http_port']}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name + "".join(f"{{{v}}}" for v in s.labels.values())] = s.value
    return found

def read():
    out = work / "out.bin"
    out.unlink(missing_ok=True)
    url = f"root://127.0.0.1:{CACHE}//root://127.0.0.1:{ORIGIN}//EULAKE-1/file.bin"
    r = subprocess.run(["xrdcp", "--force", "--nopbar", url, str(out)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XRD_REQUESTTIMEOUT": "20", "XRD_CONNECTIONRETRY": "1"})
    return r.returncode == 0 and out.read_bytes() == content

try:
    procs.append(subprocess.Popen([sys.executable, "-m", "dlaas_xcache.exporter", "--udp", f"127.0.0.1:{UDP}",
                                   "--listen", "127.0.0.1:0", "--status-file", str(work / "exporter.json")]))
    procs.append(subprocess.Popen(["xrootd", "-R", "xrootd", "-c", str(work / "origin/xrootd.cfg"), "-l",
                                   str(work / "logs/origin.log"), "-n", "origin"], stdin=subprocess.DEVNULL))
    procs.append(subprocess.Popen([serve, "--config", str(work / "xcache.cfg"), "--origins", str(work / "origins.cfg"),
                                   "--authdb", str(work / "run/origins.authdb"), "--permit-file",
                                   str(work / "run/origins.cfg"), "--", "-R", "xrootd", "-l",
                                   str(work / "logs/cache.log"), "-n", "cache"], stdin=subprocess.DEVNULL))
    wait(lambda: listening(ORIGIN) and listening(CACHE) and (work / "exporter.json").exists())
    wait(lambda: metrics().get("dlaas_xcache_reports_total{summary}", 0) > 0)  # the cache reports every second
    report["before"] = metrics()
    for n in ("first", "second"):
        report[f"{n}_read_ok"] = read()
        done = 1 if n == "first" else 2
        wait(lambda: sum(v for k, v in metrics().items() if k.startswith("dlaas_xcache_accesses_total")) >= done)
        wait(lambda: metrics()["dlaas_xcache_client_bytes_total{out}"] >= done * len(content))
        report[n] = metrics()
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
print(json.dumps(report))
'''


@needs_private_network
def test_reading_a_file_twice_through_the_real_xcache_shows_the_second_read_as_a_hit():
    report = run_in_private_network(DRIVER, SERVE, TEMPLATE, prefix="dlaas-xcache-exporter-")
    before, first, second = report["before"], report["first"], report["second"]
    assert report["first_read_ok"] and report["second_read_ok"]

    assert first["dlaas_xcache_accesses_total{origin}"] == 1  # the first read fetched the file from the origin
    assert first["dlaas_xcache_accesses_total{cache}"] == 0
    assert second["dlaas_xcache_accesses_total{cache}"] == 1  # the second never reached it
    assert second["dlaas_xcache_accesses_total{origin}"] == 1
    assert second["dlaas_xcache_bytes_total{hit}"] - first["dlaas_xcache_bytes_total{hit}"] >= 3_000_000
    assert second["dlaas_xcache_bytes_total{miss}"] == first["dlaas_xcache_bytes_total{miss}"]
    assert before["dlaas_xcache_origin_opens_total"] == 0 and second["dlaas_xcache_origin_opens_total"] >= 1
    assert second["dlaas_xcache_client_bytes_total{out}"] >= 2 * 3_000_000
