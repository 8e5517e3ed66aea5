"""The fast DNS engine: many questions pipelined on a few UDP sockets.

One asyncio datagram endpoint per nameserver (``sockets_per_nameserver`` of them), a bounded
number of queries in flight on each, hand-built queries and a lean response parser. Responses
are matched on the query id AND the question (name, type, class). A question is sent at most
``1 + retries`` times, each with a new id (and the next nameserver when there are several). A
re-send happens after an adaptive retransmission timeout learnt from each nameserver's
round-trip times (RFC 6298 style: SRTT + max(50 ms, 4 * RTTVAR), at most ``timeout``, doubled
per attempt), and every attempt stays registered: whichever is answered first wins. The last
attempt waits the full ``timeout``; only then is the outcome TIMEOUT. Queries go out under a
per-nameserver window that starts small and grows (slow start), halves on loss, and is paced
over the round-trip time, so a cold server is not flooded. TC=1 answers are asked again over TCP.
Identical questions in flight are sent once; answers are cached for the engine's life (one
run). TIMEOUT is its own outcome, never NXDOMAIN. Only each question's latest attempt counts
against ``max_in_flight`` (earlier ones stay registered, out of the window). A run always ends:
once a question has had every attempt and no nameserver has ever answered, and at the caller's
total deadline, :meth:`Engine.abandon` gives every open and later question TIMEOUT at once.

Example::

    cfg = EngineConfig(nameservers=(parse_nameserver("127.0.0.1:5353"),))
    async with Engine(cfg) as eng:
        answer = await eng.query("2.0.0.127.zen.spamhaus.org", "A")
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar, cast

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailmend.checks.dns import DnsAnswer, Rcode

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineStats",
    "Nameserver",
    "build_query",
    "encode_name",
    "parse_nameserver",
    "parse_response",
    "run",
    "system_nameservers",
]

_T = TypeVar("_T")
_RCODES = {0: Rcode.NOERROR, 2: Rcode.SERVFAIL, 3: Rcode.NXDOMAIN, 5: Rcode.REFUSED}
_HEADER_TAIL = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # RD=1, QDCOUNT=1
_RR = struct.Struct(">HHIH")
_TYPE_A = 1
_TYPE_AAAA = 28
_RCVBUF = 1 << 20
# Retransmission and pacing (see _Server).
_RTO_MARGIN = 0.05  # seconds: the least margin of the RTO over SRTT (RFC 6298's G, coarse)
_MIN_SWEEP = 0.005  # seconds between looks for attempts whose wait is over: RTO / 4,
_MAX_SWEEP = 0.025  # within these bounds (short while cold: the RTO may drop at any answer)
_INITIAL_WINDOW = 100  # queries in flight to a server before its first answer
_MIN_WINDOW = 8.0
_AVOIDANCE_GROWTH = 0.25  # window growth per answer once a loss has halved it
_PACING_GAIN = 2.0  # pace at this many windows per round trip
_MIN_BURST = 16.0  # queries a paced server may get back to back...
_BURST_SECONDS = 0.002  # ...or this many seconds' worth at its pacing rate, if more
_MIN_PACER = 0.0005  # seconds: the shortest pacing timer


# --- nameservers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nameserver:
    """A nameserver's address (an IP literal, never a name) and UDP/TCP port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``IP``, ``IP:PORT``, ``IPv6`` or ``[IPv6]:PORT``.

    >>> parse_nameserver("[::1]:5353")
    Nameserver(host='::1', port=5353)
    """
    text = text.strip()
    host, port = _split_host_port(text)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {host!r} is not an IP address") from None
    return Nameserver(str(addr), _parse_port(text, port))


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None  # IPv4 alone, or a bare IPv6 address


def _parse_port(text: str, port: str | None) -> int:
    if port is None:
        return 53
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"nameserver {text!r}: port must be 1-65535")
    return int(port)


def system_nameservers() -> tuple[Nameserver, ...]:
    """The nameservers of /etc/resolv.conf (search list and options are ignored)."""
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        raise ValueError("no nameserver in /etc/resolv.conf: give one explicitly") from None
    return tuple(parse_nameserver(str(ns)) for ns in resolver.nameservers)


# --- configuration and counters -----------------------------------------------------------------


@dataclass(frozen=True)
class EngineConfig:
    """How the engine asks.

    ``timeout`` bounds each attempt's wait (re-sends may come sooner, after the adaptive
    retransmission timeout); a question is sent ``1 + retries`` times at most and gets TIMEOUT
    only once the last attempt has waited ``timeout`` with no answer to any attempt. ``deadline``
    bounds one :meth:`Engine.query_many` batch. ``max_in_flight`` is per socket.
    ``zone_rate_limits`` maps a zone suffix to queries per second for names under it.
    ``give_up_on_silence``: once a question has had every attempt and no nameserver has ever
    answered anything, :meth:`Engine.abandon` (every other question gets TIMEOUT at once).
    """

    nameservers: tuple[Nameserver, ...]
    timeout: float = 1.5
    retries: int = 2
    deadline: float = 60.0
    max_in_flight: int = 150
    zone_rate_limits: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    sockets_per_nameserver: int = 1
    give_up_on_silence: bool = True

    def __post_init__(self) -> None:
        if not self.nameservers:
            raise ValueError("at least one nameserver is needed")
        if not (0 < self.timeout < math.inf and 0 < self.deadline < math.inf):
            raise ValueError("timeout and deadline must be finite and positive")
        if self.retries < 0 or self.max_in_flight < 1 or self.sockets_per_nameserver < 1:
            raise ValueError("retries >= 0, max_in_flight >= 1, sockets_per_nameserver >= 1")
        for zone, rate in self.zone_rate_limits.items():
            if rate <= 0:
                raise ValueError(f"rate limit for {zone!r} must be positive")


@dataclass
class EngineStats:
    """Counters for one engine's life."""

    sent: int = 0  # UDP datagrams and TCP queries written
    retried: int = 0  # re-sends after a retransmission timeout (adaptive, see _Server)
    timeouts: int = 0  # questions that got no answer after every retry
    tcp_fallbacks: int = 0  # TC=1 answers asked again over TCP
    cache_hits: int = 0  # answered from this run's cache
    deduplicated: int = 0  # joined an identical question already in flight
    malformed: int = 0  # datagrams dropped: unknown id, wrong question, unparsable
    late: int = 0  # answers to an attempt no longer awaited (another attempt's answer won)


