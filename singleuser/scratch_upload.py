"""Send files from the scratch area back to the Data Lake, without streaming them through the user's server.

Files under the scratch mount are already on storage: the scratch RSE (greedy, non-deterministic). Uploading them
means telling Rucio they are there and asking for a copy elsewhere, which Rucio (FTS in production) makes as a
third-party copy. For a set of files this module:

1. plans: resolves paths (refusing anything outside the scratch mount, symlinks included), computes size and
   adler32/md5, maps each path to its PFN on the scratch RSE, and checks scope, names, RSEs, lifetimes and DIDs
   that already exist - all before anything is registered;
2. registers, in ONE Rucio call, a dataset holding the files as replicas on the scratch RSE together with two
   rules: a short one keeping them on scratch while they are copied, and one to the destination RSE with the
   user's lifetime. The server applies that call in one transaction: it happens completely or not at all.
   Files added to an existing dataset are attached (with their replicas) in one call, and the dataset's rules
   cover them;
3. re-running after success is a no-op; a file whose DID exists with another checksum is refused.

Once the destination rule is OK and the short rule has expired, the greedy scratch RSE lets the reaper delete the
scratch copies.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,249}$")
SCOPE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,25}$")


class UploadError(Exception):
    """Refused before anything was registered, or failed atomically; the message says what to do."""


@dataclass
class PlannedFile:
    path: str
    scope: str
    name: str
    bytes: int
    adler32: str
    md5: str
    pfn: str
    state: str = "new"  # new | registered (same DID and checksum already in Rucio)


@dataclass
class Plan:
    scope: str
    dataset: str
    scratch_rse: str
    destination_rse: str
    lifetime: int | None
    scratch_lifetime: int
    files: list[PlannedFile] = field(default_factory=list)
    dataset_exists: bool = False
    rules: list[str] = field(default_factory=list)

    @property
    def new_files(self) -> list[PlannedFile]:
        return [f for f in self.files if f.state == "new"]

    def as_dict(self) -> dict:
        return asdict(self)


def checksums(path: Path) -> tuple[int, str, str]:
    size, adler, md5 = 0, 1, hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * 1024 * 1024), b""):
            size += len(block)
            adler = zlib.adler32(block, adler)
            md5.update(block)
    return size, f"{adler & 0xFFFFFFFF:08x}", md5.hexdigest()


def collect(paths: Iterable[str | os.PathLike], scratch_mount: Path) -> list[Path]:
    """Regular files named by `paths` (directories are walked), all resolved inside the scratch mount."""
    mount = scratch_mount.resolve()
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists() and not path.is_symlink():
            raise UploadError(f"{raw}: no such file or directory")
        candidates = sorted(p for p in path.rglob("*") if p.is_file() or p.is_symlink()) if path.is_dir() else [path]
        for candidate in candidates:
            real = candidate.resolve()
            if not real.is_relative_to(mount):
                raise UploadError(f"{candidate} is outside the scratch area {mount}: copy it under {mount} first")
            if not real.is_file():
                raise UploadError(f"{candidate} is not a regular file")
            if real not in found:
                found.append(real)
    if not found:
        raise UploadError("no files to upload")
    return found


def scratch_pfn_prefix(client, scratch_rse: str) -> str:
    """The URL prefix the scratch RSE's write protocol puts in front of paths inside the scratch mount."""
    protocols = client.get_protocols(scratch_rse, protocol_domain="wan", operation="write")
    if not protocols:
        raise UploadError(f"RSE {scratch_rse} has no write protocol: ask the operators")
    proto = protocols[0] if isinstance(protocols, list) else protocols
    port = f":{proto['port']}" if proto.get("port") else ""
    return f"{proto['scheme']}://{proto['hostname']}{port}{proto['prefix'].rstrip('/')}/"


