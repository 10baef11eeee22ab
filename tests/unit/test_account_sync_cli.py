"""The dlaas-rucio-sync command line: sizes, limits, where the client secret comes from, and one-line refusals of bad
options (exit 2) before IAM or Rucio is contacted; --serve's answers, one JSON line per user, with its clients kept."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from dlaas_sync.cli import config_from, main, parse_size, parser, serve
from dlaas_sync.desired import Refused
from dlaas_sync.plan import Change
from dlaas_sync.sync import Report, SyncConfig


@pytest.mark.parametrize(
    "text, size", [("123", 123), ("100GB", 100 * 10**9), ("1TiB", 2**40), ("5 gib", 5 * 2**30), ("10TB", 10 * 10**12)]
)
def test_sizes_in_bytes_or_with_a_unit(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5TB", "-1", "10 parsecs", "TB"])
def test_a_size_that_is_none_is_refused(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def args(*argv, **env):
    p = parser()
    return config_from(p.parse_args(list(argv)), p)


def test_options_become_the_configuration(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = args(
        "--iam-url",
        "https://iam.example.org/",
        "--client-id",
        "sync",
        "--client-secret-file",
        str(secret),
        "--group",
        "escape/users",
        "--group",
        "escape/guests",
        "--limit",
        "DLAAS-SCRATCH=100GB",
        "--limit",
        "EULAKE-1=1TiB",
        "--max-changes",
        "3",
    )
    assert config.client_secret == "s3cret" and "s3cret" not in repr(config)
    assert config.groups == ("escape/users", "escape/guests")
    assert config.limits == {"DLAAS-SCRATCH": 100 * 10**9, "EULAKE-1": 2**40}
    assert config.max_changes == 3


def test_everything_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DLAAS_SYNC_IAM_URL", "https://iam.example.org/")
    monkeypatch.setenv("DLAAS_SYNC_CLIENT_ID", "sync")
    monkeypatch.setenv("DLAAS_SYNC_CLIENT_SECRET", "s3cret")
    config = args()
    assert (config.iam_url, config.client_id, config.client_secret) == ("https://iam.example.org/", "sync", "s3cret")
    assert config.groups == ("escape/users",) and config.limits == {}


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give --iam-url and --client-id"),
        (["--iam-url", "u", "--client-id", "c"], "client secret is empty"),
        (
            ["--iam-url", "u", "--client-id", "c", "--client-secret-file", "/nonexistent/secret"],
            "cannot read the client",
        ),
        (["--limit", "DLAAS-SCRATCH"], "is not RSE=SIZE"),
        (["--limit", "X=lots"], "is not a size"),
        (["--user", "a", "--sub", "b"], "not allowed with argument"),
    ],
    ids=["no-iam", "no-secret", "unreadable-secret", "limit-without-size", "bad-size", "user-and-sub"],
)
def test_bad_options_are_refused_in_one_line_before_anything_is_contacted(argv, message, capsys, monkeypatch):
    for name in (
        "DLAAS_SYNC_IAM_URL",
        "DLAAS_SYNC_CLIENT_ID",
        "DLAAS_SYNC_CLIENT_SECRET",
        "DLAAS_SYNC_CLIENT_SECRET_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("dlaas-rucio-sync: error:")


def test_exit_codes_say_done_refused_or_failed():
    assert Report().exit_code == 0
    assert Report(changes=[Change("a", "suspend")]).exit_code == 0
    assert Report(refused=[Refused("a", "why")]).exit_code == 3
    assert Report(refused=[Refused("a", "why")], error="stopped").exit_code == 1
    assert Report(changes=[Change("a", "scope", "user.a")], refused=[Refused("b", "why")], summary="s").lines() == [
        "+ a: scope user.a",
        "! b: refused: why",
        "s",
    ]


# --- --serve: the hub's onboarding worker ----------------------------------------------------------------------------

CONFIG = SyncConfig(iam_url="https://iam.example.org/", client_id="sync", client_secret="s3cret")


class Syncs:
    """Stands for sync_user (tested on its own and against the real services): records each call's user and the
    clients it got, answers `reports` in turn (after `delay` seconds), counts how many ran at once."""

    def __init__(self, *reports, delay=0.0):
        self.reports, self.calls, self.delay = list(reports), [], delay
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def __call__(self, config, *, sub, rucio, scim):
        with self.lock:
            self.calls.append((sub, rucio, scim))
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
            return self.reports.pop(0)


@pytest.fixture
def rucio_clients(monkeypatch):
    """rucio-clients' Client as serve makes it: a new object per client made, all of them listed."""
    made = []

    def new_client():
        made.append(object())
        return made[-1]

    monkeypatch.setattr("dlaas_sync.cli.rucio_client", new_client)
    return made


