"""A development transfer tool for Rucio that really copies bytes between local RSEs (no FTS here).

Loaded only by the local daemon process (devstack.rucio_daemons), which registers it with Rucio's conveyor under
the name `devcopy`; Rucio's installed files stay untouched. A submitted job copies each file at once from its
source PFN to its destination PFN (file:// on this machine), atomically (temporary name, fsync, rename), and checks
size and adler32 against the catalogue. The outcome is kept as a small JSON file per job, so the poller reports
it even after the daemon process restarts.

Runs inside .venvs/rucio.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import os
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rucio.db.sqla.constants import RequestState
from rucio.transfertool.transfertool import TransferStatusReport, Transfertool, TransferToolBuilder

JOBS_DIR = Path(os.environ.get("DLAAS_DEVCOPY_JOBS", "/tmp/dlaas-devcopy-jobs"))


class CopyError(Exception):
    pass


def local_path(pfn: str) -> Path:
    url = urlparse(pfn)
    if url.scheme not in ("file", "posix"):
        raise CopyError(f"devcopy copies file:// PFNs only, not {url.scheme}://")
    return Path(url.path)


def copy_file(source_pfn: str, dest_pfn: str, *, size: int | None, adler32: str | None) -> None:
    """Copy one file; the destination appears complete and verified, or not at all."""
    src, dst = local_path(source_pfn), local_path(dest_pfn)
    if not src.is_file():
        raise CopyError(f"source file missing: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    try:
        checksum = 1
        written = 0
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            for block in iter(lambda: fin.read(1024 * 1024), b""):
                fout.write(block)
                checksum = zlib.adler32(block, checksum)
                written += len(block)
            fout.flush()
            os.fsync(fout.fileno())
        if size is not None and written != size:
            raise CopyError(f"size mismatch for {src.name}: copied {written} bytes, catalogue says {size}")
        got = f"{checksum & 0xFFFFFFFF:08x}"
        if adler32 and got != adler32.lower().zfill(8):
            raise CopyError(f"adler32 mismatch for {src.name}: {got} != {adler32}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DevCopyStatusReport(TransferStatusReport):
    supported_db_fields = ["state", "external_id", "err_msg", "started_at", "transferred_at"]

    def __init__(self, request_id: str, external_id: str, outcome: dict[str, Any]):
        super().__init__(request_id)
        self.external_id = external_id
        self.state = RequestState.DONE if outcome.get("ok") else RequestState.FAILED
        self.err_msg = outcome.get("error")
        at = datetime.datetime.utcfromtimestamp(outcome.get("at", 0))
        self.started_at = at
        self.transferred_at = at

    def initialize(self, session, logger=logging.log) -> None:
        pass

    def get_monitor_msg_fields(self, session, logger=logging.log) -> dict[str, Any]:
        return {"transferred_at": self.transferred_at}


class DevCopyTransfertool(Transfertool):
    """Copies file:// replicas locally at submission time; the poller then reads back the outcome."""

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
        outcomes = {}
        for transfer in transfers:
            rws = transfer.rws
            errors = []
            for source in transfer.sources:  # multi-source: first source that copies cleanly wins
                try:
                    copy_file(transfer.source_url(source), transfer.dest_url, size=rws.byte_count, adler32=rws.adler32)
                    errors = []
                    break
                except (CopyError, OSError) as e:
                    errors.append(str(e))
            outcome = {"ok": not errors, "at": datetime.datetime.utcnow().timestamp()}
            if errors:
                outcome["error"] = "; ".join(errors)[:250]
                self.logger(logging.WARNING, "devcopy %s:%s failed: %s", rws.scope, rws.name, outcome["error"])
            else:
                self.logger(logging.INFO, "devcopy %s:%s -> %s", rws.scope, rws.name, transfer.dst.rse.name)
            outcomes[str(rws.request_id)] = outcome
        JOBS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = JOBS_DIR / f".{external_id}.tmp"
        tmp.write_text(json.dumps(outcomes))
        os.replace(tmp, JOBS_DIR / f"{external_id}.json")
        return external_id

    def bulk_query(self, requests_by_eid, timeout=None):
        response = {}
        for external_id, requests in requests_by_eid.items():
            path = JOBS_DIR / f"{external_id}.json"
            try:
                outcomes = json.loads(path.read_text())
            except (OSError, ValueError):
                outcomes = {}
            for request_id in requests:
                outcome = outcomes.get(str(request_id), {"ok": False, "error": "devcopy lost track of this job"})
                response.setdefault(external_id, {})[request_id] = DevCopyStatusReport(request_id, external_id, outcome)
        return response

    def cancel(self, transfer_ids, timeout=None) -> bool:
        return True

    def update_priority(self, transfer_id, priority, timeout=None) -> bool:
        return True
