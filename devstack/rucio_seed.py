"""Seed the local Rucio server: accounts with dev-IAM identities, scopes, RSEs on local directories, demo data.

Runs over the REST API as root through rucio-clients, so the seed exercises the real server. Every step checks
what exists first: a second run registers nothing and takes about a second.

RSEs (directories under <state>/rses/<RSE>):
- EULAKE-1: the "replica mode" RSE a user's server sees through its storage mount (EOS FUSE in production). It
  stands for far-away storage: its own site (EULAKE), and a root:// door served by the local XRootD origin. Clients
  of the local site (LOCAL) get its root PFNs through the XCache (`root-proxy-internal`), as ESCAPE sites do.
- DESY-DCACHE: a destination for rules and uploads.
- DLAAS-SCRATCH: the greedy, non-deterministic scratch area (`dlaas_scratch=True`); every user's files sit in
  <RSE dir>/<username>. Only the registration service (account dlaas-registrar, `dlaas_registrar=True`) registers
  replicas there: the server loads the DLaaS policy package (dlaas_rucio_policy), which refuses anyone else.

Demo data, on EULAKE-1, pinned by a rule: escape_demo:higgs-candidates (3 ROOT files of about 3.2 MiB, a TTree
`events` of 44,000 simulated H -> 4l candidates each, written reproducibly by devstack.higgs_sample with the ROOT
environment's Python), escape_demo:cosmic-rays-small (2,000 tiny JSON files; 40 with full=False, as the tests seed),
user.alice:alice-first-dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devstack.higgs_sample import file_name as higgs_file_name
from devstack.iam import USERS_FILE
from devstack.settings import REPO, VENVS, Settings

REPLICA_RSE = "EULAKE-1"
DESTINATION_RSE = "DESY-DCACHE"
SCRATCH_RSE = "DLAAS-SCRATCH"  # not *SCRATCHDISK: generic policy lets anyone add replicas there
REGISTRAR_ACCOUNT = "dlaas-registrar"
RSES = (REPLICA_RSE, DESTINATION_RSE, SCRATCH_RSE)
SITE = "LOCAL"  # the site of the users' servers, of the XCache and of the RSEs on the hub's machine
REMOTE_SITE = "EULAKE"  # the site of REPLICA_RSE: reads from LOCAL to it go through the cache
DEMO_SCOPE = "escape_demo"
ACCOUNT_LIMIT = 10 * 1024**4  # 10 TiB: demo accounts are never blocked by quota
HIGGS_DATASET = "higgs-candidates"
HIGGS_FILES = 3
# The demo ROOT files are written with the official ROOT build, which lives in the ROOT profile's environment.
ROOT_PYTHON = VENVS / "kernel-root" / "bin" / "python"


@dataclass(frozen=True)
class DemoFile:
    scope: str
    name: str
    content: bytes

    @property
    def adler32(self) -> str:
        return f"{zlib.adler32(self.content) & 0xFFFFFFFF:08x}"

    @property
    def md5(self) -> str:
        return hashlib.md5(self.content).hexdigest()


def demo_datasets(full: bool) -> dict[tuple[str, str], list[str]]:
    """The demo datasets and their files' names: the Higgs candidates (MB-sized ROOT files, devstack.higgs_sample)
    and many small files (fewer when `full` is False)."""
    return {
        (DEMO_SCOPE, HIGGS_DATASET): [higgs_file_name(i) for i in range(HIGGS_FILES)],
        (DEMO_SCOPE, "cosmic-rays-small"): [f"cosmic-ray-event.{i:05d}.json" for i in range(2000 if full else 40)],
        ("user.alice", "alice-first-dataset"): ["alice-notes.txt"],
    }


def demo_content(settings: Settings, scope: str, dataset: str, names: list[str]) -> list[DemoFile]:
    """The files `names` of a demo dataset, with their (deterministic) content."""
    if dataset == HIGGS_DATASET:
        directory = higgs_candidates(settings)
        return [DemoFile(scope, name, (directory / name).read_bytes()) for name in names]
    if dataset == "cosmic-rays-small":
        events = [int(name.split(".")[1]) for name in names]
        return [
            DemoFile(scope, name, json.dumps({"event": i, "energy_gev": round(1 + (i * 7919 % 1000) / 10, 1)}).encode())
            for name, i in zip(names, events, strict=True)
        ]
    return [DemoFile(scope, name, b"Alice's first file in the Data Lake.\n") for name in names]


def higgs_candidates(settings: Settings) -> Path:
    """The directory holding the Higgs candidates' ROOT files, written by the ROOT environment's Python on first use
    (about 3 s; the files are reproducible, so a rerun writes the same bytes)."""
    directory = settings.state_dir / "demo-data"
    if all((directory / higgs_file_name(i)).is_file() for i in range(HIGGS_FILES)):
        return directory
    from devstack.service import ServiceError

    if not ROOT_PYTHON.exists():
        raise ServiceError(
            f"the ROOT environment is missing ({ROOT_PYTHON.parent.parent}): run `make up` to install it"
        )
    command = [str(ROOT_PYTHON), "-W", "ignore", "-m", "devstack.higgs_sample", str(directory)]
    result = subprocess.run(
        [*command, "--files", str(HIGGS_FILES)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ServiceError(f"writing the demo ROOT files failed ({last}): run `{' '.join(command)}` to see why")
    return directory


def load_users() -> list[dict]:
    return json.loads(USERS_FILE.read_text())


def rses_root(settings: Settings) -> Path:
    return settings.state_dir / "rses"


def rse_dir(settings: Settings, rse: str) -> Path:
    return rses_root(settings) / rse


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def site_of(rse: str) -> str:
    return REMOTE_SITE if rse == REPLICA_RSE else SITE


def root_protocol(settings: Settings) -> dict:
    """EULAKE-1's root:// door: the local XRootD origin, which exports <state>/rses/EULAKE-1 as /EULAKE-1."""
    return {
        "scheme": "root",
        "hostname": settings.host,
        "port": settings.xrootd_port,
        # Rucio's xrootd protocol joins host:port and the prefix with nothing between: `//` makes the PFN's path
        # absolute (root://host:port//EULAKE-1/...), as XRootD servers want it (a relative one is refused)
        "prefix": f"//{REPLICA_RSE}/",
        "impl": "rucio.rse.protocols.xrootd.Default",
        # read only (an operation left out is not supported; 0 would be the *first* choice), and after the POSIX
        # door: the storage mount stays replica mode's choice, uploads never pick the read-only origin
        "domains": {"lan": {"read": 2}, "wan": {"read": 2}},
    }


