"""Per-user directories and files on a shared machine, tried as another local account would attack them.

The attacker pre-creates the token directory (0777, their uid), plants a symlink where the directory or the file
should be, or puts a file there. Each is refused with one line naming the path and what to do, and nothing is
written through a link. Taking another uid needs root (os.chown), as in the test image.
"""

import asyncio
import os
import stat

import pytest

from singleuser.private_dirs import UnsafePathError, ensure_private_dir, open_private_dir
from singleuser.rucio_config import prepare_cache_dir, write_client_config
from singleuser.server_settings import ServerSettings
from singleuser.token_agent import TokenAgent
from singleuser.token_files import remove_private_file, write_private_file

ATTACKER = 65534  # nobody
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another uid's directory")

HINT = "set DLAAS_TOKEN_DIR to another path"


def _attackers_dir(path, mode=0o777):
    path.mkdir()
    path.chmod(mode)
    os.chown(path, ATTACKER, ATTACKER)
    return path


def _one_line(error, path, *words):
    text = str(error.value)
    assert "\n" not in text
    assert str(path) in text and text.endswith(f"remove it or {HINT}")
    for word in words:
        assert word in text
    return text


@as_root
def test_a_0777_token_dir_precreated_by_another_account_is_refused_and_gets_no_token(tmp_path):
    tokens = _attackers_dir(tmp_path / "dlaas-alice")
    with pytest.raises(UnsafePathError) as e:
        write_private_file(tokens / "rucio_token", "alice.secret.token", hint=HINT)
    _one_line(e, tokens, f"belongs to uid {ATTACKER}", f"uid {os.geteuid()}")
    assert list(tokens.iterdir()) == []
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o777 and tokens.stat().st_uid == ATTACKER, "not ours to change"


@as_root
def test_a_locked_directory_of_another_account_is_refused_too(tmp_path):
    tokens = _attackers_dir(tmp_path / "dlaas-alice", mode=0o700)
    with pytest.raises(UnsafePathError, match=f"belongs to uid {ATTACKER}"):
        ensure_private_dir(tokens, HINT)


def test_a_symlink_planted_as_the_token_dir_is_refused_and_nothing_is_written_through_it(tmp_path):
    theirs = tmp_path / "attacker-reads-here"
    theirs.mkdir(mode=0o700)
    planted = tmp_path / "dlaas-alice"
    planted.symlink_to(theirs, target_is_directory=True)
    with pytest.raises(UnsafePathError) as e:
        write_private_file(planted / "rucio_token", "alice.secret.token", hint=HINT)
    _one_line(e, planted, "is a symbolic link")
    assert list(theirs.iterdir()) == []
    assert planted.is_symlink()


def test_a_symlink_planted_as_the_token_file_is_refused_and_its_target_untouched(tmp_path):
    tokens = ensure_private_dir(tmp_path / "dlaas-alice", HINT)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tokens / "rucio_token").symlink_to(victim)
    with pytest.raises(UnsafePathError) as e:
        write_private_file(tokens / "rucio_token", "alice.secret.token", hint=HINT)
    _one_line(e, tokens / "rucio_token", "is a symbolic link")
    assert victim.read_text() == "keep me"
    assert (tokens / "rucio_token").is_symlink()
    assert sorted(p.name for p in tokens.iterdir()) == ["rucio_token"], "a temporary file was left behind"


@as_root
def test_a_directory_reached_through_another_accounts_directory_is_refused(tmp_path):
    theirs = _attackers_dir(tmp_path / "theirs")
    (tmp_path / "shm").symlink_to(theirs, target_is_directory=True)  # the parent is a link to their directory
    with pytest.raises(UnsafePathError, match=f"which belongs to uid {ATTACKER}"):
        write_private_file(tmp_path / "shm" / "dlaas-alice" / "rucio_token", "alice.secret.token", hint=HINT)
    assert not (theirs / "dlaas-alice" / "rucio_token").exists()


def test_a_file_where_the_directory_should_be_is_refused(tmp_path):
    planted = tmp_path / "dlaas-alice"
    planted.write_text("not a directory")
    with pytest.raises(UnsafePathError) as e:
        write_private_file(planted / "rucio_token", "alice.secret.token", hint=HINT)
    _one_line(e, planted, "is not a directory")
    assert planted.read_text() == "not a directory"


