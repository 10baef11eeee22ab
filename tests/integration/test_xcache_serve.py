"""dlaas-xcache-serve as the cache image runs it, with Debian's real xrootd as cache and origin: it serves a permitted
origin, refuses another one by its path rules, restarts xrootd by itself when the allow-list file changes (then
serves the new origin), and ends with xrootd on SIGTERM.

XRootD listens on every interface, so the whole scenario runs in a private network namespace (`unshare --net`, only
a loopback interface; needs root, as the local data lake does) and as the user `xrootd` (xrootd's `-R`, passed
through after `--`). The driver below runs inside the namespace and reports what it saw as JSON.
"""

from __future__ import annotations

import signal

from devstack.settings import VENVS
from tests.helpers import needs_private_network, run_in_private_network

SERVE = VENVS / "main" / "bin" / "dlaas-xcache-serve"

DRIVER = r'''
import json, os, pwd, signal, socket, subprocess, sys, time
from pathlib import Path

work, serve = Path(sys.argv[1]), sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
user = pwd.getpwnam("xrootd")
for d in ("origin", "cache", "data/EULAKE-1", "logs"):
    (work / d).mkdir(parents=True, exist_ok=True)
    os.chown(work / d, user.pw_uid, user.pw_gid)
content = os.urandom(200_000)
(work / "data/EULAKE-1/file.bin").write_bytes(content)
ORIGIN, CACHE = 21094, 21095
(work / "origin/xrootd.cfg").write_text(f"""xrd.port {ORIGIN}
all.role server
oss.localroot {work / "data"}
all.export /EULAKE-1 r/o
all.adminpath {work / "origin"}
all.pidpath {work / "origin"}
""")
(work / "xcache.cfg").write_text(f"""xrd.port {CACHE}
all.role server
all.export /
ofs.osslib libXrdPss.so
pss.cachelib libXrdPfc.so
pss.origin =
oss.localroot {work / "cache"}
pfc.ram 1g
all.adminpath {work / "cache"}
all.pidpath {work / "cache"}
ofs.authorize 1
acc.authdb {work / "run/origins.authdb"}
acc.audit deny
continue {work / "run/origins.cfg"}
""")
origins = work / "origins.cfg"
origins.write_text(f"pss.permit 127.0.0.1:{ORIGIN}\n")
report = {}

def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

def wait(what, timeout=60):
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline or proc.poll() is not None:
            logs = {f.name: f.read_text(errors="replace")[-1500:] for f in (work / "logs").rglob("*.log")}
            raise SystemExit(json.dumps({**report, "timeout": True, "log": err.read_text()[-2000:], **logs}))
        time.sleep(0.1)

def read(url):
    out = work / "out.bin"
    out.unlink(missing_ok=True)
    r = subprocess.run(["xrdcp", "--force", "--nopbar", url, str(out)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XRD_REQUESTTIMEOUT": "20", "XRD_CONNECTIONRETRY": "1"})
    return {"rc": r.returncode, "same": out.exists() and out.read_bytes() == content,
            "bytes": out.stat().st_size if out.exists() else 0, "err": r.stderr.strip()[-300:]}

origin = subprocess.Popen(["xrootd", "-R", "xrootd", "-c", str(work / "origin/xrootd.cfg"), "-l",
                           str(work / "logs/origin.log"), "-n", "origin"], stdin=subprocess.DEVNULL)
err = work / "serve.err"
proc = subprocess.Popen([serve, "--config", str(work / "xcache.cfg"), "--origins", str(origins),
                         "--authdb", str(work / "run/origins.authdb"), "--permit-file", str(work / "run/origins.cfg"),
                         "--interval", "0.2", "--", "-R", "xrootd", "-l", str(work / "logs/cache.log"), "-n", "cache"],
                        stdin=subprocess.DEVNULL, stderr=open(err, "wb"))
try:
    wait(lambda: listening(ORIGIN) and listening(CACHE))
    cache = f"root://127.0.0.1:{CACHE}/"
    report["permitted"] = read(cache + f"/root://127.0.0.1:{ORIGIN}//EULAKE-1/file.bin")
    report["other_before"] = read(cache + f"/root://127.0.0.2:{ORIGIN}//EULAKE-1/file.bin")
    tmp = work / ".origins.new"
    tmp.write_text(f"pss.permit 127.0.0.1:{ORIGIN}\npss.permit 127.0.0.2:{ORIGIN}\n")
    os.replace(tmp, origins)
    wait(lambda: "cache restarted" in err.read_text())
    wait(lambda: listening(CACHE))
    report["other_after"] = read(cache + f"/root://127.0.0.2:{ORIGIN}//EULAKE-1/file.bin")
    report["authdb"] = (work / "run/origins.authdb").read_text()
    proc.send_signal(signal.SIGTERM)
    report["serve_status"] = proc.wait(60)
    report["cache_port_closed"] = not listening(CACHE)
    report["log"] = err.read_text().splitlines()
finally:
    for p in (proc, origin):
        if p.poll() is None:
            p.kill()
            p.wait(10)
print(json.dumps(report))
'''


@needs_private_network
def test_the_cache_image_command_runs_real_xrootd_on_the_list_and_restarts_it_on_a_new_list():
    report = run_in_private_network(DRIVER, SERVE, prefix="dlaas-xcache-serve-")

    assert report["permitted"]["rc"] == 0 and report["permitted"]["same"], report["permitted"]
    assert report["other_before"]["rc"] != 0 and report["other_before"]["bytes"] == 0
    assert "permission denied" in report["other_before"]["err"], report["other_before"]
    assert report["other_after"]["rc"] == 0 and report["other_after"]["same"], report["other_after"]
    assert "/root:/127.0.0.2:21094/ lr" in report["authdb"]
    assert report["serve_status"] == 128 + signal.SIGTERM  # xrootd ends by the forwarded SIGTERM
    assert report["cache_port_closed"]
    assert any("cache restarted" in line for line in report["log"]), report["log"]
