"""The dlaas-rucio-sync command line: sizes, limits, where the client secret comes from, and one-line refusals of bad
options (exit 2) before IAM or Rucio is contacted."""

from __future__ import annotations

import pytest

from dlaas_sync.cli import config_from, main, parse_size, parser
from dlaas_sync.desired import Refused
from dlaas_sync.plan import Change
from dlaas_sync.sync import Report


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
