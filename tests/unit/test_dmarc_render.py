"""``dmarc sources`` output and the DMARC sections of the fleet report: hostile data escaped."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from unittest.mock import patch

import pytest

from mailmend.checks.report_html import render_html as render_check_html
from mailmend.dmarc.cli import UsageError, check_db
from mailmend.dmarc.db import DomainReports, SourceStats, open_dmarc_db, open_dmarc_db_if_present
from mailmend.dmarc.render import (
    DomainView,
    printable,
    render_html,
    render_json,
    render_sections,
    render_table,
)
from mailmend.dmarc.sources import Classification, Source, SourceClass
from mailmend.dmarc.stage import StageRule, decide
from mailmend.store import open_db

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
EVIL_ORG = "<script>alert(1)</script>\x1b[2J"
EVIL_PTR = "x.test\x1b]0;owned\x07<b>"


def view() -> DomainView:
    d = "alpha.example"
    stats = [
        SourceStats(d, "192.0.2.11", 100, 99, 99, 98, 99, 98, {"none": 100}, ("google.com",)),
        SourceStats(d, "203.0.113.66", 40, 0, 0, 0, 0, 0, {"none": 40}, (EVIL_ORG,)),
    ]
    sources = (
        Source(stats[0], Classification(SourceClass.FLEET, "mx1")),
        Source(stats[1], Classification(SourceClass.UNKNOWN, EVIL_PTR)),
    )
    reports = DomainReports("alpha.example", 9, ("google.com", EVIL_ORG), ("none",), 0)
    decision = decide("alpha.example", "none", None, reports, sources, StageRule(), 10**9)
    return DomainView("alpha.example", reports, sources, decision)


def test_printable_escapes_controls() -> None:
    assert printable("a\x1b[2Jb\nc") == "a\\027[2Jb\\010c"
    assert printable("x" * 10, 8) == "xxxxx..."


def test_table() -> None:
    text = render_table([view()], SINCE)
    assert "\x1b" not in text and "\x07" not in text
    lines = text.splitlines()
    assert lines[0] == (
        "alpha.example: 140 message(s) from 2 source(s), 70.7% aligned; 9 report(s) from 2 "
        "organisation(s) since 2026-11-01 00:00 UTC"
    )
    assert lines[2].split() == [
        "192.0.2.11", "fleet", "mx1", "100", "99.0%", "99/99", "98/98", "100/0/0", "google.com"
    ]  # fmt: skip
    assert "x.test\\027]0;owned\\007<b>" in lines[3]
    assert "  stage: stays at p=none" in text
    assert "203.0.113.66 (unknown x.test\\027]0;owned\\007<b>): 40 message(s)" in text
    assert render_table([], SINCE) == "no reports since 2026-11-01 00:00 UTC\n"


def test_json() -> None:
    data = json.loads(render_json([view()], SINCE))
    assert data["version"] == 1 and data["since"] == "2026-11-01T00:00:00+00:00"
    (domain,) = data["domains"]
    assert domain["sources"][1]["orgs"] == [EVIL_ORG]  # JSON keeps the data as it came
    assert domain["stage"]["moves"] is False


def test_html_escapes_everything() -> None:
    page = render_html([view()], SINCE)
    assert "<script>" not in page and EVIL_PTR not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Stage: stays at p=none" in page
    check_page = render_check_html([], extra_html=render_sections([view()]))
    assert '<h2 id="dmarc">DMARC: who sends as each domain</h2>' in check_page
    assert "<script>" not in check_page
    assert "DMARC alpha.example" in check_page


def test_sections_only_from_a_database_with_reports(tmp_path: Path) -> None:
    other = tmp_path / "watch.db"
    open_db(other, "watch", ["CREATE TABLE w (x INTEGER)"]).close()
    before = other.read_bytes()
    assert open_dmarc_db_if_present(other) is None
    assert other.read_bytes() == before  # no dmarc tables made in someone else's database
    assert open_dmarc_db_if_present(tmp_path / "missing.db") is None
    assert not (tmp_path / "missing.db").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    assert open_dmarc_db_if_present(text) is None
    assert text.read_text() == "not a database\n"
    mine = tmp_path / "dmarc.db"
    open_dmarc_db(mine).close()
    conn = open_dmarc_db_if_present(mine)
    assert conn is not None
    conn.close()
    args = argparse.Namespace(dmarc_db=None, nameserver=[])
    with patch.dict(os.environ, {"XDG_STATE_HOME": str(tmp_path / "state")}):
        assert check_db(args) is None  # nothing imported: no section, no file made
    assert not (tmp_path / "state").exists()
    for path in (other, text, tmp_path / "missing.db"):
        with pytest.raises(UsageError, match="no DMARC reports in"):
            check_db(argparse.Namespace(dmarc_db=str(path), nameserver=[]))
