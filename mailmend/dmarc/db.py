"""The ``dmarc`` tables of the shared database (``mailmend.store``), and the queries on them.

A report is kept once per (org_name, report_id); its records keep what the report said
per source: the count, the disposition, the aligned results (``policy_evaluated``) and the
raw ones (``auth_results``). ``dmarc_daily`` sums them per (domain, UTC day the report's
period ends, published policy, source IP) as reports arrive, with the reporting
organisations as a JSON list: ``sources`` reads that, not a million records. IMAP messages
already read are remembered per mailbox and UIDVALIDITY, so a second fetch does not download
them again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailmend.dmarc.report import Report
from mailmend.store import open_db, open_existing_db

COMPONENT = "dmarc"
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE dmarc_reports (
        id INTEGER PRIMARY KEY,
        org_name TEXT NOT NULL,
        report_id TEXT NOT NULL,
        email TEXT,
        domain TEXT NOT NULL,
        date_begin INTEGER NOT NULL,
        date_end INTEGER NOT NULL,
        policy_p TEXT NOT NULL,
        policy_sp TEXT,
        policy_pct INTEGER,
        adkim TEXT,
        aspf TEXT,
        origin TEXT NOT NULL,
        imported_at INTEGER NOT NULL,
        UNIQUE (org_name, report_id)
    );
    CREATE INDEX dmarc_reports_domain_end ON dmarc_reports (domain, date_end);
    CREATE INDEX dmarc_reports_end ON dmarc_reports (date_end);
    CREATE TABLE dmarc_records (
        report INTEGER NOT NULL REFERENCES dmarc_reports (id) ON DELETE CASCADE,
        source_ip TEXT NOT NULL,
        count INTEGER NOT NULL,
        disposition TEXT NOT NULL,
        dkim_aligned INTEGER NOT NULL,
        spf_aligned INTEGER NOT NULL,
        header_from TEXT NOT NULL,
        envelope_from TEXT,
        dkim_domain TEXT,
        dkim_selector TEXT,
        dkim_result TEXT NOT NULL,
        spf_domain TEXT,
        spf_result TEXT NOT NULL
    );
    CREATE INDEX dmarc_records_report ON dmarc_records (report);
    CREATE TABLE dmarc_daily (
        domain TEXT NOT NULL,
        day INTEGER NOT NULL,
        policy_p TEXT NOT NULL,
        policy_pct INTEGER NOT NULL,
        source_ip TEXT NOT NULL,
        messages INTEGER NOT NULL,
        aligned INTEGER NOT NULL,
        dkim_aligned INTEGER NOT NULL,
        spf_aligned INTEGER NOT NULL,
        dkim_pass INTEGER NOT NULL,
        spf_pass INTEGER NOT NULL,
        d_none INTEGER NOT NULL,
        d_quarantine INTEGER NOT NULL,
        d_reject INTEGER NOT NULL,
        orgs TEXT NOT NULL,
        PRIMARY KEY (domain, day, policy_p, policy_pct, source_ip)
    ) WITHOUT ROWID;
    CREATE TABLE dmarc_mail_seen (
        mailbox TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        PRIMARY KEY (mailbox, uidvalidity, uid)
    ) WITHOUT ROWID
    """,
)


def open_dmarc_db(path: Path) -> sqlite3.Connection:
    """The shared database with the dmarc tables in place; raises ``StoreError``."""
    return open_db(path, COMPONENT, MIGRATIONS)


def open_dmarc_db_if_present(path: Path) -> sqlite3.Connection | None:
    """The one connection to the database at ``path`` if it holds the dmarc tables, else None
    (a report that only shows them never creates them); raises ``StoreError``."""
    return open_existing_db(path, COMPONENT, MIGRATIONS)


