"""mailmend.hygiene.scan: the generated pipeline, run for real with sh -c on temp logs."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mailmend.deploys.facts_hygiene import HardBounces, MailQueue, SuppressionTable
from mailmend.hygiene import scan

HARD = [
    "2026-11-28T12:00:01.000001+00:00 mx1 postfix/smtp[11]: AAAAA00001: to=<a@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 User unknown "
    "(in reply to RCPT TO command))",
    "Nov 27 10:00:00 mx1 postfix/smtp[12]: AAAAA00002: to=<b@example.net>, relay=none, "
    "delay=0.2, delays=0.1/0/0.1/0, dsn=5.4.4, status=bounced (Host or domain name not found)",
    "Nov 26 09:00:00 mx1 postfix/smtp[13]: AAAAA00003: to=<c@example.org>, "
    "relay=mx.example.org[203.0.113.2]:25, delay=2, delays=0/0/1/1, dsn=5.2.1, "
    "status=bounced (host mx.example.org[203.0.113.2] said: 550 5.2.1 Mailbox disabled)",
]
NOISE = [
    "2026-11-28T12:00:02+00:00 mx1 postfix/smtpd[20]: connect from localhost[127.0.0.1]",
    "2026-11-28T12:00:03+00:00 mx1 postfix/smtp[21]: BBBBB00001: to=<d@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok)",
    "2026-11-28T12:00:04+00:00 mx1 postfix/smtp[22]: BBBBB00002: to=<e@example.com>, "
    "relay=none, delay=30, delays=0/0/30/0, dsn=4.4.1, status=deferred (connect to "
    "mx.example.com[192.0.2.1]:25: Connection timed out)",
    "2026-11-28T12:00:05+00:00 mx1 postfix/smtp[23]: BBBBB00003: to=<f@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=4.2.2, "
    "status=bounced (host said: 452 4.2.2 Mailbox full)",
    "2026-11-28T12:00:06+00:00 mx1 postfix/qmgr[24]: BBBBB00002: from=<web@example.com>, "
    "status=expired, returned to sender",
    "2026-11-28T12:00:07+00:00 mx1 postfix/cleanup[25]: BBBBB00004: message-id=<status=bounced>",
]


def write(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(f"{line}\n" for line in lines).encode())


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    d = tmp_path / "log-dir_1.0"
    d.mkdir()
    write(d / "postfix.log", [NOISE[0], HARD[0], NOISE[1]])
    write(d / "postfix.log.1", [NOISE[2], HARD[1], NOISE[3]])
    with gzip.open(d / "postfix.log.2.gz", "wb") as gz:
        gz.write("".join(f"{line}\n" for line in [NOISE[4], HARD[2], NOISE[5]]).encode())
    (d / "postfix.log.3.xz").write_bytes(b"\xfd7zXZ\x00 status=bounced dsn=5.1.1, status=bounced")
    (d / "postfix.log.d").mkdir()  # not a file: skipped
    (d / "other.log").write_text(HARD[0] + "\n")  # not a postfix.log* name: never read
    return d


def run_sh(script: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path or os.environ["PATH"], "LC_ALL": "en_US.UTF-8"}
    return subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, env=env, check=False
    )


def test_pipeline_prints_only_hard_bounces_from_plain_rotated_and_gz_logs(logdir: Path) -> None:
    done = run_sh(scan.scan_script(str(logdir / "postfix.log"), journal=False))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(HARD)
    assert "skipped" in done.stderr and "postfix.log.3.xz" in done.stderr


def test_pipeline_exits_zero_when_nothing_matches(tmp_path: Path) -> None:
    write(tmp_path / "postfix.log", NOISE)
    done = run_sh(scan.scan_script(str(tmp_path / "postfix.log"), journal=False))
    assert (done.returncode, done.stdout) == (0, "")


def test_pipeline_with_no_log_at_all_is_empty_not_an_error(tmp_path: Path) -> None:
    done = run_sh(scan.scan_script(str(tmp_path / "postfix.log"), journal=False))
    assert (done.returncode, done.stdout) == (0, "")


def test_nul_bytes_in_a_log_do_not_hide_matches(tmp_path: Path) -> None:
    (tmp_path / "postfix.log").write_bytes(b"\x00\x00garbage after a crash\n" + HARD[0].encode())
    done = run_sh(scan.scan_script(str(tmp_path / "postfix.log"), journal=False))
    assert done.stdout.splitlines() == [HARD[0]]


def fake_bin(tmp_path: Path, *, journal_lines: list[str] | None) -> str:
    """A PATH with grep and gzip, and a fake journalctl only when journal_lines is given."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("grep", "gzip"):
        found = shutil.which(tool)
        assert found
        (bindir / tool).symlink_to(found)
    if journal_lines is not None:
        data = tmp_path / "journal.txt"
        write(data, journal_lines)
        script = bindir / "journalctl"
        script.write_text(
            "#!/bin/sh\n"
            '[ "$*" = "-q --no-pager -o short-iso SYSLOG_FACILITY=2" ] || exit 9\n'
            f"exec /bin/cat '{data}'\n"
        )
        script.chmod(0o755)
    return str(bindir)


