"""Keeping reports: from files and directories, or from mails (what IMAP fetch hands over).

Each input is judged alone: a malformed report, a bad archive or an unreadable file becomes
a problem naming it, and the rest goes on. New reports are committed in batches; a report
already kept (same org and report id) is counted as a duplicate and not stored again.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailmend.dmarc.archive import DEFAULT_LIMITS, ArchiveError, Limits, kind_of, unpack
from mailmend.dmarc.db import store_report
from mailmend.dmarc.mail import is_mail, read_mail
from mailmend.dmarc.report import Report, ReportError, parse_report

BATCH = 500  # reports per transaction


@dataclass
class IngestResult:
    inputs: int = 0  # files or messages read
    new: int = 0  # reports kept now
    duplicates: int = 0  # reports kept before
    records: int = 0  # records of the new reports
    problems: list[str] = field(default_factory=list)  # "where: what is wrong"

    def summary(self) -> str:
        return (
            f"{self.new} new report(s) ({self.records} records), {self.duplicates} already "
            f"kept, {len(self.problems)} refused, from {self.inputs} input(s)"
        )


class Ingester:
    """Feeds payloads (a report, an archive or a whole mail) into the database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        limits: Limits = DEFAULT_LIMITS,
        progress: Callable[[IngestResult], None] | None = None,
    ) -> None:
        self.conn = conn
        self.limits = limits
        self.result = IngestResult()
        self.progress = progress
        self._pending = 0

    def add(self, data: bytes, origin: str) -> None:
        """One input: a bare report (XML, zip, gzip) or a report mail."""
        self.result.inputs += 1
        if kind_of(data) == "other" and is_mail(data):
            mail = read_mail(data)
            if not mail.attachments:
                self.problem(origin, "no report attached (zip, gzip or XML)")
            for attachment in mail.attachments:
                self._archive(attachment.data, f"{origin}, attachment {attachment.name}")
        else:
            self._archive(data, origin)
        if self.progress is not None:
            self.progress(self.result)

    def problem(self, origin: str, message: object) -> None:
        self.result.problems.append(f"{origin}: {message}")

    def _archive(self, data: bytes, origin: str) -> None:
        try:
            for member, xml in unpack(data, self.limits):
                where = f"{origin}, {member}" if member else origin
                try:
                    report = parse_report(xml)
                except ReportError as err:
                    self.problem(where, err)
                    continue
                self._store(report, where)
        except ArchiveError as err:
            self.problem(origin, err)

    def _store(self, report: Report, origin: str) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
        if store_report(self.conn, report, origin, int(time.time())):
            self.result.new += 1
            self.result.records += len(report.records)
            self._pending += 1
            if self._pending >= BATCH:
                self.commit()
        else:
            self.result.duplicates += 1

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self._pending = 0


def walk(paths: list[Path]) -> Iterator[Path]:
    """The files named, and every file below the directories named (sorted, no symlinked
    directories followed)."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def unreadable(path: Path) -> str | None:
    """Why a path named on the command line cannot be read (None if it can)."""
    if not path.exists():
        return f"{path}: no such file or directory"
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"{path}: permission denied"
    if not (path.is_dir() or path.is_file()):
        return f"{path}: not a file or a directory"
    return None


def import_paths(ingester: Ingester, paths: list[Path]) -> IngestResult:
    """Import every file below ``paths``; unreadable or oversized files become problems."""
    for path in walk(paths):
        try:
            info = path.stat()
            size = info.st_size
            if not stat.S_ISREG(info.st_mode):
                ingester.result.inputs += 1
                ingester.problem(str(path), "not a regular file: skipped")
                continue
            if size > ingester.limits.max_input:
                ingester.result.inputs += 1
                ingester.problem(
                    str(path),
                    f"{size} bytes: larger than the {ingester.limits.max_input}-byte limit",
                )
                continue
            data = path.read_bytes()
        except OSError as err:
            ingester.result.inputs += 1
            ingester.problem(str(path), f"cannot read: {err.strerror}")
            continue
        ingester.add(data, str(path))
    ingester.commit()
    return ingester.result
