"""dlaas_sync.rucio_side.Applier: changes run in the plan's order, the first failure stops the run and says what was
done, and a claim whose account turns out to be someone else's is taken back. Rucio is a recorder here that can be
told to fail one call; the integration tests apply plans to the real Rucio server."""

from __future__ import annotations

import pytest
from rucio.common.exception import Duplicate, RucioException

from dlaas_sync.desired import Wanted
from dlaas_sync.plan import AccountState, Change, Entry, identity
from dlaas_sync.rucio_side import Applier, RucioSideError, read_ledger

ISS = "https://iam.example.org/"
CAROL = Wanted("carol", "sub-carol", "carol@example.org", "carol")


class Recorder:
    """Records rucio-clients calls; `fail` names a method that raises instead."""

    def __init__(self, fail=None, error=None):
        self.calls = []
        self.fail, self.error = fail, error or RucioException("the server said no")
        self.config = {}

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, *args))
            if method == self.fail:
                raise self.error
            if method == "set_config_option":
                self.config[args[1]] = args[2]
            if method == "delete_config_option":
                self.config.pop(args[1])
            return True

        return call


def new_carol():
    return [
        Change("carol", "claim", "sub-carol"),
        Change("carol", "create", "carol@example.org"),
        Change("carol", "scope", "user.carol"),
        Change("carol", "limit", "DLAAS-SCRATCH", 100),
        Change("carol", "identity+", identity("sub-carol", ISS)),
    ]


def applier(rucio, ledger=None):
    return Applier(rucio, issuer=ISS, wanted={"carol": CAROL}, ledger=ledger or {}, limits={"DLAAS-SCRATCH": 100})


def test_changes_run_in_order_with_the_ledger_first_and_the_identity_last():
    rucio = Recorder()
    result = applier(rucio).apply(new_carol())
    assert result.error is None and result.done == new_carol()
    assert [c[0] for c in rucio.calls] == [
        "set_config_option",
        "add_account",
        "add_scope",
        "set_local_account_limit",
        "add_identity",
    ]
    assert rucio.calls[0] == ("set_config_option", "dlaas_account_sync", "carol", "active:sub-carol")
    assert rucio.calls[-1] == ("add_identity", "carol", identity("sub-carol", ISS), "OIDC", "carol@example.org")


def test_the_first_failure_stops_the_run_and_says_what_was_done():
    rucio = Recorder(fail="add_scope")
    result = applier(rucio).apply(new_carol())
    assert [c.action for c in result.done] == ["claim", "create"]
    assert result.failed == Change("carol", "scope", "user.carol")
    assert result.error.startswith("+ carol: scope user.carol failed: RucioException: ")
    assert result.error.endswith("the server said no") and "\n" not in result.error
    assert "add_identity" not in [c[0] for c in rucio.calls]  # she cannot log in to a half-made account


def test_a_claimed_name_someone_else_took_meanwhile_is_given_back():
    rucio = Recorder(fail="add_account", error=Duplicate("Account ID 'carol' already exists!"))
    result = applier(rucio).apply(new_carol())
    assert result.failed.action == "create" and "Duplicate" in result.error
    assert rucio.config == {}  # the claim was taken back: the stranger's account is not ours


def test_a_leaver_loses_her_identity_before_the_account_is_suspended_and_the_ledger_says_so():
    rucio = Recorder()
    result = applier(rucio, ledger={"erin": Entry("sub-erin")}).apply(
        [Change("erin", "identity-", identity("sub-erin", ISS)), Change("erin", "suspend")]
    )
    assert result.error is None
    assert [c[0] for c in rucio.calls] == ["del_identity", "update_account", "set_config_option"]
    assert rucio.calls[1] == ("update_account", "erin", "status", "SUSPENDED")
    assert rucio.config == {"erin": "left:sub-erin"}


def test_a_reactivated_account_is_read_again_and_completed(monkeypatch):
    from dlaas_sync import rucio_side

    monkeypatch.setattr(
        rucio_side,
        "read_account",
        lambda client, name, issuer, active=None: AccountState(
            name, "ACTIVE", "carol@example.org", frozenset(), True, {"DLAAS-SCRATCH": 100}
        ),
    )
    monkeypatch.setattr(rucio_side, "read_holders", lambda client, sub, issuer: frozenset())
    rucio = Recorder()
    rucio.list_scopes = lambda: ["user.carol"]
    result = applier(rucio, ledger={"carol": Entry("sub-carol", left=True)}).apply([Change("carol", "reactivate")])
    assert result.error is None
    assert [c.action for c in result.done] == ["reactivate", "identity+"]
    assert rucio.calls[0] == ("update_account", "carol", "status", "ACTIVE")
    assert rucio.config == {"carol": "active:sub-carol"}


@pytest.mark.parametrize("value", ["sub-x", "active", "gone:sub-x"])
def test_a_ledger_entry_the_sync_did_not_write_stops_the_run(value):
    rucio = Recorder()
    rucio.get_config = lambda section: {"carol": value}
    with pytest.raises(RucioSideError, match="not active:<sub> or left:<sub>"):
        read_ledger(rucio)
