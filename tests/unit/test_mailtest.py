"""mail-test offline, on messages captured from the sandbox provider (real Postfix, OpenDKIM,
OpenDMARC, policyd-spf, SpamAssassin, Dovecot: tests/unit/fixtures/mailtest/*.eml) and on
hostile text."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from mailmend.checks.dns import Rcode
from mailmend.checks.result import CheckResult, Status
from mailmend.mailtest import content, headers, received, report, verdict
from mailmend.mailtest.message import (
    TOKEN_HEADER,
    MessageError,
    builtin_message,
    parse_eml,
    prepare,
)
from mailmend.mailtest.run import MessageReport
from tests.unit.test_ptr import FakeResolver

FIXTURES = Path(__file__).parent / "fixtures" / "mailtest"
GOOD = FIXTURES / "good-mx1.eml"
GTUBE = FIXTURES / "gtube-mx1.eml"
NO_PTR = FIXTURES / "good-mx2.eml"


def load(path: Path) -> tuple[bytes, Message]:
    raw = path.read_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.compat32)


def dkim_value() -> str:
    text = (FIXTURES / "mx1.alpha.example.dkim.txt").read_text()
    return "".join(re.findall(r'"([^"]*)"', text))


def zone(spf_ip: str = "192.0.2.11", dkim: bool = True) -> FakeResolver:
    records: dict[tuple[str, str], tuple[str, ...] | Rcode] = {
        ("alpha.example", "TXT"): (f"v=spf1 ip4:{spf_ip} -all",),
        ("_dmarc.alpha.example", "TXT"): ("v=DMARC1; p=none",),
    }
    if dkim:
        records[("mx1._domainkey.alpha.example", "TXT")] = (dkim_value(),)
    return FakeResolver(records)


# --- what the receiver wrote ------------------------------------------------------------------


def test_authentication_results_of_the_debian_milters() -> None:
    _raw, msg = load(GOOD)
    ar = received.auth_results(msg)
    assert ar is not None and ar.authserv_id == "mx.inbox.test"
    assert [(r.method, r.result) for r in ar.results] == [
        ("dmarc", "pass"),
        ("dkim", "pass"),
        ("spf", "pass"),
    ]
    assert ar.get("dkim")[0].props["header.d"] == "alpha.example"
    assert ar.get("spf")[0].props["smtp.mailfrom"] == "alpha.example"


def test_a_forged_authentication_results_below_is_ignored() -> None:
    raw, _msg = load(GOOD)
    # The sender added its own header (it ends up below the receiver's): another authserv-id.
    forged = raw.replace(
        b"\nFrom: ", b"\nAuthentication-Results: evil.example; spf=fail\nFrom: ", 1
    )
    msg = email.message_from_bytes(forged, policy=email.policy.compat32)
    ar = received.auth_results(msg)
    assert ar is not None and [r.result for r in ar.get("spf")] == ["pass"]


def test_one_header_with_every_method_rfc8601_example() -> None:
    msg = email.message_from_string(
        "Authentication-Results: example.com; spf=pass smtp.mailfrom=example.net "
        "header.from=example.net; dkim=pass header.d=example.net header.s=s1; "
        "dmarc=pass header.from=example.net\n\nbody\n"
    )
    ar = received.auth_results(msg)
    assert ar is not None
    assert {r.method: r.result for r in ar.results} == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
    }
    assert ar.get("dkim")[0].props["header.s"] == "s1"


def test_hop_from_the_provider_received_header() -> None:
    _raw, msg = load(GOOD)
    hop = received.hop(msg)
    assert hop is not None
    assert (hop.helo, hop.reverse_name, hop.ip) == (
        "mx1.alpha.example",
        "mx1.alpha.example",
        "192.0.2.11",
    )
    assert (hop.tls_version, hop.tls_cipher) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    _raw, no_ptr = load(NO_PTR)
    hop2 = received.hop(no_ptr)
    assert hop2 is not None and hop2.reverse_name == "unknown"
    results = {r.subject: r for r in content.hop_results(hop2, "mx2.bravo.example", 3.0)}
    assert results["PTR"].status is Status.FAIL
    assert "set the PTR of 198.51.100.12 to mx2.bravo.example" in str(results["PTR"].fix)
    assert results["HELO"].status is Status.PASS


def test_spam_verdict_of_gtube() -> None:
    _raw, msg = load(GTUBE)
    spam = received.spam_verdict(msg)
    assert spam is not None and spam.flagged
    assert (spam.score, spam.required) == (1000.0, 5.0)
    gtube = next(r for r in spam.rules if r.name == "GTUBE")
    assert (
        gtube.points == 1000.0
        and gtube.description == "BODY: Generic Test for Unsolicited Bulk Email"
    )
    result = content.receiver_spam(spam)
    assert result.status is Status.FAIL and "GTUBE" in result.summary


def test_local_spamassassin_report_table() -> None:
    # The table `spamassassin -t -L` appends (SpamAssassin 4.0.1, the provider image's).
    output = (
        "Content analysis details:   (1000.0 points, 5.0 required)\n\n"
        " pts rule name              description\n"
        "---- ---------------------- --------------------------------------------------\n"
        "-0.0 NO_RECEIVED            Informational: message has no Received headers\n"
        " 0.0 MSGID_SHORT            Message-ID is unusually short\n"
        "1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
        "\nContent analysis details:   (1000.0 points, 5.0 required)\n"
        "---- ---------------------- ----\n"
        "1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
    )
    result = content.parse_local(output)
    assert result.status is Status.FAIL
    assert result.extra["rules"] == ["NO_RECEIVED", "MSGID_SHORT", "GTUBE"]
    assert "1000 GTUBE: BODY: Generic Test for Unsolicited Bulk Email" in result.details


# --- mailmend's own verdict ---------------------------------------------------------------------


def test_own_verdict_agrees_with_the_receiver() -> None:
    raw, msg = load(GOOD)
    own = asyncio.run(verdict.own_verdict(zone(), raw, msg, received.hop(msg)))
    assert (own.dkim, own.dkim_domain, own.dkim_selector) == ("pass", "alpha.example", "mx1")
    assert (own.spf, own.spf_domain) == ("pass", "alpha.example")
    assert (own.dmarc, own.dmarc_policy) == ("pass", "none")


def test_own_verdict_without_the_key_and_with_spf_elsewhere() -> None:
    raw, msg = load(GOOD)
    resolver = zone(spf_ip="203.0.113.99", dkim=False)
    own = asyncio.run(verdict.own_verdict(resolver, raw, msg, received.hop(msg)))
    assert (own.dkim, own.spf, own.dmarc) == ("fail", "fail", "fail")
    results = asyncio.run(
        verdict.auth_checks(resolver, own, received.auth_results(msg), "192.0.2.11", None)
    )
    by = {r.check: r for r in results}
    # The receiver said pass (the key was there then): both are shown, the worse counts.
    assert by["spf"].summary == "receiver: pass; mailmend: fail (they disagree)"
    assert by["spf"].status is Status.FAIL
    assert 'alpha.example. TXT "v=spf1 ip4:203.0.113.99 ip4:192.0.2.11 -all"' in str(by["spf"].fix)
    assert "mx1._domainkey.alpha.example" in str(by["dkim"].fix)


def test_a_tampered_body_fails_dkim() -> None:
    raw, msg = load(GOOD)
    tampered = raw.replace(b"delivery test", b"delivery TEST", 1)
    assert tampered != raw
    result, _d, _s = asyncio.run(verdict.own_dkim(zone(), tampered, msg))
    assert result == "fail"


def test_dns_failure_is_temperror_not_fail() -> None:
    raw, msg = load(GOOD)
    resolver = FakeResolver({("mx1._domainkey.alpha.example", "TXT"): Rcode.TIMEOUT})
    assert asyncio.run(verdict.own_dkim(resolver, raw, msg))[0] == "temperror"


# --- headers ------------------------------------------------------------------------------------


def _msg(text: str) -> EmailMessage:
    return parse_eml(text.replace("\n", "\r\n").encode(), "test.eml")


BASE = "From: a@alpha.example\nTo: b@inbox.test\nDate: Sun, 29 Nov 2026 19:00:00 +0000\n"


def _by_subject(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.subject: r for r in results}


def test_header_rules() -> None:
    bare = _by_subject(headers.lint(_msg(BASE + "\nhello\n"), 100))
    assert bare["Message-ID"].status is Status.FAIL
    assert bare["List-Unsubscribe"].status is Status.WARN
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in str(bare["List-Unsubscribe"].fix)
    html_only = _msg(BASE + "Message-ID: <1@alpha.example>\nContent-Type: text/html\n\n<p>hi</p>\n")
    assert _by_subject(headers.lint(html_only, 100))["text part"].status is Status.WARN
    mailto_only = _msg(
        BASE + "Message-ID: <1@alpha.example>\nList-Unsubscribe: <mailto:u@alpha.example>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n\nhi\n"
    )
    assert _by_subject(headers.lint(mailto_only, 100))["List-Unsubscribe"].status is Status.WARN
    bad_date = _msg("From: a@alpha.example\nDate: yesterday\n\nhi\n")
    assert _by_subject(headers.lint(bad_date, 10))["Date"].status is Status.FAIL
    assert _by_subject(headers.lint(bare_ok(), 2_000_000))["size"].status is Status.WARN


def bare_ok() -> EmailMessage:
    return builtin_message("t@alpha.example", "b@inbox.test", "alpha.example", "0123456789abcdef")


def test_builtin_message_passes_every_header_rule() -> None:
    msg = bare_ok()
    results = headers.lint(msg, len(msg.as_bytes()))
    assert [r for r in results if r.status is not Status.PASS] == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"Dear all,\nthis is a letter\n", "not an .eml file"),
        (b"Subject: no sender\n\nhi\n", "exactly one From header"),
        (b"From: a@b.example\nFrom: c@d.example\n\nhi\n", "exactly one From header"),
        (b"From: nobody\n\nhi\n", "the From header has no address"),
    ],
)
def test_unusable_eml_files(data: bytes, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        parse_eml(data, "x.eml")


def test_prepare_replaces_recipients_and_adds_the_token() -> None:
    msg = _msg(BASE + "Cc: c@x.example\nBcc: d@x.example\nSubject: hi\n\nhello\n")
    out = prepare(msg, "tester@inbox.test", "tok123", "fallback@alpha.example")
    sent = email.message_from_bytes(out.data, policy=email.policy.default)
    assert sent.get_all("To") == ["tester@inbox.test"]
    assert sent["Cc"] is None and sent["Bcc"] is None
    assert sent[TOKEN_HEADER] == "tok123"
    assert out.sender == "a@alpha.example"
    assert sent.get_content().strip() == "hello"


# --- hostile text in every format ---------------------------------------------------------------


def _hostile_report() -> MessageReport:
    evil = "\x1b]0;owned\x07<script>alert(1)</script>\u202e"
    rep = MessageReport("mx1", "mx1.alpha.example", "alpha.example", "t", "x@inbox.test", "a@b")
    rep.results.append(
        CheckResult("headers", Status.WARN, "From/To", f"From {evil}", details=(evil,), fix=evil)
    )
    return rep


def test_table_escapes_terminal_controls() -> None:
    text = report.render_table([_hostile_report()])
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\027]0;owned\\007" in text


def test_html_escapes_markup() -> None:
    page = report.render_html([_hostile_report()])
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_json_is_valid_and_exit_codes_follow_check() -> None:
    import json

    rep = _hostile_report()
    doc = json.loads(report.render_json([rep]))
    assert doc["schema"] == 1 and doc["messages"][0]["status"] == "warn"
    assert report.exit_code([rep]) == 0
    rep.results.append(CheckResult("delivery", Status.UNKNOWN, "x", "not arrived"))
    assert report.exit_code([rep]) == 3
    rep.results.append(CheckResult("folder", Status.FAIL, "Junk", "spam"))
    assert report.exit_code([rep]) == 1


def test_receiver_verdict_without_the_key_and_spf_elsewhere() -> None:
    # Captured with mx2's DKIM record removed and its SPF naming another IP.
    _raw, msg = load(FIXTURES / "broken-mx2.eml")
    ar = received.auth_results(msg)
    assert ar is not None
    assert {r.method: r.result for r in ar.results} == {
        "spf": "fail",
        "dkim": "fail",
        "dmarc": "fail",
    }
    assert 'reason="key not found in DNS"' in ar.get("dkim")[0].text


def test_every_message_waits_in_its_own_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the default pool (cores + 4 threads) made hosts wait behind each other."""
    import threading
    import time

    from mailmend.fleet import HostSpec
    from mailmend.mailtest import run

    active, peak, lock = [0], [0], threading.Lock()

    def wait(*_args: object) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1

    monkeypatch.setattr(run, "_submit", lambda *_a: None)
    monkeypatch.setattr(run, "_wait", wait)
    monkeypatch.setattr(run, "_queue_note", lambda *_a: None)
    jobs = [
        run.Job(
            HostSpec(f"mx{i}", "127.0.0.1", hostname=f"mx{i}.alpha.example"), "alpha.example", "s"
        )
        for i in range(12)
    ]
    box = run.Mailbox("127.0.0.1", 993, "u", "p", None)
    reports = asyncio.run(
        run.run_all(jobs, box, "t@inbox.test", FakeResolver({}), message=None, timeout=1,
                    keep=False, report_address=None)
    )  # fmt: skip
    assert peak[0] == 12
    assert [r.status for r in reports] == [Status.UNKNOWN] * 12


