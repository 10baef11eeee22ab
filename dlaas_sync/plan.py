"""The changes that take Rucio from what it has to what the IAM groups say, and the checks that stop a bad run (pure).

Which accounts the sync manages: those it created or adopted, recorded in its ledger (a Rucio config section, see
rucio_side) as `account -> IAM id`, `left` once it suspended them. It never touches other accounts (root, service
accounts, hand-made ones). An existing account is adopted only when it already carries the member's identity (the
local seed's alice); any other account of that name, or a ledger entry for another IAM id, is a collision: refused
and reported, never merged.

Per member: the account (active), her identity `SUB=<sub>, ISS=<issuer>` and no other identity of this IAM, the
scope user.<account>, her e-mail, and a limit on every configured RSE that has none (a limit set before, by the seed
or an operator, is left as it is). A member who left: her identities of this IAM are removed and the account is
suspended, nothing deleted. A returning member's account is reactivated (only if the sync suspended it: an account
an operator suspended stays suspended) and completed.

Each account's changes are ordered so that a run stopped between any two leaves it consistent and the next run
finishes it: the ledger entry before the account (a half-made account is still recognised as ours), the identity
(what lets her in) last; on leaving, the identity first and the suspension after it.

A whole run is refused, with nothing changed, when IAM lists no member at all, or when it would suspend more than
`max_changes` accounts or every account the sync manages: that is what a broken IAM answer looks like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dlaas_sync.desired import Desired, Refused, Wanted

ACTIVE, SUSPENDED = "ACTIVE", "SUSPENDED"


def identity(sub: str, issuer: str) -> str:
    """The OIDC identity Rucio matches a token of this IAM against."""
    return f"SUB={sub}, ISS={issuer}"


@dataclass(frozen=True)
class AccountState:
    """What Rucio has for one account. Rucio shows nothing but the status of an account that is not active."""

    name: str
    status: str  # ACTIVE, SUSPENDED or DELETED
    email: str | None = None
    subs: frozenset[str] = frozenset()  # IAM ids of its OIDC identities from this IAM
    scoped: bool = False  # owns the scope user.<name>
    limits: Mapping[str, int] = field(default_factory=dict)  # RSE -> bytes


@dataclass(frozen=True)
class Entry:
    """The sync's ledger entry of an account: whose it is, and whether the sync suspended it when she left."""

    sub: str
    left: bool = False


@dataclass
class RucioState:
    accounts: dict[str, AccountState]  # the accounts that matter and exist
    ledger: dict[str, Entry]
    scopes: frozenset[str]  # every scope in Rucio
    holders: dict[str, frozenset[str]] = field(default_factory=dict)  # IAM id -> active accounts with its identity


@dataclass(frozen=True)
class Change:
    account: str
    action: str  # a key of TEXT
    value: str = ""
    amount: int | None = None

    def line(self) -> str:
        sign, text = TEXT[self.action]
        return f"{sign} {self.account}: {text.format(value=self.value, amount=self.amount)}"


TEXT = {
    "claim": ("+", "synced from IAM id {value}"),
    "create": ("+", "account, e-mail {value}"),
    "reactivate": ("~", "reactivated: back in the groups (scope, limits, e-mail and identity follow)"),
    "email": ("~", "e-mail {value}"),
    "scope": ("+", "scope {value}"),
    "limit": ("+", "limit on {value}: {amount} bytes"),
    "identity+": ("+", "identity {value}"),
    "identity-": ("-", "identity {value}"),
    "suspend": ("-", "suspended: no longer in the groups (data and rules kept)"),
}


@dataclass
class Plan:
    changes: list[Change]
    refused: list[Refused]
    stop: str | None = None  # the whole run is refused: nothing may change

    @property
    def suspended(self) -> list[str]:
        return [c.account for c in self.changes if c.action == "suspend"]


def account_fixes(
    w: Wanted, acct: AccountState, state: RucioState, *, issuer: str, limits: Mapping[str, int]
) -> list[Change] | Refused:
    """What an active account of member `w` lacks; a Refused when it cannot be completed without merging."""
    changes = []
    if acct.email != w.email:
        changes.append(Change(w.account, "email", w.email))
    scope = f"user.{w.account}"
    if not acct.scoped:
        if scope in state.scopes:
            return Refused(w.username, f"scope {scope} belongs to another account: never merged")
        changes.append(Change(w.account, "scope", scope))
    changes += [
        Change(w.account, "limit", rse, amount) for rse, amount in sorted(limits.items()) if rse not in acct.limits
    ]
    changes += [Change(w.account, "identity-", identity(s, issuer)) for s in sorted(acct.subs - {w.sub})]
    if w.sub not in acct.subs:
        elsewhere = state.holders.get(w.sub, frozenset()) - {w.account}
        if elsewhere:
            return Refused(
                w.username,
                f"her identity is already on account(s) {', '.join(sorted(elsewhere))}: "
                "never merged, an operator decides",
            )
        changes.append(Change(w.account, "identity+", identity(w.sub, issuer)))
    return changes


