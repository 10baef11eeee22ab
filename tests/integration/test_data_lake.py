"""The local data lake end to end: a dev-IAM login becomes a Rucio session, rules move real bytes.

Real processes only: the dev IAM (node), PostgreSQL, the Rucio 41.5.1 server (gunicorn) and its daemons.
"""

import json
import time
import uuid
import zlib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from rucio.common.exception import CannotAuthenticate

from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE, DESTINATION_RSE, REPLICA_RSE, SCRATCH_RSE, rse_dir


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def test_alice_logs_in_exchanges_for_rucio_and_lists_the_seeded_dids(iam, rucio, rucio_token, user_client):
    token = rucio_token("alice")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "rucio"
    assert claims["iss"] == iam.issuer
    assert set(claims["scope"].split()) >= {"openid", "profile"}

    client = user_client("alice", token)
    assert client.whoami()["account"] == "alice"
    names = {d for d in client.list_dids(DEMO_SCOPE, {"name": "*"}, did_type="dataset")}
    assert {"higgs-candidates", "cosmic-rays-small"} <= names
    files = list(client.list_files(DEMO_SCOPE, "higgs-candidates"))
    assert len(files) == 3 and all(f["bytes"] >= 3 * 1024**2 for f in files)
    assert [d["name"] for d in client.list_files("user.alice", "alice-first-dataset")] == ["alice-notes.txt"]


def test_the_replica_mode_rse_holds_the_bytes_the_catalogue_describes(settings, rucio, rucio_token, user_client):
    client = user_client("alice", rucio_token("alice"))
    replicas = list(client.list_replicas([{"scope": DEMO_SCOPE, "name": "higgs-candidates"}], schemes=["file"]))
    assert len(replicas) == 3
    for replica in replicas:
        (pfn,) = replica["rses"][REPLICA_RSE]
        path = Path(pfn.removeprefix("file://localhost"))
        assert path.is_relative_to(rse_dir(settings, REPLICA_RSE))
        assert path.stat().st_size == replica["bytes"]
        assert _adler32(path) == replica["adler32"]


def test_a_token_for_another_audience_is_refused(rucio, rucio_token, user_client):
    with pytest.raises(CannotAuthenticate):
        user_client("alice", rucio_token("alice", audience="eos")).whoami()


def test_a_token_without_the_rucio_scope_is_refused(rucio, rucio_token, user_client):
    with pytest.raises(CannotAuthenticate):
        user_client("alice", rucio_token("alice", scope="openid email")).whoami()


def _signed(key, kid: str, issuer: str, sub: str, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": sub,
        "aud": "rucio",
        "scope": "openid profile",
        "iat": now - 60,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


def _iam_key(settings):
    stored = json.loads((settings.state_dir / "iam" / "keys.json").read_text())
    return jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(stored["privateJwk"])), stored["privateJwk"]["kid"]


def test_an_expired_token_is_refused_even_when_signed_by_the_iam(settings, iam, rucio, user_client):
    key, kid = _iam_key(settings)
    sub = iam.user("alice")["sub"]
    now = int(time.time())
    valid = _signed(key, kid, iam.issuer, sub)
    assert user_client("alice", valid).whoami()["account"] == "alice"  # the same key and claims work when fresh
    expired = _signed(key, kid, iam.issuer, sub, iat=now - 7200, exp=now - 3600)
    with pytest.raises(CannotAuthenticate):
        user_client("alice", expired).whoami()


def test_forged_and_wrong_issuer_tokens_are_refused(settings, iam, rucio, user_client):
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, kid = _iam_key(settings)
    sub = iam.user("alice")["sub"]
    with pytest.raises(CannotAuthenticate):
        user_client("alice", _signed(forger, kid, iam.issuer, sub)).whoami()
    key, kid = _iam_key(settings)
    with pytest.raises(CannotAuthenticate):
        user_client("alice", _signed(key, kid, "http://127.0.0.1:1/", sub)).whoami()


def test_a_rule_between_two_local_rses_completes_and_the_bytes_arrive(
    settings, rucio, rucio_daemons, rucio_token, user_client
):
    client = user_client("alice", rucio_token("alice"))
    dataset = {"scope": DEMO_SCOPE, "name": "higgs-candidates"}
    (rule_id,) = client.add_replication_rule([dataset], 1, DESTINATION_RSE, lifetime=3600)
    assert client.get_replication_rule(rule_id)["account"] == "alice"
    wait_for(lambda: client.get_replication_rule(rule_id)["state"] == "OK", timeout=90, what="the rule to be OK")
    for replica in client.list_replicas([dataset], schemes=["file"]):
        (pfn,) = replica["rses"][DESTINATION_RSE]
        path = Path(pfn.removeprefix("file://localhost"))
        assert path.is_relative_to(rse_dir(settings, DESTINATION_RSE))
        assert path.stat().st_size == replica["bytes"]
        assert _adler32(path) == replica["adler32"]


def test_a_scratch_replica_goes_once_its_short_rule_expires_and_the_copy_is_done(
    settings, rucio, rucio_daemons, root_client
):
    # What datalakectl does: register a file lying in the scratch area, pin it briefly there, replicate it out.
    name = f"scratch-result-{uuid.uuid4().hex[:8]}.txt"
    content = b"a result computed in a notebook\n" * 100
    path = rse_dir(settings, SCRATCH_RSE) / "alice" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    adler = f"{zlib.adler32(content) & 0xFFFFFFFF:08x}"
    did = {"scope": "user.alice", "name": name}
    root_client.add_replicas(
        SCRATCH_RSE, [{**did, "bytes": len(content), "adler32": adler, "pfn": f"file://localhost{path}"}]
    )
    root_client.add_replication_rule([did], 1, SCRATCH_RSE, lifetime=5)
    (dest_rule,) = root_client.add_replication_rule([did], 1, DESTINATION_RSE)
    wait_for(
        lambda: root_client.get_replication_rule(dest_rule)["state"] == "OK", timeout=90, what="the copy out of scratch"
    )

    def scratch_gone():
        (replica,) = root_client.list_replicas([did], all_states=True)
        return SCRATCH_RSE not in replica["rses"] and not path.exists()

    wait_for(scratch_gone, timeout=90, what="the greedy reaper to delete the scratch replica")
    (replica,) = root_client.list_replicas([did], schemes=["file"])
    dest = Path(replica["rses"][DESTINATION_RSE][0].removeprefix("file://localhost"))
    assert dest.read_bytes() == content