@as_root
def test_a_directory_someone_creates_just_before_our_mkdir_is_judged_not_taken(tmp_path, monkeypatch):
    tokens = tmp_path / "dlaas-alice"
    real_mkdir = os.mkdir

    def attacker_wins_the_race(path, mode=0o777, **kw):
        if str(path) == str(tokens) and not tokens.exists():
            real_mkdir(tokens, 0o777)
            os.chmod(tokens, 0o777)
            os.chown(tokens, ATTACKER, ATTACKER)
        return real_mkdir(path, mode, **kw)

    monkeypatch.setattr(os, "mkdir", attacker_wins_the_race)
    with pytest.raises(UnsafePathError, match=f"belongs to uid {ATTACKER}"):
        write_private_file(tokens / "rucio_token", "alice.secret.token", hint=HINT)
    assert list(tokens.iterdir()) == []


def test_missing_directories_are_created_0700_and_files_written_atomically_with_their_mode(tmp_path):
    path = tmp_path / "shm" / "dlaas-alice" / "rucio_token"
    write_private_file(path, "t1")
    write_private_file(path, "t2", mode=0o640)
    assert path.read_text() == "t2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    for directory in (path.parent, path.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["rucio_token"]


def test_our_own_directory_left_open_to_others_is_closed_to_0700(tmp_path):
    tokens = tmp_path / "dlaas-alice"
    tokens.mkdir()
    tokens.chmod(0o777)
    ensure_private_dir(tokens, HINT)
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o700


def test_removal_never_goes_through_a_symlinked_directory(tmp_path):
    theirs = tmp_path / "elsewhere"
    theirs.mkdir()
    (theirs / "rucio_token").write_text("someone else's file")
    (tmp_path / "dlaas-alice").symlink_to(theirs, target_is_directory=True)
    with pytest.raises(UnsafePathError):
        remove_private_file(tmp_path / "dlaas-alice" / "rucio_token", HINT)
    assert (theirs / "rucio_token").read_text() == "someone else's file"
    assert open_private_dir(tmp_path / "missing", HINT, create=False) is None


@as_root
def test_the_agent_writes_no_token_into_another_accounts_dir_and_says_so_once(tmp_path, caplog):
    tokens = _attackers_dir(tmp_path / "dlaas-alice")
    agent = TokenAgent(
        api_url="http://127.0.0.1:9/api",
        api_token="server-token",
        token_dir=str(tokens),
        files={"rucio": "rucio_token"},
    )
    body = {"tokens": {"rucio": {"access_token": "alice.secret.token", "expires_at": 2e9}}}
    for _ in range(3):
        with pytest.raises(UnsafePathError):
            agent.write(body)
    assert list(tokens.iterdir()) == []
    agent.fetch = _returning(body)
    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):
            loop.run_until_complete(agent.step())
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if str(tokens) in r.getMessage()]
    assert len(lines) == 1 and f"belongs to uid {ATTACKER}" in lines[0] and HINT in lines[0]
    assert list(tokens.iterdir()) == []


def _returning(body):
    async def fetch():
        return body

    return fetch


@as_root
def test_a_rucio_cfg_dir_of_another_account_is_refused_so_clients_cannot_be_pointed_elsewhere(tmp_path):
    cfg_dir = _attackers_dir(tmp_path / "dlaas-bob")
    env = {"RUCIO_BASE_URL": "https://rucio.example", "BEARER_TOKEN_FILE": "/dev/shm/t/rucio_token"}
    with pytest.raises(UnsafePathError, match="set RUCIO_CONFIG to another path"):
        write_client_config(ServerSettings(environ=env), cfg_dir / "rucio.cfg")
    assert list(cfg_dir.iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "rucio.cfg").symlink_to(tmp_path / "theirs.cfg")
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        write_client_config(ServerSettings(environ=env), tmp_path / "mine" / "rucio.cfg")
    assert not (tmp_path / "theirs.cfg").exists()


@as_root
def test_the_rucio_extensions_cache_dir_of_another_account_is_refused(tmp_path):
    cache = _attackers_dir(tmp_path / "rucio-jupyterlab-alice")
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "RUCIO_CACHE_DIR": str(cache)}
    with pytest.raises(UnsafePathError, match="set RUCIO_CACHE_DIR to another path"):
        prepare_cache_dir(ServerSettings(environ=env))
    mine = tmp_path / "rucio-jupyterlab-bob"
    assert prepare_cache_dir(ServerSettings(environ={**env, "RUCIO_CACHE_DIR": str(mine)})) == mine
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
