"""Alert channels: an email (SMTP, STARTTLS), a webhook (JSON POST), a command (JSON on stdin).

Every event goes through every channel once. A failing channel is retried, then logged on
stderr; it never stops the watching. Secrets are references (``env:NAME``, ``file:/path``),
resolved when an alert is sent; a URL's path (Slack puts its token there) is never logged.

The alerts file (``--alerts FILE``) is TOML, one ``[[alert]]`` table per channel::

    [[alert]]
    webhook = "https://hooks.slack.com/services/T000/B000/XXXX"   # or "env:NAME", "file:/path"

    [[alert]]
    command = ["/usr/local/bin/page-oncall", "--mailmend"]

    [[alert]]
    email = ["ops@example.com"]
    smtp = "mail.example.com:587"                 # port 587: STARTTLS
    from = "mailmend@mx1.example.com"
    credentials = "env:MAILMEND_SMTP"              # user:password, by reference
    tls = "starttls"                               # starttls (default), tls, none
"""

from __future__ import annotations

import email.utils
import json
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from mailmend import rules, secretref
from mailmend.checks.escape import visible

ATTEMPTS = 3
BACKOFF = 2.0  # seconds before the 2nd attempt, doubled for the 3rd
ALERT_BUDGET = 120.0  # seconds a run waits for its alerts (the rest go with the next run)
TIMEOUT = 15.0
TLS_MODES = ("starttls", "tls", "none")


class AlertConfigError(ValueError):
    """A channel is configured wrong (one line, no secret in it)."""


class ChannelError(Exception):
    """One delivery failed (one line, no secret in it)."""


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, event: Mapping[str, Any]) -> None: ...


# --- secrets -------------------------------------------------------------------------------------


def _resolve(reference: str, what: str) -> str:
    """``env:NAME`` / ``file:/path`` -> the secret (:mod:`mailmend.secretref`); a plain value
    (a webhook URL given as is) is returned unchanged."""
    if not reference.startswith(("env:", "file:")):
        return reference
    try:
        return secretref.resolve(reference).strip()
    except secretref.SecretRefError as err:
        raise ChannelError(f"{what}: {err}") from None


# --- webhook -------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """A usable http(s) URL, or :class:`AlertConfigError` (references are checked when used)."""
    if url.startswith(("env:", "file:")):
        return url
    problem = rules.unsafe_char_problem(url)
    if problem:  # without the URL itself: its path may hold a token
        raise AlertConfigError(f"webhook URL: {problem.replace(repr(url), 'it')}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertConfigError(
            f"webhook URL {_shown_url(url)!r} is malformed: give http(s)://HOST/PATH"
        )
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise AlertConfigError(f"webhook URL {_shown_url(url)!r} has a bad port") from None
    return url


