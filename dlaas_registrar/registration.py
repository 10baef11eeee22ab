"""Register a user's scratch files in Rucio on the user's behalf: dataset, replicas on the scratch RSE, two rules.

The files are already on storage (the scratch RSE, greedy and non-deterministic); uploading them means telling Rucio
they are there and asking for a copy elsewhere, which Rucio (FTS in production) makes as a third-party copy. The
registration service does it with its own Rucio account, for the user it identified, so users never register scratch
replicas themselves (the Rucio policy package refuses them; see dlaas_rucio_policy). For one upload this module:

1. plans: checks scope (owned by the user's account), dataset and DID names, RSEs, lifetimes, and DIDs that exist
   already (the same file again is fine, another content is refused) - before anything is registered;
2. registers a NEW dataset in ONE call (`add_did` with files, RSE and rules): the dataset, its files with their
   replicas on the scratch RSE and both rules (a short one keeping the files on scratch while they are copied, one
   to the destination with the user's lifetime), in one server transaction: all or nothing. The rules belong to the
   user's account (so does the quota they use); the DIDs record the service's account as the registering account
   (Rucio's REST API sets no other owner; the scope is the user's, and the generic policy lets scope owners manage
   their DIDs). Files added to an EXISTING dataset are attached with their replicas in one call, and the dataset's
   rules cover them;
3. a re-run after success registers nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from dlaas_registrar.scratch_files import ScratchFile

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,249}")
SCOPE = re.compile(r"[A-Za-z0-9_.\-]{1,25}")


class RegistrationError(Exception):
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
    account: str
    scope: str
    dataset: str
    scratch_rse: str
    destination_rse: str
    lifetime: int | None
    scratch_lifetime: int
    files: list[PlannedFile] = field(default_factory=list)
    dataset_exists: bool = False
    rules: list[str] = field(default_factory=list)
    upload_rules: list[str] = field(default_factory=list)  # the rules to the destination RSE (a subset of rules)

    @property
    def new_files(self) -> list[PlannedFile]:
        return [f for f in self.files if f.state == "new"]

    def as_dict(self) -> dict:
        return asdict(self)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _last_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]


class Registration:
    """Plans and registers uploads with a rucio-clients Client logged in as the registration service's account."""

    def __init__(self, client, *, scratch_rse: str):
        self.client = client
        self.scratch_rse = scratch_rse
        self._prefix: str | None = None

    def scratch_prefix(self) -> str:
        """The URL the scratch RSE's write protocol puts in front of paths inside the scratch area."""
        if self._prefix is None:
            protocols = self.client.get_protocols(self.scratch_rse, protocol_domain="wan", operation="write")
            if not protocols:
                raise RegistrationError(f"RSE {self.scratch_rse} has no write protocol: ask the operators")
            proto = protocols[0] if isinstance(protocols, list) else protocols
            port = f":{proto['port']}" if proto.get("port") else ""
            self._prefix = f"{proto['scheme']}://{proto['hostname']}{port}{proto['prefix'].rstrip('/')}/"
        return self._prefix

    def plan(
        self,
        account: str,
        files: list[ScratchFile],
        *,
        destination_rse: str,
        scope: str | None = None,
        dataset: str | None = None,
        lifetime: int | None = None,
        scratch_lifetime: int = 3600,
        name_prefix: str = "",
    ) -> Plan:
        from rucio.common.exception import DataIdentifierNotFound, RSENotFound

        scope = scope or f"user.{account}"
        if not SCOPE.fullmatch(scope):
            raise RegistrationError(f"{scope!r} is not a valid scope name")
        if lifetime is not None and lifetime <= 0:
            raise RegistrationError("lifetime must be a positive number of seconds (or omitted for no expiry)")
        if scratch_lifetime <= 0:
            raise RegistrationError("the scratch lifetime must be a positive number of seconds")
        dataset = dataset or "upload"
        if not NAME.fullmatch(dataset):
            raise RegistrationError(f"{dataset!r} is not a valid dataset name: letters, digits, . _ - only")
        if scope not in set(self.client.list_scopes_for_account(account)):
            raise RegistrationError(f"scope {scope!r} is not yours: use your own scope, user.{account}")
        if destination_rse == self.scratch_rse:
            raise RegistrationError("the destination must be another RSE than the scratch area")
        for rse in (self.scratch_rse, destination_rse):
            try:
                self.client.get_rse(rse)
            except RSENotFound:
                raise RegistrationError(f"RSE {rse!r} does not exist: `rucio rse list` shows the RSEs") from None

        prefix = self.scratch_prefix()
        plan = Plan(account, scope, dataset, self.scratch_rse, destination_rse, lifetime, scratch_lifetime)
        names: dict[str, str] = {}
        for f in files:
            name = f"{name_prefix}{f.path.rsplit('/', 1)[-1]}"
            if not NAME.fullmatch(name):
                raise RegistrationError(f"{name!r} cannot be a DID name: letters, digits, . _ - only; rename it")
            if name in names:
                raise RegistrationError(f"{f.path} and {names[name]} would both be named {name!r}: rename one")
            names[name] = f.path
            plan.files.append(
                PlannedFile(f.path, scope, name, f.bytes, f.adler32, f.md5, f"{prefix}{account}/{f.path}")
            )
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
                raise RegistrationError(
                    f"{scope}:{f.name} already exists with another content (adler32 "
                    f"{meta.get('adler32')}): choose another name (--name-prefix)"
                )
            f.state = "registered"
        try:
            did = self.client.get_did(scope, dataset)
            if did.get("type", "").upper() != "DATASET":
                raise RegistrationError(f"{scope}:{dataset} exists and is not a dataset: choose another --dataset")
            plan.dataset_exists = True
        except DataIdentifierNotFound:
            plan.dataset_exists = False
        return plan

    def _rules(self, plan: Plan) -> list[dict]:
        return [
            {
                "account": plan.account,
                "copies": 1,
                "rse_expression": plan.scratch_rse,
                "lifetime": plan.scratch_lifetime,
                "comment": "datalakectl: keep on scratch while copying",
            },
            {
                "account": plan.account,
                "copies": 1,
                "rse_expression": plan.destination_rse,
                "lifetime": plan.lifetime,
                "comment": "datalakectl: upload from scratch",
            },
        ]

    def execute(self, plan: Plan) -> Plan:
        """Register the plan in one atomic call (new dataset) or one attach (existing dataset)."""
        from rucio.common.exception import RucioException

        replicas = [
            {"scope": f.scope, "name": f.name, "bytes": f.bytes, "adler32": f.adler32, "md5": f.md5, "pfn": f.pfn}
            for f in plan.new_files
        ]
        try:
            if not plan.dataset_exists:
                self.client.add_dataset(
                    plan.scope, plan.dataset, rules=self._rules(plan), files=replicas, rse=plan.scratch_rse
                )
            elif replicas:
                self.client.attach_dids(plan.scope, plan.dataset, replicas, rse=plan.scratch_rse)
        except RucioException as e:
            raise RegistrationError(f"Rucio refused the upload, nothing was registered: {_last_line(e)}") from None
        rules = list(self.client.list_did_rules(plan.scope, plan.dataset))
        plan.rules = [r["id"] for r in rules]
        plan.upload_rules = [r["id"] for r in rules if r.get("rse_expression") == plan.destination_rse]
        for f in plan.new_files:
            f.state = "registered"
        return plan
