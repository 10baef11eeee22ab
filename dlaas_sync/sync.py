"""One sync run - every member of the configured groups, or one IAM user - and the report it ends with.

`sync_all(config)` is what the CronJob runs every 10 minutes. `sync_user(config, username=...)` (or `sub=...`) is the
same for one IAM user, for the hub to call on a first login: afterwards her account exists and her identity is on
it, or the report says why not. It touches only that user's account, so it needs no safety bound.

IAM is read in full before Rucio is touched: if IAM cannot be read, or its answer is refused, Rucio keeps its last
good state. Exit codes (Report.exit_code): 0 done (or nothing to do), 1 refused or failed (the reason is one line;
what was done before a failure is listed, every account is consistent, the next run completes it), 3 done, but some
IAM users were refused (collisions, names Rucio cannot take: listed with `!`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dlaas_sync.desired import Refused, account_name, desired
from dlaas_sync.plan import Change, plan
from dlaas_sync.rucio_side import LEDGER_SECTION, Applier, RucioSideError, one_line, read_state
from dlaas_sync.scim import IamUser, ScimClient, ScimError

DEFAULT_GROUPS = ("escape/users",)


@dataclass(frozen=True)
class SyncConfig:
    iam_url: str  # the IAM's issuer URL
    client_id: str  # an IAM client with the client_credentials grant and scope scim:read
    client_secret: str = field(repr=False)
    groups: tuple[str, ...] = DEFAULT_GROUPS
    limits: Mapping[str, int] = field(default_factory=dict)  # RSE -> bytes, the scratch RSE among them
    max_changes: int = 10  # the most accounts a run may suspend
    timeout: float = 30.0
    ledger_section: str = LEDGER_SECTION


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)  # done (or, in a dry run, planned)
    refused: list[Refused] = field(default_factory=list)
    error: str | None = None
    summary: str = ""
    dry_run: bool = False
    account: str | None = None  # sync_user: her account, once it is ready

    @property
    def exit_code(self) -> int:
        if self.error:
            return 1
        return 3 if self.refused else 0

    def lines(self) -> list[str]:
        return (
            [c.line() for c in self.changes]
            + [f"! {r.who}: refused: {r.reason}" for r in self.refused]
            + ([self.summary] if self.summary else [])
        )


def rucio_client():
    """rucio-clients' Client, reaching Rucio as RUCIO_CONFIG says."""
    from rucio.client import Client

    return Client()


def _rucio_client(rucio):
    return rucio if rucio is not None else rucio_client()


def _scim(config: SyncConfig, scim):
    return scim or ScimClient(config.iam_url, config.client_id, config.client_secret, timeout=config.timeout)


def _check_rses(client, limits: Mapping[str, int]) -> None:
    if not limits:
        return
    missing = sorted(set(limits) - {r["rse"] for r in client.list_rses()})
    if missing:
        raise RucioSideError(f"RSE {', '.join(missing)} of the configured limits does not exist in Rucio")


def _run(
    config: SyncConfig,
    members: list[IamUser],
    *,
    issuer: str,
    rucio,
    dry_run: bool,
    only_subs: frozenset[str] | None,
    what: str,
) -> Report:
    wanted = desired(members)
    _check_rses(rucio, config.limits)
    state = read_state(rucio, wanted, issuer=issuer, section=config.ledger_section, only_subs=only_subs)
    todo = plan(wanted, state, issuer=issuer, limits=config.limits, max_changes=config.max_changes, only_subs=only_subs)
    if todo.stop:
        return Report(refused=todo.refused, error=todo.stop, dry_run=dry_run)
    if dry_run:
        n = len(todo.changes)
        refused = f"; {len(todo.refused)} refused (listed)" if todo.refused else ""
        return Report(
            todo.changes,
            todo.refused,
            dry_run=True,
            summary=f"dry run: {what}: would apply {n} change{'s' * (n != 1)}{refused}; nothing changed",
        )
    applier = Applier(
        rucio,
        issuer=issuer,
        wanted={w.account: w for w in wanted.wanted},
        ledger=state.ledger,
        limits=config.limits,
        section=config.ledger_section,
    )
    applied = applier.apply(todo.changes)
    report = Report(applied.done, todo.refused + applied.refused)
    if applied.error:
        report.error = (
            f"{applied.error}; {len(applied.done)} of {len(todo.changes)} planned changes were made "
            "(listed), every account is consistent and the next run completes them"
        )
    else:
        report.summary = _summary(what, applied.done, len(report.refused))
    return report