# --- wire format -------------------------------------------------------------------------------


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


def _question(name: str, rdtype: int) -> bytes:
    tail = _QTAIL.get(rdtype)
    if tail is None:
        tail = _QTAIL[rdtype] = struct.pack(">HH", rdtype, dns.rdataclass.IN)
    return encode_name(name) + tail


def build_query(qid: int, name: str, rdtype: str) -> bytes:
    """A complete query message (RD=1, one question, class IN)."""
    return qid.to_bytes(2, "big") + _HEADER_TAIL + _question(name, _rdtype(rdtype))


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
    parsed = _parse(data, question, rdtype)
    if parsed is None:
        return None
    return ParsedResponse((data[0] << 8) | data[1], *parsed)


def _parse(data: bytes, question: bytes, rdtype: int) -> tuple[Rcode, bool, tuple[str, ...]] | None:
    """parse_response's work without the id or an object: (rcode, truncated, records)."""
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


def _rdtype(text: str) -> int:
    code = _RDTYPE_CACHE.get(text)
    if code is None:
        try:
            code = int(dns.rdatatype.from_text(text))
        except dns.exception.DNSException:
            raise ValueError(f"unknown record type {text!r}") from None
        _RDTYPE_CACHE[text] = code
    return code


def _normalize(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


# --- one question's life -----------------------------------------------------------------------


class _Waiter:
    """Someone waiting for a question's answer; ``alive`` is False once nobody cares."""

    __slots__ = ()

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def deliver(self, answer: DnsAnswer) -> None:
        raise NotImplementedError


class _FutureWaiter(_Waiter):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[DnsAnswer]) -> None:
        self.future = future

    @property
    def alive(self) -> bool:
        return not self.future.done()

    def deliver(self, answer: DnsAnswer) -> None:
        if not self.future.done():
            self.future.set_result(answer)


