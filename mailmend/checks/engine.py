"""The fast DNS engine: many questions pipelined on a few UDP sockets (the scheduler).

One asyncio datagram endpoint per nameserver (``sockets_per_nameserver`` of them), a bounded
number of queries in flight on each. Its parts, each readable and tested alone:
``checks.nameservers`` (which servers), ``checks.wire`` (hand-built queries, a lean response
parser), ``checks.flow`` (retransmission timeout, send window, pacing, when to give up),
``checks.engine_jobs`` (one question's waiters and attempts) and ``checks.engine_udp`` (the
sockets and the TCP fallback). This module schedules: it queues, sends, sweeps and answers.

Responses are matched on the query id AND the question (name, type, class). A question is sent
at most ``1 + retries`` times, each with a new id (and the next nameserver when there are
several). A re-send happens after the adaptive retransmission timeout, and every attempt stays
registered: whichever is answered first wins. The last attempt waits the full ``timeout``; only
then is the outcome TIMEOUT. Queries go out under a per-nameserver window that starts small and
grows (slow start), halves on loss, and is paced over the round-trip time, so a cold server is
not flooded. TC=1 answers are asked again over TCP. Identical questions in flight are sent
once; answers are cached for the engine's life (one run). TIMEOUT is its own outcome, never
NXDOMAIN. Only each question's latest attempt counts against ``max_in_flight`` (earlier ones
stay registered, out of the window). A run always ends: once a question has had every attempt
and no nameserver has ever answered, and at the caller's total deadline, :meth:`Engine.abandon`
gives every open and later question TIMEOUT at once.

Example::

    cfg = EngineConfig(nameservers=(parse_nameserver("127.0.0.1:5353"),))
    async with Engine(cfg) as eng:
        answer = await eng.query("2.0.0.127.zen.spamhaus.org", "A")
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Self

from mailmend.checks.dns import DnsAnswer, Rcode
from mailmend.checks.engine_jobs import Batch, BatchSlot, Bucket, FutureWaiter, Job, Waiter, alive
from mailmend.checks.engine_udp import Channel, tcp_exchange
from mailmend.checks.flow import Expiry, ServerFlow, expiry, pacing_wait, sweep_interval
from mailmend.checks.nameservers import Nameserver
from mailmend.checks.wire import Fields, normalize_qname, rdtype_code

__all__ = ["Engine", "EngineConfig", "EngineStats"]


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
    retried: int = 0  # re-sends after a retransmission timeout (adaptive, see ServerFlow)
    timeouts: int = 0  # questions that got no answer after every retry
    tcp_fallbacks: int = 0  # TC=1 answers asked again over TCP
    cache_hits: int = 0  # answered from this run's cache
    deduplicated: int = 0  # joined an identical question already in flight
    malformed: int = 0  # datagrams dropped: unknown id, wrong question, unparsable
    late: int = 0  # answers to an attempt no longer awaited (another attempt's answer won)


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
        self._servers = [ServerFlow(cap, config.timeout) for _ in config.nameservers]
        self._channels: list[Channel] = []
        self._ready: deque[Job] = deque()
        self._inflight: dict[tuple[str, str], Job] = {}
        self._cache: dict[tuple[str, str], DnsAnswer] = {}
        self._buckets = {normalize_qname(z): Bucket(r) for z, r in config.zone_rate_limits.items()}
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
    ) -> Channel:
        channel = Channel(self.stats, self._on_response, index, self._servers[index])
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
        self._submit(name, rdtype, FutureWaiter(future))
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
        batch = Batch(self._running_loop(), results, progress)
        try:
            async with asyncio.timeout(self.config.deadline):
                try:
                    for index, (name, rdtype) in enumerate(questions):
                        self._submit(name, rdtype, BatchSlot(batch, index), pump=False)
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

    def _submit(self, name: str, rdtype: str, waiter: Waiter, pump: bool = True) -> None:
        key = (normalize_qname(name), rdtype.upper())
        if self._abandoned:
            rdtype_code(key[1])  # an unknown type is still an error, not a TIMEOUT
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
        job = Job(key, rdtype_code(key[1]), self._bucket_for(key[0]))
        job.waiters.append(waiter)
        self._inflight[key] = job
        self._enqueue(job, pump=pump)

    def _bucket_for(self, name: str) -> Bucket | None:
        for zone, bucket in self._buckets.items():
            if name == zone or name.endswith("." + zone):
                return bucket
        return None

    def _enqueue(self, job: Job, front: bool = False, pump: bool = True) -> None:
        if job.bucket is not None and not self._admit(job.bucket, job):
            return
        if front:
            self._ready.appendleft(job)
        else:
            self._ready.append(job)
        if pump:
            self._pump()

    def _admit(self, bucket: Bucket, job: Job) -> bool:
        assert self._loop is not None
        now = self._loop.time()
        if not bucket.waiting and now >= bucket.next_at:
            bucket.next_at = max(now, bucket.next_at) + bucket.interval
            return True
        bucket.waiting.append(job)
        if bucket.wakeup is None:
            bucket.wakeup = self._loop.call_at(bucket.next_at, self._release, bucket)
        return False

    def _release(self, bucket: Bucket) -> None:
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
            if not alive(job):
                self._drop(job)
                continue
            channel.send(job, now)
            sent += 1
        if sent:
            self.stats.sent += sent
            if self._sweeper is None:
                self._arm_sweep()

    def _free_channel(self, avoid_ns: int, now: float) -> Channel | None:
        """A socket with room (its own and its server's window and pacing), round robin;
        a retry prefers another nameserver."""
        channels = self._channels
        count = len(channels)
        limit = self.config.max_in_flight
        fallback = None
        for step in range(count):
            channel = channels[(self._rotor + step) % count]
            if channel.inflight < limit and channel.server.has_room(now):
                if channel.ns_index != avoid_ns:
                    self._rotor = (self._rotor + step + 1) % count
                    return channel
                fallback = fallback or channel
        return fallback

    def _arm_pacer(self, now: float) -> None:
        """Pump again when pacing lets a server with room in its window send."""
        wait = pacing_wait(self._servers)
        if wait is not None:
            assert self._loop is not None
            self._pacer = self._loop.call_at(now + wait, self._on_pacer)

    def _on_pacer(self) -> None:
        self._pacer = None
        self._pump()

    # answers, timeouts, retries

    def _on_response(self, channel: Channel, qid: int, job: Job, parsed: Fields) -> None:
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

    def _retire(self, job: Job, now: float) -> None:
        """Stop awaiting every attempt of ``job`` still registered; a late answer is ignored."""
        attempts = [(channel, qid, False) for channel, qid, _sent in job.older or ()]
        if job.qid >= 0 and job.channel is not None:
            attempts.append((job.channel, job.qid, True))
        until = now + self.config.timeout
        for channel, qid, latest in attempts:
            if channel.pending.get(qid) is job:
                del channel.pending[qid]
                if latest:  # superseded attempts left the window when they were re-sent
                    channel.leave()
                channel.retired[qid] = until
        job.older = None
        job.qid = -1

    def _finish(self, job: Job, answer: DnsAnswer) -> None:
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

    def _drop(self, job: Job) -> None:
        """Nobody waits for ``job`` any more."""
        job.done = True
        if self._inflight.get(job.key) is job:
            del self._inflight[job.key]

    def _arm_sweep(self) -> None:
        assert self._loop is not None
        interval = sweep_interval(self._servers, self.config.timeout)
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

    def _expire(self, job: Job, now: float) -> None:
        fate = expiry(
            alive=alive(job),
            attempts=job.attempts,
            retries=self.config.retries,
            servers=self._servers,
            give_up_on_silence=self.config.give_up_on_silence,
        )
        if fate is Expiry.DROP:
            self._retire(job, now)
            self._drop(job)
        elif fate is not Expiry.RESEND:
            self._retire(job, now)
            self._finish(job, DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT))
            if fate is Expiry.GIVE_UP:
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
            job.channel.leave()
            job.qid = -1
            self._enqueue(job, front=True)

    def _late_timeout(self, question: tuple[str, str]) -> DnsAnswer:
        self.stats.timeouts += 1
        return DnsAnswer(normalize_qname(question[0]), question[1].upper(), Rcode.TIMEOUT)

    # TCP fallback

    def _start_tcp(self, job: Job, ns_index: int) -> None:
        self.stats.tcp_fallbacks += 1
        assert self._loop is not None
        task = self._loop.create_task(self._tcp(job, self.config.nameservers[ns_index]))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _tcp(self, job: Job, ns: Nameserver) -> None:
        answer = DnsAnswer(job.key[0], job.key[1], Rcode.TIMEOUT)
        for _ in range(1 + self.config.retries):
            self.stats.sent += 1
            try:
                async with asyncio.timeout(self.config.timeout):
                    parsed = await tcp_exchange(job, ns)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                continue
            answer = DnsAnswer(job.key[0], job.key[1], parsed.rcode, parsed.records)
            break
        self._finish(job, answer)
