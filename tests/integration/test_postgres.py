"""The local PostgreSQL, tried as another local account would: no way in without the generated password.

Real PostgreSQL 15 (devstack.postgres) on a free loopback port and a temporary state directory, connected to with
the real psql. Rucio on top of it is exercised by test_data_lake.py.
"""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from devstack.postgres import DATABASE, PG_BIN, Postgres
from devstack.settings import Settings

PSQL = str(PG_BIN / "psql")


@pytest.fixture(scope="module")
def cluster():
    # Under /tmp and searchable: as root the cluster runs as the postgres user, which must reach its files.
    state = Path(tempfile.mkdtemp(prefix="dlaas-pg-"))
    state.chmod(0o755)
    pg = Postgres(Settings(state_dir=state), port=0)
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


def _psql(pg, *, user=None, passfile=None, host="127.0.0.1", sql="SELECT 1"):
    """psql as a local account would run it: never prompting, with or without a password file."""
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10", "PGPASSFILE": str(passfile or "/nonexistent")}
    argv = [PSQL, "-w", "-h", host, "-p", str(pg.port), "-U", pg._role, "-d", DATABASE, "-tAc", sql]
    if user:
        argv = [shutil.which("runuser"), "-u", user, "--", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def _passfile(pg, tmp_path, password):
    path = tmp_path / "pgpass"
    path.write_text(f"127.0.0.1:{pg.port}:{DATABASE}:{pg._role}:{password}\n")
    path.chmod(0o600)
    return path


def test_a_local_account_without_the_password_cannot_connect_over_tcp(cluster, tmp_path):
    refused = _psql(cluster)
    assert refused.returncode != 0
    assert "password" in refused.stderr, refused.stderr
    wrong = _psql(cluster, passfile=_passfile(cluster, tmp_path, "guessed"))
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr
    # The same command with the generated password works: the refusals above are about the password alone.
    allowed = _psql(cluster, passfile=_passfile(cluster, tmp_path, cluster.password))
    assert allowed.returncode == 0 and allowed.stdout.strip() == "1", allowed.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local account")
def test_another_local_account_cannot_use_the_unix_socket_or_run_programs(cluster):
    # nobody cannot even reach the socket's directory; COPY ... TO PROGRAM would need a superuser session.
    result = _psql(
        cluster,
        user="nobody",
        host=str(cluster.socket_dir),
        sql="COPY (SELECT 1) TO PROGRAM 'touch /tmp/dlaas-pg-owned'",
    )
    assert result.returncode != 0, result.stdout
    assert not Path("/tmp/dlaas-pg-owned").exists()
    assert stat.S_IMODE(cluster.socket_dir.stat().st_mode) == 0o700


def test_the_password_is_kept_private_in_the_state_dir_and_only_in_the_url(cluster):
    assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
    assert len(cluster.password) >= 32
    assert f":{cluster.password}@127.0.0.1:{cluster.port}/" in cluster.url
    assert cluster.password not in (cluster.settings.log_dir / "postgres.log").read_text()


def test_a_cluster_made_with_trust_by_an_older_version_is_locked_on_its_next_start(tmp_path):
    state = Path(tempfile.mkdtemp(prefix="dlaas-pg-trust-"))
    state.chmod(0o755)
    pg = Postgres(Settings(state_dir=state), port=0)
    try:
        pg.start()
        pg.stop()
        hba = pg.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
        if pg.user:
            shutil.chown(hba, pg.user, pg.user)
        pg.port = 0
        pg.start()
        assert _psql(pg).returncode != 0, "the old trust rules survived the restart"
        assert "trust" not in hba.read_text().replace("# ", "")
        assert _psql(pg, passfile=_passfile(pg, tmp_path, pg.password)).returncode == 0
    finally:
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)
