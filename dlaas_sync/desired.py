"""Which Rucio account each IAM group member should have, and which members cannot have one (pure).

The account name rules:
- the name is the member's IAM userName in lower case: the name JupyterHub gives her (it lower-cases usernames) and
  hence the account her server's Rucio clients use (RUCIO_ACCOUNT);
- it must match `[a-z0-9_-]{1,20}`: Rucio's account name rule (`[a-z0-9_-]`, at most 25 characters) with room for
  her scope `user.<account>` in Rucio's 25 characters of a scope name. A userName such as `J.Doe` or a longer one
  is refused, not rewritten: a rewritten name would not be the hub's;
- two IAM users whose names lower-case to the same account are both refused (never merged into one account);
- the member needs an e-mail (Rucio accounts and identities carry one) and an IAM id usable in an identity.

Disabled IAM users (`active: false`) are not members: they cannot log in, and are handled as people who left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from dlaas_sync.scim import IamUser

ACCOUNT_NAME = re.compile(r"[a-z0-9_-]{1,20}")
# IAM's ids are UUIDs; anything else must at least not break `SUB=<sub>, ISS=<issuer>` or a URL.
SUB = re.compile(r"[A-Za-z0-9._~-]{1,128}")
EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")


@dataclass(frozen=True)
class Wanted:
    """An account that should exist, active, for one IAM member."""

    account: str
    sub: str
    email: str
    username: str  # as IAM spells it


@dataclass(frozen=True)
class Refused:
    """An IAM member (or account) the sync leaves alone, and why: reported, never guessed around."""

    who: str
    reason: str


def account_name(username: str) -> str:
    return username.lower()


@dataclass(frozen=True)
class Desired:
    wanted: tuple[Wanted, ...]
    refused: tuple[Refused, ...]
    member_subs: frozenset[str]  # every active member, refused or not: their accounts are never suspended
    members: int  # active members IAM listed


def desired(users: Iterable[IamUser]) -> Desired:
    members = [u for u in users if u.active]
    refused: list[Refused] = []
    candidates: dict[str, list[IamUser]] = {}
    for u in members:
        name = account_name(u.username)
        if not ACCOUNT_NAME.fullmatch(name):
            refused.append(
                Refused(
                    u.username,
                    f"IAM userName {u.username!r} is not a valid account name "
                    "(letters, digits, _ and -, at most 20): ask IAM support to rename the "
                    "IAM account, or create a Rucio account by hand",
                )
            )
        elif not SUB.fullmatch(u.sub):
            refused.append(Refused(u.username, f"IAM id {u.sub!r} cannot be used in a Rucio identity"))
        elif not u.email or not EMAIL.fullmatch(u.email):
            refused.append(Refused(u.username, "IAM has no usable e-mail address for this user"))
        else:
            candidates.setdefault(name, []).append(u)
    wanted: list[Wanted] = []
    for name, same in sorted(candidates.items()):
        if len(same) > 1:
            names = " and ".join(sorted(u.username for u in same))
            refused += [
                Refused(
                    u.username,
                    f"IAM users {names} would both get account {name}: never merged, rename one of them in IAM",
                )
                for u in same
            ]
            continue
        (u,) = same
        wanted.append(Wanted(account=name, sub=u.sub, email=u.email, username=u.username))
    return Desired(
        wanted=tuple(wanted),
        refused=tuple(sorted(refused, key=lambda r: r.who)),
        member_subs=frozenset(u.sub for u in members),
        members=len(members),
    )
