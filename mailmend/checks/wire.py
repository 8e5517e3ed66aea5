"""The DNS wire format the engine speaks: hand-built queries and a lean response parser.

A query is a 12-byte header (RD=1, one question) and the question (QNAME, QTYPE, class IN).
A response is matched on its question as well as its id; A and AAAA answers are read
directly, other types through dnspython.

>>> build_query(0x1234, "example.com", "A").hex()
'123401000001000000000000076578616d706c6503636f6d0000010001'
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

from mailmend.checks.dns import Rcode

__all__ = [
    "HEADER_TAIL",
    "ParsedResponse",
    "build_query",
    "encode_name",
    "encode_question",
    "normalize_qname",
    "parse_fields",
    "parse_response",
    "rdtype_code",
]

HEADER_TAIL = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # after the id: RD=1, QDCOUNT=1
_RCODES = {0: Rcode.NOERROR, 2: Rcode.SERVFAIL, 3: Rcode.NXDOMAIN, 5: Rcode.REFUSED}
_RR = struct.Struct(">HHIH")
_TYPE_A = 1
_TYPE_AAAA = 28

#: (rcode, truncated, records): what the engine needs from a response
Fields = tuple[Rcode, bool, tuple[str, ...]]


def encode_name(name: str) -> bytes:
    """Wire form of an absolute name. Raises ValueError for a name DNS cannot carry."""
    text = name.rstrip(".") if name != "." else ""
    if not text:
        return b"\x00"
    if not text.isascii() or "\\" in text:
        try:
            wire = dns.name.from_text(name, origin=dns.name.root).to_wire()
        except dns.exception.DNSException as exc:
            raise ValueError(f"bad DNS name {name!r}: {exc}") from None
        assert wire is not None
        return wire
    out = bytearray()
    for label in text.encode("ascii").split(b"."):
        if not 0 < len(label) < 64:
            raise ValueError(f"bad DNS name {name!r}: empty or over-long label")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"bad DNS name {name!r}: longer than 255 bytes")
    return bytes(out)


_QTAIL: dict[int, bytes] = {}


def encode_question(name: str, rdtype: int) -> bytes:
    """The question section for ``name`` (absolute) and a type code, class IN."""
    tail = _QTAIL.get(rdtype)
    if tail is None:
        tail = _QTAIL[rdtype] = struct.pack(">HH", rdtype, dns.rdataclass.IN)
    return encode_name(name) + tail


def build_query(qid: int, name: str, rdtype: str) -> bytes:
    """A complete query message (RD=1, one question, class IN)."""
    return qid.to_bytes(2, "big") + HEADER_TAIL + encode_question(name, rdtype_code(rdtype))


@dataclass(frozen=True)
class ParsedResponse:
    """What the engine reads from a response."""

    qid: int
    rcode: Rcode
    truncated: bool
    records: tuple[str, ...]


def parse_response(data: bytes, question: bytes, rdtype: int) -> ParsedResponse | None:
    """Parse a response to ``question`` (QNAME+QTYPE+QCLASS wire); None if it is not one.

    Raises ValueError for a response that matches but cannot be parsed.
    """
    parsed = parse_fields(data, question, rdtype)
    if parsed is None:
        return None
    return ParsedResponse((data[0] << 8) | data[1], *parsed)


def parse_fields(data: bytes, question: bytes, rdtype: int) -> Fields | None:
    """parse_response's work without the id or an object (the engine's hot path)."""
    if len(data) < 12 or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return None
    end = 12 + len(question)
    got = data[12:end]
    if got != question and got.lower() != question.lower():
        return None
    rcode = _RCODES.get(data[3] & 0x0F, Rcode.OTHER)
    truncated = bool(data[2] & 0x02)
    if truncated or rcode is not Rcode.NOERROR:
        return rcode, truncated, ()
    try:
        records = _records(data, end, rdtype)
    except (struct.error, IndexError, dns.exception.DNSException) as exc:
        raise ValueError(f"malformed response: {exc}") from None
    return rcode, truncated, records


def _records(data: bytes, offset: int, rdtype: int) -> tuple[str, ...]:
    if rdtype in (_TYPE_A, _TYPE_AAAA):
        return _address_records(data, offset, rdtype)
    return _other_records(data, rdtype)


def _address_records(data: bytes, offset: int, rdtype: int) -> tuple[str, ...]:
    ancount = (data[6] << 8) | data[7]
    size = 4 if rdtype == _TYPE_A else 16
    out: list[str] = []
    for _ in range(ancount):
        offset = _skip_name(data, offset)
        rtype, rclass, _ttl, rdlen = _RR.unpack_from(data, offset)
        offset += 10
        if rtype == rdtype and rclass == 1:
            if rdlen != size or offset + size > len(data):
                raise IndexError("bad address record length")
            out.append(_address_text(data[offset : offset + size]))
        offset += rdlen
    return tuple(out)


def _address_text(raw: bytes) -> str:
    if len(raw) == 4:
        return socket.inet_ntoa(raw)
    return ipaddress.IPv6Address(raw).compressed


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length & 0xC0:
            raise IndexError("bad label type")
        offset += length + 1


def _other_records(data: bytes, rdtype: int) -> tuple[str, ...]:
    msg = dns.message.from_wire(data, ignore_trailing=True)
    out: list[str] = []
    for rrset in msg.answer:
        if rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
            out.extend(_rdata_text(rd) for rd in rrset)
    return tuple(out)


def _rdata_text(rd: Any) -> str:
    rdtype = rd.rdtype
    if rdtype == dns.rdatatype.TXT:
        return b"".join(rd.strings).decode("utf-8", errors="replace")
    if rdtype == dns.rdatatype.MX:
        return f"{rd.preference} {rd.exchange.to_text()}"
    if rdtype in (dns.rdatatype.PTR, dns.rdatatype.CNAME, dns.rdatatype.NS):
        return str(rd.target.to_text())
    return str(rd.to_text())


_RDTYPE_CACHE: dict[str, int] = {}


def rdtype_code(text: str) -> int:
    """The code of a record type's name (``"TXT"`` -> 16); ValueError for an unknown one."""
    code = _RDTYPE_CACHE.get(text)
    if code is None:
        try:
            code = int(dns.rdatatype.from_text(text))
        except dns.exception.DNSException:
            raise ValueError(f"unknown record type {text!r}") from None
        _RDTYPE_CACHE[text] = code
    return code


def normalize_qname(name: str) -> str:
    """Lower case and absolute: the form questions are cached and matched in."""
    name = name.lower()
    return name if name.endswith(".") else name + "."
