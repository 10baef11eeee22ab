"""Rucio's daemons for the local data lake, so that rules really complete and expired replicas really go.

One background process (inside .venvs/rucio) calls each daemon's single iteration in turn, every couple of seconds:
judge evaluator, judge cleaner (expired rules), judge repairer, conveyor submitter / poller / finisher with the
`devcopy` transfer tool (real byte copies between local RSEs, by copier processes, as FTS would), the reaper (greedy
RSEs lose replicas as soon as no rule protects them) and the undertaker (expired DIDs). Once an hour it also runs
the scratch cleanup (files and empty folders older than two days), as the CronJob does on Kubernetes.

`RucioDaemons` starts and stops that process from the devstack (main venv); `python -m devstack.rucio_daemons`
is the loop itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from devstack.procs import Process
from devstack.service import Service
from devstack.settings import REPO, RUCIO_PYTHON, Settings


class RucioDaemons(Service):
    stop_timeout = 20.0

    def __init__(self, settings: Settings, server, *, interval: float = 1.0, transfer_queue_seconds: float = 0.0):
        self.settings = settings
        self.server = server
        self.interval = interval
        self.transfer_queue_seconds = transfer_queue_seconds  # how long each transfer job waits before it copies
        self.process: Process | None = None
        self.heartbeat = settings.state_dir / "rucio" / "daemons.heartbeat"

    def start(self) -> RucioDaemons:
        self.heartbeat.unlink(missing_ok=True)
        env = self.server.env()
        env["DLAAS_DEVCOPY_JOBS"] = str(self.settings.state_dir / "rucio" / "devcopy-jobs")
        env["DLAAS_DEVCOPY_QUEUE_SECONDS"] = str(self.transfer_queue_seconds)
        env["DLAAS_DAEMONS_HEARTBEAT"] = str(self.heartbeat)
        env["DLAAS_DAEMONS_INTERVAL"] = str(self.interval)
        from devstack.rucio_seed import SCRATCH_RSE, rse_dir

        env["DLAAS_SCRATCH_DIR"] = str(rse_dir(self.settings, SCRATCH_RSE))
        self.process = Process(
            "rucio-daemons",
            [str(RUCIO_PYTHON), "-m", "devstack.rucio_daemons"],
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            ready=self.heartbeat.exists,  # ready once a first full cycle ran
            env=env,
            cwd=REPO,
            timeout=120,
        ).start()
        return self


def _cycle() -> None:
    from rucio.daemons.conveyor import finisher, poller, submitter
    from rucio.daemons.judge import cleaner, evaluator, repairer
    from rucio.daemons.reaper import reaper
    from rucio.daemons.undertaker import undertaker

    evaluator.re_evaluator(once=True, did_limit=1000)
    cleaner.rule_cleaner(once=True)
    repairer.rule_repairer(once=True)
    submitter.submitter(once=True, partition_wait_time=0, transfertools=["devcopy"], bulk=1000)
    poller.poller(once=True, partition_wait_time=0, older_than=0, transfertool="devcopy", db_bulk=1000)
    finisher.finisher(once=True, partition_wait_time=0, db_bulk=1000)
    reaper.reaper(rses=[], include_rses=None, exclude_rses=None, once=True, chunk_size=1000)
    undertaker.undertaker(once=True, chunk_size=1000)


def main() -> int:
    import logging

    from rucio.core import transfer as transfer_core

    from devstack.rucio_transfer import DevCopyTransfertool

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    transfer_core.TRANSFERTOOL_CLASSES_BY_NAME[DevCopyTransfertool.external_name] = DevCopyTransfertool
    heartbeat = os.environ.get("DLAAS_DAEMONS_HEARTBEAT")
    interval = float(os.environ.get("DLAAS_DAEMONS_INTERVAL", "1"))
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scratch = os.environ.get("DLAAS_SCRATCH_DIR")
    next_cleanup = 0.0
    while not stopping:
        if scratch and time.monotonic() >= next_cleanup:
            # What the scratch-cleanup CronJob does on Kubernetes: files and empty folders older than two days.
            from singleuser.scratch_cleanup import cleanup

            try:
                removed = cleanup(Path(scratch), 2 * 86400)
                if removed["files"] or removed["dirs"]:
                    logging.info("scratch cleanup removed %s", removed)
            except OSError:
                logging.exception("scratch cleanup failed")
            next_cleanup = time.monotonic() + 3600
        started = time.monotonic()
        try:
            _cycle()
        except Exception:
            logging.exception("daemon cycle failed; retrying")
        if heartbeat:
            with open(heartbeat, "w") as f:
                f.write(f"{time.time():.3f} {time.monotonic() - started:.3f}\n")
        deadline = time.monotonic() + interval
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
