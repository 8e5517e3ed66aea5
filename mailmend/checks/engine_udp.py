"""The DNS engine's sockets: one connected UDP socket per channel, and the TCP fallback.

A :class:`Channel` sends a job's attempt with a fresh random id, matches each datagram on id
and question, and hands answers to the scheduler (``on_response``); datagrams for retired
ids count as late, anything else that does not match as malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from mailmend.checks.engine_jobs import Job
from mailmend.checks.flow import ServerFlow
from mailmend.checks.nameservers import Nameserver
from mailmend.checks.wire import HEADER_TAIL, Fields, ParsedResponse, parse_fields, parse_response

if TYPE_CHECKING:
    from mailmend.checks.engine import EngineStats

__all__ = ["Channel", "tcp_exchange"]

_RCVBUF = 1 << 20

#: the scheduler's hook for a matching answer: (channel, query id, job, parsed fields)
OnResponse = Callable[["Channel", int, Job, Fields], None]


class Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver, with its queries in flight."""

    def __init__(
        self, stats: EngineStats, on_response: OnResponse, ns_index: int, server: ServerFlow
    ) -> None:
        self.stats = stats
        self.on_response = on_response
        self.ns_index = ns_index
        self.server = server
        self.pending: dict[int, Job] = {}  # every registered attempt, latest and older
        self.inflight = 0  # latest attempts only: what counts against max_in_flight
        self.retired: dict[int, float] = {}  # ids no longer awaited -> until when to expect them
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def send(self, job: Job, now: float) -> None:
        pending = self.pending
        retired = self.retired
        qid = random.getrandbits(16)
        while qid in pending or qid in retired:
            qid = random.getrandbits(16)
        pending[qid] = job
        self.server.spend()
        self.inflight += 1
        job.attempts += 1
        job.sent_at = now
        job.last_ns = self.ns_index
        job.channel = self
        job.qid = qid
        assert self.transport is not None
        self.transport.sendto(qid.to_bytes(2, "big") + HEADER_TAIL + job.question)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        qid = (data[0] << 8) | data[1] if len(data) >= 12 else -1
        job = self.pending.get(qid)
        if job is None:
            if self.retired.pop(qid, None) is not None:
                self.stats.late += 1
            else:
                self.stats.malformed += 1
            return
        try:
            parsed = parse_fields(data, job.question, job.rdtype)
        except ValueError:
            parsed = None
        if parsed is None:
            self.stats.malformed += 1
            return
        del self.pending[qid]
        if qid == job.qid and job.channel is self:
            self.leave()  # the window counts each question's latest attempt only
        self.on_response(self, qid, job, parsed)

    def leave(self) -> None:
        """An attempt leaves the send window (answered, superseded or given up)."""
        self.server.inflight -= 1
        self.inflight -= 1

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable): the retransmission timeout handles the loss."""


async def tcp_exchange(job: Job, ns: Nameserver) -> ParsedResponse:
    """Ask ``job``'s question over TCP (a UDP answer came back truncated)."""
    reader, writer = await asyncio.open_connection(ns.host, ns.port)
    try:
        qid = random.getrandbits(16)
        message = qid.to_bytes(2, "big") + HEADER_TAIL + job.question
        writer.write(len(message).to_bytes(2, "big") + message)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")
        data = await reader.readexactly(size)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parsed = parse_response(data, job.question, job.rdtype)
    if parsed is None or parsed.qid != qid:
        raise ValueError("TCP answer does not match the question")
    return parsed
