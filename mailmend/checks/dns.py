"""What every check needs from DNS: a typed answer, and a resolver passed in.

The fast engine (``checks.engine``) implements :class:`Resolver`; unit tests pass a fake.
Checks never touch a global resolver.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Rcode(StrEnum):
    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"
    TIMEOUT = "TIMEOUT"  # no answer within the per-query timeout after every retry
    OTHER = "OTHER"  # FORMERR, NOTIMP, ...


@dataclass(frozen=True)
class DnsAnswer:
    """The answer to one question.

    ``records`` holds the answer section's records of the asked type in text form:
    an address for A/AAAA, an absolute name for PTR/MX exchange/CNAME, and for TXT the
    character strings of one record joined with no separator (RFC 7208 3.3).
    MX records are ``"PREFERENCE EXCHANGE"``.
    """

    name: str
    rdtype: str
    rcode: Rcode
    records: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The server answered (NOERROR or NXDOMAIN): the answer can be believed."""
        return self.rcode in (Rcode.NOERROR, Rcode.NXDOMAIN)

    @property
    def exists(self) -> bool:
        return self.rcode is Rcode.NOERROR and bool(self.records)


class Resolver(Protocol):
    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask one question (absolute name, no search list). Never raises for DNS outcomes."""
        ...
