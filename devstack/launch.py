"""`python -m devstack.launch SPEC`: become one service of the local data lake, as its launch file describes.

supervisord runs every service of a supervised stack (devstack.supervision) and restarts the ones that die. Its
program sections are one line of command; a service's environment, working directory, log file and pidfile are in a
launch file instead (JSON, mode 0600 in the private run directory: a hub's environment holds its own secrets), which
this module reads on every (re)start before replacing itself with the service (`os.execvpe`), so supervisord's PID is
the service's PID. Before that it:

- stops what the service's previous run left in its process group (devstack.procs.stop_leftovers: gunicorn's
  workers outlive a killed master and keep its port), as a container restart does;
- writes the service's pidfile (devstack.pidfiles: PID and start time, both kept by exec), so `make down` stops the
  current process by PID after any number of restarts;
- points stdout and stderr straight at the service's log file (append), not at a pipe to supervisord: what the
  service starts and leaves running (the hub's users' servers) keeps a place to write when the service dies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from devstack.pidfiles import write_pidfile
from devstack.procs import stop_leftovers


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m devstack.launch <launch file>", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text())
    except (OSError, ValueError) as e:
        print(f"devstack.launch: cannot read the launch file {args[0]}: {e}", file=sys.stderr)
        return 2
    if spec.get("log"):
        fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {spec['name']} (pid {os.getpid()})", flush=True)
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    if spec.get("pidfile"):
        left = stop_leftovers(Path(spec["pidfile"]))
        if left:
            print(f"stopped what the previous run left behind: pids {', '.join(map(str, left))}", flush=True)
        write_pidfile(Path(spec["pidfile"]), os.getpid(), spec["argv"])
    env = spec["env"] if spec.get("env") is not None else dict(os.environ)
    try:
        os.execvpe(spec["argv"][0], spec["argv"], env)
    except OSError as e:
        print(f"devstack.launch: cannot start {spec['argv'][0]}: {e.strerror}; run `make up` to install it", flush=True)
        return 127


if __name__ == "__main__":
    sys.exit(main())
