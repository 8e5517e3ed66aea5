"""Reading aggregate reports safely: archives, XML, mails, and keeping each report once."""

from __future__ import annotations

import gzip
import io
import os
import sqlite3
import struct
import zipfile
from pathlib import Path

import pytest

from mailmend.dmarc.archive import ArchiveError, Limits, unpack
from mailmend.dmarc.db import open_dmarc_db, source_stats, totals
from mailmend.dmarc.ingest import Ingester, import_paths
from mailmend.dmarc.mail import read_mail
from mailmend.dmarc.report import ReportError, parse_report
from tests.dmarc_reports import (
    BOMB,
    EXTERNAL_ENTITY,
    Row,
    file_name,
    gzipped,
    report_mail,
    report_xml,
    zipped,
)

GOOD_ROWS = [
    Row("192.0.2.11", 120),
    Row("198.51.100.7", 3, dkim="fail", spf="fail", disposition="none"),
]


def db(tmp_path: Path) -> sqlite3.Connection:
    return open_dmarc_db(tmp_path / "state" / "watch.db")


# --- the XML -------------------------------------------------------------------------------


def test_parse_appendix_c_report() -> None:
    xml = report_xml("google.com", "r-1", "alpha.example", GOOD_ROWS, p="none", pct=100)
    report = parse_report(xml)
    assert (report.org_name, report.report_id, report.policy.domain) == (
        "google.com",
        "r-1",
        "alpha.example",
    )
    assert (report.policy.p, report.policy.pct) == ("none", 100)
    assert report.end - report.begin == 86_399
    first, second = report.records
    assert (first.source_ip, first.count, first.aligned, first.dkim_result) == (
        "192.0.2.11",
        120,
        True,
        "pass",
    )
    assert (second.aligned, second.spf_result, second.disposition) == (False, "fail", "none")
    assert report.messages == 123


def test_parse_namespaced_report() -> None:
    xml = report_xml("x", "r", "alpha.example", GOOD_ROWS).replace(
        b"<feedback>", b'<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">'
    )
    assert len(parse_report(xml).records) == 2


def test_ipv4_mapped_source_becomes_ipv4() -> None:
    xml = report_xml("x", "r", "alpha.example", [Row("::ffff:192.0.2.9")])
    assert parse_report(xml).records[0].source_ip == "192.0.2.9"


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (BOMB, "entity declaration 'a' refused (entity expansion)"),
        (EXTERNAL_ENTITY, "external entity 'secret' refused"),
        (b"<feedback><report_metadata>", "not well-formed XML"),
        (b"<html><body/></html>", "not a DMARC aggregate report (root <html>)"),
        (report_xml("x", "r", "a.example", [Row("not-an-ip")]), "source_ip is not an IP"),
        (report_xml("x", "r", "a.example", [Row("192.0.2.1", disposition="drop")]), "one of"),
        (report_xml("x", "r", "a.example", [Row("192.0.2.1", dkim="maybe")]), "policy_evaluated"),
        (report_xml("x", "r", "a.example", [Row("192.0.2.1", count=-1)]), "count out of range"),
        (report_xml("", "r", "a.example", []), "missing org_name"),
        (report_xml("x", "r", "a.example", [], begin=10, end=5), "ends (5) before it begins"),
    ],
)
def test_bad_report_is_refused_with_a_message(xml: bytes, message: str) -> None:
    with pytest.raises(ReportError) as err:
        parse_report(xml)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


# --- archives --------------------------------------------------------------------------------


def test_unpack_xml_zip_gzip() -> None:
    xml = report_xml("x", "r", "alpha.example", GOOD_ROWS)
    assert list(unpack(xml)) == [("", xml)]
    assert list(unpack(zipped(xml, "a.xml"))) == [("a.xml", xml)]
    assert list(unpack(gzipped(xml))) == [("", xml)]
    assert list(unpack(gzipped(xml[:100]) + gzipped(xml[100:]))) == [("", xml)]  # two members


