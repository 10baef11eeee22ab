"""The account sync's planning (dlaas_sync.desired, dlaas_sync.plan): which IAM members get which account, what is
refused, what changes in which order, and which runs are refused as a whole. Pure: IAM users and Rucio states are
built here, the plan is read back."""

from __future__ import annotations

import pytest

from dlaas_sync.desired import desired
from dlaas_sync.plan import ACTIVE, SUSPENDED, AccountState, Change, Entry, RucioState, identity, plan
from dlaas_sync.scim import IamUser

ISS = "https://iam.example.org/"
LIMITS = {"DLAAS-SCRATCH": 100, "EULAKE-1": 1000}
USERS = frozenset({"escape/users"})


def user(name, sub=None, email="", active=True):
    return IamUser(
        sub=sub or f"sub-{name.lower()}",
        username=name,
        email=email or f"{name.lower()}@example.org",
        active=active,
        groups=USERS,
    )


def ready(name, sub=None, **changes):
    """An active account that has everything a member needs."""
    values = dict(
        status=ACTIVE,
        email=f"{name}@example.org",
        subs=frozenset({sub or f"sub-{name}"}),
        scoped=True,
        limits=dict(LIMITS),
    )
    values.update(changes)
    return AccountState(name, **values)


def state(accounts=(), ledger=None, scopes=None, holders=None):
    accounts = {a.name: a for a in accounts}
    ledger = (
        ledger
        if ledger is not None
        else {n: Entry(a.subs and next(iter(a.subs)) or f"sub-{n}") for n, a in accounts.items()}
    )
    scopes = frozenset(scopes if scopes is not None else {f"user.{n}" for n, a in accounts.items() if a.scoped})
    return RucioState(accounts, ledger, scopes, holders or {})


def run(members, rucio, max_changes=10, only_subs=None):
    return plan(desired(members), rucio, issuer=ISS, limits=LIMITS, max_changes=max_changes, only_subs=only_subs)


def lines(p):
    return [c.line() for c in p.changes]


# --- names ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, account", [("alice", "alice"), ("Alice", "alice"), ("j_doe-2", "j_doe-2"), ("a" * 20, "a" * 20)]
)
def test_the_account_is_the_lower_case_iam_username_as_the_hub_names_her(username, account):
    (w,) = desired([user(username)]).wanted
    assert w.account == account and w.username == username


@pytest.mark.parametrize("username", ["j.doe", "jane doe", "a" * 21, "émile", "x@y", ""])
def test_a_username_that_is_no_valid_account_name_is_refused_not_rewritten(username):
    d = desired([user(username, sub="s1")])
    assert d.wanted == () and [r.who for r in d.refused] == [username]
    assert "not a valid account name" in d.refused[0].reason
    assert d.member_subs == {"s1"}  # still a member: an account she had is not suspended


def test_two_iam_users_of_one_account_name_are_both_refused_never_merged():
    d = desired([user("Frank", sub="s1"), user("frank", sub="s2"), user("gina")])
    assert [w.account for w in d.wanted] == ["gina"]
    assert sorted(r.who for r in d.refused) == ["Frank", "frank"]
    assert all("never merged" in r.reason for r in d.refused)


def test_disabled_iam_users_are_not_members():
    d = desired([user("alice", active=False), user("bob")])
    assert [w.account for w in d.wanted] == ["bob"] and d.members == 1 and d.member_subs == {"sub-bob"}


def test_a_member_without_usable_email_or_id_is_refused():
    d = desired([user("a", email="none"), user("b", sub="x, ISS=evil")])
    assert [r.who for r in d.refused] == ["a", "b"]


# --- new, complete, returning members ---------------------------------------------------------------------------------


def test_a_new_member_gets_everything_with_the_identity_last():
    p = run([user("carol")], state())
    assert p.stop is None and p.refused == []
    assert [c.action for c in p.changes] == ["claim", "create", "scope", "limit", "limit", "identity+"]
    assert p.changes[0] == Change("carol", "claim", "sub-carol")  # the ledger first: a half-made account is ours
    assert p.changes[-1] == Change("carol", "identity+", identity("sub-carol", ISS))
    assert {(c.value, c.amount) for c in p.changes if c.action == "limit"} == set(LIMITS.items())


def test_a_complete_account_changes_nothing():
    p = run([user("carol")], state([ready("carol")]))
    assert p.changes == [] and p.refused == [] and p.stop is None


def test_what_a_member_lacks_is_added_and_limits_set_before_are_kept():
    acct = ready(
        "carol",
        email="old@example.org",
        scoped=False,
        limits={"DLAAS-SCRATCH": 5},
        subs=frozenset({"sub-carol", "sub-intruder"}),
    )
    p = run([user("carol")], state([acct], ledger={"carol": Entry("sub-carol")}))
    assert lines(p) == [
        "~ carol: e-mail carol@example.org",
        "+ carol: scope user.carol",
        "+ carol: limit on EULAKE-1: 1000 bytes",  # DLAAS-SCRATCH keeps the 5 an operator set
        f"- carol: identity {identity('sub-intruder', ISS)}",
    ]