class _Job:
    """One distinct question being asked, and everyone waiting for its answer.

    ``channel``, ``qid`` and ``sent_at`` describe the latest attempt (``qid`` is -1 while a
    re-send waits for room). ``older`` lists the earlier attempts that are still registered:
    whichever attempt is answered first wins, and the others' ids are retired.
    """

    __slots__ = (
        "attempts", "bucket", "channel", "done", "key", "last_ns", "older", "qid", "question",
        "rdtype", "sent_at", "waiters",
    )  # fmt: skip

    def __init__(self, key: tuple[str, str], rdtype: int, bucket: _Bucket | None) -> None:
        self.key = key
        self.rdtype = rdtype
        self.question = _question(key[0], rdtype)
        self.waiters: list[_Waiter] = []
        self.attempts = 0
        self.sent_at = 0.0
        self.last_ns = -1
        self.bucket = bucket
        self.channel: _Channel | None = None
        self.qid = -1
        self.older: list[tuple[_Channel, int, float]] | None = None
        self.done = False


class _Bucket:
    """Spaces the queries for names under one zone to ``rate`` per second."""

    __slots__ = ("interval", "next_at", "waiting", "wakeup")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.waiting: deque[_Job] = deque()
        self.wakeup: asyncio.TimerHandle | None = None


class _Server:
    """What the engine learns about one nameserver: its round-trip time and a send window.

    Retransmission timeout (RTO): SRTT + max(_RTO_MARGIN, 4 * RTTVAR) from the answers'
    round-trip times (RFC 6298 with a coarse G), at most ``timeout``; ``timeout`` until the
    first answer. Window: the queries in flight to this server (all its sockets, earlier
    attempts included) start at _INITIAL_WINDOW and grow by one per answer (slow start) up to
    ``cap``; a loss halves the window, at most once per round trip, and growth slows after.
    Once a round-trip time is known, sends are paced at _PACING_GAIN * window / SRTT with a
    short burst allowance, so a window reaches the server spread over a round trip instead of
    in one burst that overflows its receive buffer.
    """

    __slots__ = (
        "cap", "cwnd", "inflight", "rate", "recover_after", "refilled", "rto", "rttvar", "srtt",
        "ssthresh", "timeout", "tokens",
    )  # fmt: skip

    def __init__(self, cap: int, timeout: float) -> None:
        self.cap = float(cap)
        self.timeout = timeout
        self.cwnd = float(min(cap, _INITIAL_WINDOW))
        self.ssthresh = float(cap)
        self.inflight = 0
        self.srtt = 0.0  # 0: no sample yet
        self.rttvar = 0.0
        self.rto = timeout
        self.recover_after = 0.0
        self.rate = 0.0  # pacing, queries per second; 0: not paced
        self.tokens = 0.0
        self.refilled = 0.0

    def on_answer(self, rtt: float) -> None:
        if self.srtt == 0.0:
            self.srtt = max(rtt, 1e-6)
            self.rttvar = rtt / 2
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) * 0.25
            self.srtt += (rtt - self.srtt) * 0.125
        self.rto = min(self.srtt + max(4 * self.rttvar, _RTO_MARGIN), self.timeout)
        cwnd = self.cwnd
        if cwnd < self.cap:
            cwnd += 1.0 if cwnd < self.ssthresh else _AVOIDANCE_GROWTH
            self.cwnd = cwnd if cwnd < self.cap else self.cap
        self.rate = _PACING_GAIN * self.cwnd / self.srtt

    def on_loss(self, sent_at: float, now: float) -> None:
        """An attempt sent at ``sent_at`` got no answer within the RTO."""
        if sent_at < self.recover_after:
            return  # sent before the last cut: the same loss event
        if not self.srtt:
            return  # never answered: a dead or unreachable server, not a congested one
        self.ssthresh = self.cwnd = max(self.cwnd / 2, _MIN_WINDOW)
        self.recover_after = now
        if self.srtt:
            self.rate = _PACING_GAIN * self.cwnd / self.srtt

    def refill(self, now: float) -> bool:
        """Add the tokens earned since the last refill; True if one can be spent now."""
        tokens = self.tokens + (now - self.refilled) * self.rate
        burst = max(_MIN_BURST, self.rate * _BURST_SECONDS)
        self.tokens = tokens if tokens < burst else burst
        self.refilled = now
        return self.tokens >= 1.0

    def wait(self, attempts: int, retries: int) -> float:
        """How long an attempt (the ``attempts``-th send) is given before the next one."""
        if attempts > retries:
            return self.timeout  # the last attempt waits the full timeout
        return min(self.rto * (1 << (attempts - 1)), self.timeout)


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver, with its queries in flight."""

    def __init__(self, engine: Engine, ns_index: int, server: _Server) -> None:
        self.engine = engine
        self.ns_index = ns_index
        self.server = server
        self.pending: dict[int, _Job] = {}  # every registered attempt, latest and older
        self.inflight = 0  # latest attempts only: what counts against max_in_flight
        self.retired: dict[int, float] = {}  # ids no longer awaited -> until when to expect them
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def send(self, job: _Job, now: float) -> None:
        pending = self.pending
        retired = self.retired
        qid = random.getrandbits(16)
        while qid in pending or qid in retired:
            qid = random.getrandbits(16)
        pending[qid] = job
        server = self.server
        server.inflight += 1
        self.inflight += 1
        server.tokens -= 1.0
        job.attempts += 1
        job.sent_at = now
        job.last_ns = self.ns_index
        job.channel = self
        job.qid = qid
        assert self.transport is not None
        self.transport.sendto(qid.to_bytes(2, "big") + _HEADER_TAIL + job.question)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        qid = (data[0] << 8) | data[1] if len(data) >= 12 else -1
        job = self.pending.get(qid)
        if job is None:
            if self.retired.pop(qid, None) is not None:
                self.engine.stats.late += 1
            else:
                self.engine.stats.malformed += 1
            return
        try:
            parsed = _parse(data, job.question, job.rdtype)
        except ValueError:
            parsed = None
        if parsed is None:
            self.engine.stats.malformed += 1
            return
        del self.pending[qid]
        if qid == job.qid and job.channel is self:
            self._leave()  # the window counts each question's latest attempt only
        self.engine._on_response(self, qid, job, parsed)

    def _leave(self) -> None:
        """An attempt leaves the send window (answered, superseded or given up)."""
        self.server.inflight -= 1
        self.inflight -= 1

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable): the retransmission timeout handles the loss."""


