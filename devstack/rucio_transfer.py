"""A development transfer tool for Rucio that really copies bytes between local RSEs (no FTS here).

Loaded only by the local daemon process (devstack.rucio_daemons), which registers it with Rucio's conveyor under
the name `devcopy`; Rucio's installed files stay untouched. It works as FTS does for Rucio: the submitter hands over
a job (a JSON file per job in DLAAS_DEVCOPY_JOBS) and gets its id back at once; a copier process
(devstack.devcopy) copies each file from its source PFN to its destination PFN (file:// on this
machine), atomically (temporary name, fsync, rename), checks size and adler32 against the catalogue, and writes the
job's outcome; the poller reads it back. Submitting is quick, so a daemon killed mid-transfer almost never leaves a
request between "handed over" and "recorded" (Rucio requeues those only after two hours, as it does with FTS).

A copier runs in the daemons' process group, so stopping the daemons stops it. When the poller finds a job with no
outcome and no copier alive (the daemons were killed mid-copy and restarted), it starts a copier again: the copy
starts over, and the temporary file of the killed one is removed first. `DLAAS_DEVCOPY_QUEUE_SECONDS` makes each
job wait that long before copying, as a job waits in FTS's queue (the fault tests kill the daemons in that window).

Runs inside .venvs/rucio.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import urlparse

from rucio.db.sqla.constants import RequestState
from rucio.transfertool.transfertool import TransferStatusReport, Transfertool, TransferToolBuilder

from devstack.devcopy import JOBS_DIR, job_path, outcome_path, read_json, write_json

#: The copier processes this daemon process started, by job id (reaped by the poller).
_COPIERS: dict[str, subprocess.Popen] = {}


def start_copier(external_id: str) -> None:
    """A copier for the job, in this process's group (stopping the daemons stops it)."""
    _COPIERS[external_id] = subprocess.Popen(
        [sys.executable, "-m", "devstack.devcopy", str(JOBS_DIR), external_id], stdin=subprocess.DEVNULL
    )


def copier_running(external_id: str) -> bool:
    copier = _COPIERS.get(external_id)
    if copier is None:
        return False
    if copier.poll() is None:
        return True
    del _COPIERS[external_id]  # reaped
    return False


class DevCopyStatusReport(TransferStatusReport):
    supported_db_fields = ["state", "external_id", "err_msg", "started_at", "transferred_at"]

    def __init__(self, request_id: str, external_id: str, outcome: dict[str, Any] | None):
        super().__init__(request_id)
        self.external_id = external_id
        if outcome is None:  # still copying: nothing changes in the request
            self.state = self.err_msg = self.started_at = self.transferred_at = None
            return
        self.state = RequestState.DONE if outcome.get("ok") else RequestState.FAILED
        self.err_msg = outcome.get("error")
        at = datetime.datetime.fromtimestamp(outcome.get("at", 0), datetime.UTC).replace(tzinfo=None)
        self.started_at = at
        self.transferred_at = at

    def initialize(self, session, logger=logging.log) -> None:
        pass

    def get_monitor_msg_fields(self, session, logger=logging.log) -> dict[str, Any]:
        return {"transferred_at": self.transferred_at}


class DevCopyTransfertool(Transfertool):
    """Hands each job to a copier process; the poller reads back the outcome (or starts the copier again)."""

    external_name = "devcopy"
    required_rse_attrs = ()
    supported_schemes = {"file", "posix"}

    def __init__(self, external_host: str = "devcopy://localhost", logger=logging.log, **_kwargs):
        super().__init__(external_host, logger)

    @classmethod
    def submission_builder_for_path(cls, transfer_path, logger=logging.log):
        hop = transfer_path[0]
        schemes = {urlparse(hop.dest_url).scheme, *(urlparse(hop.source_url(s)).scheme for s in hop.sources)}
        if not schemes <= cls.supported_schemes:
            return [], None
        return [hop], TransferToolBuilder(cls, external_host="devcopy://localhost")

    def group_into_submit_jobs(self, transfer_paths):
        return [{"transfers": list(itertools.chain.from_iterable(transfer_paths)), "job_params": {}}]

    def submit(self, transfers, job_params, timeout=None) -> str:
        external_id = str(uuid.uuid4())
        job = {
            str(t.rws.request_id): {
                "did": f"{t.rws.scope}:{t.rws.name}",
                "sources": [t.source_url(source) for source in t.sources],
                "dest": t.dest_url,
                "size": t.rws.byte_count,
                "adler32": t.rws.adler32,
            }
            for t in transfers
        }
        JOBS_DIR.mkdir(parents=True, exist_ok=True)
        write_json(job_path(external_id), job)
        start_copier(external_id)
        return external_id

    def bulk_query(self, requests_by_eid, timeout=None):
        response = {}
        for external_id, requests in requests_by_eid.items():
            try:
                outcomes = read_json(outcome_path(external_id))
            except (OSError, ValueError):
                outcomes = None
            if outcomes is None and job_path(external_id).exists():
                if not copier_running(external_id):  # killed with the daemons: copy again
                    self.logger(logging.WARNING, "devcopy job %s has no copier: starting it again", external_id)
                    start_copier(external_id)
                outcomes = dict.fromkeys(map(str, requests))  # still copying
            for request_id in requests:
                lost = {"ok": False, "error": "devcopy lost track of this job"}
                outcome = (outcomes or {}).get(str(request_id), lost)
                response.setdefault(external_id, {})[request_id] = DevCopyStatusReport(request_id, external_id, outcome)
        return response

    def cancel(self, transfer_ids, timeout=None) -> bool:
        return True

    def update_priority(self, transfer_id, priority, timeout=None) -> bool:
        return True
