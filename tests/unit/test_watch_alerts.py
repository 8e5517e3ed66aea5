"""mailmend.watch.alerts: each channel against a real loopback peer (an HTTP server, an SMTP
server with STARTTLS and AUTH, a real command), retries, and the alerts file's errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailmend.watch.alerts import (
    AlertConfigError,
    ChannelError,
    Command,
    Email,
    Webhook,
    check_url,
    deliver,
    load_alerts,
)
from tests.tls import server_context

EVENT: dict[str, Any] = {
    "kind": "listed",
    "host": "mx2",
    "zone": "bl.spamcop.net",
    "text": "mx2: 198.51.100.12 is listed on <Spam&Cop>\x1b[31m\u202e",
    "follow_up": "listed on SpamCop; it expires by itself",
}


# --- webhook -------------------------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]], list[int]]]:
    bodies: list[dict[str, Any]] = []
    codes = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(codes[0])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/SECRET", bodies, codes
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_posts_slack_text_and_the_event(http_server: Any) -> None:
    url, bodies, _ = http_server
    Webhook(url).send(EVENT)
    (body,) = bodies
    assert body["text"] == (
        "mailmend: mx2: 198.51.100.12 is listed on &lt;Spam&amp;Cop&gt;\\027[31m\\226\\128\\174"
    )  # Slack's three escapes; the terminal escape shown, not sent raw
    assert body["event"] == EVENT


def test_webhook_failure_is_retried_then_logged_never_raised(http_server: Any) -> None:
    url, bodies, codes = http_server
    codes[0] = 500
    logged: list[str] = []
    (result,) = deliver([Webhook(url)], [(7, EVENT)], log=logged.append, backoff=0)
    assert (result.failed, result.done, len(bodies)) == (1, [7], 3)
    assert logged[-1].startswith("alert webhook http://127.0.0.1:")
    assert "gave up after 3 attempts: HTTP 500" in logged[-1]
    assert all("SECRET" not in line for line in logged)  # the path may hold a token


def test_webhook_url_by_reference(http_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, bodies, _ = http_server
    monkeypatch.setenv("MAILMEND_HOOK", url)
    hook = Webhook("env:MAILMEND_HOOK")
    assert hook.name == "webhook (reference)"
    hook.send(EVENT)
    assert len(bodies) == 1
    monkeypatch.delenv("MAILMEND_HOOK")
    with pytest.raises(ChannelError, match="environment variable MAILMEND_HOOK is not set"):
        hook.send(EVENT)


@pytest.mark.parametrize(
    "url", ["ftp://x.example/", "http:///nohost", "https://x.example:99999/", "not a url"]
)
def test_malformed_webhook_urls(url: str) -> None:
    with pytest.raises(AlertConfigError) as err:
        check_url(url)
    assert "\n" not in str(err.value)


# --- command -------------------------------------------------------------------------------------


def test_command_gets_the_event_as_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    Command(("sh", "-c", f"cat > {out}")).send(EVENT)
    assert json.loads(out.read_text()) == EVENT


def test_failing_command_says_why(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="exited 3: no pager"):
        Command(("sh", "-c", "echo no pager >&2; exit 3")).send(EVENT)
    with pytest.raises(ChannelError, match="cannot run it"):
        Command((str(tmp_path / "missing"),)).send(EVENT)


# --- email ---------------------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"s3cret")


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, Path, _Sink]]:
    context, cert = server_context(tmp_path)
    sink = _Sink()
    with socket.socket() as probe:  # a free port (aiosmtpd's readiness check needs a real one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        sink, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=sink.authenticate, auth_required=True, ready_timeout=10,
    )  # fmt: skip
    controller.start()
    try:
        yield port, cert, sink
    finally:
        controller.stop()


def test_email_over_starttls_with_credentials_by_reference(
    smtp_server: Any, tmp_path: Path
) -> None:
    port, cert, sink = smtp_server
    secret = tmp_path / "smtp-credentials"
    secret.write_text("watcher:s3cret\n")
    email = Email(
        ("ops@example.com",), "mailmend@mx1.example.com", "127.0.0.1", port, "starttls",
        f"file:{secret}", str(cert),
    )  # fmt: skip
    email.send(EVENT)
    ((sender, rcpts, raw),) = sink.messages
    assert (sender, rcpts, sink.logins) == (
        "mailmend@mx1.example.com", ["ops@example.com"], [("watcher", "s3cret")],
    )  # fmt: skip
    message = message_from_bytes(raw)
    assert message["Date"] and message["Message-ID"].endswith("@mx1.example.com>")
    assert message["Subject"].replace("\r\n", "").strip() == (  # unfolded (RFC 5322 2.2.3)
        "mailmend: mx2: 198.51.100.12 is listed on <Spam&Cop>\\027[31m\\226\\128\\174"
    )  # the one escaper (mailmend.checks.escape): a bidi override is shown too
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert b"Follow-up: listed on SpamCop; it expires by itself" in body
    assert b"\x1b" not in raw


def test_email_refuses_a_server_it_cannot_verify(smtp_server: Any, tmp_path: Path) -> None:
    port, _, sink = smtp_server
    email = Email(("ops@example.com",), "mailmend@mx1.example.com", "127.0.0.1", port)
    with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):
        email.send(EVENT)
    assert sink.messages == []


def test_email_wrong_password_is_a_channel_error(
    smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert, _ = smtp_server
    monkeypatch.setenv("MAILMEND_SMTP", "watcher:wrong")
    email = Email(
        ("ops@example.com",), "mailmend@mx1.example.com", "127.0.0.1", port, "starttls",
        "env:MAILMEND_SMTP", str(cert), timeout=3,
    )  # fmt: skip
    with pytest.raises(ChannelError) as err:  # smtplib tries PLAIN (535), then LOGIN
        email.send(EVENT)
    assert "wrong" not in str(err.value)


# --- the alerts file -----------------------------------------------------------------------------


def test_alerts_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[[alert]]\nwebhook = "https://hooks.example.com/x"\n\n'
        '[[alert]]\ncommand = ["/usr/bin/logger", "-t", "mailmend"]\n\n'
        '[[alert]]\nemail = ["ops@example.com"]\nsmtp = "mail.example.com:587"\n'
        'from = "watch@example.com"\ncredentials = "env:MAILMEND_SMTP"\n'
    )
    webhook, command, email = load_alerts(path)
    assert webhook == Webhook("https://hooks.example.com/x")
    assert command == Command(("/usr/bin/logger", "-t", "mailmend"))
    assert email == Email(
        ("ops@example.com",), "watch@example.com", "mail.example.com", 587, "starttls",
        "env:MAILMEND_SMTP",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[alert]]\nwebhok = "x"', "alert 1: give exactly one of webhook, command, email"),
        ('[[alert]]\ncommand = "page-me"', "alert 1: command must be an array"),
        (
            '[[alert]]\nemail = "ops@example.com"\nsmtp = "mail.example.com"\nfrom = "a@b.example"',
            'alert 1: smtp must be "HOST:PORT"',
        ),
        (  # regression: a digit int() does not read ("²") was a traceback
            '[[alert]]\nemail = "ops@example.com"\nsmtp = "m.example.com:²"\nfrom = "a@b.example"',
            'alert 1: smtp must be "HOST:PORT"',
        ),
        (
            '[[alert]]\nemail = "ops@example.com"\nsmtp = "m.example.com:25"\n'
            'from = "a@b.example"\ncredentials = "user:password"',
            "alert 1: credentials must be a reference, env:NAME or file:/absolute/path",
        ),
        (
            '[[alert]]\nemail = "ops@example.com"\nsmtp = "m.example.com:25"\n'
            'from = "a@b.example"\ncredentials = "env:X"\ntls = "none"',
            'alert 1: credentials need tls = "starttls" or "tls"',
        ),
        ("[alert]\n", "alert must be [[alert]] tables"),
        ("[[alert]]\nwebhook = 'x", "not valid TOML"),
    ],
)
def test_alerts_file_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    with pytest.raises(AlertConfigError) as err:
        load_alerts(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_slow_channel_does_not_hold_the_others_and_its_rest_waits(tmp_path: Path) -> None:
    out = tmp_path / "fast.jsonl"
    fast = Command(("sh", "-c", f"cat >> {out}"))
    slow = Command(("sleep", "5"), timeout=30)
    logged: list[str] = []
    events = [(1, EVENT), (2, EVENT)]
    results = deliver([slow, fast], events, budget=1.5, log=logged.append)
    assert [r.done for r in results] == [[], [1, 2]]
    assert len(out.read_text().splitlines()) == 2
    assert logged == ["alert command sleep: not done within 1.5 s; the rest goes next run"]
    skipped = deliver([fast], events, skip=lambda channel, event: event == 1)
    assert skipped[0].done == [2]
