"""fetch_reports' bookkeeping with a scripted IMAP server (the real one: tests/e2e/test_dmarc.py):
new messages only, oversized ones named and skipped, refused ones left in place, COPY+EXPUNGE
where the server has no MOVE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailmend.dmarc.archive import Limits
from mailmend.dmarc.db import open_dmarc_db, totals
from mailmend.dmarc.fetch import fetch_reports
from mailmend.dmarc.ingest import Ingester
from tests.dmarc_reports import BOMB, Row, gzipped, report_mail, report_xml


class ScriptedImap:
    """The IMAPClient calls fetch_reports makes, answered from a dict of UID -> message."""

    def __init__(self, messages: dict[int, bytes], move: bool) -> None:
        self.messages = messages
        self.capabilities = {b"MOVE"} if move else set()
        self.folders = {"INBOX"}
        self.log: list[tuple[str, Any]] = []

    def select_folder(self, folder: str) -> dict[bytes, Any]:
        return {b"UIDVALIDITY": 7, b"EXISTS": len(self.messages)}

    def search(self, criteria: list[str]) -> list[int]:
        return sorted(self.messages)

    def fetch(self, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]]:
        self.log.append(("fetch", (tuple(uids), tuple(items))))
        if items == ["RFC822.SIZE"]:
            return {u: {b"RFC822.SIZE": len(self.messages[u])} for u in uids}
        return {u: {b"BODY[]": self.messages[u]} for u in uids}

    def folder_exists(self, folder: str) -> bool:
        return folder in self.folders

    def create_folder(self, folder: str) -> None:
        self.folders.add(folder)

    def has_capability(self, name: str) -> bool:
        return name.encode() in self.capabilities

    def move(self, uids: list[int], folder: str) -> None:
        self.log.append(("move", (tuple(uids), folder)))

    def copy(self, uids: list[int], folder: str) -> None:
        self.log.append(("copy", (tuple(uids), folder)))

    def delete_messages(self, uids: list[int]) -> None:
        self.log.append(("delete", tuple(uids)))

    def expunge(self, uids: list[int]) -> None:
        self.log.append(("expunge", tuple(uids)))


def mail(rid: str, payload: bytes | None = None) -> bytes:
    xml = report_xml("Yahoo", rid, "alpha.example", [Row("192.0.2.11", 3)])
    return report_mail(
        payload or gzipped(xml), f"{rid}.xml.gz", org="Yahoo", domain="alpha.example",
        report_id=rid,
    )  # fmt: skip


def test_fetch_bookkeeping(tmp_path: Path) -> None:
    conn = open_dmarc_db(tmp_path / "db")
    messages = {1: mail("a"), 2: mail("b"), 3: mail("bomb", BOMB), 4: mail("a"), 9: b"x" * 70_000}
    server = ScriptedImap(messages, move=False)
    ingester = Ingester(conn, Limits(max_input=1000))
    moved = fetch_reports(server, "INBOX", "box", ingester, move_to="Done")
    assert moved == [1, 2, 4]  # the refused (3) and the oversized (9) stay
    result = ingester.result
    assert (result.new, result.duplicates, len(result.problems)) == (2, 1, 2)
    oversized, refused = result.problems  # sizes are judged before any body is fetched
    assert oversized == "message UID 9: 70000 bytes: larger than 66869"
    assert refused.startswith("message UID 3 ('Report Domain: alpha.example Submitter: Yahoo")
    assert refused.endswith("XML entity declaration 'a' refused (entity expansion)")
    assert ("fetch", ((1, 2, 3, 4), ("BODY.PEEK[]",))) in server.log  # 9 never downloaded
    assert server.log[-3:] == [
        ("copy", ((1, 2, 4), "Done")),
        ("delete", (1, 2, 4)),
        ("expunge", (1, 2, 4)),
    ]
    assert "Done" in server.folders
    assert totals(conn) == (2, 2)
    # the next fetch asks for nothing it has seen, and moves nothing
    again = ScriptedImap(messages, move=True)
    second = Ingester(conn)
    assert fetch_reports(again, "INBOX", "box", second, move_to="Done") == []
    assert second.result.inputs == 0
    assert [entry for entry in again.log if entry[0] == "fetch"] == []