def _summary(what: str, done: list[Change], refused: int) -> str:
    unrefused = f"; {refused} refused (listed)" if refused else ""
    if not done:
        return f"{what}: nothing to change{unrefused}" if refused else f"in sync: {what}: nothing to change"
    count = {a: sum(c.action == a for c in done) for a in ("create", "reactivate", "suspend")}
    touched = len({c.account for c in done})
    return (
        f"{what}: {len(done)} change{'s' * (len(done) != 1)} on {touched} account{'s' * (touched != 1)} "
        f"({count['create']} created, {count['reactivate']} reactivated, {count['suspend']} suspended)"
        f"{unrefused}"
    )


def sync_all(config: SyncConfig, *, dry_run: bool = False, rucio=None, scim=None) -> Report:
    """Every member of `config.groups`: accounts made, completed, reactivated; leavers suspended."""
    try:
        scim = _scim(config, scim)
        members = scim.members(config.groups)
        what = f"{len([m for m in members if m.active])} members of {', '.join(config.groups)}"
        return _run(
            config, members, issuer=scim.issuer, rucio=_rucio_client(rucio), dry_run=dry_run, only_subs=None, what=what
        )
    except (ScimError, RucioSideError) as e:
        return Report(error=str(e), dry_run=dry_run)
    except Exception as e:  # Rucio unreachable or refusing: one line, nothing half-done (see Applier)
        return Report(error=f"Rucio: {one_line(e)}", dry_run=dry_run)


def _one_user(scim: ScimClient, username: str | None, sub: str | None) -> tuple[IamUser, list[IamUser]]:
    """The IAM user asked for, and every IAM user whose name becomes the same account (to refuse collisions)."""
    if sub is not None:
        user = scim.user(sub)
        if user is None:
            raise ScimError(f"IAM has no user with id {sub}")
        username = user.username
    same = [u for u in scim.users_named(username) if account_name(u.username) == account_name(username)]
    if sub is None:
        exact = [u for u in same if u.username == username] or same
        if not exact:
            raise ScimError(f"IAM has no user {username}")
        if len(exact) > 1:
            raise ScimError(
                f"IAM users {' and '.join(u.username for u in exact)} both become account "
                f"{account_name(username)}: never merged, rename one of them in IAM"
            )
        user = exact[0]
    return user, same or [user]


def sync_user(
    config: SyncConfig,
    *,
    username: str | None = None,
    sub: str | None = None,
    dry_run: bool = False,
    rucio=None,
    scim=None,
) -> Report:
    """One IAM user (by userName, which the hub's username is the lower case of, or by IAM id = token `sub`): her
    account made ready if she is a member, suspended if the sync manages it and she is not. `Report.account` is her
    account name once it is ready to use."""
    if (username is None) == (sub is None):
        raise ValueError("give username or sub")
    try:
        scim = _scim(config, scim)
        user, same = _one_user(scim, username, sub)
        groups = set(config.groups)
        members = [u for u in same if u.active and u.groups & groups]
        what = f"IAM user {user.username} ({'member' if user in members else 'not a member'})"
        report = _run(
            config,
            members,
            issuer=scim.issuer,
            rucio=_rucio_client(rucio),
            dry_run=dry_run,
            only_subs=frozenset(u.sub for u in same),
            what=what,
        )
    except (ScimError, RucioSideError) as e:
        return Report(error=str(e), dry_run=dry_run)
    except Exception as e:
        return Report(error=f"Rucio: {one_line(e)}", dry_run=dry_run)
    mine = [r for r in report.refused if r.who == user.username]
    if user in members and not report.error and not mine and not dry_run:
        report.account = account_name(user.username)
    return report
