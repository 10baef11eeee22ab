"""The account sync against the session's real dev IAM and Rucio: IAM group members become Rucio users, leavers are
suspended with their data kept, returning members come back, and broken or colliding answers change nothing.

Group membership is changed while everything runs, through the dev IAM's SCIM API (POST /scim/Users, PATCH
/scim/Groups/{id}), as an IAM administrator would; the sync runs as its real command (devstack.account_sync, the
same command line the chart's CronJob runs) as root against the session's Rucio. The test users are new to the
session (created here); the seeded alice and admin are members throughout, so every run also has accounts it must
leave alone. Tests follow each other: a member added by one is used by the next.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import requests

from devstack.account_sync import SYNC_CLIENT, AccountSync, default_limits
from devstack.iam_login import code_flow_tokens, exchange
from devstack.ports import wait_for
from devstack.rucio_seed import DESTINATION_RSE, RSES
from dlaas_sync.plan import identity
from dlaas_sync.rucio_side import LEDGER_SECTION, read_ledger
from dlaas_sync.scim import ScimClient
from dlaas_sync.sync import SyncConfig, sync_user
from tests.helpers import TEST_SCIM_ADMIN

USERS = "escape/users"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CHANGE = re.compile(r"^[+~-] ")


class ScimAdmin:
    """What an IAM administrator does, through the dev IAM's SCIM API with a scim:write token."""

    def __init__(self, iam):
        self.iam = iam
        client = iam.client(TEST_SCIM_ADMIN)
        r = requests.post(
            f"{iam.url}/token",
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
            data={"grant_type": "client_credentials", "scope": "scim:read scim:write"},
        )
        assert r.status_code == 200, r.text
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    def create_user(self, username: str) -> dict:
        password = f"{username}-pass-{uuid.uuid4().hex[:8]}"
        r = requests.post(
            f"{self.iam.url}/scim/Users",
            headers=self.headers,
            timeout=10,
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": username,
                "password": password,
                "name": {"givenName": username.title(), "familyName": "Tester"},
                "emails": [
                    {
                        "type": "work",
                        "value": f"{username}-{uuid.uuid4().hex[:6]}@escape-dlaas.invalid",
                        "primary": True,
                    }
                ],
            },
        )
        assert r.status_code == 201, r.text
        return {**r.json(), "password": password}

    def group_id(self, name: str) -> str:
        groups = requests.get(f"{self.iam.url}/scim/Groups", headers=self.headers, timeout=10).json()["Resources"]
        return next(g["id"] for g in groups if g["displayName"] == name)

    def membership(self, op: str, user: dict, group: str = USERS) -> None:
        r = requests.patch(
            f"{self.iam.url}/scim/Groups/{self.group_id(group)}",
            headers=self.headers,
            timeout=10,
            json={
                "schemas": [PATCH_OP],
                "operations": [
                    {"op": op, "path": "members", "value": [{"display": user["userName"], "value": user["id"]}]}
                ],
            },
        )
        assert r.status_code == 204, r.text


@pytest.fixture(scope="module")
def admin(iam):
    return ScimAdmin(iam)


@pytest.fixture(scope="module")
def sync(settings, iam, rucio):
    """The sync as the local stack runs it; its first run adopts the seeded members' accounts."""
    service = AccountSync(settings, iam, rucio)
    first = service.run_once()
    assert first.returncode == 0, first.stdout + first.stderr
    return service


@pytest.fixture(scope="module")
def people(admin):
    """IAM users made for this module, by name; created outside every group."""
    return {name: admin.create_user(name) for name in ("carol", "dave", "gina")}


def changes(run) -> list[str]:
    return [line for line in run.stdout.splitlines() if CHANGE.match(line)]


def fresh_rucio_token(iam, user: dict) -> str:
    """A fresh token for Rucio, exchanged from a real login of `user` (never seen by Rucio before)."""
    client = iam.client("dlaas-test")
    login = code_flow_tokens(iam, client, user["userName"], user["password"])
    return exchange(iam, client, login["access_token"], audience="rucio", scope="openid profile")["access_token"]


def oidc_identities(root_client, account: str) -> set[str]:
    return {i["identity"] for i in root_client.list_identities(account) if i["type"] == "OIDC"}


