"""The one SQLite database that ``mailmend watch`` and ``mailmend dmarc`` keep their state in.

Each component (``"watch"``, ``"dmarc"``) owns its tables and an ordered list of migrations
(SQL scripts); :func:`open_db` applies the ones the database has not seen yet, each in one
transaction, and records the component's version in ``schema_version``. The database runs in
WAL mode (readers never block the writer; a killed process leaves it intact) with a busy
timeout, so two processes can share it.

Problems come out as :class:`StoreError` with a one-line message for the admin: an unwritable
path, a database made by a newer mailmend, a database locked by another process.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000

_SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


class StoreError(Exception):
    """The database cannot be used; the message is one line and says what to do."""


def default_db_path() -> Path:
    """``$XDG_STATE_HOME/mailmend/watch.db``, by default ``~/.local/state/mailmend/watch.db``."""
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local/state"
    return base / "mailmend" / "watch.db"


def open_db(path: Path, component: str, migrations: Sequence[str]) -> sqlite3.Connection:
    """The database at ``path`` (created if absent), migrated to ``len(migrations)`` for
    ``component``. The connection is in autocommit mode: group writes with :func:`transaction`.
    """
    _make_parent(path)
    _create_private(path)
    conn = _connect(path)
    _prepare(conn, path, component, migrations)
    return conn


def open_existing_db(
    path: Path, component: str, migrations: Sequence[str]
) -> sqlite3.Connection | None:
    """As :func:`open_db`, for a reader that must not create anything: None, with nothing
    made or changed, when ``path`` is not a database holding ``component``'s tables."""
    if not path.is_file():
        return None
    conn = _connect(path)
    try:
        present = schema_version(conn, component) > 0
    except sqlite3.Error:  # not an SQLite file, or no schema_version table
        present = False
    if not present:
        conn.close()
        return None
    _prepare(conn, path, component, migrations)
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(_describe(path, err)) from None


def _prepare(
    conn: sqlite3.Connection, path: Path, component: str, migrations: Sequence[str]
) -> None:
    """WAL, busy timeout, foreign keys, ``component`` migrated; ``conn`` closed on error."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: the filesystem does not support SQLite's WAL mode ({mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(_SCHEMA_TABLE)
        _migrate(conn, path, component, migrations)
    except sqlite3.Error as err:
        conn.close()
        raise StoreError(_describe(path, err)) from None
    except StoreError:
        conn.close()
        raise


def schema_version(conn: sqlite3.Connection, component: str) -> int:
    """The version of ``component``'s tables in this database (0: none yet)."""
    row = conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (component,)
    ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def exclusive(path: Path, component: str) -> Iterator[None]:
    """Hold ``PATH.COMPONENT.lock`` (one ``mailmend COMPONENT`` run per database at a time).

    An advisory ``flock``: the kernel releases it when the holder dies, even by ``kill -9``.
    Raises :class:`StoreError` at once if another process holds it.
    """
    lock_path = path.with_name(f"{path.name}.{component}.lock")
    _make_parent(path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StoreError(f"cannot create the lock {lock_path}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise StoreError(f"cannot lock {lock_path}: {err.strerror}") from None
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreError(
                f"another mailmend {component} is running on {path}{who}: "
                "wait for it to finish, or give this one its own --db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# --- internals -----------------------------------------------------------------------------------


def _make_parent(path: Path) -> None:
    if path.parent.exists() and not path.parent.is_dir():
        raise StoreError(f"cannot use {path}: {path.parent} is not a directory")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create the directory of {path}: {err.strerror}") from None
    if not path.parent.is_dir():
        raise StoreError(f"cannot use {path}: {path.parent} is not a directory")


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (it names the fleet's hosts)."""
    if path.exists():
        if path.is_dir():
            raise StoreError(f"cannot use {path}: it is a directory, not a database file")
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as err:
        raise StoreError(f"cannot create {path}: {err.strerror}") from None


def _migrate(
    conn: sqlite3.Connection, path: Path, component: str, migrations: Sequence[str]
) -> None:
    known = len(migrations)
    version = schema_version(conn, component)
    if version > known:
        raise StoreError(
            f"{path}: its {component} tables are version {version}, newer than this "
            f"mailmend knows ({known}): upgrade mailmend or use another --db"
        )
    for target in range(version + 1, known + 1):
        with transaction(conn):
            if schema_version(conn, component) >= target:
                continue  # another process migrated meanwhile
            for statement in _statements(migrations[target - 1]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, target),
            )


def _statements(script: str) -> Iterator[str]:
    """The complete SQL statements of ``script`` (``executescript`` would commit first)."""
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:60]!r}")


def _describe(path: Path, err: sqlite3.Error) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "locked" in text or "busy" in text:
        return (
            f"{path} is locked by another process (waited {BUSY_TIMEOUT_MS // 1000} s): "
            "try again when it has finished"
        )
    if "readonly" in text or "unable to open" in text:
        return f"cannot write {path} ({text}): check its permissions or choose another --db"
    if "not a database" in text:
        return f"{path} is not a mailmend database ({text}): choose another --db"
    return f"{path}: {text}"