def test_journal_is_read_when_journalctl_exists(logdir: Path, tmp_path: Path) -> None:
    journal_hard = (
        HARD[0]
        .replace("AAAAA00001", "JJJJJ00001")
        .replace("2026-11-28T12:00:01.000001+00:00", "2026-11-29T08:00:00+0000")
    )
    path = fake_bin(tmp_path, journal_lines=[NOISE[1], journal_hard, NOISE[3]])
    done = run_sh(scan.scan_script(str(logdir / "postfix.log")), path)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted([*HARD, journal_hard])


def test_no_journalctl_on_a_minbase_host_is_fine(logdir: Path, tmp_path: Path) -> None:
    path = fake_bin(tmp_path, journal_lines=None)
    done = run_sh(scan.scan_script(str(logdir / "postfix.log")), path)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(HARD)


@pytest.mark.parametrize(
    "path",
    ["postfix.log", "/var/log/post fix.log", "/var/log/$(reboot)", "/var/log/p'x.log",
     "/var/log/*.log", "/var/log/../../etc/shadow", "/var/log/", "/var/log/a\n.log"],
)  # fmt: skip
def test_unsafe_log_paths_are_refused(path: str) -> None:
    with pytest.raises(scan.ScanPathError):
        scan.scan_command(path)


def test_fixed_words_are_quoted_by_pyinfra() -> None:
    script = scan.scan_script()
    assert "grep -aE -e 'dsn=5\\.[0-9]{1,3}\\.[0-9]{1,3}, status=bounced'" in script
    assert script.startswith("LC_ALL=C; export LC_ALL;")


def test_hard_bounces_fact_runs_the_scan_and_parses(logdir: Path) -> None:
    fact = HardBounces()
    command = fact.command(log_file=str(logdir / "postfix.log"), journal=False)
    done = run_sh(str(command))
    records = fact.process(done.stdout.splitlines())
    assert sorted(records) == ["a@example.com", "b@example.net", "c@example.org"]
    assert records["b@example.net"].dsn == "5.4.4"
    assert HardBounces.default() == {}


def test_mail_queue_fact() -> None:
    fact = MailQueue()
    assert fact.command() == "postqueue -j"
    assert fact.requires_command() == "postqueue"
    line = (
        '{"queue_name": "deferred", "queue_id": "4F2A21C0B3", "arrival_time": 1795867201, '
        '"message_size": 2310, "forced_expire": false, "sender": "web@example.com", '
        '"recipients": [{"address": "a@example.net", "delay_reason": "timed out"}]}'
    )
    [message] = fact.process([line])
    assert message.sender == "web@example.com"
    assert MailQueue.default() == []


def test_suppression_table_fact_reads_the_current_table(tmp_path: Path) -> None:
    fact = SuppressionTable()
    table = tmp_path / "suppress_recipients"
    assert run_sh(str(fact.command(path=str(table)))).stdout == ""
    table.write_text("# header\na@example.com REJECT 5.1.1 x\n")
    done = run_sh(str(fact.command(path=str(table))))
    assert fact.process(done.stdout.splitlines()) == table.read_text()
    with pytest.raises(scan.ScanPathError):
        fact.command(path="/etc/postfix/x; reboot")
