"""One question's life in the DNS engine: who waits for its answer, and its attempts.

A :class:`Job` is one distinct (name, type) being asked; its waiters are single queries
(:class:`FutureWaiter`) or slots of a ``query_many`` batch (:class:`BatchSlot`). A
:class:`Bucket` spaces the questions under one rate-limited zone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailmend.checks.dns import DnsAnswer
from mailmend.checks.wire import encode_question

if TYPE_CHECKING:
    from mailmend.checks.engine_udp import Channel

__all__ = ["Batch", "BatchSlot", "Bucket", "FutureWaiter", "Job", "Waiter", "alive"]


class Waiter:
    """Someone waiting for a question's answer; ``alive`` is False once nobody cares."""

    __slots__ = ()

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def deliver(self, answer: DnsAnswer) -> None:
        raise NotImplementedError


class FutureWaiter(Waiter):
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[DnsAnswer]) -> None:
        self.future = future

    @property
    def alive(self) -> bool:
        return not self.future.done()

    def deliver(self, answer: DnsAnswer) -> None:
        if not self.future.done():
            self.future.set_result(answer)


class Job:
    """One distinct question being asked, and everyone waiting for its answer.

    ``channel``, ``qid`` and ``sent_at`` describe the latest attempt (``qid`` is -1 while a
    re-send waits for room). ``older`` lists the earlier attempts that are still registered:
    whichever attempt is answered first wins, and the others' ids are retired.
    """

    __slots__ = (
        "attempts", "bucket", "channel", "done", "key", "last_ns", "older", "qid", "question",
        "rdtype", "sent_at", "waiters",
    )  # fmt: skip

    def __init__(self, key: tuple[str, str], rdtype: int, bucket: Bucket | None) -> None:
        self.key = key
        self.rdtype = rdtype
        self.question = encode_question(key[0], rdtype)
        self.waiters: list[Waiter] = []
        self.attempts = 0
        self.sent_at = 0.0
        self.last_ns = -1
        self.bucket = bucket
        self.channel: Channel | None = None
        self.qid = -1
        self.older: list[tuple[Channel, int, float]] | None = None
        self.done = False


class Bucket:
    """Spaces the queries for names under one zone to ``rate`` per second."""

    __slots__ = ("interval", "next_at", "waiting", "wakeup")

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_at = 0.0
        self.waiting: deque[Job] = deque()
        self.wakeup: asyncio.TimerHandle | None = None


class Batch:
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


class BatchSlot(Waiter):
    __slots__ = ("batch", "index")

    def __init__(self, batch: Batch, index: int) -> None:
        self.batch = batch
        self.index = index

    @property
    def alive(self) -> bool:
        return not self.batch.closed

    def deliver(self, answer: DnsAnswer) -> None:
        if not self.batch.closed:
            self.batch.deliver(self.index, answer)


def alive(job: Job) -> bool:
    """Someone still waits for ``job``'s answer."""
    for waiter in job.waiters:
        if waiter.alive:
            return True
    return False
