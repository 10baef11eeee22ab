"""Rucio's side of the sync: read what it has for the accounts that matter, and apply a plan's changes (rucio-clients,
as an account allowed to manage accounts: root locally, a service account with Rucio's `admin` attribute elsewhere).

The ledger - which accounts the sync manages, for which IAM id, and which it suspended - lives in Rucio itself, in
the config section `dlaas_account_sync` (`<account> = active:<sub>` or `left:<sub>`): Rucio shows nothing but the
status of a suspended account (no attributes, no identities), and the sync must still know whose it is when she
returns. `rucio-admin config get --section dlaas_account_sync` shows it.

Changes are applied one at a time in the plan's order and the first failure stops the run (the plan's order keeps
every account consistent at any stop). A reactivated account is read again and completed at once.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from dlaas_sync.desired import Desired, Refused, Wanted
from dlaas_sync.plan import ACTIVE, AccountState, Change, Entry, RucioState, account_fixes, identity

LEDGER_SECTION = "dlaas_account_sync"
LEDGER_VALUE = re.compile(r"(active|left):(.+)")
OIDC_IDENTITY = re.compile(r"SUB=(.+), ISS=(.+)")


class RucioSideError(Exception):
    """Rucio's state cannot be used as it is; the message is one line saying what to fix."""


def read_ledger(client, section: str = LEDGER_SECTION) -> dict[str, Entry]:
    from rucio.common.exception import ConfigNotFound

    try:
        items = client.get_config(section=section)
    except ConfigNotFound:
        return {}
    ledger = {}
    for name, value in items.items():
        m = LEDGER_VALUE.fullmatch(str(value))
        if not m:
            raise RucioSideError(
                f"Rucio config {section}/{name} is {value!r}, not active:<sub> or left:<sub>: fix or remove it"
            )
        ledger[name] = Entry(m.group(2), left=m.group(1) == "left")
    return ledger


def read_account(client, name: str, issuer: str, active: Mapping[str, dict] | None = None) -> AccountState | None:
    """The account `name` as Rucio has it, or None. `active`: list_accounts() already read (it lists active ones)."""
    from rucio.common.exception import AccountNotFound, ScopeNotFound

    if active is not None and name in active:
        email = active[name].get("email")
    else:
        try:
            info = client.get_account(name)
        except AccountNotFound:
            return None
        if str(info["status"]).upper() != ACTIVE:
            return AccountState(name, str(info["status"]).upper(), info.get("email"))
        email = info.get("email")
    subs = set()
    for i in client.list_identities(name):
        m = OIDC_IDENTITY.fullmatch(i["identity"]) if i["type"] == "OIDC" else None
        if m and m.group(2) == issuer:
            subs.add(m.group(1))
    try:
        scoped = f"user.{name}" in client.list_scopes_for_account(name)
    except ScopeNotFound:
        scoped = False
    limits = {rse: int(v) for rse, v in client.get_local_account_limits(name).items() if v is not None}
    return AccountState(name, ACTIVE, email, frozenset(subs), scoped, limits)


def read_holders(client, sub: str, issuer: str) -> frozenset[str]:
    """The active accounts that carry the identity of IAM id `sub`."""
    return frozenset(a["account"] for a in client.list_accounts(identity=identity(sub, issuer)))


def read_state(
    client, wanted: Desired, *, issuer: str, section: str = LEDGER_SECTION, only_subs: frozenset[str] | None = None
) -> RucioState:
    """What Rucio has for the members' accounts and the ledger's (only those of `only_subs`, when given)."""
    ledger = read_ledger(client, section)
    names = {w.account for w in wanted.wanted}
    names |= {n for n, e in ledger.items() if only_subs is None or e.sub in only_subs}
    active = {a["account"]: a for a in client.list_accounts()} if only_subs is None else None
    accounts = {}
    for name in sorted(names):
        acct = read_account(client, name, issuer, active)
        if acct is not None:
            accounts[name] = acct
    state = RucioState(accounts, ledger, frozenset(client.list_scopes()))
    for w in wanted.wanted:
        acct = accounts.get(w.account)
        if acct is None or (acct.status == ACTIVE and w.sub not in acct.subs):  # an identity to add: where is it?
            state.holders[w.sub] = read_holders(client, w.sub, issuer)
    return state


@dataclass
class Applied:
    done: list[Change] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    error: str | None = None
    failed: Change | None = None


class Applier:
    """Executes changes against Rucio for one run."""

    def __init__(
        self,
        client,
        *,
        issuer: str,
        wanted: Mapping[str, Wanted],
        ledger: Mapping[str, Entry],
        limits: Mapping[str, int],
        section: str = LEDGER_SECTION,
    ):
        self.client = client
        self.issuer = issuer
        self.wanted = wanted
        self.subs = {**{n: e.sub for n, e in ledger.items()}, **{n: w.sub for n, w in wanted.items()}}
        self.limits = limits
        self.section = section
        self._claimed: set[str] = set()

    def apply(self, changes: list[Change]) -> Applied:
        result = Applied()
        queue = deque(changes)
        while queue:
            change = queue.popleft()
            try:
                more = self._do(change)
            except Exception as e:  # rucio-clients raises many types; the reason is all the operator needs
                result.error = f"{change.line()} failed: {one_line(e)}"
                result.failed = change
                return result
            result.done.append(change)
            if isinstance(more, Refused):
                result.refused.append(more)
            elif more:
                queue.extendleft(reversed(more))
        return result

    # --- one change ------------------------------------------------------------------------------------------------

    def _do(self, change: Change) -> list[Change] | Refused | None:
        c, name, action = self.client, change.account, change.action
        if action == "claim":
            self._ledger(name, "active")
            self._claimed.add(name)
        elif action == "create":
            self._create(name)
        elif action == "reactivate":
            return self._reactivate(name)
        elif action == "email":
            c.update_account(name, "email", change.value)
        elif action == "scope":
            c.add_scope(name, change.value)
        elif action == "limit":
            c.set_local_account_limit(name, change.value, change.amount)
        elif action == "identity+":
            c.add_identity(name, change.value, "OIDC", self.wanted[name].email, default=True)
        elif action == "identity-":
            c.del_identity(name, change.value, "OIDC")
        elif action == "suspend":
            c.update_account(name, "status", "SUSPENDED")
            self._ledger(name, "left")
        else:
            raise ValueError(f"unknown change {action}")
        return None

    def _ledger(self, name: str, state: str) -> None:
        self.client.set_config_option(self.section, name, f"{state}:{self.subs[name]}")

    def _create(self, name: str) -> None:
        from rucio.common.exception import Duplicate

        try:
            self.client.add_account(name, "USER", self.wanted[name].email)
        except Duplicate:
            # Someone made the account since it was read: not ours after all; take the claim back.
            if name in self._claimed:
                self.client.delete_config_option(self.section, name)
            raise

    def _reactivate(self, name: str) -> list[Change] | Refused:
        self.client.update_account(name, "status", ACTIVE)
        self._ledger(name, "active")
        w = self.wanted[name]
        acct = read_account(self.client, name, self.issuer)
        state = RucioState(
            {name: acct},
            {},
            frozenset(self.client.list_scopes()),
            {w.sub: read_holders(self.client, w.sub, self.issuer)},
        )
        return account_fixes(w, acct, state, issuer=self.issuer, limits=self.limits)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text.replace("Details: ", "")
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__
