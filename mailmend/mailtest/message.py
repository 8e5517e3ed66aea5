"""The message mail-test sends: the built-in test message, or the admin's ``.eml``.

Either way it gets a token (``X-Mailmend-Test``) that finds it in the mailbox, and the
recipient given by ``--to``; the admin's own headers and body are otherwise kept, so what is
judged is what the admin sends.
"""

from __future__ import annotations

import copy
import email
import email.errors
import email.policy
import email.utils
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

TOKEN_HEADER = "X-Mailmend-Test"  # noqa: S105 (a header name, not a password)
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_POLICY = email.policy.SMTP  # CRLF line ends, as on the wire


class MessageError(ValueError):
    """A ``--message`` file that cannot be used (one line)."""


@dataclass(frozen=True)
class Outgoing:
    token: str
    sender: str  # envelope sender (sendmail -f)
    data: bytes  # the message as submitted


def new_token() -> str:
    return secrets.token_hex(8)


def builtin_message(from_addr: str, to: str, domain: str, token: str) -> EmailMessage:
    """A plain, well-formed message: what a careful sender's mail looks like."""
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = to
    msg["Subject"] = f"mailmend delivery test {token[:6]}"
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["Message-ID"] = email.utils.make_msgid("mailtest", domain=domain)
    msg["List-Unsubscribe"] = (
        f"<https://{domain}/unsubscribe?t={token}>, <mailto:unsubscribe@{domain}?subject={token}>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = (
        "This is a delivery test sent by mailmend mail-test.\n"
        f"It checks that mail from {domain} arrives signed, aligned and in the inbox.\n"
        "It is deleted from the test mailbox once read.\n"
    )
    msg.set_content(text)
    html = (
        "<html><body><p>This is a delivery test sent by mailmend mail-test.</p>"
        f"<p>It checks that mail from {domain} arrives signed, aligned and in the inbox.</p>"
        "<p>It is deleted from the test mailbox once read.</p></body></html>"
    )
    msg.add_alternative(html, subtype="html")
    return msg


def read_eml(path: str) -> EmailMessage:
    """The admin's message file, parsed; MessageError for what cannot be a message."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise MessageError(f"--message: cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MessageError(f"--message: {path} is not a regular file")
    if st.st_size > MAX_MESSAGE_BYTES:
        raise MessageError(f"--message: {path} is over 10 MiB: not a message to test with")
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise MessageError(f"--message: cannot read {path}: {err.strerror}") from None
    return parse_eml(data, path)


def parse_eml(data: bytes, where: str) -> EmailMessage:
    if not data.strip():
        raise MessageError(f"--message: {where} is empty")
    head = data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    first = head.split(b"\n", 1)[0]
    if b":" not in first or first[:1] in (b" ", b"\t"):
        raise MessageError(
            f"--message: {where} does not start with a header line (Name: value): "
            "not an .eml file (save the message as raw source / original)"
        )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    defects = [d for d in msg.defects if isinstance(d, _FATAL_DEFECTS)]
    if defects:
        raise MessageError(f"--message: {where} is malformed: {_defect_text(defects[0])}")
    try:
        senders = msg.get_all("From", [])
    except (email.errors.HeaderParseError, ValueError, IndexError) as err:
        raise MessageError(f"--message: {where}: unreadable From header ({err})") from None
    if len(senders) != 1:
        raise MessageError(f"--message: {where} must have exactly one From header")
    if not address_of(str(senders[0])):
        raise MessageError(f"--message: {where}: the From header has no address")
    return msg


_FATAL_DEFECTS = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.InvalidBase64PaddingDefect,
)


def _defect_text(defect: email.errors.MessageDefect) -> str:
    return (defect.__doc__ or type(defect).__name__).strip().splitlines()[0]


def address_of(value: str) -> str:
    """The address in a From/To value (``Name <a@b>`` -> ``a@b``), '' if there is none."""
    _name, addr = email.utils.parseaddr(value)
    return addr if "@" in addr else ""


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower().rstrip(".")


def prepare(msg: EmailMessage, to: str, token: str, fallback_sender: str) -> Outgoing:
    """``msg`` addressed to ``to`` with the token header; the envelope sender is its From
    address (so SPF is judged for the domain the admin sends as)."""
    out = copy.deepcopy(msg)
    for name in ("To", "Cc", "Bcc", TOKEN_HEADER):
        del out[name]
    out["To"] = to
    out[TOKEN_HEADER] = token
    if "Date" not in out:
        out["Date"] = email.utils.format_datetime(datetime.now(UTC))
    sender = address_of(str(msg.get("From", ""))) or fallback_sender
    return Outgoing(token, sender, out.as_bytes(policy=_POLICY))