def test_the_installed_command_runs_outside_the_repository(tmp_path: Path) -> None:
    """Regression: the HTML report's templates were looked up as the package ``checks``,
    which only the repository's top-level link provides."""
    import subprocess
    import sys

    mailmend = Path(sys.executable).with_name("mailmend")
    proc = subprocess.run(
        [str(mailmend), "mail-test", "--message", str(GOOD), "--lint", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert '"command": "mail-test --lint"' in proc.stdout


def test_dmarc_fails_where_neither_method_passes() -> None:
    """The receiver's verdict on the captured message (no DKIM key, SPF elsewhere) and
    mailmend's on the same bytes with the same DNS: both fail DMARC."""
    raw, msg = load(FIXTURES / "broken-mx2.eml")
    resolver = FakeResolver(
        {
            ("bravo.example", "TXT"): ("v=spf1 ip4:203.0.113.99 -all",),
            ("_dmarc.bravo.example", "TXT"): ("v=DMARC1; p=none",),
        }
    )
    own = asyncio.run(verdict.own_verdict(resolver, raw, msg, received.hop(msg)))
    results = asyncio.run(
        verdict.auth_checks(resolver, own, received.auth_results(msg), "198.51.100.12", None)
    )
    by = {r.check: r for r in results}
    for method in ("spf", "dkim", "dmarc"):
        assert by[method].status is Status.FAIL
        assert (by[method].extra["receiver"], by[method].extra["mailmend"]) == ("fail", "fail")
    assert "align From with a passing DKIM d= or SPF domain" in str(by["dmarc"].fix)


class _Client:
    """Records the IMAP commands mail-test sends after finding its message."""

    def __init__(self, uidplus: bool) -> None:
        self.uidplus = uidplus
        self.calls: list[tuple[str, object]] = []

    def delete_messages(self, uids: list[int]) -> None:
        self.calls.append(("flag deleted", uids))

    def has_capability(self, name: str) -> bool:
        return name == "UIDPLUS" and self.uidplus

    def uid_expunge(self, uids: list[int]) -> None:
        self.calls.append(("uid expunge", uids))

    def expunge(self) -> None:  # pragma: no cover - must never be called
        self.calls.append(("expunge all", None))


def test_only_the_test_message_is_expunged() -> None:
    """Regression: a plain EXPUNGE purged every message the owner had flagged deleted."""
    from mailmend.mailtest.run import remove

    client = _Client(uidplus=True)
    assert remove(client, 7) is True  # type: ignore[arg-type]
    assert client.calls == [("flag deleted", [7]), ("uid expunge", [7])]
    old = _Client(uidplus=False)
    assert remove(old, 7) is False  # type: ignore[arg-type]
    assert old.calls == [("flag deleted", [7])]


def test_queue_note_from_postqueue_j(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a ``postqueue -j`` line that is JSON but no object ("3") raised
    AttributeError out of mail-test; the note now comes from the queue's own parser."""
    import subprocess

    from mailmend.fleet import HostSpec
    from mailmend.mailtest import run

    captured = (Path(__file__).parents[1] / "fixtures" / "postqueue-j-bounces.jsonl").read_bytes()
    answer = b""

    def fake_run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 0, answer, b"")

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    spec = HostSpec("mx1", "127.0.0.1", hostname="mx1.alpha.example")
    answer = captured
    note = run._queue_note(spec, "APP2@inbox-a.test")
    assert note == "still in mx1's queue (deferred): deferred transport"
    assert run._queue_note(spec, "nobody@inbox-a.test") is None
    answer = b"3\n" + captured
    assert run._queue_note(spec, "app2@inbox-a.test") is None
