"""The copier of the local transfer tool (devstack.rucio_transfer): copies the files of one job, like an FTS job.

`python -m devstack.devcopy JOBS_DIR JOB_ID` reads <JOBS_DIR>/<JOB_ID>.job.json (request id -> DID, source PFNs,
destination PFN, size, adler32), copies each file (first source that copies cleanly wins) atomically (temporary
name, fsync, rename) after removing what a killed copy left, checks size and adler32 against the catalogue, and
writes <JOB_ID>.json with each request's outcome, atomically. `DLAAS_DEVCOPY_QUEUE_SECONDS` makes the job wait that
long first, as a job waits in FTS's queue. Pure standard library: it imports nothing of Rucio.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

JOBS_DIR = Path(os.environ.get("DLAAS_DEVCOPY_JOBS", "/tmp/dlaas-devcopy-jobs"))


class CopyError(Exception):
    pass


def local_path(pfn: str) -> Path:
    url = urlparse(pfn)
    if url.scheme not in ("file", "posix"):
        raise CopyError(f"devcopy copies file:// PFNs only, not {url.scheme}://")
    return Path(url.path)


def part_files(dst: Path) -> list[Path]:
    """The temporary files a copy to `dst` may have left when it was killed."""
    return sorted(dst.parent.glob(f".{dst.name}.*.part"))


def copy_file(source_pfn: str, dest_pfn: str, *, size: int | None, adler32: str | None) -> None:
    """Copy one file; the destination appears complete and verified, or not at all."""
    src, dst = local_path(source_pfn), local_path(dest_pfn)
    if not src.is_file():
        raise CopyError(f"source file missing: {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    for stale in part_files(dst):  # a copy killed before it finished
        stale.unlink(missing_ok=True)
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


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def job_path(external_id: str) -> Path:
    return JOBS_DIR / f"{external_id}.job.json"


def outcome_path(external_id: str) -> Path:
    return JOBS_DIR / f"{external_id}.json"


def run_job(external_id: str) -> dict[str, dict]:
    """Copy every file of a job (first source that copies cleanly wins) and write its outcomes; returns them."""
    job = json.loads(job_path(external_id).read_text())
    time.sleep(float(os.environ.get("DLAAS_DEVCOPY_QUEUE_SECONDS", "0") or 0))
    outcomes = {}
    for request_id, file in job.items():
        errors = []
        for source in file["sources"]:
            try:
                copy_file(source, file["dest"], size=file["size"], adler32=file["adler32"])
                errors = []
                break
            except (CopyError, OSError) as e:
                errors.append(str(e))
        outcome = {"ok": not errors, "at": time.time()}
        if errors:
            outcome["error"] = "; ".join(errors)[:250]
            logging.warning("devcopy %s failed: %s", file["did"], outcome["error"])
        else:
            logging.info("devcopy %s -> %s", file["did"], file["dest"])
        outcomes[request_id] = outcome
    write_json(outcome_path(external_id), outcomes)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.devcopy JOBS_DIR JOB_ID`: the copier of one job."""
    global JOBS_DIR
    jobs_dir, external_id = sys.argv[1:] if argv is None else argv
    JOBS_DIR = Path(jobs_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_job(external_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