def store_report(conn: sqlite3.Connection, report: Report, origin: str, now: int) -> bool:
    """Keep ``report`` unless one with its (org, id) is already kept: True if it was new.

    The caller holds the transaction, so a report is kept whole or not at all.
    """
    policy = report.policy
    cursor = conn.execute(
        "INSERT OR IGNORE INTO dmarc_reports (org_name, report_id, email, domain, date_begin, "
        "date_end, policy_p, policy_sp, policy_pct, adkim, aspf, origin, imported_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            report.org_name, report.report_id, report.email, policy.domain, report.begin,
            report.end, policy.p, policy.sp, policy.pct, policy.adkim, policy.aspf, origin, now,
        ),
    )  # fmt: skip
    if cursor.rowcount == 0:
        return False
    row_id = cursor.lastrowid
    _add_daily(conn, report)
    conn.executemany(
        "INSERT INTO dmarc_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                row_id, r.source_ip, r.count, r.disposition, int(r.dkim_aligned),
                int(r.spf_aligned), r.header_from, r.envelope_from, r.dkim_domain,
                r.dkim_selector, r.dkim_result, r.spf_domain, r.spf_result,
            )
            for r in report.records
        ),
    )  # fmt: skip
    return True


_DAILY_UPSERT = (
    "INSERT INTO dmarc_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, json_array(?)) "
    "ON CONFLICT (domain, day, policy_p, policy_pct, source_ip) DO UPDATE SET "
    "messages = messages + excluded.messages, aligned = aligned + excluded.aligned, "
    "dkim_aligned = dkim_aligned + excluded.dkim_aligned, "
    "spf_aligned = spf_aligned + excluded.spf_aligned, "
    "dkim_pass = dkim_pass + excluded.dkim_pass, spf_pass = spf_pass + excluded.spf_pass, "
    "d_none = d_none + excluded.d_none, d_quarantine = d_quarantine + excluded.d_quarantine, "
    "d_reject = d_reject + excluded.d_reject, "
    "orgs = CASE WHEN EXISTS (SELECT 1 FROM json_each(dmarc_daily.orgs) "
    "WHERE value = json_extract(excluded.orgs, '$[0]')) THEN dmarc_daily.orgs "
    "ELSE json_insert(dmarc_daily.orgs, '$[#]', json_extract(excluded.orgs, '$[0]')) END"
)
DAY = 86_400


def _add_daily(conn: sqlite3.Connection, report: Report) -> None:
    """Add ``report``'s records to the per-day sums of its domain, policy and sources."""
    sums: dict[str, list[int]] = {}
    for r in report.records:
        row = sums.setdefault(r.source_ip, [0] * 9)
        count = r.count
        row[0] += count
        row[1] += count if r.aligned else 0
        row[2] += count if r.dkim_aligned else 0
        row[3] += count if r.spf_aligned else 0
        row[4] += count if r.dkim_result == "pass" else 0
        row[5] += count if r.spf_result == "pass" else 0
        row[6 + ("none", "quarantine", "reject").index(r.disposition)] += count
    policy = report.policy
    key = (policy.domain, report.end // DAY, policy.p, 100 if policy.pct is None else policy.pct)
    conn.executemany(_DAILY_UPSERT, ((*key, ip, *row, report.org_name) for ip, row in sums.items()))


def seen_uids(conn: sqlite3.Connection, mailbox: str, uidvalidity: int) -> set[int]:
    rows = conn.execute(
        "SELECT uid FROM dmarc_mail_seen WHERE mailbox = ? AND uidvalidity = ?",
        (mailbox, uidvalidity),
    )
    return {int(uid) for (uid,) in rows}


def mark_seen(
    conn: sqlite3.Connection, mailbox: str, uidvalidity: int, uids: Iterable[int]
) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO dmarc_mail_seen VALUES (?, ?, ?)",
        ((mailbox, uidvalidity, uid) for uid in uids),
    )


# --- queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStats:
    """What the reports say about one source IP sending as one domain."""

    domain: str
    ip: str
    messages: int
    aligned: int  # DMARC passed (DKIM or SPF aligned)
    dkim_aligned: int
    spf_aligned: int
    dkim_pass: int  # auth_results, aligned or not
    spf_pass: int
    dispositions: dict[str, int] = field(default_factory=dict)
    orgs: tuple[str, ...] = ()

    @property
    def aligned_pct(self) -> float:
        return 100.0 * self.aligned / self.messages if self.messages else 100.0