# --- the engine --------------------------------------------------------------------------------


class Engine:
    """Asks many DNS questions fast. Implements :class:`checks.dns.Resolver`.

    Use as ``async with Engine(cfg) as eng:``. Never raises for DNS outcomes; raises
    ValueError for a name DNS cannot carry or an unknown record type.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.stats = EngineStats()
        cap = config.max_in_flight * config.sockets_per_nameserver
        self._servers = [_Server(cap, config.timeout) for _ in config.nameservers]
        self._channels: list[_Channel] = []
        self._ready: deque[_Job] = deque()
        self._inflight: dict[tuple[str, str], _Job] = {}
        self._cache: dict[tuple[str, str], DnsAnswer] = {}
        self._buckets = {_normalize(z): _Bucket(r) for z, r in config.zone_rate_limits.items()}
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._pacer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rotor = 0
        self._abandoned = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the sockets (one per nameserver, times ``sockets_per_nameserver``)."""
        loop = self._loop = asyncio.get_running_loop()
        for index, ns in enumerate(self.config.nameservers):
            for _ in range(self.config.sockets_per_nameserver):
                self._channels.append(await self._open_channel(loop, index, ns))

    async def _open_channel(
        self, loop: asyncio.AbstractEventLoop, index: int, ns: Nameserver
    ) -> _Channel:
        channel = _Channel(self, index, self._servers[index])
        await loop.create_datagram_endpoint(lambda: channel, remote_addr=(ns.host, ns.port))
        return channel

    async def close(self) -> None:
        """Close the sockets; questions still open get TIMEOUT."""
        for handle in (self._sweeper, self._pacer):
            if handle is not None:
                handle.cancel()
        self._sweeper = self._pacer = None
        for task in list(self._tcp_tasks):
            task.cancel()
        await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
        for job in list(self._inflight.values()):
            self._finish(job, DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT))
        for bucket in self._buckets.values():
            if bucket.wakeup is not None:
                bucket.wakeup.cancel()
        for channel in self._channels:
            if channel.transport is not None:
                channel.transport.close()
        self._channels.clear()

    # public API

    @property
    def abandoned(self) -> bool:
        """True once :meth:`abandon` ran (the deadline passed, or no nameserver answers)."""
        return self._abandoned

    def silent_nameservers(self) -> tuple[Nameserver, ...]:
        """The nameservers that never answered anything while a question timed out."""
        if not self.stats.timeouts:
            return ()
        return tuple(
            ns
            for ns, server in zip(self.config.nameservers, self._servers, strict=True)
            if not server.srtt
        )

    def abandon(self) -> None:
        """Give up: every open question gets TIMEOUT now, and every later one at once.

        Called at a run's total deadline, and by the engine itself once a question has had
        every attempt and no nameserver has ever answered (a dead server: closed port, silent,
        or everything dropped on the way), so a run against it ends after one question's wait.
        """
        self._abandoned = True
        self._ready.clear()
        for bucket in self._buckets.values():
            bucket.waiting.clear()
            if bucket.wakeup is not None:
                bucket.wakeup.cancel()
                bucket.wakeup = None
        now = self._loop.time() if self._loop is not None else 0.0
        for job in list(self._inflight.values()):
            self._retire(job, now)
            self._finish(job, DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT))
        for task in list(self._tcp_tasks):
            task.cancel()

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """Ask one question. The answer's name is the absolute, lower-cased name."""
        future: asyncio.Future[DnsAnswer] = self._running_loop().create_future()
        self._submit(name, rdtype, _FutureWaiter(future))
        return await future

    async def query_many(
        self,
        questions: Sequence[tuple[str, str]],
        progress: Callable[[int, int], None] | None = None,
    ) -> list[DnsAnswer]:
        """Ask every question; answers come back in the questions' order.

        Questions still unanswered at the batch deadline get TIMEOUT.
        ``progress(done, total)`` is called as answers arrive.
        """
        total = len(questions)
        results: list[DnsAnswer | None] = [None] * total
        if total == 0:
            return []
        batch = _Batch(self._running_loop(), results, progress)
        try:
            async with asyncio.timeout(self.config.deadline):
                try:
                    for index, (name, rdtype) in enumerate(questions):
                        self._submit(name, rdtype, _BatchSlot(batch, index), pump=False)
                finally:
                    self._pump()
                await batch.finished
        except TimeoutError:
            pass
        finally:
            batch.closed = True  # a bad name, a cancel or the deadline: drop what is queued
        return [
            r if r is not None else self._late_timeout(q)
            for r, q in zip(results, questions, strict=True)
        ]

    # submission and dispatch

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self._channels:
            raise RuntimeError("the engine is not open: use `async with Engine(cfg) as eng:`")
        return self._loop

    def _submit(self, name: str, rdtype: str, waiter: _Waiter, pump: bool = True) -> None:
        key = (_normalize(name), rdtype.upper())
        if self._abandoned:
            _rdtype(key[1])  # an unknown type is still an error, not a TIMEOUT
            self.stats.timeouts += 1
            waiter.deliver(DnsAnswer(key[0], key[1], Rcode.TIMEOUT))
            return
        cached = self._cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            waiter.deliver(cached)
            return
        job = self._inflight.get(key)
        if job is not None:
            self.stats.deduplicated += 1
            job.waiters.append(waiter)
            return
        job = _Job(key, _rdtype(key[1]), self._bucket_for(key[0]))
        job.waiters.append(waiter)
        self._inflight[key] = job
        self._enqueue(job, pump=pump)

    def _bucket_for(self, name: str) -> _Bucket | None:
        for zone, bucket in self._buckets.items():
            if name == zone or name.endswith("." + zone):
                return bucket
        return None

    def _enqueue(self, job: _Job, front: bool = False, pump: bool = True) -> None:
        if job.bucket is not None and not self._admit(job.bucket, job):
            return
        if front:
            self._ready.appendleft(job)
        else:
            self._ready.append(job)
        if pump:
            self._pump()

    def _admit(self, bucket: _Bucket, job: _Job) -> bool:
        assert self._loop is not None
        now = self._loop.time()
        if not bucket.waiting and now >= bucket.next_at:
            bucket.next_at = max(now, bucket.next_at) + bucket.interval
            return True
        bucket.waiting.append(job)
        if bucket.wakeup is None:
            bucket.wakeup = self._loop.call_at(bucket.next_at, self._release, bucket)
        return False

    def _release(self, bucket: _Bucket) -> None:
        assert self._loop is not None
        bucket.wakeup = None
        if bucket.waiting:
            job = bucket.waiting.popleft()
            bucket.next_at = max(self._loop.time(), bucket.next_at) + bucket.interval
            self._ready.append(job)
            self._pump()
        if bucket.waiting:
            bucket.wakeup = self._loop.call_at(bucket.next_at, self._release, bucket)

    def _pump(self, now: float = -1.0) -> None:
        ready = self._ready
        if not ready:
            return
        if now < 0:
            assert self._loop is not None
            now = self._loop.time()
        sent = 0
        while ready:
            job = ready[0]
            if job.done:
                ready.popleft()
                continue
            channel = self._free_channel(job.last_ns, now)
            if channel is None:
                if self._pacer is None:
                    self._arm_pacer(now)
                break
            ready.popleft()
            if not _alive(job):
                self._drop(job)
                continue
            channel.send(job, now)
            sent += 1
        if sent:
            self.stats.sent += sent
            if self._sweeper is None:
                self._arm_sweep()

    def _free_channel(self, avoid_ns: int, now: float) -> _Channel | None:
        """A socket with room (its own and its server's window and pacing), round robin;
        a retry prefers another nameserver."""
        channels = self._channels
        count = len(channels)
        limit = self.config.max_in_flight
        fallback = None
        for step in range(count):
            channel = channels[(self._rotor + step) % count]
            server = channel.server
            if (
                channel.inflight < limit
                and server.inflight < server.cwnd
                and (server.tokens >= 1.0 or not server.rate or server.refill(now))
            ):
                if channel.ns_index != avoid_ns:
                    self._rotor = (self._rotor + step + 1) % count
                    return channel
                fallback = fallback or channel
        return fallback

    def _arm_pacer(self, now: float) -> None:
        """Pump again when pacing lets a server with room in its window send."""
        wait = None
        for server in self._servers:
            if server.rate and server.tokens < 1.0 and server.inflight < server.cwnd:
                need = (1.0 - server.tokens) / server.rate
                wait = need if wait is None or need < wait else wait
        if wait is not None:
            assert self._loop is not None
            self._pacer = self._loop.call_at(now + max(wait, _MIN_PACER), self._on_pacer)

    def _on_pacer(self) -> None:
        self._pacer = None
        self._pump()

    # answers, timeouts, retries

    def _on_response(
        self, channel: _Channel, qid: int, job: _Job, parsed: tuple[Rcode, bool, tuple[str, ...]]
    ) -> None:
        assert self._loop is not None
        now = self._loop.time()
        sent_at = job.sent_at
        if job.older is not None and (qid != job.qid or channel is not job.channel):
            sent_at = next(t for c, q, t in job.older if q == qid and c is channel)
        channel.server.on_answer(now - sent_at)
        if job.older is not None or job.qid != qid or job.channel is not channel:
            self._retire(job, now)
        job.qid = -1
        rcode, truncated, records = parsed
        if truncated:
            self._start_tcp(job, channel.ns_index)
        else:
            self._finish(job, DnsAnswer(job.key[0], job.key[1], rcode, records))
        self._pump(now)

    def _retire(self, job: _Job, now: float) -> None:
        """Stop awaiting every attempt of ``job`` still registered; a late answer is ignored."""
        attempts = [(channel, qid, False) for channel, qid, _sent in job.older or ()]
        if job.qid >= 0 and job.channel is not None:
            attempts.append((job.channel, job.qid, True))
        until = now + self.config.timeout
        for channel, qid, latest in attempts:
            if channel.pending.get(qid) is job:
                del channel.pending[qid]
                if latest:  # superseded attempts left the window when they were re-sent
                    channel._leave()
                channel.retired[qid] = until
        job.older = None
        job.qid = -1

    def _finish(self, job: _Job, answer: DnsAnswer) -> None:
        job.done = True
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]
        if answer.rcode is Rcode.TIMEOUT:
            self.stats.timeouts += 1
        else:
            self._cache[job.key] = answer
        waiters, job.waiters = job.waiters, []
        for waiter in waiters:
            waiter.deliver(answer)

    def _drop(self, job: _Job) -> None:
        """Nobody waits for ``job`` any more."""
        job.done = True
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]

    def _arm_sweep(self) -> None:
        assert self._loop is not None
        rto = min(server.rto for server in self._servers)
        interval = min(max(rto / 4, _MIN_SWEEP), _MAX_SWEEP, self.config.timeout / 5)
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Re-send (or give up on) every latest attempt whose wait is over."""
        assert self._loop is not None
        self._sweeper = None
        now = self._loop.time()
        retries = self.config.retries
        busy = False
        for channel in self._channels:
            if channel.retired:
                channel.retired = {q: t for q, t in channel.retired.items() if t > now}
                busy = True
            if not channel.pending:
                continue
            busy = True
            server = channel.server
            late = [
                job
                for qid, job in channel.pending.items()
                if qid == job.qid
                and job.channel is channel
                and now - job.sent_at >= server.wait(job.attempts, retries)
            ]
            for job in late:
                self._expire(job, now)
        self._pump()
        if (busy or self._ready) and self._sweeper is None:
            self._arm_sweep()

    def _expire(self, job: _Job, now: float) -> None:
        if not _alive(job):
            self._retire(job, now)
            self._drop(job)
        elif job.attempts > self.config.retries:
            self._retire(job, now)
            self._finish(job, DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT))
            if self.config.give_up_on_silence and not any(s.srtt for s in self._servers):
                self.abandon()  # no nameserver has ever answered: do not wait on each question
        else:
            assert job.channel is not None
            job.channel.server.on_loss(job.sent_at, now)
            self.stats.retried += 1
            if job.older is None:
                job.older = []
            job.older.append((job.channel, job.qid, job.sent_at))
            # The earlier attempts stay registered (the first answer wins) but leave the
            # window: otherwise a silent server's old attempts fill it and nothing is re-sent.
            job.channel._leave()
            job.qid = -1
            self._enqueue(job, front=True)

    def _late_timeout(self, question: tuple[str, str]) -> DnsAnswer:
        self.stats.timeouts += 1
        return DnsAnswer(_normalize(question[0]), question[1].upper(), Rcode.TIMEOUT)

    # TCP fallback

    def _start_tcp(self, job: _Job, ns_index: int) -> None:
        self.stats.tcp_fallbacks += 1
        assert self._loop is not None
        task = self._loop.create_task(self._tcp(job, self.config.nameservers[ns_index]))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _tcp(self, job: _Job, ns: Nameserver) -> None:
        answer = DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT)
        for _ in range(1 + self.config.retries):
            self.stats.sent += 1
            try:
                async with asyncio.timeout(self.config.timeout):
                    parsed = await _tcp_exchange(job, ns)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                continue
            answer = DnsAnswer(job.key[0], job.key[1], parsed.rcode, parsed.records)
            break
        self._finish(job, answer)


class _Batch:
    """Collects one query_many batch's answers in order."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        results: list[DnsAnswer | None],
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.results = results
        self.progress = progress
        self.remaining = len(results)
        self.finished: asyncio.Future[None] = loop.create_future()
        self.closed = False

    def deliver(self, index: int, answer: DnsAnswer) -> None:
        self.results[index] = answer
        self.remaining -= 1
        if self.progress is not None:
            self.progress(len(self.results) - self.remaining, len(self.results))
        if self.remaining == 0 and not self.finished.done():
            self.finished.set_result(None)


class _BatchSlot(_Waiter):
    __slots__ = ("batch", "index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch = batch
        self.index = index

    @property
    def alive(self) -> bool:
        return not self.batch.closed

    def deliver(self, answer: DnsAnswer) -> None:
        if not self.batch.closed:
            self.batch.deliver(self.index, answer)


def _alive(job: _Job) -> bool:
    for waiter in job.waiters:
        if waiter.alive:
            return True
    return False


async def _tcp_exchange(job: _Job, ns: Nameserver) -> ParsedResponse:
    reader, writer = await asyncio.open_connection(ns.host, ns.port)
    try:
        qid = random.getrandbits(16)
        message = qid.to_bytes(2, "big") + _HEADER_TAIL + job.question
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


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine on uvloop when it is installed (faster), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
