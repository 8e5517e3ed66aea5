"""The watcher's tables in the shared SQLite database (:mod:`mailmend.store`).

- ``runs``: one row per run (start, end, counts, the time spent in the database).
- ``keys``: one row per (host, check, subject, zone) ever seen; ``results`` refers to it.
- ``results``: every result of every run, one row per run: the key ids (an array of unsigned
  32-bit integers, this machine's byte order), one status byte per key (0 pass, 1 warn,
  2 unknown, 3 fail) and the return codes of the results that had some (JSON, key id ->
  "code,code").
  A run of 27,000 results is one row of ~135 KB, written in one statement.
- ``known``: the last known (not unknown) state of each key.
- ``listings``: one row per listing: first seen, last seen, cleared, codes, last alert.
- ``events``: every event, with ``alerted`` set once the alert channels had their go.
- ``flags``: broken lists (``broken``) and hosts DNS said nothing about (``unreachable``).

A run is written in one transaction: a watcher killed in the middle of a run leaves the
database as the previous run left it.
"""

from __future__ import annotations

import array
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmend.store import open_db, open_existing_db, transaction
from mailmend.watch.model import Diff, Event, Key, Known, Listing, Observation

COMPONENT = "watch"
MIGRATIONS = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started REAL NOT NULL,
        finished REAL NOT NULL,
        hosts INTEGER NOT NULL,
        results INTEGER NOT NULL,
        unknown INTEGER NOT NULL,
        events INTEGER NOT NULL,
        db_seconds REAL NOT NULL DEFAULT 0,
        db_cpu_seconds REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_started ON runs (started);
    CREATE TABLE keys (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        check_name TEXT NOT NULL,
        subject TEXT NOT NULL,
        zone TEXT NOT NULL,
        UNIQUE (host, check_name, subject, zone)
    );
    CREATE TABLE results (
        run_id INTEGER PRIMARY KEY,
        key_ids BLOB NOT NULL,
        statuses BLOB NOT NULL,
        codes TEXT NOT NULL
    );
    CREATE TABLE known (
        key_id INTEGER PRIMARY KEY,
        status TEXT NOT NULL,
        listed INTEGER NOT NULL,
        codes TEXT NOT NULL,
        summary TEXT NOT NULL,
        since REAL NOT NULL
    );
    CREATE TABLE listings (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        subject TEXT NOT NULL,
        zone TEXT NOT NULL,
        list_name TEXT NOT NULL,
        codes TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        cleared REAL,
        last_alert REAL NOT NULL
    );
    CREATE INDEX listings_host ON listings (host, last_seen);
    CREATE INDEX listings_seen ON listings (last_seen);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        host TEXT NOT NULL,
        body TEXT NOT NULL,
        alerted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX events_pending ON events (alerted) WHERE alerted = 0;
    CREATE INDEX events_time ON events (time);
    CREATE TABLE deliveries (
        event_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        PRIMARY KEY (event_id, channel)
    ) WITHOUT ROWID;
    CREATE TABLE flags (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        since REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    """,
)
_LISTING_SELECT = (
    "SELECT host, subject, zone, list_name, codes, first_seen, last_seen, cleared, last_alert "
    "FROM listings"
)
STATUS_CODES = {"pass": 0, "warn": 1, "unknown": 2, "fail": 3}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}


@dataclass(frozen=True)
class Run:
    id: int
    started: float
    finished: float
    hosts: int
    results: int
    unknown: int
    events: int
    db_seconds: float


class WatchDb:
    """The watcher's view of the database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._keys: dict[Key, int] | None = None

    @classmethod
    def open(cls, path: Path) -> WatchDb:
        return cls(open_db(path, COMPONENT, MIGRATIONS))

    @classmethod
    def open_existing(cls, path: Path) -> WatchDb | None:
        """As :meth:`open`, for a reader: None, nothing created, when ``path`` holds no
        watch tables (absent, or the shared database with only mailmend dmarc's in it)."""
        conn = open_existing_db(path, COMPONENT, MIGRATIONS)
        return None if conn is None else cls(conn)

    def close(self) -> None:
        self.conn.close()

    # -- reading ----------------------------------------------------------------------------------
    def keys(self) -> dict[Key, int]:
        if self._keys is None:
            rows = self.conn.execute("SELECT id, host, check_name, subject, zone FROM keys")
            self._keys = {(h, c, s, z): i for i, h, c, s, z in rows}
        return self._keys

    def known(self) -> dict[Key, Known]:
        """The known state of every key (and, on the way, every key's id)."""
        rows = self.conn.execute(
            "SELECT k.id, k.host, k.check_name, k.subject, k.zone, n.status, n.listed, n.codes, "
            "n.summary, n.since FROM keys AS k LEFT JOIN known AS n ON n.key_id = k.id"
        )
        ids: dict[Key, int] = {}
        known: dict[Key, Known] = {}
        new = tuple.__new__  # a Known from the row as it is (tens of thousands of them)
        for row in rows:
            key = row[1:5]
            ids[key] = row[0]
            if row[5] is not None:
                known[key] = new(Known, row[5:])
        self._keys = ids
        return known

    def flags(self, kind: str) -> set[str]:
        rows = self.conn.execute("SELECT name FROM flags WHERE kind = ?", (kind,))
        return {name for (name,) in rows}

    def open_listings(self) -> list[Listing]:
        rows = self.conn.execute(
            f"{_LISTING_SELECT} WHERE cleared IS NULL ORDER BY host, subject, zone"
        )
        return [Listing(*_listing_row(r)) for r in rows]

    def listings(self, host: str | None, since: float) -> list[Listing]:
        """Listings seen at or after ``since`` (all hosts, or one), oldest first."""
        if host is None:
            rows = self.conn.execute(
                f"{_LISTING_SELECT} WHERE last_seen >= ? ORDER BY first_seen", (since,)
            )
        else:
            rows = self.conn.execute(
                f"{_LISTING_SELECT} WHERE host = ? AND last_seen >= ? ORDER BY first_seen",
                (host, since),
            )
        return [Listing(*_listing_row(r)) for r in rows]

    def last_run(self) -> Run | None:
        row = self.conn.execute(
            "SELECT id, started, finished, hosts, results, unknown, events, db_seconds "
            "FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return Run(*row) if row else None

    def run_results(self, run_id: int) -> list[tuple[Key, str, tuple[str, ...]]]:
        """Every result of one run: (key, status, codes)."""
        row = self.conn.execute(
            "SELECT key_ids, statuses, codes FROM results WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return []
        key_ids = array.array("I")
        key_ids.frombytes(row[0])
        codes = {int(k): tuple(v.split(",")) for k, v in json.loads(row[2]).items()}
        by_id = {i: k for k, i in self.keys().items()}
        return [
            (by_id[i], STATUS_NAMES[s], codes.get(i, ()))
            for i, s in zip(key_ids, row[1], strict=True)
        ]

    def run_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    def pending_events(self) -> list[tuple[int, dict[str, Any]]]:
        rows = self.conn.execute("SELECT id, body FROM events WHERE alerted = 0 ORDER BY id")
        return [(i, json.loads(body)) for i, body in rows]

    def events_of_run(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT body FROM events WHERE run_id = ? ORDER BY id", (run_id,))
        return [json.loads(body) for (body,) in rows]

    # -- writing ----------------------------------------------------------------------------------
    def delivered(self) -> set[tuple[str, int]]:
        """(channel, event id) of the pending events' deliveries already made."""
        rows = self.conn.execute(
            "SELECT d.channel, d.event_id FROM deliveries AS d JOIN events AS e "
            "ON e.id = d.event_id WHERE e.alerted = 0"
        )
        return {(channel, int(i)) for channel, i in rows}

    def record_deliveries(
        self, done: Iterable[tuple[str, int]], channels: Sequence[str], pending: Iterable[int]
    ) -> None:
        """Remember each channel's deliveries; an event every channel has had is alerted."""
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR IGNORE INTO deliveries (event_id, channel) VALUES (?, ?)",
                [(i, c) for c, i in done],
            )
            have = self.delivered()
            finished = [(i,) for i in pending if all((c, i) in have for c in channels)]
            self.conn.executemany("UPDATE events SET alerted = 1 WHERE id = ?", finished)
            self.conn.executemany("DELETE FROM deliveries WHERE event_id = ?", finished)

    def record_run(
        self,
        started: float,
        finished: float,
        hosts: int,
        seen: Sequence[Observation],
        change: Diff,
        flags: dict[str, set[str]],
        reminders: Sequence[Event] = (),
        db_seconds: float = 0.0,
    ) -> int:
        """Write one run (results, known state, listings, events, flags) in one transaction."""
        unknown = sum(1 for o in seen if o.status == "unknown")
        events = [*change.events, *reminders]
        with transaction(self.conn):
            run_id = self._insert_run(started, finished, hosts, len(seen), unknown, len(events))
            ids = self._key_ids(o[:4] for o in seen)
            key_ids = array.array("I", [ids[o[:4]] for o in seen])
            statuses = bytes([STATUS_CODES[o.status] for o in seen])
            codes = {ids[o[:4]]: o.codes for o in seen if o.codes}
            self.conn.execute(
                "INSERT INTO results (run_id, key_ids, statuses, codes) VALUES (?, ?, ?, ?)",
                (run_id, key_ids.tobytes(), statuses, json.dumps(codes)),
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO known (key_id, status, listed, codes, summary, since) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (ids[k], v.status, int(v.listed), v.codes, v.summary, v.since)
                    for k, v in change.known.items()
                ],
            )
            self._update_listings(seen, events, finished)
            self.conn.executemany(
                "INSERT INTO events (run_id, time, kind, host, body) VALUES (?, ?, ?, ?, ?)",
                [(run_id, e.time, e.kind, e.host, json.dumps(e.to_json())) for e in events],
            )
            self._set_flags(flags, finished)
            self.conn.execute("UPDATE runs SET db_seconds = ? WHERE id = ?", (db_seconds, run_id))
        self._keys = ids  # committed: the new keys' ids are real now
        return run_id

    def set_db_seconds(self, run_id: int, seconds: float, cpu_seconds: float) -> None:
        """The time the run spent comparing and in the database (wall clock, and CPU)."""
        self.conn.execute(
            "UPDATE runs SET db_seconds = ?, db_cpu_seconds = ? WHERE id = ?",
            (seconds, cpu_seconds, run_id),
        )

    def _insert_run(
        self, started: float, finished: float, hosts: int, results: int, unknown: int, events: int
    ) -> int:
        cursor = self.conn.execute(
            "INSERT INTO runs (started, finished, hosts, results, unknown, events) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (started, finished, hosts, results, unknown, events),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _key_ids(self, keys: Iterable[Key]) -> dict[Key, int]:
        """Ids of ``keys``, new ones inserted (the cache is refreshed after the commit)."""
        ids = dict(self.keys())
        for key in dict.fromkeys(keys):
            if key not in ids:
                cursor = self.conn.execute(
                    "INSERT INTO keys (host, check_name, subject, zone) VALUES (?, ?, ?, ?)", key
                )
                assert cursor.lastrowid is not None
                ids[key] = cursor.lastrowid
        return ids

    def _update_listings(
        self, seen: Sequence[Observation], events: Sequence[Event], now: float
    ) -> None:
        new = {(e.host, e.subject, e.zone) for e in events if e.kind == "listed"}
        by_key = {(o.host, o.subject, o.zone): o for o in seen if o.check == "dnsbl"}
        self.conn.executemany(
            "INSERT INTO listings (host, subject, zone, list_name, codes, first_seen, last_seen, "
            "cleared, last_alert) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            [
                (
                    h,
                    s,
                    z,
                    by_key[(h, s, z)].list_name,
                    by_key[(h, s, z)].codes,
                    now,
                    now,
                    now,
                )
                for h, s, z in sorted(new)
            ],
        )
        self.conn.executemany(
            "UPDATE listings SET last_seen = ?, codes = ? "
            "WHERE host = ? AND subject = ? AND zone = ? AND cleared IS NULL",
            [
                (now, o.codes, o.host, o.subject, o.zone)
                for k, o in by_key.items()
                if o.listed and k not in new
            ],
        )
        self.conn.executemany(
            "UPDATE listings SET cleared = ? "
            "WHERE host = ? AND subject = ? AND zone = ? AND cleared IS NULL",
            [(now, e.host, e.subject, e.zone) for e in events if e.kind == "delisted"],
        )
        self.conn.executemany(
            "UPDATE listings SET last_alert = ? "
            "WHERE host = ? AND subject = ? AND zone = ? AND cleared IS NULL",
            [(now, e.host, e.subject, e.zone) for e in events if e.kind == "still_listed"],
        )

    def _set_flags(self, flags: dict[str, set[str]], now: float) -> None:
        for kind, names in flags.items():
            old = self.flags(kind)
            self.conn.executemany(
                "DELETE FROM flags WHERE kind = ? AND name = ?", [(kind, n) for n in old - names]
            )
            self.conn.executemany(
                "INSERT INTO flags (kind, name, since) VALUES (?, ?, ?)",
                [(kind, n, now) for n in sorted(names - old)],
            )

    def prune(self, cutoff: float) -> int:
        """Forget runs, results, events and ended listings older than ``cutoff``."""
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT max(id) FROM runs WHERE started < ?", (cutoff,)
            ).fetchone()
            if row[0] is None:
                return 0
            last = int(row[0])
            self.conn.execute("DELETE FROM results WHERE run_id <= ?", (last,))
            gone = self.conn.execute("DELETE FROM runs WHERE id <= ?", (last,)).rowcount
            self.conn.execute("DELETE FROM events WHERE time < ? AND alerted = 1", (cutoff,))
            self.conn.execute(
                "DELETE FROM listings WHERE cleared IS NOT NULL AND cleared < ?", (cutoff,)
            )
        return int(gone)


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _listing_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*row[:4], _codes(row[4]), *row[5:])
