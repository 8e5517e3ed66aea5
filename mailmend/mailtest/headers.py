"""Header rules a receiver (and Gmail's and Yahoo's 2024 bulk-sender rules) judge a message by.

Each rule returns a :class:`CheckResult` (check ``headers``); the same rules serve ``--lint``
on the admin's file and the verdict on the received message. Values read from the message
go into results as they are: every renderer escapes them.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage, Message

from mailmend.checks.result import CheckResult, Status

CHECK = "headers"
LARGE_BYTES = 1_000_000  # over this, many receivers clip or score the message


def _r(status: Status, subject: str, summary: str, fix: str | None = None) -> CheckResult:
    return CheckResult(CHECK, status, subject, summary, fix=fix)


def header_results(msg: Message, size: int) -> list[CheckResult]:
    return [
        _message_id(msg),
        _date(msg),
        _from_to(msg),
        _unsubscribe(msg),
        _text_part(msg),
        _size(size),
    ]


def _one(msg: Message, name: str) -> list[str]:
    return [str(v) for v in (msg.get_all(name) or [])]


def _message_id(msg: Message) -> CheckResult:
    ids = _one(msg, "Message-ID")
    if len(ids) != 1:
        return _r(
            Status.FAIL if not ids else Status.WARN,
            "Message-ID",
            f"{len(ids)} Message-ID headers",
            "give every message exactly one Message-ID: <unique@your.domain>",
        )
    value = ids[0].strip()
    if not (value.startswith("<") and value.endswith(">") and "@" in value):
        return _r(
            Status.WARN,
            "Message-ID",
            f"Message-ID {value} is not <unique@domain> (RFC 5322 3.6.4)",
            "generate Message-IDs as <random@your.domain>",
        )
    return _r(Status.PASS, "Message-ID", f"Message-ID {value}")


def _date(msg: Message) -> CheckResult:
    dates = _one(msg, "Date")
    if len(dates) != 1:
        return _r(
            Status.FAIL,
            "Date",
            f"{len(dates)} Date headers",
            "give the message exactly one Date header (RFC 5322)",
        )
    try:
        email.utils.parsedate_to_datetime(dates[0])
    except (TypeError, ValueError, IndexError):
        return _r(
            Status.FAIL,
            "Date",
            f"Date {dates[0]!r} is not an RFC 5322 date",
            "write dates like: Tue, 1 Jul 2025 10:00:00 +0000",
        )
    return _r(Status.PASS, "Date", f"Date {dates[0]}")


def _from_to(msg: Message) -> CheckResult:
    froms = _one(msg, "From")
    tos = _one(msg, "To")
    if len(froms) != 1 or "@" not in email.utils.parseaddr(froms[0])[1]:
        return _r(
            Status.FAIL,
            "From",
            f"{len(froms)} From header(s) with an address",
            "give the message exactly one From: with one address at your domain",
        )
    if not tos:
        return _r(Status.WARN, "To", "no To header", "address the recipient in To:")
    return _r(Status.PASS, "From/To", f"From {froms[0]}, To {tos[0]}")


def _unsubscribe(msg: Message) -> CheckResult:
    values = _one(msg, "List-Unsubscribe")
    fix = (
        "add List-Unsubscribe: <https://your.domain/unsubscribe?id=...> (or <mailto:...>) and "
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058; Gmail and Yahoo require "
        "one-click unsubscribe from bulk senders since 2024)"
    )
    if not values:
        return _r(Status.WARN, "List-Unsubscribe", "no List-Unsubscribe header", fix)
    uris = [u.strip().strip("<>") for u in " ".join(values).split(",")]
    https = [u for u in uris if u.lower().startswith("https://")]
    mailto = [u for u in uris if u.lower().startswith("mailto:")]
    if not https and not mailto:
        return _r(
            Status.WARN,
            "List-Unsubscribe",
            f"List-Unsubscribe {values[0]} has no <https://...> or <mailto:...> URI",
            fix,
        )
    post = " ".join(_one(msg, "List-Unsubscribe-Post")).strip()
    if post.replace(" ", "").lower() != "list-unsubscribe=one-click":
        return _r(
            Status.WARN,
            "List-Unsubscribe",
            "List-Unsubscribe without List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            fix,
        )
    if not https:
        return _r(
            Status.WARN,
            "List-Unsubscribe",
            "one-click unsubscribe (RFC 8058) needs an https URI; only mailto: is given",
            fix,
        )
    return _r(Status.PASS, "List-Unsubscribe", f"one-click unsubscribe: {https[0]}")


def _text_part(msg: Message) -> CheckResult:
    types = [part.get_content_type() for part in msg.walk() if not part.is_multipart()]
    if "text/html" in types and "text/plain" not in types:
        return _r(
            Status.WARN,
            "text part",
            "HTML only: no text/plain part beside the HTML",
            "send multipart/alternative with a text/plain version of the HTML",
        )
    if not any(t.startswith("text/") for t in types):
        return _r(Status.WARN, "text part", "no text part at all", "add a text/plain part")
    return _r(Status.PASS, "text part", f"parts: {', '.join(types)}")


def _size(size: int) -> CheckResult:
    if size > LARGE_BYTES:
        return _r(
            Status.WARN,
            "size",
            f"{size} bytes: large messages are clipped or scored by receivers",
            "link to large content instead of attaching or inlining it",
        )
    return _r(Status.PASS, "size", f"{size} bytes")


def lint(msg: EmailMessage, size: int) -> list[CheckResult]:
    """The header rules on the admin's file, before anything is sent."""
    return header_results(msg, size)