@dataclass(frozen=True)
class DomainReports:
    """How many reports (and from which organisations) cover a domain in a window."""

    domain: str
    reports: int
    orgs: tuple[str, ...]
    policies: tuple[str, ...]  # the p= the reports saw published, e.g. ("none",)
    first_begin: int = 0  # the oldest report's period began then


Policy = tuple[str, int | None]  # (p, pct) as published; pct None means 100


def _where(
    time: tuple[str, int], domain: str | None, policy: Policy | None, pct: str
) -> tuple[str, list[object]]:
    """``WHERE`` clauses (fixed texts) and parameters: a time bound, the domain, the policy."""
    clauses: list[str] = [time[0]]
    params: list[object] = [time[1]]
    if domain is not None:
        clauses.append("domain = ?")
        params.append(domain)
    if policy is not None:
        clauses.append(f"policy_p = ? AND {pct} = ?")
        params += [policy[0], 100 if policy[1] is None else policy[1]]
    return " AND ".join(clauses), params


def source_stats(
    conn: sqlite3.Connection, since: int, domain: str | None = None, policy: Policy | None = None
) -> list[SourceStats]:
    """Per (domain, source IP): volume, results, dispositions and reporters, busiest first.

    Only the days (UTC) from the one holding ``since`` count, by the day a report's period
    ends; ``policy`` keeps only the reports made while that (p, pct) was published.
    """
    where, params = _where(("day >= ?", since // DAY), domain, policy, "policy_pct")
    rows = conn.execute(
        "SELECT domain, source_ip, SUM(messages), SUM(aligned), SUM(dkim_aligned), "  # noqa: S608
        "SUM(spf_aligned), SUM(dkim_pass), SUM(spf_pass), SUM(d_none), SUM(d_quarantine), "
        "SUM(d_reject), json_group_array(json(orgs)) "
        f"FROM dmarc_daily WHERE {where} GROUP BY domain, source_ip",
        params,
    )
    out = [
        SourceStats(
            domain=row[0], ip=row[1], messages=row[2], aligned=row[3], dkim_aligned=row[4],
            spf_aligned=row[5], dkim_pass=row[6], spf_pass=row[7],
            dispositions={"none": row[8], "quarantine": row[9], "reject": row[10]},
            orgs=tuple(sorted({org for orgs in json.loads(row[11]) for org in orgs})),
        )
        for row in rows
    ]  # fmt: skip
    out.sort(key=lambda s: (s.domain, -s.messages, s.ip))
    return out


def domain_reports(
    conn: sqlite3.Connection, since: int, domain: str | None = None, policy: Policy | None = None
) -> dict[str, DomainReports]:
    time = ("date_end >= ?", since // DAY * DAY)  # whole days, as dmarc_daily
    where, params = _where(time, domain, policy, "COALESCE(policy_pct, 100)")
    rows = conn.execute(
        "SELECT domain, COUNT(*), json_group_array(DISTINCT org_name), "  # noqa: S608
        "json_group_array(DISTINCT policy_p), MIN(date_begin) "
        f"FROM dmarc_reports WHERE {where} GROUP BY domain",
        params,
    )
    return {
        row[0]: DomainReports(
            row[0],
            row[1],
            tuple(sorted(json.loads(row[2]))),
            tuple(sorted(json.loads(row[3]))),
            row[4],
        )
        for row in rows
    }


def totals(conn: sqlite3.Connection) -> tuple[int, int]:
    """(reports, records) kept."""
    reports = conn.execute("SELECT COUNT(*) FROM dmarc_reports").fetchone()[0]
    records = conn.execute("SELECT COUNT(*) FROM dmarc_records").fetchone()[0]
    return int(reports), int(records)


__all__: Sequence[str] = (
    "MIGRATIONS",
    "DomainReports",
    "SourceStats",
    "domain_reports",
    "mark_seen",
    "open_dmarc_db",
    "seen_uids",
    "source_stats",
    "store_report",
    "totals",
)
