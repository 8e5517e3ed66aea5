"""Small fake DNS servers on loopback for fault tests (UDP and TCP on one random port).

A handler gets each query and the transport it came on, and returns the response message
or None to drop the query. Nothing here talks to anything but 127.0.0.1.

Example::

    async with FakeDns(servfail) as server:
        cfg = EngineConfig(nameservers=(server.nameserver,))
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Self, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from mailmend.checks.nameservers import Nameserver

Handler = Callable[[dns.message.Message, str], dns.message.Message | None]


def drop(query: dns.message.Message, transport: str) -> dns.message.Message | None:
    """Answer nothing, ever."""
    return None


def servfail(query: dns.message.Message, transport: str) -> dns.message.Message | None:
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response


def answer(
    query: dns.message.Message, records: Sequence[str], ttl: int = 60
) -> dns.message.Message:
    """A NOERROR response carrying ``records`` of the asked type (NXDOMAIN if none)."""
    response = dns.message.make_response(query)
    question = query.question[0]
    if not records:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    rrset = dns.rrset.from_text_list(
        question.name, ttl, dns.rdataclass.IN, question.rdtype, list(records)
    )
    response.answer.append(rrset)
    return response


def zone(data: Mapping[tuple[str, str], Sequence[str]]) -> Handler:
    """Answer from a table of (absolute name, type) -> records; NXDOMAIN for the rest."""

    def handle(query: dns.message.Message, transport: str) -> dns.message.Message | None:
        question = query.question[0]
        key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
        return answer(query, data.get(key, ()))

    return handle


def truncating(records: Sequence[str]) -> Handler:
    """TC=1 with no records over UDP; the full answer over TCP."""

    def handle(query: dns.message.Message, transport: str) -> dns.message.Message | None:
        if transport == "udp":
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response
        return answer(query, records)

    return handle


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: FakeDns) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.handle(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class FakeDns:
    """A fake nameserver on 127.0.0.1:<free port>, UDP and TCP."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.udp_queries: list[tuple[str, str]] = []
        self.tcp_queries: list[tuple[str, str]] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self.port = 0

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver("127.0.0.1", self.port)

    def handle(self, data: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        seen = self.udp_queries if transport == "udp" else self.tcp_queries
        seen.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        response = self.handler(query, transport)
        return None if response is None else response.to_wire()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # the UDP port may be taken for TCP: try another
            transport, _proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("127.0.0.1", 0)
            )
            self.port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
            except OSError:
                transport.close()
                continue
            self._udp = transport
            return self
        raise OSError("no free port for UDP and TCP on 127.0.0.1")

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = self.handle(await reader.readexactly(size), "tcp")
            if reply is not None:
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


_P = ParamSpec("_P")


def aio(test: Callable[_P, Coroutine[Any, Any, None]]) -> Callable[_P, None]:
    """Run an async test on a fresh event loop (the project has no pytest-asyncio)."""

    @functools.wraps(test)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# A question's copies as a scripted server sees them: n is 1 for the first copy of a question
# (name and type), 2 for the first re-send, and so on. Return seconds to hold the answer, or
# None to drop that copy.
Plan = Callable[[str, int], float | None]


class ScriptedUdpDns:
    """A UDP-only fake nameserver on 127.0.0.1 that holds or drops each copy of a question.

    ``plan(name, n)`` decides per copy (see Plan); answers come from ``handler``. ``arrivals``
    records (loop time, name, query id) of every query received, ``answered`` the ids
    answered, in order.

    Example::

        slow_first = lambda name, n: 0.2 if n == 1 else None  # only the first copy, late
        async with ScriptedUdpDns(zone(DATA), slow_first) as server: ...
    """

    def __init__(self, handler: Handler, plan: Plan) -> None:
        self.handler = handler
        self.plan = plan
        self.arrivals: list[tuple[float, str, int]] = []
        self.answered: list[int] = []
        self.port = 0
        self._copies: dict[tuple[str, int], int] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def nameserver(self) -> Nameserver:
        return Nameserver("127.0.0.1", self.port)

    def copies(self, name: str) -> int:
        """How many copies of ``name`` (absolute, any type) arrived."""
        return sum(n for (qname, _), n in self._copies.items() if qname == name)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        server = self

        class _Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                server._received(loop, data, addr)

        self._transport, _ = await loop.create_datagram_endpoint(
            _Proto, local_addr=("127.0.0.1", 0)
        )
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._transport is not None:
            self._transport.close()

    def _received(
        self, loop: asyncio.AbstractEventLoop, data: bytes, addr: tuple[str, int]
    ) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text()
        self.arrivals.append((loop.time(), name, query.id))
        key = (name, int(question.rdtype))
        copy = self._copies[key] = self._copies.get(key, 0) + 1
        hold = self.plan(name, copy)
        response = self.handler(query, "udp")
        if hold is None or response is None:
            return
        wire = response.to_wire()

        def send() -> None:
            self._timers.discard(timer)
            if self._transport is not None and not self._transport.is_closing():
                self.answered.append(query.id)
                self._transport.sendto(wire, addr)

        timer = loop.call_later(hold, send)
        self._timers.add(timer)


class ThreadedDns:
    """A :class:`FakeDns` served from a thread, for a CLI running in another process."""

    def __init__(self, handler: Handler) -> None:
        self.server = FakeDns(handler)
        self.ready = threading.Event()
        self.stop: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            async with self.server:
                self.stop = asyncio.Event()
                self.loop = asyncio.get_running_loop()
                self.ready.set()
                await self.stop.wait()

        asyncio.run(main())

    def __enter__(self) -> str:
        self.thread.start()
        assert self.ready.wait(5)
        return f"127.0.0.1:{self.server.port}"

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)