# --- the dev IAM's SCIM API ------------------------------------------------------------------------------------------


def test_scim_is_refused_without_a_scim_read_token(iam, rucio_token):
    assert requests.get(f"{iam.url}/scim/Users", timeout=10).status_code == 401
    alice = rucio_token("alice")  # a user's token: a valid token of this IAM, without scim:read
    r = requests.get(f"{iam.url}/scim/Users", headers={"Authorization": f"Bearer {alice}"}, timeout=10)
    assert r.status_code == 403
    assert r.json() == {
        "error": "insufficient_scope",
        "error_description": "Insufficient scope for this resource",
        "scope": "scim:read",
    }
    client = iam.client(SYNC_CLIENT)  # registered for scim:read only: no write token
    r = requests.post(
        f"{iam.url}/token",
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
        data={"grant_type": "client_credentials", "scope": "scim:write"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_scim_pages_users_and_group_members_as_iam_does(iam, admin):
    page = requests.get(
        f"{iam.url}/scim/Users", params={"startIndex": 2, "count": 1}, headers=admin.headers, timeout=10
    ).json()
    assert page["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    assert page["startIndex"] == 2 and page["itemsPerPage"] == 1 and page["totalResults"] >= 3
    (user,) = page["Resources"]
    assert {"id", "userName", "name", "emails", "active", "groups"} <= set(user)
    reader = ScimClient(iam.url, SYNC_CLIENT, iam.client(SYNC_CLIENT)["client_secret"], page_size=1)
    members = {u.username for u in reader.members([USERS])}
    assert {"alice", "admin"} <= members and "bob" not in members
    assert {
        u.username for u in ScimClient(iam.url, SYNC_CLIENT, iam.client(SYNC_CLIENT)["client_secret"]).members([USERS])
    } == members
    alice = iam.user("alice")
    assert reader.user(alice["sub"]).groups == frozenset({USERS})
    missing = requests.get(f"{iam.url}/scim/Users/no-such-id", headers=admin.headers, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


@pytest.mark.parametrize("profile, scope_claim", [("wlcg", True), ("iam", False)], ids=["wlcg", "iam-scopeless"])
def test_the_sync_reads_scim_under_every_token_profile(tmp_path, profile, scope_claim):
    from devstack.account_sync import register_sync_client
    from devstack.iam import DevIAM
    from devstack.settings import Settings

    other = DevIAM(Settings(state_dir=tmp_path, iam_port=0), profile=profile, scope_claim=scope_claim)
    register_sync_client(other)
    other.start()
    try:
        reader = ScimClient(other.url, SYNC_CLIENT, other.client(SYNC_CLIENT)["client_secret"])
        assert {u.username for u in reader.members([USERS])} == {"alice", "admin"}
        assert reader.issuer == other.issuer
    finally:
        other.stop()


# --- the sync --------------------------------------------------------------------------------------------------------


def test_a_new_member_gets_an_account_identity_scope_and_limits_and_can_use_rucio(
    iam, sync, admin, people, root_client, user_client
):
    carol = people["carol"]
    admin.membership("add", carol)
    run = sync.run_once()
    assert run.returncode == 0, run.stdout + run.stderr
    assert {line.split(":")[0] for line in changes(run)} == {"+ carol"}  # nobody else is touched
    account = root_client.get_account("carol")
    assert account["status"] == "ACTIVE" and account["email"] == carol["emails"][0]["value"]
    assert oidc_identities(root_client, "carol") == {identity(carol["id"], iam.issuer)}
    assert "user.carol" in root_client.list_scopes_for_account("carol")
    assert root_client.get_local_account_limits("carol") == default_limits()
    assert "admin" not in {a["key"] for page in root_client.list_account_attributes("carol") for a in page}
    assert read_ledger(root_client)["carol"].sub == carol["id"]
    # Her first login works with Rucio: her exchanged token names her account.
    assert user_client("carol", fresh_rucio_token(iam, carol)).whoami()["account"] == "carol"


def test_a_second_run_changes_nothing_and_says_so(sync):
    run = sync.run_once()
    assert run.returncode == 0, run.stderr
    assert changes(run) == []
    assert run.stdout.strip().splitlines()[-1].startswith("in sync: ")
    assert "nothing to change" in run.stdout


def test_dry_run_prints_the_changes_and_makes_none(sync, admin, people, root_client):
    from rucio.common.exception import AccountNotFound

    admin.membership("add", people["dave"])
    dry = sync.run_once("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ dave: account, e-mail " + people["dave"]["emails"][0]["value"] in changes(dry)
    assert f"+ dave: identity SUB={people['dave']['id']}" in "\n".join(changes(dry))
    assert "nothing changed" in dry.stdout
    with pytest.raises(AccountNotFound):
        root_client.get_account("dave")
    assert "dave" not in read_ledger(root_client)
    run = sync.run_once()
    assert run.returncode == 0 and changes(run) == changes(dry)  # what the dry run said is what a run does


def test_leaving_the_group_suspends_the_account_shuts_her_out_and_keeps_her_data(
    iam, sync, admin, people, root_client, user_client
):
    from rucio.common.exception import CannotAuthenticate

    carol = people["carol"]
    own = user_client("carol", fresh_rucio_token(iam, carol))
    own.add_dataset("user.carol", "carol-results")
    rule = own.add_replication_rule([{"scope": "user.carol", "name": "carol-results"}], 1, DESTINATION_RSE)[0]

    admin.membership("remove", carol)
    run = sync.run_once()
    assert run.returncode == 0, run.stdout + run.stderr
    assert changes(run) == [
        f"- carol: identity {identity(carol['id'], iam.issuer)}",
        "- carol: suspended: no longer in the groups (data and rules kept)",
    ]
    assert root_client.get_account("carol")["status"] == "SUSPENDED"
    assert "carol" not in [a["account"] for a in root_client.list_accounts(identity=identity(carol["id"], iam.issuer))]
    assert read_ledger(root_client)["carol"].left
    # She can still log in to IAM, but Rucio no longer knows her identity.
    with pytest.raises(CannotAuthenticate):
        user_client("carol", fresh_rucio_token(iam, carol)).whoami()
    # Nothing of hers is gone.
    assert root_client.get_did("user.carol", "carol-results")["account"] == "carol"
    assert root_client.get_replication_rule(rule)["account"] == "carol"
    assert changes(sync.run_once()) == []  # and a second run does not suspend her again


def test_a_returning_member_gets_her_account_back(iam, sync, admin, people, root_client, user_client):
    carol = people["carol"]
    admin.membership("add", carol)
    run = sync.run_once()
    assert run.returncode == 0, run.stdout + run.stderr
    assert changes(run) == [
        "~ carol: reactivated: back in the groups (scope, limits, e-mail and identity follow)",
        f"+ carol: identity {identity(carol['id'], iam.issuer)}",
    ]
    assert root_client.get_account("carol")["status"] == "ACTIVE"
    assert not read_ledger(root_client)["carol"].left
    client = user_client("carol", fresh_rucio_token(iam, carol))
    assert client.whoami()["account"] == "carol"
    assert client.get_did("user.carol", "carol-results")["name"] == "carol-results"


def test_an_iam_answer_listing_nobody_changes_nothing_and_exits_non_zero(settings, iam, rucio, sync, root_client):
    before = {name: root_client.get_account(name)["status"] for name in ("alice", "admin", "carol", "dave")}
    # `escape` exists in IAM but has no direct member: the answer lists nobody.
    run = AccountSync(settings, iam, rucio, groups=("escape",)).run_once()
    assert run.returncode == 1
    (error,) = run.stderr.strip().splitlines()
    assert "lists no active member" in error and "nothing changed" in error
    assert changes(run) == []
    assert {name: root_client.get_account(name)["status"] for name in before} == before
    assert identity(iam.user("alice")["sub"], iam.issuer) in oidc_identities(root_client, "alice")


def test_more_suspensions_than_max_changes_are_refused(settings, iam, rucio, sync, admin, people, root_client):
    for name in ("carol", "dave"):
        admin.membership("remove", people[name])
    try:
        run = AccountSync(settings, iam, rucio, max_changes=1).run_once()
        assert run.returncode == 1 and changes(run) == []
        (error,) = run.stderr.strip().splitlines()
        assert "would suspend 2 accounts (carol, dave), more than --max-changes 1" in error
        assert [root_client.get_account(n)["status"] for n in ("carol", "dave")] == ["ACTIVE", "ACTIVE"]
    finally:
        for name in ("carol", "dave"):
            admin.membership("add", people[name])
    assert changes(sync.run_once()) == []


def test_a_name_collision_is_refused_and_never_merged(iam, sync, admin, root_client):
    # A Rucio account made by hand, for someone else, under the name a new IAM member would get.
    stranger = identity(str(uuid.uuid4()), iam.issuer)
    root_client.add_account("erin", "USER", "erin-old@escape-dlaas.invalid")
    root_client.add_identity("erin", stranger, "OIDC", "erin-old@escape-dlaas.invalid", default=True)
    erin = admin.create_user("erin")
    # Two IAM users whose names are one account name.
    upper, lower = admin.create_user("Frank"), admin.create_user("frank")
    members = [erin, upper, lower]
    for user in members:
        admin.membership("add", user)
    try:
        run = sync.run_once()
        assert run.returncode == 3, run.stdout + run.stderr
        assert changes(run) == []
        refused = [line for line in run.stdout.splitlines() if line.startswith("! ")]
        assert refused == [
            "! Frank: refused: IAM users Frank and frank would both get account frank: never merged, rename one of "
            "them in IAM",
            "! erin: refused: account erin exists in Rucio without her identity: never merged, an operator decides",
            "! frank: refused: IAM users Frank and frank would both get account frank: never merged, rename one of "
            "them in IAM",
        ]
        assert oidc_identities(root_client, "erin") == {stranger}
        assert "erin" not in read_ledger(root_client) and "frank" not in read_ledger(root_client)
        one = sync.run_once("--user", "frank")
        assert one.returncode == 3 and changes(one) == []
    finally:
        for user in members:
            admin.membership("remove", user)
    assert sync.run_once().returncode == 0


def test_sync_user_makes_one_new_members_account_ready_for_her_first_login(
    iam, rucio, sync, admin, people, root_client, user_client
):
    """What the hub calls on a first login: only her account changes, and the report names it."""
    gina = people["gina"]
    secret = iam.client(SYNC_CLIENT)["client_secret"]
    config = SyncConfig(iam_url=iam.issuer, client_id=SYNC_CLIENT, client_secret=secret, limits=default_limits())
    outside = sync_user(config, username="gina", rucio=root_client)
    assert outside.exit_code == 0 and outside.account is None and outside.changes == []  # not a member: no account
    admin.membership("add", gina)
    ready = sync_user(config, username="gina", rucio=root_client)
    assert ready.exit_code == 0, ready.error
    assert ready.account == "gina"
    assert {c.account for c in ready.changes} == {"gina"}
    assert [c.action for c in ready.changes] == ["claim", "create", "scope", *["limit"] * len(RSES), "identity+"]
    assert user_client("gina", fresh_rucio_token(iam, gina)).whoami()["account"] == "gina"
    again = sync_user(config, sub=gina["id"], rucio=root_client)
    assert again.exit_code == 0 and again.changes == [] and again.account == "gina"
    assert changes(sync.run_once()) == []  # the periodic run agrees


def test_the_ledger_lives_in_rucio_config(root_client, sync):
    ledger = root_client.get_config(section=LEDGER_SECTION)
    assert ledger["alice"] == "active:" + "8d2b7c9e-3f41-4d6a-9b0e-1c5a7f3e2d10"
    assert "bob" not in ledger  # not a member: never adopted, never touched


def test_the_local_stack_runs_the_sync_periodically_and_stops_it_by_pid(settings, iam, rucio, sync):
    service = AccountSync(settings, iam, rucio, every=1)
    service.start()
    pid = service.process.pid
    try:
        log = service.process.log_path
        wait_for(lambda: log.read_text().count("account sync: exit 0") >= 2, timeout=120, what="two periodic runs")
        assert "in sync: " in log.read_text()
    finally:
        service.stop()
    assert not Path(f"/proc/{pid}").exists()
