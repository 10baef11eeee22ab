"""Alice, a normal user with her own Rucio token and her own server, tries to get other people's scratch files
deleted or registered as hers. The real Rucio server (with the DLaaS policy package), its daemons (greedy reaper)
and the real registration service must refuse every attempt, and the victims' files must survive the reaper.
"""

import os
import uuid
import zlib
from pathlib import Path

import pytest
import requests

from devstack.ports import wait_for
from devstack.rucio_seed import SCRATCH_RSE, rse_dir


@pytest.fixture
def victims(settings):
    """A file in bob's scratch directory and one outside the scratch RSE's directory, with their contents."""
    scratch = rse_dir(settings, SCRATCH_RSE)
    bob = scratch / "bob"
    bob.mkdir(exist_ok=True, mode=0o700)
    tag = uuid.uuid4().hex[:8]
    files = {
        bob / f"thesis-{tag}.root": b"bob's unpublished histograms\n" * 50,
        scratch.parent / f"victim-{tag}.txt": b"not part of any RSE\n",
    }
    for path, content in files.items():
        path.write_bytes(content)
    yield files
    for path in files:
        path.unlink(missing_ok=True)


def _replica(path: Path, scratch: Path, name: str) -> dict:
    data = path.read_bytes()
    return {
        "scope": "user.alice",
        "name": name,
        "bytes": len(data),
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "pfn": f"file://localhost{scratch}/{os.path.relpath(path, scratch)}",
    }


def _pfn_forms(victims, scratch):
    bob_file, outside = victims
    tag = uuid.uuid4().hex[:6]
    yield _replica(bob_file, scratch, f"stolen-{tag}")
    traversal = _replica(outside, scratch, f"outside-{tag}")
    traversal["pfn"] = f"file://localhost{scratch}/alice/../../{outside.name}"
    yield traversal


