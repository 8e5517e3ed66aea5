"""Report attachments in a report mail (RFC 7489 7.2.1.1: zip, gzip or XML parts)."""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.policy
from dataclasses import dataclass

from mailmend.dmarc.archive import kind_of

REPORT_TYPES = frozenset(
    {
        "application/zip",
        "application/x-zip-compressed",
        "application/gzip",
        "application/x-gzip",
        "application/xml",
        "text/xml",
        "application/octet-stream",
    }
)
REPORT_SUFFIXES = (".zip", ".gz", ".xml")


@dataclass(frozen=True)
class Attachment:
    name: str  # the part's file name, or its content type when it has none
    data: bytes


@dataclass(frozen=True)
class ReportMail:
    subject: str
    message_id: str
    attachments: tuple[Attachment, ...]


def is_mail(data: bytes) -> bool:
    """Looks like an RFC 5322 message (a header line first), not a bare report."""
    first = data[:200].split(b"\n", 1)[0]
    name, colon, _ = first.partition(b":")
    return bool(colon) and bool(name) and all(33 <= b <= 126 for b in name)


def read_mail(data: bytes) -> ReportMail:
    """The report parts of one message: by content type or file name, judged by content."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type().lower()
        filename = _header_text(part.get_filename())
        if ctype not in REPORT_TYPES and not filename.lower().endswith(REPORT_SUFFIXES):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        if ctype == "application/octet-stream" and kind_of(payload) == "other":
            continue
        found.append(Attachment(filename or ctype, payload))
    return ReportMail(
        _header_text(message.get("Subject")),
        _header_text(message.get("Message-ID")),
        tuple(found),
    )


def _header_text(value: object) -> str:
    if value is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        text = str(value)
    return text[:300]