def _new_account(
    w: Wanted, entry: Entry | None, state: RucioState, *, issuer: str, limits: Mapping[str, int]
) -> list[Change] | Refused:
    scope = f"user.{w.account}"
    if scope in state.scopes:
        return Refused(w.username, f"scope {scope} exists but account {w.account} does not: an operator decides")
    if state.holders.get(w.sub):
        return Refused(
            w.username,
            f"her identity is already on account(s) {', '.join(sorted(state.holders[w.sub]))}:"
            " never merged, an operator decides",
        )
    return [
        *([] if entry else [Change(w.account, "claim", w.sub)]),
        Change(w.account, "create", w.email),
        Change(w.account, "scope", scope),
        *(Change(w.account, "limit", rse, amount) for rse, amount in sorted(limits.items())),
        Change(w.account, "identity+", identity(w.sub, issuer)),
    ]


def _member(w: Wanted, state: RucioState, *, issuer: str, limits: Mapping[str, int]) -> list[Change] | Refused:
    entry = state.ledger.get(w.account)
    acct = state.accounts.get(w.account)
    renamed = sorted(n for n, e in state.ledger.items() if e.sub == w.sub and n != w.account)
    if renamed:
        return Refused(
            w.username,
            f"her IAM id already has account {renamed[0]} (renamed in IAM?): renames are "
            "not automatic, an operator decides",
        )
    if entry and entry.sub != w.sub:
        return Refused(w.username, f"account {w.account} belongs to another IAM id ({entry.sub}): never merged")
    if acct is None:
        return _new_account(w, entry, state, issuer=issuer, limits=limits)
    if acct.status == SUSPENDED:
        if entry is None:
            return Refused(w.username, f"account {w.account} exists, suspended, and is not one the sync made")
        if not entry.left:
            return Refused(
                w.username,
                f"account {w.account} was suspended by someone else than the sync: left "
                "suspended (reactivate it by hand if that was a mistake)",
            )
        return [Change(w.account, "reactivate")]
    if acct.status != ACTIVE:
        return Refused(w.username, f"account {w.account} is {acct.status} in Rucio: an operator decides")
    if entry is None and w.sub not in acct.subs:
        return Refused(
            w.username, f"account {w.account} exists in Rucio without her identity: never merged, an operator decides"
        )
    fixes = account_fixes(w, acct, state, issuer=issuer, limits=limits)
    if isinstance(fixes, Refused):
        return fixes
    claim = [] if entry and not entry.left else [Change(w.account, "claim", w.sub)]
    return claim + fixes


def _leaver(name: str, entry: Entry, state: RucioState, issuer: str) -> list[Change]:
    acct = state.accounts.get(name)
    if acct is None or acct.status != ACTIVE or entry.left:
        # gone; already suspended (by the sync, or by an operator: left as it is); or suspended by the sync and
        # reactivated by an operator since: their decision
        return []
    return [*(Change(name, "identity-", identity(s, issuer)) for s in sorted(acct.subs)), Change(name, "suspend")]


def plan(
    wanted: Desired,
    state: RucioState,
    *,
    issuer: str,
    limits: Mapping[str, int],
    max_changes: int,
    only_subs: frozenset[str] | None = None,
) -> Plan:
    """The changes for `wanted`. A whole run (`only_subs` None) may suspend any account of the ledger whose owner is
    no member any more, and is checked for safety; a run for some IAM ids touches only their accounts."""
    whole = only_subs is None
    if whole and wanted.members == 0:
        return Plan(
            [],
            list(wanted.refused),
            stop="IAM lists no active member of the configured groups: refusing a "
            "run that would suspend every account; nothing changed",
        )
    leaving: list[Change] = []
    for name, entry in sorted(state.ledger.items()):
        if entry.sub not in wanted.member_subs and (whole or entry.sub in only_subs):
            leaving += _leaver(name, entry, state, issuer)
    joining: list[Change] = []
    refused = list(wanted.refused)
    for w in wanted.wanted:
        result = _member(w, state, issuer=issuer, limits=limits)
        if isinstance(result, Refused):
            refused.append(result)
        else:
            joining += result
    result = Plan(leaving + joining, sorted(refused, key=lambda r: r.who))
    if whole:
        result.stop = _unsafe(result.suspended, state, max_changes)
    return result


def _unsafe(suspended: list[str], state: RucioState, max_changes: int) -> str | None:
    if not suspended:
        return None
    names = ", ".join(suspended[:5]) + (", ..." if len(suspended) > 5 else "")
    if len(suspended) > max_changes:
        return (
            f"the run would suspend {len(suspended)} accounts ({names}), more than --max-changes {max_changes}: "
            f"if IAM is right, run once with --max-changes {len(suspended)}; nothing changed"
        )
    synced = [
        n for n, e in state.ledger.items() if not e.left and n in state.accounts and state.accounts[n].status == ACTIVE
    ]
    if len(suspended) >= len(synced):
        return (
            f"the run would suspend every account the sync manages ({names}): IAM's answer looks wrong; nothing changed"
        )
    return None