class RucioAPI:
    """Alice's own Rucio REST calls, as any HTTP client sends them: no client-side check can be in the way, and the
    server's refusal is seen as it is (rucio-clients turn a 401 AccessDenied into a re-login attempt)."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def post(self, path: str, body) -> requests.Response:
        return requests.post(f"{self.url}/{path}", json=body, timeout=30, headers={"X-Rucio-Auth-Token": self.token})


SHORT_RULE = {"account": "alice", "copies": 1, "rse_expression": SCRATCH_RSE, "lifetime": 2}
ATTACKS = {
    "add_replicas": lambda api, ds, files: [api.post("replicas/", {"rse": SCRATCH_RSE, "files": files})],
    "add_dataset with rse (Tier-0 path)": lambda api, ds, files: [
        api.post(f"dids/user.alice/{ds}", {"type": "DATASET", "dids": files, "rse": SCRATCH_RSE, "rules": [SHORT_RULE]})
    ],
    "add_dids with rse": lambda api, ds, files: [
        api.post("dids", [{"scope": "user.alice", "name": ds, "type": "DATASET", "rse": SCRATCH_RSE, "dids": files}])
    ],
    "attach_dids with rse": lambda api, ds, files: [
        api.post(f"dids/user.alice/{ds}", {"type": "DATASET"}),
        api.post(f"dids/user.alice/{ds}/dids", {"dids": files, "rse": SCRATCH_RSE}),
    ],
    "attach_dids_to_dids with rse": lambda api, ds, files: [
        api.post(f"dids/user.alice/{ds}", {"type": "DATASET"}),
        api.post(
            "dids/attachments",
            {"attachments": [{"scope": "user.alice", "name": ds, "dids": files, "rse": SCRATCH_RSE}]},
        ),
    ],
}


def _refused(answer: requests.Response) -> bool:
    # Rucio answers AccessDenied with 401 (500 on /rules/): the class is what counts.
    return answer.status_code >= 400 and answer.headers.get("ExceptionClass") == "AccessDenied"


@pytest.mark.parametrize("attack", ATTACKS)
def test_alice_cannot_get_bobs_scratch_file_deleted(
    attack, rucio, rucio_token, root_client, rucio_daemons, settings, victims
):
    api = RucioAPI(rucio.url, rucio_token("alice"))
    scratch = rse_dir(settings, SCRATCH_RSE)
    for replica in _pfn_forms(list(victims), scratch):
        dataset = f"attack-{uuid.uuid4().hex[:8]}"
        answer = ATTACKS[attack](api, dataset, [replica])[-1]
        assert _refused(answer), (answer.status_code, answer.text)
        assert "datalakectl upload" in answer.json()["ExceptionMessage"]  # the refusal says what to do instead
        replicas = list(root_client.list_replicas([{"scope": "user.alice", "name": replica["name"]}], all_states=True))
        assert not any(SCRATCH_RSE in r["rses"] for r in replicas)
    # Let the daemons (greedy reaper included) run several cycles: the victims' files are still there.
    for _ in range(3):
        heartbeat = rucio_daemons.heartbeat.read_text()
        wait_for(
            lambda before=heartbeat: rucio_daemons.heartbeat.read_text() != before, timeout=60, what="a daemon cycle"
        )
    for path, content in victims.items():
        assert path.read_bytes() == content


def test_alice_cannot_put_a_rule_on_the_scratch_area(rucio, rucio_token):
    api = RucioAPI(rucio.url, rucio_token("alice"))
    did = {"scope": "user.alice", "name": "alice-first-dataset"}
    for expression in (SCRATCH_RSE, "dlaas_scratch=True", f"DESY-DCACHE|{SCRATCH_RSE}"):
        answer = api.post(
            "rules/", {"dids": [did], "copies": 1, "rse_expression": expression, "lifetime": 60, "account": "alice"}
        )
        assert _refused(answer), (expression, answer.status_code, answer.text)


# --- the registration service, with alice's own server token ------------------------------------------------------


def _upload(alice_env, paths, **fields):
    return requests.post(
        alice_env["DLAAS_REGISTRAR_URL"].rstrip("/") + "/api/uploads",
        json={"paths": paths, "destination_rse": "DESY-DCACHE", "dataset": f"attack-{uuid.uuid4().hex[:8]}", **fields},
        headers={"Authorization": f"token {alice_env['JUPYTERHUB_API_TOKEN']}"},
        timeout=60,
    )


def _no_scratch_replicas_of(root_client, names) -> bool:
    dids = [{"scope": "user.alice", "name": n} for n in names]
    return not any(SCRATCH_RSE in r["rses"] for r in root_client.list_replicas(dids, all_states=True))


def test_the_registrar_resolves_paths_only_inside_alices_own_directory(alice_env, victims, root_client):
    bob_file, outside = list(victims)
    mine = Path(alice_env["DLAAS_SCRATCH_MOUNT"])
    assert mine.name == "alice" and not (mine / "bob").exists()
    tag = uuid.uuid4().hex[:8]
    (mine / f"to-bob-{tag}.root").symlink_to(bob_file)
    (mine / f"dir-{tag}").symlink_to(bob_file.parent, target_is_directory=True)
    (mine / f"tree-{tag}").mkdir()
    (mine / f"tree-{tag}" / "evil.root").symlink_to(outside)
    os.link(bob_file, mine / f"hard-{tag}.root")
    os.mkfifo(mine / f"fifo-{tag}")
    attempts = {
        f"../bob/{bob_file.name}": "not a plain path",
        f"tree-{tag}/../../bob/{bob_file.name}": "not a plain path",
        str(bob_file): "is absolute",
        f"to-bob-{tag}.root": "is a symbolic link",
        f"dir-{tag}/{bob_file.name}": "is a symbolic link",
        f"tree-{tag}": "is a symbolic link",
        f"hard-{tag}.root": "other hard links",
        f"fifo-{tag}": "not a regular file",
        f"./{bob_file.name}": "not a plain path",
        f"missing-{tag}": "no such file",
    }
    for path, message in attempts.items():
        answer = _upload(alice_env, [path])
        assert answer.status_code == 400, (path, answer.text)
        assert message in answer.json()["message"], (path, answer.text)
    assert _no_scratch_replicas_of(
        root_client, [bob_file.name, outside.name, "evil.root", f"to-bob-{tag}.root", f"hard-{tag}.root"]
    )
    for path, content in victims.items():
        assert path.read_bytes() == content


def test_the_registrar_wants_a_users_token_with_its_scope(alice_env, hub, hub_admin):
    url = alice_env["DLAAS_REGISTRAR_URL"].rstrip("/") + "/api/uploads"
    body = {"paths": ["x"], "destination_rse": "DESY-DCACHE"}
    assert requests.post(url, json=body, timeout=30).status_code == 401
    assert requests.post(url, json=body, headers={"Authorization": "token not-a-token"}, timeout=30).status_code == 403
    narrow = hub_admin.post(
        f"{hub_admin.api}/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]}, timeout=10
    )
    if narrow.status_code == 201:  # operators may not mint tokens for users at all; if they can, scopes still count
        answer = requests.post(url, json=body, headers={"Authorization": f"token {narrow.json()['token']}"}, timeout=30)
        assert answer.status_code == 403 and "access:services!service=dlaas-registrar" in answer.json()["message"]


# --- even the service's own Rucio account is bound by the policy ----------------------------------------------------


@pytest.fixture
def registrar_client(rucio, registrar, tmp_path):
    from rucio.client import Client

    from devstack.rucio_seed import REGISTRAR_ACCOUNT, registrar_password

    class IsolatedClient(Client):
        TOKEN_PATH_PREFIX = str(tmp_path / ".rucio_")

    return IsolatedClient(
        rucio_host=rucio.url,
        auth_host=rucio.url,
        account=REGISTRAR_ACCOUNT,
        auth_type="userpass",
        creds={"username": REGISTRAR_ACCOUNT, "password": registrar_password(rucio)},
    )


def test_even_the_registrar_account_cannot_register_outside_the_owners_directory(
    registrar_client, settings, victims, root_client
):
    scratch = rse_dir(settings, SCRATCH_RSE)
    bob_file, outside = list(victims)
    alice_dir = scratch / "alice"
    alice_dir.mkdir(exist_ok=True)
    own = alice_dir / f"own-{uuid.uuid4().hex[:8]}.txt"
    own.write_bytes(b"alice's own result\n")
    good = _replica(own, scratch, own.name)
    rules = [{"account": "alice", "copies": 1, "rse_expression": SCRATCH_RSE, "lifetime": 60}]

    def register(files, scope="user.alice", rules=rules):
        registrar_client.add_dataset(scope, f"reg-{uuid.uuid4().hex[:8]}", rules=rules, files=files, rse=SCRATCH_RSE)

    attempts = {
        "a file in bob's directory": lambda: register([_replica(bob_file, scratch, "b1")]),
        "a path climbing out": lambda: register(
            [{**good, "name": "b2", "pfn": good["pfn"].replace(own.name, f"../../{outside.name}")}]
        ),
        "an encoded path": lambda: register(
            [{**good, "name": "b3", "pfn": good["pfn"].replace(f"alice/{own.name}", "alice/%2e%2e/bob/x")}]
        ),
        "another host": lambda: register(
            [{**good, "name": "b4", "pfn": good["pfn"].replace("localhost", "elsewhere")}]
        ),
        "rules charged to bob": lambda: register([{**good, "name": "b5"}], rules=[{**rules[0], "account": "bob"}]),
        "no rule at all (the reaper would take it at once)": lambda: register([{**good, "name": "b6"}], rules=[]),
        "bob's scope": lambda: register([{**good, "scope": "user.bob", "name": "b7"}], scope="user.bob"),
        "add_replicas": lambda: registrar_client.add_replicas(SCRATCH_RSE, [good]),
        "bulk add_dids": lambda: registrar_client.add_dids(
            [{"scope": "user.alice", "name": "b8", "type": "DATASET", "rse": SCRATCH_RSE, "dids": [good]}]
        ),
        "attach bob's file to alice's dataset": lambda: registrar_client.attach_dids(
            "user.alice", existing, [_replica(bob_file, scratch, "b9")], rse=SCRATCH_RSE
        ),
    }
    existing = f"existing-{uuid.uuid4().hex[:8]}"
    root_client.add_dataset("user.alice", existing, rules=[{**rules[0], "rse_expression": "DESY-DCACHE"}])
    for what, attempt in attempts.items():
        with pytest.raises(Exception) as refused:
            attempt()
        assert type(refused.value).__name__ == "AccessDenied", (what, refused.value)
    # What it may do: alice's own files, in alice's scope, with alice's rules; attached to her dataset too.
    register([good])
    second = alice_dir / f"second-{uuid.uuid4().hex[:8]}.txt"
    second.write_bytes(b"another result\n")
    registrar_client.attach_dids("user.alice", existing, [_replica(second, scratch, second.name)], rse=SCRATCH_RSE)
    assert {r["account"] for r in root_client.list_did_rules("user.alice", own.name)} <= {"alice"}
    assert SCRATCH_RSE in next(root_client.list_replicas([{"scope": "user.alice", "name": own.name}]))["rses"]
    for path, content in victims.items():
        assert path.read_bytes() == content


def test_even_a_rucio_admin_cannot_make_itself_the_registrar_or_move_the_scratch_area(rucio, rucio_token):
    # The seed gives the IAM admin user Rucio's `admin` attribute (some sites give it to every user).
    api = RucioAPI(rucio.url, rucio_token("admin"))
    attempts = {
        "mark itself a registrar": api.post(
            "accounts/admin/attr/dlaas_registrar", {"key": "dlaas_registrar", "value": "True"}
        ),
        "log in as the registrar": api.post(
            "accounts/dlaas-registrar/identities",
            {"identity": "SUB=intruder, ISS=elsewhere", "authtype": "OIDC", "email": "x@dlaas.invalid"},
        ),
        "point the scratch protocol elsewhere": api.post(
            f"rses/{SCRATCH_RSE}/protocols/posix",
            {
                "scheme": "posix",
                "hostname": "localhost",
                "port": 0,
                "prefix": "/",
                "impl": "rucio.rse.protocols.posix.Default",
            },
        ),
        "unmark the scratch area": requests.delete(
            f"{rucio.url}/rses/{SCRATCH_RSE}/attr/dlaas_scratch", headers={"X-Rucio-Auth-Token": api.token}, timeout=30
        ),
        "mark another RSE as scratch": api.post("rses/DESY-DCACHE/attr/dlaas_scratch", {"value": True}),
    }
    for what, answer in attempts.items():
        assert _refused(answer), (what, answer.status_code, answer.text)
    # It is a Rucio admin: the same calls on what is not the scratch area or the registrar still work.
    assert api.post("rses/DESY-DCACHE/attr/dlaas_test_marker", {"value": True}).status_code == 201
    assert (
        requests.delete(
            f"{rucio.url}/rses/DESY-DCACHE/attr/dlaas_test_marker",
            headers={"X-Rucio-Auth-Token": api.token},
            timeout=30,
        ).status_code
        == 200
    )
