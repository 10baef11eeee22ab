"""The hub's SQLite database in WAL mode: commits append to a log instead of waiting for fsyncs."""

import subprocess
import sys

PROBE = """
import sys
from sqlalchemy import create_engine, text
from hub_plugins.sqlite_tuning import use_wal
if sys.argv[2] == "wal":
    use_wal()
    use_wal()  # idempotent
engine = create_engine("sqlite:///" + sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    conn.execute(text("INSERT INTO t VALUES (1)"))
with engine.connect() as conn:
    print(conn.execute(text("PRAGMA journal_mode")).scalar(), conn.execute(text("PRAGMA synchronous")).scalar(),
          conn.execute(text("SELECT count(*) FROM t")).scalar())
"""


def probe(path, mode):
    # In a child process: the listener applies to every engine of the process, as in the hub.
    result = subprocess.run([sys.executable, "-c", PROBE, str(path), mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_engines_opened_after_use_wal_write_ahead_without_a_sync_per_commit(tmp_path):
    assert probe(tmp_path / "hub.sqlite", "wal") == ["wal", "1", "1"]  # 1 = NORMAL


def test_without_it_sqlite_keeps_its_rollback_journal_and_full_sync(tmp_path):
    assert probe(tmp_path / "plain.sqlite", "default") == ["delete", "2", "1"]  # 2 = FULL