def test_an_account_with_her_identity_made_by_hand_is_adopted():
    p = run([user("alice")], state([ready("alice")], ledger={}))
    assert lines(p) == ["+ alice: synced from IAM id sub-alice"]


def test_a_returning_member_is_reactivated_when_the_sync_suspended_her():
    rucio = state([AccountState("carol", SUSPENDED)], ledger={"carol": Entry("sub-carol", left=True)})
    assert [c.action for c in run([user("carol")], rucio).changes] == ["reactivate"]


def test_an_account_an_operator_suspended_stays_suspended():
    rucio = state([AccountState("carol", SUSPENDED)], ledger={"carol": Entry("sub-carol")})
    p = run([user("carol")], rucio)
    assert p.changes == [] and "suspended by someone else" in p.refused[0].reason


# --- collisions -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rucio, reason",
    [
        (state([ready("carol", sub="sub-other")], ledger={}), "without her identity"),
        (state([AccountState("carol", SUSPENDED)], ledger={}), "not one the sync made"),
        (state([AccountState("carol", "DELETED")], ledger={}), "DELETED"),
        (state(scopes={"user.carol"}), "scope user.carol exists"),
        (state(holders={"sub-carol": frozenset({"c4rol"})}), "already on account(s) c4rol"),
        (state([ready("carol-old", sub="sub-carol")], ledger={"carol-old": Entry("sub-carol")}), "renamed in IAM"),
    ],
    ids=["name-taken-by-a-stranger", "suspended-stranger", "deleted", "scope-taken", "identity-elsewhere", "renamed"],
)
def test_a_collision_is_refused_and_nothing_of_it_changes(rucio, reason):
    p = run([user("carol"), user("alice")], rucio)
    assert [r.who for r in p.refused] == ["carol"] and reason in p.refused[0].reason
    assert "carol" not in {c.account for c in p.changes}
    assert [c.account for c in p.changes if c.action == "suspend"] == []  # her other account is not suspended


def test_a_newcomer_with_a_former_members_name_is_refused_and_the_former_member_still_leaves():
    rucio = state([ready("carol", sub="sub-former"), ready("alice")])
    p = run([user("carol"), user("alice")], rucio)
    assert [r.who for r in p.refused] == ["carol"] and "belongs to another IAM id (sub-former)" in p.refused[0].reason
    assert lines(p) == [
        f"- carol: identity {identity('sub-former', ISS)}",
        "- carol: suspended: no longer in the groups (data and rules kept)",
    ]


# --- leavers and the safety checks ------------------------------------------------------------------------------------


def members_and_leavers(n_members, n_leavers):
    accounts = [ready(f"m{i}") for i in range(n_members)] + [ready(f"l{i}") for i in range(n_leavers)]
    return [user(f"m{i}") for i in range(n_members)], state(accounts)


def test_a_leaver_loses_her_identities_first_then_is_suspended_before_anyone_joins():
    members, rucio = members_and_leavers(2, 1)
    p = run([*members, user("new")], rucio)
    assert lines(p)[:2] == [
        f"- l0: identity {identity('sub-l0', ISS)}",
        "- l0: suspended: no longer in the groups (data and rules kept)",
    ]
    assert p.changes[2].account == "new"


def test_accounts_the_sync_does_not_manage_are_never_suspended():
    rucio = state([ready("m0"), ready("root", sub="x"), ready("bob")], ledger={"m0": Entry("sub-m0")})
    assert run([user("m0")], rucio).changes == []


def test_an_account_already_suspended_or_reactivated_by_an_operator_is_left_alone():
    rucio = state(
        [ready("m0"), AccountState("l0", SUSPENDED), ready("l1")],
        ledger={"m0": Entry("sub-m0"), "l0": Entry("sub-l0", left=True), "l1": Entry("sub-l1", left=True)},
    )
    assert run([user("m0")], rucio).changes == []


def test_an_answer_listing_nobody_is_refused_whatever_the_ledger():
    for rucio in (state(), members_and_leavers(0, 3)[1]):
        p = run([], rucio)
        assert p.stop and "lists no active member" in p.stop and p.changes == []
    p = run([user("a", active=False)], state([ready("a")]))
    assert p.stop and "lists no active member" in p.stop


def test_more_suspensions_than_max_changes_are_refused():
    members, rucio = members_and_leavers(5, 3)
    assert run(members, rucio, max_changes=3).stop is None
    p = run(members, rucio, max_changes=2)
    assert p.stop.startswith("the run would suspend 3 accounts (l0, l1, l2), more than --max-changes 2")


def test_suspending_every_synced_account_is_refused_even_within_max_changes():
    members, rucio = members_and_leavers(0, 2)
    p = run([user("newcomer")], rucio, max_changes=10)
    assert p.stop and "every account the sync manages" in p.stop


def test_one_user_runs_touch_only_that_users_accounts():
    members, rucio = members_and_leavers(1, 2)
    p = run([], rucio, only_subs=frozenset({"sub-l1"}))  # l1 asked for, no longer a member
    assert p.stop is None and {c.account for c in p.changes} == {"l1"}
    assert run([], rucio, only_subs=frozenset({"sub-nobody"})).changes == []
