"""What every check needs from DNS: a typed answer, and a resolver passed in.

The fast engine (``mailmend.checks.engine``) implements :class:`Resolver`; unit tests pass a
fake that subclasses it (and so inherits the plain ``query_many``). Checks never touch a global
resolver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
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

    async def query_many(
        self,
        questions: Sequence[tuple[str, str]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[DnsAnswer]:
        """Ask every ``(name, type)``; answers come back in the questions' order.

        ``progress(done, total)`` is called as answers arrive. This default (inherited by a
        class that subclasses :class:`Resolver`, such as the tests' fakes) asks each question
        with :meth:`query`, all at once; the engine pipelines them under its send window and
        gives what is unanswered at its batch deadline TIMEOUT.
        """
        total = len(questions)
        done = 0

        async def one(name: str, rdtype: str) -> DnsAnswer:
            nonlocal done
            answer = await self.query(name, rdtype)
            done += 1
            if progress is not None:
                progress(done, total)
            return answer

        return list(await asyncio.gather(*(one(name, rdtype) for name, rdtype in questions)))
