"""``mailmend watch`` end to end: the sandbox's DNS (Knot), its SMTP receiver, a webhook
server and a command run by the test, the real CLI in its own process.

The tests of this module share one watcher database and run in order, as a watcher lives:
first run, nothing changed, a listing comes, it goes, the DNS goes down, comes back.
"""

from __future__ import annotations

import dataclasses
import email
import email.utils
import imaplib
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sandbox.control import Sandbox
from sandbox.scenario import Scenario
from tests.conftest import CLI_ENV, MAILMEND, require_root, run_mailmend, sandbox_net
from tests.faultdns import ThreadedDns, drop

pytestmark = pytest.mark.end_to_end

ALERT_USER = "tester"  # a mailbox at the sandbox's receiving provider (inbox.test)
NEW_ZONE = "b.barracudacentral.org"


class Hooks:
    """A webhook receiver on 127.0.0.1 recording every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mailmend"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclasses.dataclass
class Watch:
    sb: Sandbox
    dir: Path
    hooks: Hooks

    @property
    def db(self) -> Path:
        return self.dir / "watch.db"

    @property
    def metrics(self) -> Path:
        return self.dir / "mailmend.prom"

    @property
    def command_log(self) -> Path:
        return self.dir / "command-events.jsonl"

    def alerts_file(self) -> Path:
        path = self.dir / "alerts.toml"
        path.write_text(
            "[[alert]]\n"
            f'webhook = "{self.hooks.url}"\n\n'
            "[[alert]]\n"
            f'command = ["sh", "-c", "cat >> {self.command_log}"]\n\n'
            "[[alert]]\n"
            f'email = "{self.sb.mailbox.address_of(ALERT_USER)}"\n'
            f'smtp = "{self.sb.mailbox.address}:25"\n'
            'from = "mailmend-watch@alpha.example"\n'
            'tls = "starttls"\n'
            f'cafile = "{self.sb.mailbox.ca_file}"\n'
        )
        return path

    def run(self, *extra: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_mailmend(
            "watch", "--once", "--fleet", str(self.sb.fleet_file), "--db", str(db or self.db),
            "--alerts", str(self.alerts_file()), "--metrics-file", str(self.metrics),
            "--timeout", "1", *extra, timeout=120,
        )  # fmt: skip

    def commands(self) -> list[dict[str, Any]]:
        if not self.command_log.exists():
            return []
        return [json.loads(line) for line in self.command_log.read_text().splitlines()]

    def emails(self, expect: int | None = None) -> list[bytes]:
        """The alert emails in the mailbox (INBOX and Junk), over IMAPS; with ``expect``,
        waited for (delivery is asynchronous), then checked that no more arrive."""
        deadline = time.monotonic() + 60
        while True:
            found = self._mailbox()
            if expect is None or len(found) > expect or time.monotonic() > deadline:
                return found
            if len(found) == expect:
                time.sleep(2)  # nothing more on the way
                return self._mailbox()
            time.sleep(0.5)

    def _mailbox(self) -> list[bytes]:
        mailbox = self.sb.mailbox
        context = ssl.create_default_context(cafile=str(mailbox.ca_file))
        out: list[bytes] = []
        with imaplib.IMAP4_SSL(mailbox.address, 993, ssl_context=context, timeout=10) as imap:
            imap.login(mailbox.address_of(ALERT_USER), mailbox.password(ALERT_USER))
            for box in ("INBOX", "Junk"):
                if imap.select(box, readonly=True)[0] != "OK":
                    continue
                numbers = imap.search(None, "FROM", "mailmend-watch@alpha.example")[1][0]
                for number in numbers.split():
                    data = imap.fetch(number, "(RFC822)")[1][0]
                    assert isinstance(data, tuple)
                    out.append(data[1])
        return sorted(out, key=_date)  # stable: arrival order within a second

    def counts(self, expect_emails: int | None = None) -> tuple[int, int, int]:
        return len(self.hooks.bodies), len(self.commands()), len(self.emails(expect_emails))

    def metric_lines(self, name: str) -> list[str]:
        return [line for line in self.metrics.read_text().splitlines() if line.startswith(name)]


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watch]:
    require_root()
    # A block of its own: the session sandbox (tests/conftest.py) may be up meanwhile.
    sandbox = Sandbox(tmp_path_factory.mktemp("sandbox"), sandbox_net(offset=60))
    sandbox.up(3)
    hooks = Hooks()
    try:
        yield Watch(sandbox, tmp_path_factory.mktemp("watch"), hooks)
    finally:
        hooks.close()
        sandbox.down()


def _date(raw: bytes) -> float:
    date = email.message_from_bytes(raw)["Date"]
    return email.utils.parsedate_to_datetime(date).timestamp()


def with_listing(base: Scenario, zone: str, ip: str, code: str = "127.0.0.2") -> Scenario:
    listings = {z: dict(subjects) for z, subjects in base.listings.items()}
    listings.setdefault(zone, {})[ip] = code
    return dataclasses.replace(base, listings=listings)


def kinds(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split(":", 1)[0] for line in proc.stdout.splitlines()]


def test_first_run_records_the_staged_situation_and_alerts_once(watch: Watch) -> None:
    proc = watch.run()
    assert proc.returncode == 0, proc.stderr
    mx2, mx3 = (h for h in watch.sb.hosts() if h.name in ("mx2", "mx3"))
    listed = [line for line in proc.stdout.splitlines() if line.startswith("listed:")]
    assert listed == [
        f"listed: mx2: {mx2.public_ipv4} is listed on SpamCop Blocking List "
        "(bl.spamcop.net, 127.0.0.2)",
        f"listed: mx3: {mx3.public_ipv4} has a policy listing on Spamhaus ZEN "
        "(zen.spamhaus.org, 127.0.0.10)",
    ]
    assert "list_broken: list all.s5h.net is broken" in proc.stdout  # the sandbox's dead list
    events = len(proc.stdout.splitlines())
    # every event once through each channel
    assert watch.counts(expect_emails=events) == (events, events, events)
    hook = next(b for b in watch.hooks.bodies if b["event"]["zone"] == "bl.spamcop.net")
    assert hook["text"] == (
        f"mailmend: mx2: {mx2.public_ipv4} is listed on SpamCop Blocking List "
        "(bl.spamcop.net, 127.0.0.2)"
    )
    assert hook["event"]["follow_up"].startswith(
        "listed on SpamCop Blocking List; it expires by itself, about 24 hours after the last"
    )
    spamcop = f'mailmend_dnsbl_listed{{host="mx2",ip="{mx2.public_ipv4}",zone="bl.spamcop.net"}}'
    assert f"{spamcop} 1.0" in watch.metric_lines("mailmend_dnsbl_listed")

    again = watch.run()
    assert (again.returncode, again.stdout) == (0, "")  # nothing changed: no event, no alert
    assert watch.counts(expect_emails=events) == (events, events, events)


def test_a_new_listing_alerts_once_per_channel_and_its_end_says_how_long(watch: Watch) -> None:
    mx1 = watch.sb.hosts()[0]
    before = watch.counts()
    base = watch.sb.scenario()
    watch.sb.dns.serve(with_listing(base, NEW_ZONE, mx1.public_ipv4))
    proc = watch.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"listed: mx1: {mx1.public_ipv4} is listed on Barracuda Reputation Block List "
        f"({NEW_ZONE}, 127.0.0.2)\n"
    )
    assert watch.counts(before[2] + 1) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert watch.hooks.bodies[-1]["event"]["kind"] == "listed"
    assert watch.commands()[-1]["kind"] == "listed"
    mail = email.message_from_bytes(watch.emails()[-1])
    assert str(mail["Subject"]).startswith(
        f"mailmend: mx1: {mx1.public_ipv4} is listed on Barracuda Reputation Block"
    )
    # it went over STARTTLS, the provider's certificate checked against its CA
    assert any("TLS" in str(r) for r in mail.get_all("Received", []))
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"Follow-up: listed on Barracuda Reputation Block List; submit the delisting" in body
    line = f'mailmend_dnsbl_listed{{host="mx1",ip="{mx1.public_ipv4}",zone="{NEW_ZONE}"}}'
    assert f"{line} 1.0" in watch.metric_lines("mailmend_dnsbl_listed")

    time.sleep(1.1)  # a listing that lasts a second at least
    watch.sb.dns.serve(base)
    gone = watch.run()
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.startswith(
        f"delisted: mx1: {mx1.public_ipv4} is no longer listed on {NEW_ZONE} (listed for "
    )
    assert len(gone.stdout.splitlines()) == 1
    event = watch.commands()[-1]
    assert event["kind"] == "delisted" and event["duration_seconds"] >= 1.0
    assert watch.counts(before[2] + 2) == (before[0] + 2, before[1] + 2, before[2] + 2)
    assert f"{line} 0.0" in watch.metric_lines("mailmend_dnsbl_listed")

    history = run_mailmend("watch", "history", "--db", str(watch.db), "--format", "json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)["listings"]
    cleared = [r for r in rows if r["zone"] == NEW_ZONE]
    assert len(cleared) == 1 and cleared[0]["cleared"] is not None
    assert cleared[0]["duration_seconds"] >= 1.0 and cleared[0]["codes"] == ["127.0.0.2"]
    assert {(r["host"], r["zone"], r["active"]) for r in rows} == {
        ("mx2", "bl.spamcop.net", True),
        ("mx3", "zen.spamhaus.org", True),
        ("mx1", NEW_ZONE, False),
    }


def test_dns_down_is_unknown_never_delisted_and_the_metric_disappears(watch: Watch) -> None:
    before = watch.counts()
    watch.sb.stop_dns()
    try:
        # The provider's Postfix asks DNS too (SPF, DMARC): the email waits; the run does not.
        down = watch.run("--deadline", "8", "--alert-deadline", "10s")
    finally:
        watch.sb.start_dns()
    assert down.returncode == 0, down.stderr
    assert sorted(kinds(down)) == ["host_unreachable"] * 3  # and no "delisted"
    assert watch.metric_lines("mailmend_dnsbl_listed") == []  # absent, not 0
    status = run_mailmend("watch", "status", "--db", str(watch.db), "--format", "json")
    data = json.loads(status.stdout)
    assert {(i["host"], i["zone"]) for i in data["listings"]} == {
        ("mx2", "bl.spamcop.net"),
        ("mx3", "zen.spamhaus.org"),
    }  # the listings still last
    assert data["unreachable_hosts"] == ["mx1", "mx2", "mx3"]

    back = watch.run()
    assert back.returncode == 0, back.stderr
    assert kinds(back) == []  # nothing changed: no event (DNS answering again is none)
    hooks, commands, emails = watch.counts(before[2] + 3)
    assert (hooks, commands) == (before[0] + 3, before[1] + 3)  # the 3 "unreachable" only
    # The emails the outage held up went with this run; one cut off at the deadline may have
    # reached the provider anyway (delivery is at least once).
    assert emails >= before[2] + 3
    mx2 = watch.sb.hosts()[1]
    spamcop = f'mailmend_dnsbl_listed{{host="mx2",ip="{mx2.public_ipv4}",zone="bl.spamcop.net"}}'
    assert f"{spamcop} 1.0" in watch.metric_lines("mailmend_dnsbl_listed")


def test_kill_9_mid_run_leaves_the_database_intact_and_a_second_watcher_is_locked_out(
    watch: Watch,
) -> None:
    runs_before = _runs(watch.db)
    with ThreadedDns(drop) as silent:  # a nameserver that never answers: a long run
        slow = subprocess.Popen(
            [str(MAILMEND), "watch", "--once", "--fleet", str(watch.sb.fleet_file),
             "--db", str(watch.db), "--nameserver", silent, "--timeout", "3"],
            env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.0)
        second = watch.run()
        assert second.returncode == 2
        assert second.stderr == (
            f"mailmend watch: another mailmend watch is running on {watch.db} "
            f"(pid {slow.pid}): wait for it to finish, or give this one its own --db\n"
        )
        os.kill(slow.pid, signal.SIGKILL)
        slow.communicate(timeout=10)
    conn = sqlite3.connect(watch.db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert _runs(watch.db) == runs_before  # the killed run left nothing half-written
    after = watch.run()
    assert (after.returncode, after.stdout) == (0, "")  # carries on, nothing changed
    assert _runs(watch.db) == runs_before + 1


def _runs(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--once", "--db", "/proc/version/watch.db"],
            "mailmend watch: cannot use /proc/version/watch.db: /proc/version is not a directory\n",
        ),
        (
            ["--once", "--webhook", "hxxp://hooks example/x"],
            "mailmend watch: webhook URL: it contains ' ' at position 13; values must not "
            "contain whitespace, quotes, backslashes or control characters\n",
        ),
        (
            ["--once", "--webhook", "ftp://hooks.example.com/x"],
            "mailmend watch: webhook URL 'ftp://hooks.example.com/...' is malformed: give "
            "http(s)://HOST/PATH\n",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    watch: Watch, tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_mailmend("watch", "--fleet", str(watch.sb.fleet_file), *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", message)


def test_bad_every_is_one_line_and_exit_2(watch: Watch, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    proc = run_mailmend("watch", "--every", "15 minutes", "--db", str(db))
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "mailmend watch: --every: '15 minutes' is not a duration: give a number and a unit, "
        "like 15m, 24h, 90d\n"
    )
    assert not db.exists()


def test_loop_serves_metrics_and_runs_again(watch: Watch, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = subprocess.Popen(
        [str(MAILMEND), "watch", "--every", "2s", "--serve", f"127.0.0.1:{port}", "--quiet",
         "--fleet", str(watch.sb.fleet_file), "--db", str(tmp_path / "loop.db")],
        env=CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stamps: list[float] = []
        deadline = time.monotonic() + 60
        while len(set(stamps)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
            stamps += [
                float(line.split()[1])
                for line in text.splitlines()
                if line.startswith("mailmend_last_run_timestamp_seconds ")
            ]
        assert len(set(stamps)) >= 2, "the loop did not run twice within 60 s"
        assert 'mailmend_list_broken{zone="all.s5h.net"} 1.0' in text
    finally:
        loop.send_signal(signal.SIGINT)
        _, err = loop.communicate(timeout=20)
    assert loop.returncode == 130
    assert "run 2 done: 0 events; next in" not in err  # --quiet