def _shown_url(url: str) -> str:
    """scheme://host[:port]/... : the path and query may hold a token."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return visible(url[:40])
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{visible(host)}/..."


def slack_text(text: str) -> str:
    """Slack and Mattermost show ``text`` as is once &, < and > are escaped."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Webhook:
    url: str
    timeout: float = TIMEOUT

    @property
    def name(self) -> str:
        shown = "(reference)" if self.url.startswith(("env:", "file:")) else _shown_url(self.url)
        return f"webhook {shown}"

    def send(self, event: Mapping[str, Any]) -> None:
        try:
            url = check_url(_resolve(self.url, "webhook"))
        except AlertConfigError as err:
            raise ChannelError(str(err)) from None
        body = json.dumps({"text": slack_text(f"mailmend: {event['text']}"), "event": event})
        request = urllib.request.Request(  # noqa: S310 (http(s) only: check_url)
            url,
            data=body.encode(),
            headers={"Content-Type": "application/json", "User-Agent": "mailmend-watch"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                reply.read(4096)
        except urllib.error.HTTPError as err:
            raise ChannelError(f"HTTP {err.code} {visible(str(err.reason))}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ChannelError(visible(str(reason))) from None


# --- command -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    timeout: float = 60.0

    @property
    def name(self) -> str:
        return f"command {visible(self.argv[0])}"

    def send(self, event: Mapping[str, Any]) -> None:
        try:
            done = subprocess.run(
                list(self.argv),
                input=json.dumps(event) + "\n",
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ChannelError(f"did not finish within {self.timeout:g} s") from None
        except OSError as err:
            raise ChannelError(f"cannot run it: {err.strerror}") from None
        if done.returncode != 0:
            tail = visible(done.stderr.strip().splitlines()[-1]) if done.stderr.strip() else ""
            raise ChannelError(f"exited {done.returncode}" + (f": {tail}" if tail else ""))


# --- email ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Email:
    to: tuple[str, ...]
    sender: str
    host: str
    port: int
    tls: str = "starttls"
    credentials: str | None = None  # env:NAME or file:/path holding user:password
    cafile: str | None = None
    timeout: float = TIMEOUT

    @property
    def name(self) -> str:
        return f"email via {self.host}:{self.port}"

    def message(self, event: Mapping[str, Any]) -> EmailMessage:
        text = visible(str(event["text"]))
        msg = EmailMessage()
        msg["Subject"] = f"mailmend: {text}"[:200]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain=self.sender.rpartition("@")[2])
        msg["Auto-Submitted"] = "auto-generated"
        follow = event.get("follow_up")
        body = [text, ""]
        if follow:
            body += [f"Follow-up: {visible(str(follow))}", ""]
        body += ["The event as JSON:", json.dumps(event, indent=2, sort_keys=True)]
        msg.set_content("\n".join(body) + "\n")
        return msg

    def send(self, event: Mapping[str, Any]) -> None:
        context = ssl.create_default_context(cafile=self.cafile)
        try:
            if self.tls == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                smtp.ehlo()
                if self.tls == "starttls":
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self.credentials:
                    user, password = self._credentials()
                    smtp.login(user, password)
                smtp.send_message(self.message(event))
        except smtplib.SMTPException as err:
            raise ChannelError(visible(str(err))[:300]) from None
        except (OSError, ssl.SSLError) as err:
            raise ChannelError(visible(str(err))[:300]) from None

    def _credentials(self) -> tuple[str, str]:
        assert self.credentials is not None
        secret = _resolve(self.credentials, "email credentials")
        user, sep, password = secret.partition(":")
        if not sep or not user or not password:
            raise ChannelError(
                f"email credentials: the secret in {self.credentials} is not user:password"
            )
        return user, password


# --- configuration -------------------------------------------------------------------------------


def load_alerts(path: Path) -> list[Channel]:
    """The channels of an alerts file; :class:`AlertConfigError` names the first problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise AlertConfigError(f"cannot read {path}: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise AlertConfigError(f"{path}: not valid TOML: {visible(str(err))}") from None
    unknown = sorted(set(data) - {"alert"})
    if unknown:
        raise AlertConfigError(f"{path}: unknown key {unknown[0]!r}; use [[alert]] tables")
    tables = data.get("alert", [])
    if not isinstance(tables, list):
        raise AlertConfigError(f"{path}: alert must be [[alert]] tables")
    return [_channel(t, f"{path}: alert {i + 1}") for i, t in enumerate(tables)]


_KINDS: dict[str, Callable[[dict[str, Any], str], Channel]] = {}


def _channel(table: object, where: str) -> Channel:
    if not isinstance(table, dict):
        raise AlertConfigError(f"{where}: must be a table")
    kinds = [k for k in ("webhook", "command", "email") if k in table]
    if len(kinds) != 1:
        raise AlertConfigError(f"{where}: give exactly one of webhook, command, email")
    return _KINDS[kinds[0]](table, where)


def _only(table: dict[str, Any], where: str, keys: set[str]) -> None:
    extra = sorted(set(table) - keys)
    if extra:
        raise AlertConfigError(
            f"{where}: unknown key {extra[0]!r} (known: {', '.join(sorted(keys))})"
        )


def _webhook(table: dict[str, Any], where: str) -> Channel:
    _only(table, where, {"webhook", "timeout"})
    url = table["webhook"]
    if not isinstance(url, str):
        raise AlertConfigError(f"{where}: webhook must be a URL string")
    try:
        return Webhook(check_url(url), _timeout(table, where))
    except AlertConfigError as err:
        raise AlertConfigError(f"{where}: {err}") from None


def _command(table: dict[str, Any], where: str) -> Channel:
    _only(table, where, {"command", "timeout"})
    argv = table["command"]
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AlertConfigError(
            f'{where}: command must be an array like ["/path/to/program", "arg"]'
        )
    return Command(tuple(argv), _timeout(table, where, 60.0))


def _email(table: dict[str, Any], where: str) -> Channel:
    _only(table, where, {"email", "smtp", "from", "tls", "credentials", "cafile", "timeout"})
    to = table["email"]
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to:
        raise AlertConfigError(f"{where}: email must be an address or an array of addresses")
    for address in [*to, table.get("from", "")]:
        if not isinstance(address, str) or rules.email_problem(address):
            raise AlertConfigError(f"{where}: {visible(str(address))!r} is not an email address")
    host, port = _smtp(table.get("smtp"), where)
    tls = table.get("tls", "starttls")
    if tls not in TLS_MODES:
        raise AlertConfigError(f"{where}: tls must be one of {', '.join(TLS_MODES)}")
    credentials = table.get("credentials")
    if credentials is not None:
        problem = (
            rules.relay_credentials_problem(credentials)
            if isinstance(credentials, str)
            else "must be a string"
        )
        if problem:
            raise AlertConfigError(f"{where}: credentials {problem}")
        if tls == "none":
            raise AlertConfigError(f'{where}: credentials need tls = "starttls" or "tls"')
    cafile = table.get("cafile")
    if cafile is not None and not isinstance(cafile, str):
        raise AlertConfigError(f"{where}: cafile must be a path")
    return Email(
        tuple(to), table["from"], host, port, tls, credentials, cafile, _timeout(table, where)
    )


def _smtp(raw: object, where: str) -> tuple[str, int]:
    if not isinstance(raw, str):
        raise AlertConfigError(f'{where}: smtp must be "HOST:PORT" (e.g. "mail.example.com:587")')
    host, sep, port = raw.rpartition(":")
    if not sep or rules.port_problem(port):
        raise AlertConfigError(f'{where}: smtp must be "HOST:PORT" (e.g. "mail.example.com:587")')
    host = host.strip("[]")
    problem = rules.ssh_host_problem(host)
    if problem:
        raise AlertConfigError(f"{where}: smtp host: {problem}")
    return host, int(port)


def _timeout(table: dict[str, Any], where: str, default: float = TIMEOUT) -> float:
    value = table.get("timeout", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        raise AlertConfigError(f"{where}: timeout must be seconds between 0 and 600")
    return float(value)


_KINDS.update(webhook=_webhook, command=_command, email=_email)


# --- delivery ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What one channel did with the pending events: ``done`` were sent (or given up after
    every attempt, logged); the others stay pending for the next run."""

    channel: str
    done: list[int]
    failed: int = 0


def deliver(
    channels: Sequence[Channel],
    events: Sequence[tuple[int, Mapping[str, Any]]],
    *,
    skip: Callable[[str, int], bool] = lambda channel, event: False,
    budget: float = ALERT_BUDGET,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    log: Callable[[str], None] | None = None,
) -> list[Delivery]:
    """Send the (id, event) pairs through every channel, the channels side by side (a slow
    one does not hold the others back). After ``budget`` seconds the run stops waiting: what
    a channel has not sent by then is left for the next run (at least once, in order)."""
    say = log or _stderr
    deadline = time.monotonic() + budget
    results = [Delivery(channel.name, []) for channel in channels]
    threads = []
    for channel, result in zip(channels, results, strict=True):
        todo = [(i, e) for i, e in events if not skip(channel.name, i)]
        thread = threading.Thread(
            target=_one_channel,
            args=(channel, todo, result, deadline, attempts, backoff, say),
            daemon=True,  # a send still blocked at the deadline must not keep the run alive
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for channel, thread in zip(channels, threads, strict=True):
        if thread.is_alive():
            say(f"alert {channel.name}: not done within {budget:g} s; the rest goes next run")
    return [Delivery(r.channel, list(r.done), r.failed) for r in results]


def _one_channel(
    channel: Channel,
    events: Sequence[tuple[int, Mapping[str, Any]]],
    result: Delivery,
    deadline: float,
    attempts: int,
    backoff: float,
    say: Callable[[str], None],
) -> None:
    for event_id, event in events:
        for attempt in range(1, attempts + 1):
            if time.monotonic() >= deadline:
                return
            try:
                channel.send(event)
                break
            except ChannelError as err:
                if attempt == attempts:
                    result.failed += 1
                    say(f"alert {channel.name}: gave up after {attempts} attempts: {err}")
                else:
                    say(f"alert {channel.name}: attempt {attempt} failed: {err}; retrying")
                    time.sleep(
                        min(backoff * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic()))
                    )
        result.done.append(event_id)


def _stderr(line: str) -> None:
    print(f"mailmend watch: {line}", file=sys.stderr, flush=True)