def test_truncated_archives_are_refused() -> None:
    xml = report_xml("x", "r", "alpha.example", GOOD_ROWS * 50)
    with pytest.raises(ArchiveError, match="truncated or corrupt zip"):
        list(unpack(zipped(xml)[:-40]))
    with pytest.raises(ArchiveError, match="truncated"):
        list(unpack(gzipped(xml)[: len(gzipped(xml)) // 2]))


def test_declared_size_over_the_limit_is_refused_before_unpacking() -> None:
    limits = Limits(max_xml=10_000)
    big = b"<feedback>" + b" " * 50_000 + b"</feedback>"
    with pytest.raises(ArchiveError, match=r"declares 50021 bytes unpacked.*before unpacking"):
        list(unpack(zipped(big), limits))
    with pytest.raises(ArchiveError, match=r"gzip declares 50021 bytes.*before unpacking"):
        list(unpack(gzipped(big), limits))


def _lying_zip(data: bytes, declared: int) -> bytes:
    """A zip whose headers claim ``declared`` bytes unpacked (a bomb in disguise)."""
    raw = bytearray(zipped(data))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.find(signature)
        raw[at + offset : at + offset + 4] = struct.pack("<I", declared)
    return bytes(raw)


def test_archives_that_lie_about_their_size_are_cut_off() -> None:
    limits = Limits(max_xml=10_000)
    big = b"<feedback>" + b" " * 200_000 + b"</feedback>"
    with pytest.raises(ArchiveError):
        list(unpack(_lying_zip(big, 100), limits))
    lying_gzip = gzipped(big)[:-4] + struct.pack("<I", 100)
    with pytest.raises(ArchiveError, match="more than 10000 bytes"):
        list(unpack(lying_gzip, limits))


def test_zip_rules() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "no report here")
    with pytest.raises(ArchiveError, match=r"without an \.xml file"):
        list(unpack(buffer.getvalue()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(9):
            archive.writestr(f"{i}.xml", "<feedback/>")
    with pytest.raises(ArchiveError, match="9 entries"):
        list(unpack(buffer.getvalue()))
    with pytest.raises(ArchiveError, match="neither XML, zip nor gzip"):
        list(unpack(b"\x00\x01binary"))
    with pytest.raises(ArchiveError, match="larger than the 10-byte limit"):
        list(unpack(b"<feedback/>", Limits(max_input=10)))


# --- mails -----------------------------------------------------------------------------------


def test_report_mail_attachments() -> None:
    xml = report_xml("Yahoo", "y-1", "alpha.example", GOOD_ROWS)
    for payload, name in ((zipped(xml), "r.zip"), (gzipped(xml), "r.xml.gz"), (xml, "r.xml")):
        mail = read_mail(
            report_mail(payload, name, org="Yahoo", domain="alpha.example", report_id="y-1")
        )
        assert [(a.name, a.data) for a in mail.attachments] == [(name, payload)]
        assert "Report-ID: <y-1>" in mail.subject


# --- keeping reports -------------------------------------------------------------------------


def _write_inputs(directory: Path) -> dict[str, int]:
    """Several orgs as xml, zip, gz and mail; one report twice; a truncated zip, a bomb and
    an external entity. Returns the good reports' message counts by (org, id)."""
    directory.mkdir()
    good: dict[str, int] = {}

    def report(org: str, rid: str, rows: list[Row]) -> bytes:
        good[f"{org}/{rid}"] = sum(r.count for r in rows)
        return report_xml(org, rid, "alpha.example", rows)

    g = report("google.com", "g-1", [Row("192.0.2.11", 100), Row("203.0.113.9", 4, dkim="fail")])
    (directory / file_name("google.com", "alpha.example", 1, 2, "g-1", "zip")).write_bytes(
        zipped(g)
    )
    y = report("Yahoo", "y-1", [Row("192.0.2.11", 50)])
    (directory / "yahoo.xml.gz").write_bytes(gzipped(y))
    m = report("Mail.Ru", "m-1", [Row("192.0.2.11", 7), Row("198.51.100.7", 2, spf="fail")])
    (directory / "mailru.xml").write_bytes(m)
    o = report("Outlook.com", "o-1", [Row("192.0.2.11", 30)])
    (directory / "outlook.eml").write_bytes(
        report_mail(gzipped(o), "o.xml.gz", org="Outlook.com", domain="alpha.example",
                    report_id="o-1")
    )  # fmt: skip
    (directory / "sub").mkdir()
    (directory / "sub" / "google-again.xml.gz").write_bytes(gzipped(g))  # the same report twice
    (directory / "sub" / "truncated.zip").write_bytes(zipped(g.replace(b"g-1", b"g-2"))[:-30])
    (directory / "sub" / "bomb.xml").write_bytes(BOMB)
    (directory / "sub" / "xxe.xml.gz").write_bytes(gzipped(EXTERNAL_ENTITY))
    return good


def test_import_counts_each_report_once_and_refuses_the_bad_ones(tmp_path: Path) -> None:
    good = _write_inputs(tmp_path / "reports")
    conn = db(tmp_path)
    result = import_paths(Ingester(conn), [tmp_path / "reports"])
    assert (result.inputs, result.new, result.duplicates) == (8, 4, 1)
    assert result.records == 6
    problems = sorted(result.problems)
    assert len(problems) == 3
    assert "bomb.xml: XML entity declaration 'a' refused (entity expansion)" in problems[0]
    assert "truncated.zip: truncated or corrupt zip archive" in problems[1]
    assert "xxe.xml.gz: XML external entity 'secret' refused" in problems[2]
    assert totals(conn) == (4, 6)
    stats = {s.ip: s for s in source_stats(conn, since=0)}
    assert stats["192.0.2.11"].messages == 100 + 50 + 7 + 30
    assert stats["192.0.2.11"].orgs == ("Mail.Ru", "Outlook.com", "Yahoo", "google.com")
    assert sum(s.messages for s in stats.values()) == sum(good.values())
    # a second import adds nothing
    again = import_paths(Ingester(conn), [tmp_path / "reports"])
    assert (again.new, again.duplicates, len(again.problems)) == (0, 5, 3)
    assert totals(conn) == (4, 6)


def test_a_file_that_cannot_be_read_is_a_problem_not_a_stop(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.xml").write_bytes(report_xml("x", "1", "alpha.example", GOOD_ROWS))
    (tmp_path / "in" / "b.xml.gz").write_bytes(gzip.compress(os.urandom(3000)))
    (tmp_path / "in" / "c.xml").symlink_to(tmp_path / "gone.xml")
    os.mkfifo(tmp_path / "in" / "d.xml")  # reading it would wait forever
    ingester = Ingester(db(tmp_path), Limits(max_input=2000))
    result = import_paths(ingester, [tmp_path / "in"])
    assert (result.inputs, result.new) == (4, 1)
    assert result.problems[0].endswith("b.xml.gz: 3023 bytes: larger than the 2000-byte limit")
    assert result.problems[1].endswith("c.xml: cannot read: No such file or directory")
    assert result.problems[2].endswith("d.xml: not a regular file: skipped")
    assert len(result.problems) == 3


def test_the_database_is_shared_and_versioned(tmp_path: Path) -> None:
    conn = db(tmp_path)
    conn.close()
    conn = db(tmp_path)  # reopening applies nothing twice
    version = conn.execute("SELECT version FROM schema_version WHERE component = 'dmarc'")
    assert version.fetchone()[0] == 1
