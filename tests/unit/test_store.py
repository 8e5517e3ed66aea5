"""mailmend.store: migrations, WAL, concurrent writers, crash safety, one-line errors.

Real SQLite files and real processes (``kill -9`` is a real signal), no fakes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailmend import store
from mailmend.store import StoreError, default_db_path, exclusive, open_db, schema_version

REPO = Path(__file__).resolve().parents[2]

V1 = "CREATE TABLE runs (id INTEGER PRIMARY KEY, note TEXT NOT NULL);"
V2 = """
ALTER TABLE runs ADD COLUMN started REAL;
CREATE INDEX runs_started ON runs (started);
CREATE TRIGGER runs_note AFTER INSERT ON runs BEGIN
    UPDATE runs SET note = note || ';' WHERE id = new.id;
END;
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """A child Python process running ``code`` (it may import V1, V2 from this module)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- default path --------------------------------------------------------------------------------


def test_default_path_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert default_db_path() == Path("/srv/state/mailmend/watch.db")


def test_default_path_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local/state/mailmend/watch.db"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # the spec says: ignore a relative one
    assert default_db_path() == tmp_path / ".local/state/mailmend/watch.db"


# --- creation and migrations ---------------------------------------------------------------------


def test_creates_private_directory_and_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "mailmend" / "watch.db"
    conn = open_db(path, "watch", [V1])
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
    assert schema_version(conn, "watch") == 1
    conn.close()


def test_migrations_apply_once_and_only_the_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = open_db(path, "watch", [V1])
    conn.execute("INSERT INTO runs (note) VALUES ('kept')")
    conn.close()
    conn = open_db(path, "watch", [V1, V2])  # V1 is not applied again (it would fail)
    assert schema_version(conn, "watch") == 2
    conn.execute("INSERT INTO runs (note, started) VALUES ('new', 1.0)")
    notes = [r[0] for r in conn.execute("SELECT note FROM runs ORDER BY id")]
    assert notes == ["kept", "new;"]  # the trigger (a statement with inner ';') went in whole
    conn.close()
    conn = open_db(path, "watch", [V1, V2])
    assert schema_version(conn, "watch") == 2
    conn.close()


def test_components_have_their_own_versions(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    open_db(path, "watch", [V1, V2]).close()
    conn = open_db(path, "dmarc", ["CREATE TABLE reports (id TEXT PRIMARY KEY);"])
    assert schema_version(conn, "watch") == 2
    assert schema_version(conn, "dmarc") == 1
    conn.close()


def test_failed_migration_rolls_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    open_db(path, "watch", [V1]).close()
    bad = "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);"
    with pytest.raises(StoreError) as err:
        open_db(path, "watch", [V1, bad])
    assert "no such table" in str(err.value) and "\n" not in str(err.value)
    conn = open_db(path, "watch", [V1])
    assert schema_version(conn, "watch") == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    open_db(path, "watch", [V1, V2]).close()
    with pytest.raises(StoreError) as err:
        open_db(path, "watch", [V1])
    message = str(err.value)
    assert "version 2, newer than this mailmend knows (1)" in message
    assert "upgrade mailmend" in message and "\n" not in message


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    code = """
        import sys
        from pathlib import Path
        from mailmend.store import open_db
        from tests.unit.test_store import V1, V2
        open_db(Path(sys.argv[1]), "watch", [V1, V2]).close()
    """
    procs = [_python(code, str(path)) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    conn = open_db(path, "watch", [V1, V2])
    assert schema_version(conn, "watch") == 2
    conn.close()


# --- concurrency and crashes ---------------------------------------------------------------------


def test_two_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    open_db(path, "watch", [V1]).close()
    code = """
        import sys
        from pathlib import Path
        from mailmend.store import open_db, transaction
        from tests.unit.test_store import V1
        conn = open_db(Path(sys.argv[1]), "watch", [V1])
        for i in range(200):
            with transaction(conn):
                conn.execute("INSERT INTO runs (note) VALUES (?)", (sys.argv[2] + str(i),))
    """
    procs = [_python(code, str(path), name) for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    conn = open_db(path, "watch", [V1])
    counts = dict(conn.execute("SELECT substr(note, 1, 1), count(*) FROM runs GROUP BY 1"))
    assert counts == {"a": 200, "b": 200}
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_kill_9_mid_transaction_keeps_the_database_intact(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = open_db(path, "watch", [V1])
    conn.execute("INSERT INTO runs (note) VALUES ('committed')")
    conn.close()
    proc = _python(
        """
        import sys, time
        from pathlib import Path
        from mailmend.store import open_db
        from tests.unit.test_store import V1
        conn = open_db(Path(sys.argv[1]), "watch", [V1])
        conn.execute("BEGIN IMMEDIATE")
        for i in range(20000):
            conn.execute("INSERT INTO runs (note) VALUES (?)", ("x" * 200,))
        print("inside", flush=True)
        time.sleep(60)
        """,
        str(path),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    conn = open_db(path, "watch", [V1])  # no "locked", no "malformed"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r[0] for r in conn.execute("SELECT note FROM runs")] == ["committed"]
    conn.execute("INSERT INTO runs (note) VALUES ('after')")  # and it carries on writing
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    conn.close()


def test_locked_database_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.db"
    holder = open_db(path, "watch", [V1])
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    with pytest.raises(StoreError) as err:
        open_db(path, "watch", [V1, V2])
    message = str(err.value)
    assert "is locked by another process" in message and "\n" not in message
    holder.execute("ROLLBACK")
    holder.close()


def test_exclusive_refuses_a_second_holder_and_frees_on_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    proc = _python(
        """
        import sys, time
        from pathlib import Path
        from mailmend.store import exclusive
        with exclusive(Path(sys.argv[1]), "watch"):
            print("held", flush=True)
            time.sleep(60)
        """,
        str(path),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(StoreError) as err:
        with exclusive(path, "watch"):
            pass
    message = str(err.value)
    assert f"another mailmend watch is running on {path} (pid {proc.pid})" in message
    assert "\n" not in message
    with exclusive(path, "dmarc"):  # another component's lock is its own
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    with exclusive(path, "watch"):  # the kernel released the dead holder's lock
        pass


# --- bad paths -----------------------------------------------------------------------------------


def test_unwritable_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as err:
        open_db(blocker / "sub" / "watch.db", "watch", [V1])
    assert str(err.value).startswith(f"cannot create the directory of {blocker}/sub/watch.db")
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError) as err:
        open_db(blocker / "watch.db", "watch", [V1])
    assert str(err.value) == f"cannot use {blocker}/watch.db: {blocker} is not a directory"


def test_directory_as_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory, not a database file"):
        open_db(tmp_path, "watch", [V1])


def test_read_only_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    open_db(path, "watch", [V1]).close()
    uri_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # what a read-only FS gives
    with pytest.raises(sqlite3.OperationalError) as raw:
        uri_only.execute("CREATE TABLE t (x)")
    uri_only.close()
    assert store._describe(path, raw.value).startswith(f"cannot write {path} (attempt to write")


def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    path.write_bytes(b"this is a text file, long enough to look like a header........" * 4)
    with pytest.raises(StoreError) as err:
        open_db(path, "watch", [V1])
    assert str(err.value) == (
        f"{path} is not a mailmend database (file is not a database): choose another --db"
    )
