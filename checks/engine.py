"""The fast DNS engine: many questions pipelined on a few UDP sockets.

One asyncio datagram endpoint per nameserver (``sockets_per_nameserver`` of them), a bounded
number of queries in flight on each, hand-built queries and a lean response parser. Responses
are matched on the query id AND the question (name, type, class). A question gets a per-query
timeout and ``retries`` re-sends, each with a new id (and the next nameserver when there are
several). TC=1 answers are asked again over TCP. Identical questions in flight are sent once;
answers are cached for the engine's life (one run). TIMEOUT is its own outcome, never NXDOMAIN.

Example::

    cfg = EngineConfig(nameservers=(parse_nameserver("127.0.0.1:5353"),))
    async with Engine(cfg) as eng:
        answer = await eng.query("2.0.0.127.zen.spamhaus.org", "A")
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
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

from checks.dns import DnsAnswer, Rcode

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
_SWEEPS_PER_TIMEOUT = 5
_RCVBUF = 1 << 20


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

    ``timeout`` is per attempt; a question is sent ``1 + retries`` times at most. ``deadline``
    bounds one :meth:`Engine.query_many` batch. ``max_in_flight`` is per socket.
    ``zone_rate_limits`` maps a zone suffix to queries per second for names under it.
    """

    nameservers: tuple[Nameserver, ...]
    timeout: float = 1.5
    retries: int = 2
    deadline: float = 60.0
    max_in_flight: int = 150
    zone_rate_limits: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    sockets_per_nameserver: int = 1

    def __post_init__(self) -> None:
        if not self.nameservers:
            raise ValueError("at least one nameserver is needed")
        if self.timeout <= 0 or self.deadline <= 0:
            raise ValueError("timeout and deadline must be positive")
        if self.retries < 0 or self.max_in_flight < 1 or self.sockets_per_nameserver < 1:
            raise ValueError("retries >= 0, max_in_flight >= 1, sockets_per_nameserver >= 1")
        for zone, rate in self.zone_rate_limits.items():
            if rate <= 0:
                raise ValueError(f"rate limit for {zone!r} must be positive")


@dataclass
class EngineStats:
    """Counters for one engine's life."""

    sent: int = 0  # UDP datagrams and TCP queries written
    retried: int = 0  # re-sends after a timeout
    timeouts: int = 0  # questions that got no answer after every retry
    tcp_fallbacks: int = 0  # TC=1 answers asked again over TCP
    cache_hits: int = 0  # answered from this run's cache
    deduplicated: int = 0  # joined an identical question already in flight
    malformed: int = 0  # datagrams dropped: unknown id, wrong question, unparsable


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


def _question(name: str, rdtype: int) -> bytes:
    return encode_name(name) + struct.pack(">HH", rdtype, dns.rdataclass.IN)


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
    if len(data) < 12 or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return None
    end = 12 + len(question)
    got = data[12:end]
    if got != question and got.lower() != question.lower():
        return None
    qid = (data[0] << 8) | data[1]
    rcode = _RCODES.get(data[3] & 0x0F, Rcode.OTHER)
    truncated = bool(data[2] & 0x02)
    if truncated or rcode is not Rcode.NOERROR:
        return ParsedResponse(qid, rcode, truncated, ())
    try:
        records = _records(data, end, rdtype)
    except (struct.error, IndexError, dns.exception.DNSException) as exc:
        raise ValueError(f"malformed response: {exc}") from None
    return ParsedResponse(qid, rcode, truncated, records)


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
    """One distinct question being asked, and everyone waiting for its answer."""

    __slots__ = ("attempts", "bucket", "key", "last_ns", "question", "rdtype", "sent_at", "waiters")

    def __init__(self, key: tuple[str, str], rdtype: int, bucket: _Bucket | None) -> None:
        self.key = key
        self.rdtype = rdtype
        self.question = _question(key[0], rdtype)
        self.waiters: list[_Waiter] = []
        self.attempts = 0
        self.sent_at = 0.0
        self.last_ns = -1
        self.bucket = bucket


class _Bucket:
    """Spaces the queries for names under one zone to ``rate`` per second."""

    __slots__ = ("interval", "next_at", "waiting", "wakeup")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.waiting: deque[_Job] = deque()
        self.wakeup: asyncio.TimerHandle | None = None


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver, with its queries in flight."""

    def __init__(self, engine: Engine, ns_index: int) -> None:
        self.engine = engine
        self.ns_index = ns_index
        self.pending: dict[int, _Job] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def send(self, job: _Job, now: float) -> None:
        pending = self.pending
        qid = random.getrandbits(16)
        while qid in pending:
            qid = random.getrandbits(16)
        pending[qid] = job
        job.attempts += 1
        job.sent_at = now
        job.last_ns = self.ns_index
        assert self.transport is not None
        self.transport.sendto(qid.to_bytes(2, "big") + _HEADER_TAIL + job.question)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 12:
            self.engine.stats.malformed += 1
            return
        qid = (data[0] << 8) | data[1]
        job = self.pending.get(qid)
        if job is None:
            self.engine.stats.malformed += 1
            return
        try:
            parsed = parse_response(data, job.question, job.rdtype)
        except ValueError:
            parsed = None
        if parsed is None:
            self.engine.stats.malformed += 1
            return
        del self.pending[qid]
        self.engine._on_response(self, job, parsed)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable): the per-query timeout handles the loss."""


