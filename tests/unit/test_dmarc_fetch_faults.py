"""``mailmend dmarc fetch`` when the IMAP server logs in and then stops answering: the command
ends by its ``--deadline``, says so in one line (exit 1, no traceback), keeps what it read,
and a rerun once the server answers again keeps every report exactly once.

The server is a local IMAPS stand-in (tests/imap_standin.py); the command runs as an admin
runs it (the installed ``mailmend``), under a bounded ``subprocess`` timeout.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from mailmend.dmarc.db import open_dmarc_db, totals
from tests.conftest import CLI_ENV, MAILMEND
from tests.dmarc_reports import Row, gzipped, report_mail, report_xml
from tests.imap_standin import PASSWORD, USER, ImapStandIn

DEADLINE = 3.0
SLACK = 1.5  # the process's start and exit, on a loaded 2-core machine


def mail(n: int) -> bytes:
    rid = f"r-{n}"
    xml = report_xml("Yahoo", rid, "alpha.example", [Row("192.0.2.11", 3)])
    return report_mail(
        gzipped(xml), f"{rid}.xml.gz", org="Yahoo", domain="alpha.example", report_id=rid
    )


def fetch(
    server: ImapStandIn, tmp_path: Path, *extra: str, bound: float = 40
) -> tuple[subprocess.CompletedProcess[str], float]:
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD)
    argv = [
        str(MAILMEND), "dmarc", "fetch", "--imap", server.address, "--imap-user", USER,
        "--imap-password", f"file:{secret}", "--cafile", str(server.cafile),
        "--db", str(tmp_path / "reports.db"), *extra,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=bound, env=CLI_ENV, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("verb", ["SELECT", "SEARCH", "FETCH"])
def test_a_server_that_stops_answering_ends_by_the_deadline(tmp_path: Path, verb: str) -> None:
    with ImapStandIn(tmp_path, {1: mail(1), 2: mail(2)}, stall={verb: 0}) as server:
        done, took = fetch(server, tmp_path, "--deadline", f"{DEADLINE:g}")
        assert server.stalled.is_set()  # it did stall where asked
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"mailmend dmarc: IMAP server {server.address}: no answer "), line
    assert f"within the {DEADLINE:g} s deadline" in line, line
    assert "run it again" in line, line
    assert took < DEADLINE + SLACK, took


def test_the_timeout_bounds_each_wait_within_the_deadline(tmp_path: Path) -> None:
    with ImapStandIn(tmp_path, {1: mail(1)}, stall={"SEARCH": 0}) as server:
        done, took = fetch(server, tmp_path, "--timeout", "1", "--deadline", "20")
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert "no answer to search within 1 s (--timeout)" in line, line
    assert took < 1 + SLACK, took


def test_a_server_sending_a_byte_now_and_then_cannot_stretch_the_deadline(
    tmp_path: Path,
) -> None:
    with ImapStandIn(tmp_path, {1: mail(1)}, stall={"SEARCH": 0}, trickle=True) as server:
        done, took = fetch(server, tmp_path, "--timeout", "1", "--deadline", f"{DEADLINE:g}")
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"no answer to search within the {DEADLINE:g} s deadline (--deadline)" in line, line
    assert took < DEADLINE + SLACK, took


def test_rerun_after_the_server_is_fixed_keeps_each_report_once(tmp_path: Path) -> None:
    """120 reports, 50 a batch: the server stalls on the second batch's FETCH; what the first
    run kept stays, the rerun reads the rest, nothing is kept twice or lost."""
    messages = {n: mail(n) for n in range(1, 121)}
    with ImapStandIn(tmp_path, messages, stall={"FETCH": 2}) as server:
        first, took = fetch(server, tmp_path, "--move-to", "Processed", "--deadline", "3")
        assert first.returncode == 1, first.stderr
        assert took < DEADLINE + SLACK, took
        (line,) = first.stderr.splitlines()
        assert "what was read is kept: 50 new report(s)" in line, line
        assert len(server.folders["Processed"]) == 50  # the first batch, moved
        server.fix()
        second, _ = fetch(server, tmp_path, "--move-to", "Processed")
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("70 new report(s) (70 records), 0 already kept"), (
            second.stdout
        )
        assert server.folders["INBOX"] == {}
        assert sorted(server.folders["Processed"].values()) == sorted(messages.values())
    conn = open_dmarc_db(tmp_path / "reports.db")
    try:
        assert totals(conn) == (120, 120)
    finally:
        conn.close()


def test_ctrl_c_while_the_server_stalls_ends_at_once(tmp_path: Path) -> None:
    """Ctrl-C hangs up: no goodbye (LOGOUT) is waited for on a connection that hangs."""
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD)
    with ImapStandIn(tmp_path, {1: mail(1)}, stall={"SEARCH": 0}) as server:
        argv = [
            str(MAILMEND), "dmarc", "fetch", "--imap", server.address, "--imap-user", USER,
            "--imap-password", f"file:{secret}", "--cafile", str(server.cafile),
            "--db", str(tmp_path / "reports.db"), "--timeout", "30",
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV
        )
        try:
            assert server.stalled.wait(15)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            _out, err = proc.communicate(timeout=40)
        finally:
            proc.kill()
            proc.wait()
        took = time.monotonic() - started
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines() == [
        "mailmend dmarc: interrupted (Ctrl-C): stopped before the end; run it again"
    ]
    assert took < SLACK, took
