"""Text read from outside never reaches the terminal raw (issue 15 item 11): the check table
and the queue table show control characters as ``\\DDD``."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailmend.checks.escape import visible
from mailmend.checks.report_table import render_table
from mailmend.checks.result import CheckResult, Status
from mailmend.cli import queue as queue_cli
from tests.unit.test_queue import FakeSsh, cli, entry
from tests.unit.test_reports import host

HOSTILE = "ok\x1b]0;owned\x07\nFAIL  mx9  spf: forged\r\u202e"


def _raw_controls(text: str) -> set[str]:
    return {ch for ch in text if ch in "\x1b\x07\r\u202e"}


def test_visible_escapes_controls_and_backslash() -> None:
    assert visible("a\x1bb\\c") == "a\\027b\\\\c"
    assert visible("plain text: 192.0.2.1") == "plain text: 192.0.2.1"


def test_check_table_escapes_dns_text_in_subject_summary_and_fix() -> None:
    result = CheckResult("ptr", Status.FAIL, HOSTILE, HOSTILE, (), f"set it\n{HOSTILE}", {})
    table = render_table([host("mx1", result)])
    assert not _raw_controls(table)
    # the problem line and the host line start with FAIL; the data's "FAIL  mx9" starts none
    starts = [line.split()[:2] for line in table.splitlines() if line.startswith("FAIL")]
    assert starts == [["FAIL", "mx1"], ["FAIL", "mx1"]]
    assert "ok\\027]0;owned\\007\\010FAIL  mx9" in table


def test_queue_table_escapes_senders_and_delay_reasons(tmp_path: Path) -> None:
    lines = [entry("4F2A21C0B3", HOSTILE, [("a@example.org", HOSTILE)]), ""]
    ssh = FakeSsh({"127.0.0.11": lines, "127.0.0.12": []})
    out = io.StringIO()
    queue_cli.run(cli(tmp_path), runner=ssh, out=out)
    text = out.getvalue()
    assert not _raw_controls(text)
    assert "deferred (1): ok\\027]0;owned\\007" in text


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)) | st.text())
def test_the_ascii_fast_path_agrees_with_the_rule(text: str) -> None:
    """visible() answers printable ASCII at once; the result is what the per-character rule
    (controls, format and separator characters other than space, and ``\\``) gives."""
    expected = "".join(
        "\\\\" if ch == "\\"
        else "".join(f"\\{b:03d}" for b in ch.encode("utf-8", "surrogatepass"))
        if ch != " " and unicodedata.category(ch)[0] in "CZ"
        else ch
        for ch in text
    )  # fmt: skip
    assert visible(text) == expected