# --- the engine --------------------------------------------------------------------------------


class Engine:
    """Asks many DNS questions fast. Implements :class:`checks.dns.Resolver`.

    Use as ``async with Engine(cfg) as eng:``. Never raises for DNS outcomes; raises
    ValueError for a name DNS cannot carry or an unknown record type.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.stats = EngineStats()
        self._channels: list[_Channel] = []
        self._ready: deque[_Job] = deque()
        self._inflight: dict[tuple[str, str], _Job] = {}
        self._cache: dict[tuple[str, str], DnsAnswer] = {}
        self._buckets = {_normalize(z): _Bucket(r) for z, r in config.zone_rate_limits.items()}
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rotor = 0

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
        self._schedule_sweep()

    async def _open_channel(
        self, loop: asyncio.AbstractEventLoop, index: int, ns: Nameserver
    ) -> _Channel:
        channel = _Channel(self, index)
        await loop.create_datagram_endpoint(lambda: channel, remote_addr=(ns.host, ns.port))
        return channel

    async def close(self) -> None:
        """Close the sockets; questions still open get TIMEOUT."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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
                for index, (name, rdtype) in enumerate(questions):
                    self._submit(name, rdtype, _BatchSlot(batch, index))
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

    def _submit(self, name: str, rdtype: str, waiter: _Waiter) -> None:
        key = (_normalize(name), rdtype.upper())
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
        self._enqueue(job)

    def _bucket_for(self, name: str) -> _Bucket | None:
        for zone, bucket in self._buckets.items():
            if name == zone or name.endswith("." + zone):
                return bucket
        return None

    def _enqueue(self, job: _Job, front: bool = False) -> None:
        if job.bucket is not None and not self._admit(job.bucket, job):
            return
        if front:
            self._ready.appendleft(job)
        else:
            self._ready.append(job)
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

    def _pump(self) -> None:
        ready = self._ready
        if not ready:
            return
        assert self._loop is not None
        now = self._loop.time()
        while ready:
            job = ready[0]
            channel = self._free_channel(job.last_ns)
            if channel is None:
                return
            ready.popleft()
            if not _alive(job):
                self._inflight.pop(job.key, None)
                continue
            channel.send(job, now)
            self.stats.sent += 1

    def _free_channel(self, avoid_ns: int) -> _Channel | None:
        """A socket with room, round robin; a retry prefers another nameserver."""
        channels = self._channels
        count = len(channels)
        limit = self.config.max_in_flight
        fallback = None
        for step in range(count):
            channel = channels[(self._rotor + step) % count]
            if len(channel.pending) < limit:
                if channel.ns_index != avoid_ns:
                    self._rotor = (self._rotor + step + 1) % count
                    return channel
                fallback = fallback or channel
        return fallback

    # answers, timeouts, retries

    def _on_response(self, channel: _Channel, job: _Job, parsed: ParsedResponse) -> None:
        if parsed.truncated:
            self._start_tcp(job, channel.ns_index)
        else:
            self._finish(job, DnsAnswer(job.key[0], job.key[1], parsed.rcode, parsed.records))
        self._pump()

    def _finish(self, job: _Job, answer: DnsAnswer) -> None:
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]
        if answer.rcode is Rcode.TIMEOUT:
            self.stats.timeouts += 1
        else:
            self._cache[job.key] = answer
        waiters, job.waiters = job.waiters, []
        for waiter in waiters:
            waiter.deliver(answer)

    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        interval = self.config.timeout / _SWEEPS_PER_TIMEOUT
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        expired_before = self._loop.time() - self.config.timeout
        for channel in self._channels:
            late = [qid for qid, job in channel.pending.items() if job.sent_at <= expired_before]
            for qid in late:
                self._expire(channel.pending.pop(qid))
        self._pump()
        self._schedule_sweep()

    def _expire(self, job: _Job) -> None:
        if not _alive(job):
            self._inflight.pop(job.key, None)
        elif job.attempts > self.config.retries:
            self._finish(job, DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT))
        else:
            self.stats.retried += 1
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
    return any(waiter.alive for waiter in job.waiters)


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