def answers(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_serve_answers_each_line_and_keeps_its_clients(rucio_clients):
    ready = Report(changes=[Change("alice", "create")], summary="IAM user alice (member): 1 change", account="alice")
    syncs, out = Syncs(ready, Report(summary="in sync: nothing to change")), io.StringIO()
    assert serve(CONFIG, ["sub-alice\n", "sub-bob\n"], out, sync=syncs, workers=1) == 0
    assert answers(out) == [
        {"sub": "sub-alice", "exit": 0, "line": "IAM user alice (member): 1 change", "account": "alice"},
        {"sub": "sub-bob", "exit": 0, "line": "in sync: nothing to change", "account": None},
    ]
    (_, rucio_1, scim_1), (_, rucio_2, scim_2) = syncs.calls
    assert rucio_1 is rucio_2 and rucio_clients == [rucio_1] and scim_1 is scim_2  # kept from one user to the next


def test_serve_syncs_several_users_at_once_and_answers_each(rucio_clients):
    subs = [f"sub-{i}" for i in range(8)]
    syncs, out = Syncs(*[Report(summary="done") for _ in subs], delay=0.2), io.StringIO()
    serve(CONFIG, [f"{s}\n" for s in subs], out, sync=syncs, workers=4)
    assert sorted(a["sub"] for a in answers(out)) == subs
    assert 1 < syncs.most <= 4
    assert len(rucio_clients) <= 4  # one client per worker thread, not per user


def test_serve_refuses_a_line_that_is_no_user_id_and_goes_on(rucio_clients):
    syncs, out = Syncs(Report(summary="done")), io.StringIO()
    serve(CONFIG, ["sub-x other\n", "\n", "sub-ok\n"], out, sync=syncs, workers=1)
    assert [(a["sub"], a["exit"], a["line"]) for a in answers(out)] == [
        ("sub-x other", 2, "not an IAM user id"),
        ("", 2, "not an IAM user id"),
        ("sub-ok", 0, "done"),
    ]
    assert [sub for sub, _, _ in syncs.calls] == ["sub-ok"]


def test_serve_makes_a_new_rucio_client_after_a_failure(monkeypatch, capsys):
    made = []

    def new_client():
        if not made:
            made.append(None)
            raise ConnectionError("Rucio is down")
        made.append(object())
        return made[-1]

    monkeypatch.setattr("dlaas_sync.cli.rucio_client", new_client)
    syncs = Syncs(Report(error="Rucio: 503 Service Unavailable"), Report(summary="done"))
    out = io.StringIO()
    serve(CONFIG, ["sub-a\n", "sub-b\n", "sub-c\n"], out, sync=syncs, workers=1)
    assert [(a["exit"], a["line"]) for a in answers(out)] == [
        (1, "Rucio: ConnectionError: Rucio is down"),
        (1, "Rucio: 503 Service Unavailable"),
        (0, "done"),
    ]
    assert [rucio for _, rucio, _ in syncs.calls] == [made[1], made[2]]  # the client that failed was not kept
    assert capsys.readouterr().err.count("dlaas-rucio-sync: error: Rucio:") == 2


def test_serve_and_dry_run_are_refused_together(capsys, monkeypatch):
    monkeypatch.setenv("DLAAS_SYNC_CLIENT_SECRET", "s3cret")
    with pytest.raises(SystemExit):
        main(["--iam-url", "https://iam.example.org/", "--client-id", "c", "--serve", "--dry-run"])
    assert "--serve makes the changes" in capsys.readouterr().err