def ensure_xrootd(settings: Settings, client) -> None:
    """EULAKE-1's root door at the origin's current port, and the XCache as the LOCAL site's proxy (idempotent)."""
    from rucio.common.exception import ConfigNotFound

    wanted = root_protocol(settings)
    current = [p for p in client.get_protocols(REPLICA_RSE) if p["scheme"] == "root"]
    where = ("hostname", "port", "prefix")
    if current and [current[0][k] for k in where] != [wanted[k] for k in where]:
        client.delete_protocols(REPLICA_RSE, "root")
        current = []
    if not current:
        client.add_protocol(REPLICA_RSE, wanted)
    attrs = client.list_rse_attributes(REPLICA_RSE)
    if attrs.get("site") != REMOTE_SITE:
        client.add_rse_attribute(REPLICA_RSE, "site", REMOTE_SITE)
    proxy = f"{settings.host}:{settings.xcache_port}"
    try:
        current_proxy = client.get_config("root-proxy-internal", SITE)
    except ConfigNotFound:
        current_proxy = None
    if current_proxy != proxy:
        client.set_config_option("root-proxy-internal", SITE, proxy)


def registrar_password(server) -> str:
    """The registration service's Rucio password (userpass), kept 0600 in the Rucio state directory."""
    from dlaas_fs.secret_files import kept_secret

    return kept_secret(server.dir / "registrar-password", 24)


def ensure_registrar(client, password: str) -> int:
    """The registration service's Rucio account: a SERVICE account with the attribute the policy package trusts."""
    added = 0
    if REGISTRAR_ACCOUNT not in {a["account"] for a in client.list_accounts()}:
        client.add_account(REGISTRAR_ACCOUNT, "SERVICE", "registrar@dlaas.invalid")
        added = 1
    if not any(i["type"] == "USERPASS" for i in client.list_identities(REGISTRAR_ACCOUNT)):
        client.add_identity(
            REGISTRAR_ACCOUNT, REGISTRAR_ACCOUNT, "USERPASS", "registrar@dlaas.invalid", default=True, password=password
        )
    attrs = {a["key"] for page in client.list_account_attributes(REGISTRAR_ACCOUNT) for a in page}
    if "dlaas_registrar" not in attrs:
        client.add_account_attribute(REGISTRAR_ACCOUNT, "dlaas_registrar", "True")
    return added