class ScratchUploader:
    def __init__(self, client, *, scratch_rse: str, scratch_mount: Path, account: str | None = None):
        self.client = client
        self.scratch_rse = scratch_rse
        self.scratch_mount = Path(scratch_mount)
        self._account = account

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self.client.whoami()["account"]
        return self._account

    def plan(self, paths: Iterable[str | os.PathLike], *, destination_rse: str, scope: str | None = None,
             dataset: str | None = None, lifetime: int | None = None, scratch_lifetime: int = 3600,
             name_prefix: str = "") -> Plan:
        from rucio.common.exception import DataIdentifierNotFound, RSENotFound

        scope = scope or f"user.{self.account}"
        if not SCOPE_RE.match(scope):
            raise UploadError(f"{scope!r} is not a valid scope name")
        if lifetime is not None and lifetime <= 0:
            raise UploadError("lifetime must be a positive number of seconds (or omitted for no expiry)")
        if scratch_lifetime <= 0:
            raise UploadError("the scratch lifetime must be a positive number of seconds")
        dataset = dataset or "upload"
        if not NAME_RE.match(dataset):
            raise UploadError(f"{dataset!r} is not a valid dataset name: letters, digits, . _ - only")
        if scope not in set(self.client.list_scopes()):
            raise UploadError(f"scope {scope!r} does not exist: use your own scope, user.{self.account}")
        for rse in (self.scratch_rse, destination_rse):
            try:
                self.client.get_rse(rse)
            except RSENotFound:
                raise UploadError(f"RSE {rse!r} does not exist: `rucio rse list` shows the RSEs") from None
        if destination_rse == self.scratch_rse:
            raise UploadError("the destination must be another RSE than the scratch area")

        files = collect(paths, self.scratch_mount)
        mount = self.scratch_mount.resolve()
        prefix = scratch_pfn_prefix(self.client, self.scratch_rse)
        plan = Plan(scope, dataset, self.scratch_rse, destination_rse, lifetime, scratch_lifetime)
        names: dict[str, Path] = {}
        for path in files:
            name = f"{name_prefix}{path.name}"
            if not NAME_RE.match(name):
                raise UploadError(f"{path.name!r} cannot be a DID name: letters, digits, . _ - only; rename it")
            if name in names:
                raise UploadError(f"{path} and {names[name]} would both be named {name!r}: rename one of them")
            names[name] = path
            size, adler32, md5 = checksums(path)
            pfn = prefix + str(path.relative_to(mount))
            plan.files.append(PlannedFile(str(path), scope, name, size, adler32, md5, pfn))
        # DIDs that exist already: the same file again is fine (idempotent), another file is refused.
        existing = {}
        for chunk in _chunks([{"scope": scope, "name": f.name} for f in plan.files], 500):
            for meta in self.client.get_metadata_bulk(chunk):
                existing[meta["name"]] = meta
        for f in plan.files:
            meta = existing.get(f.name)
            if meta is None:
                continue
            if meta.get("adler32") != f.adler32 or meta.get("bytes") != f.bytes:
                raise UploadError(f"{scope}:{f.name} already exists with another content (adler32 "
                                  f"{meta.get('adler32')}): choose another name (--name-prefix)")
            f.state = "registered"
        try:
            self.client.get_did(scope, dataset)
            plan.dataset_exists = True
        except DataIdentifierNotFound:
            plan.dataset_exists = False
        return plan

    def _rules(self, plan: Plan) -> list[dict]:
        return [
            {"account": self.account, "copies": 1, "rse_expression": plan.scratch_rse,
             "lifetime": plan.scratch_lifetime, "comment": "datalakectl: keep on scratch while copying"},
            {"account": self.account, "copies": 1, "rse_expression": plan.destination_rse,
             "lifetime": plan.lifetime, "comment": "datalakectl: upload from scratch"},
        ]

    def execute(self, plan: Plan) -> Plan:
        """Register the plan in one atomic call (new dataset) or one attach (existing dataset)."""
        from rucio.common.exception import RucioException

        replicas = [{"scope": f.scope, "name": f.name, "bytes": f.bytes, "adler32": f.adler32, "md5": f.md5,
                     "pfn": f.pfn} for f in plan.new_files]
        try:
            if not plan.dataset_exists:
                self.client.add_dataset(plan.scope, plan.dataset, rules=self._rules(plan), files=replicas,
                                        rse=plan.scratch_rse)
            elif replicas:
                self.client.attach_dids(plan.scope, plan.dataset, replicas, rse=plan.scratch_rse)
        except RucioException as e:
            raise UploadError(f"Rucio refused the upload, nothing was registered: {str(e).strip().splitlines()[-1]}")
        plan.rules = [r["id"] for r in self.client.list_did_rules(plan.scope, plan.dataset)]
        for f in plan.new_files:
            f.state = "registered"
        return plan

    def status(self, scope: str, dataset: str) -> list[dict]:
        """The dataset's rules with their progress (locks OK / replicating / stuck)."""
        return [{"id": r["id"], "rse_expression": r["rse_expression"], "state": r["state"],
                 "ok": r["locks_ok_cnt"], "replicating": r["locks_replicating_cnt"], "stuck": r["locks_stuck_cnt"],
                 "expires_at": str(r["expires_at"]) if r.get("expires_at") else None}
                for r in self.client.list_did_rules(scope, dataset)]


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