def seed(settings: Settings, server, *, full: bool = True, iam_issuer: str | None = None) -> dict:
    """Create everything the local data lake needs; returns counts of what was added."""
    from rucio.common.exception import Duplicate

    issuer = iam_issuer or server.iam_issuer
    client = server.root_client()
    added = {"accounts": 0, "rses": 0, "files": 0}

    existing_accounts = {a["account"] for a in client.list_accounts()}
    for user in load_users():
        name = user["username"]
        if name not in existing_accounts:
            client.add_account(name, "USER", user["email"])
            added["accounts"] += 1
        identity = f"SUB={user['sub']}, ISS={issuer}"
        if not any(i["identity"] == identity for i in client.list_identities(name)):
            client.add_identity(name, identity, "OIDC", user["email"], default=True)
        if "escape/admins" in user.get("groups", []):
            attrs = {a["key"] for page in client.list_account_attributes(name) for a in page}
            if "admin" not in attrs:
                client.add_account_attribute(name, "admin", "True")
    existing_scopes = set(client.list_scopes())
    for user in load_users():
        if f"user.{user['username']}" not in existing_scopes:
            client.add_scope(user["username"], f"user.{user['username']}")
    if DEMO_SCOPE not in existing_scopes:
        client.add_scope("root", DEMO_SCOPE)

    existing_rses = {r["rse"] for r in client.list_rses()}
    for rse in RSES:
        directory = rse_dir(settings, rse)
        directory.mkdir(parents=True, exist_ok=True)
        if rse in existing_rses:
            continue
        client.add_rse(rse, deterministic=(rse != SCRATCH_RSE))
        client.add_protocol(
            rse,
            {
                "scheme": "file",
                "hostname": "localhost",  # posix protocols need a hostname, or the reaper deletes nothing
                "port": 0,
                "prefix": f"{directory}/",
                "impl": "rucio.rse.protocols.posix.Default",
                "domains": {
                    "lan": {"read": 1, "write": 1, "delete": 1},
                    "wan": {
                        "read": 1,
                        "write": 1,
                        "delete": 1,
                        "third_party_copy_read": 1,
                        "third_party_copy_write": 1,
                    },
                },
            },
        )
        client.add_rse_attribute(rse, "site", site_of(rse))
        client.add_rse_attribute(rse, "fts", "devcopy://localhost")
        if rse == SCRATCH_RSE:
            client.add_rse_attribute(rse, "greedyDeletion", True)
        added["rses"] += 1
    if not client.list_rse_attributes(SCRATCH_RSE).get("dlaas_scratch"):
        client.add_rse_attribute(SCRATCH_RSE, "dlaas_scratch", True)
    added["accounts"] += ensure_registrar(client, registrar_password(server))
    for src in RSES:
        for dst in RSES:
            if src != dst:
                with contextlib.suppress(Duplicate):
                    client.add_distance(src, dst, {"distance": 1})
    for user in [{"username": "root"}, *load_users()]:
        limits = client.get_local_account_limits(user["username"])
        for rse in RSES:
            if limits.get(rse) != ACCOUNT_LIMIT:
                client.set_local_account_limit(user["username"], rse, ACCOUNT_LIMIT)

    ensure_xrootd(settings, client)
    added["files"] = _seed_demo_data(settings, client, full)
    return added


def _seed_demo_data(settings: Settings, client, full: bool) -> int:
    from rucio.common.exception import DataIdentifierNotFound

    added = 0
    for (scope, dataset), names in demo_datasets(full).items():
        try:
            client.get_did(scope, dataset)
            present = {d["name"] for d in client.list_files(scope, dataset)}
        except DataIdentifierNotFound:
            client.add_dataset(scope, dataset)
            present = set()
        missing_names = [name for name in names if name not in present]
        if not missing_names:
            continue
        missing = demo_content(settings, scope, dataset, missing_names)
        for chunk in _chunks(missing, 1000):
            pfns = {}
            for part in _chunks(chunk, 40):  # lfns2pfns is a GET: stay under gunicorn's 4 KiB request line
                pfns.update(
                    client.lfns2pfns(
                        REPLICA_RSE, [f"{f.scope}:{f.name}" for f in part], operation="write", scheme="file"
                    )
                )
            for f in chunk:
                path = Path(pfns[f"{f.scope}:{f.name}"].removeprefix("file://localhost"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f.content)
            client.add_replicas(
                REPLICA_RSE,
                [
                    {"scope": f.scope, "name": f.name, "bytes": len(f.content), "adler32": f.adler32, "md5": f.md5}
                    for f in chunk
                ],
            )
            client.attach_dids(scope, dataset, [{"scope": f.scope, "name": f.name} for f in chunk])
        added += len(missing)
        if not list(client.list_did_rules(scope, dataset)):
            # Pin the demo data on the replica-mode RSE so no daemon ever cleans it up.
            client.add_replication_rule(
                [{"scope": scope, "name": dataset}], 1, REPLICA_RSE, comment="demo data of the local data lake"
            )
    return added
