"""Flow control of the DNS engine: when to re-send, how much to send, when to give up.

Pure bookkeeping with no clock and no socket of its own: every method is handed ``now`` (the
event loop's time in the engine, a plain number in tests), so each rule can be tested alone.

- :class:`ServerFlow`, one per nameserver: the retransmission timeout learnt from round-trip
  times (RFC 6298 style: SRTT + max(50 ms, 4 * RTTVAR), at most ``timeout``, doubled per
  attempt; the last attempt waits the full ``timeout``), a send window that starts at 100
  queries in flight, grows by one per answer (slow start), halves on loss at most once per
  round trip and grows slowly after, and pacing at 2 windows per round trip with a short burst.
- :func:`expiry`: what happens to a question whose attempt's wait is over (re-send, TIMEOUT,
  or give up on every question when no nameserver has ever answered).
- :func:`sweep_interval` and :func:`pacing_wait`: how soon the engine looks again.

Example::

    flow = ServerFlow(cap=150, timeout=1.5)
    flow.on_answer(0.010)       # a 10 ms round trip: rto = 10 ms + 50 ms margin
    flow.wait(1, retries=2)     # 0.06: the first attempt is re-sent after 60 ms
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

__all__ = ["Expiry", "ServerFlow", "expiry", "pacing_wait", "sweep_interval"]

RTO_MARGIN = 0.05  # seconds: the least margin of the RTO over SRTT (RFC 6298's G, coarse)
MIN_SWEEP = 0.005  # seconds between looks for attempts whose wait is over: RTO / 4,
MAX_SWEEP = 0.025  # within these bounds (short while cold: the RTO may drop at any answer)
INITIAL_WINDOW = 100  # queries in flight to a server before its first answer
MIN_WINDOW = 8.0
AVOIDANCE_GROWTH = 0.25  # window growth per answer once a loss has halved it
PACING_GAIN = 2.0  # pace at this many windows per round trip
MIN_BURST = 16.0  # queries a paced server may get back to back...
BURST_SECONDS = 0.002  # ...or this many seconds' worth at its pacing rate, if more
MIN_PACER = 0.0005  # seconds: the shortest pacing timer


class ServerFlow:
    """What the engine learns about one nameserver: its round-trip time and a send window.

    Retransmission timeout (RTO): SRTT + max(RTO_MARGIN, 4 * RTTVAR) from the answers'
    round-trip times (RFC 6298 with a coarse G), at most ``timeout``; ``timeout`` until the
    first answer. Window: the queries in flight to this server (all its sockets, earlier
    attempts included) start at INITIAL_WINDOW and grow by one per answer (slow start) up to
    ``cap``; a loss halves the window, at most once per round trip, and growth slows after.
    Once a round-trip time is known, sends are paced at PACING_GAIN * window / SRTT with a
    short burst allowance, so a window reaches the server spread over a round trip instead of
    in one burst that overflows its receive buffer. ``inflight`` is kept by the engine.
    """

    __slots__ = (
        "cap", "cwnd", "inflight", "rate", "recover_after", "refilled", "rto", "rttvar", "srtt",
        "ssthresh", "timeout", "tokens",
    )  # fmt: skip

    def __init__(self, cap: int, timeout: float) -> None:
        self.cap = float(cap)
        self.timeout = timeout
        self.cwnd = float(min(cap, INITIAL_WINDOW))
        self.ssthresh = float(cap)
        self.inflight = 0
        self.srtt = 0.0  # 0: no sample yet
        self.rttvar = 0.0
        self.rto = timeout
        self.recover_after = 0.0
        self.rate = 0.0  # pacing, queries per second; 0: not paced
        self.tokens = 0.0
        self.refilled = 0.0

    @property
    def answered(self) -> bool:
        """The server has answered at least once (a round-trip time is known)."""
        return self.srtt != 0.0

    def on_answer(self, rtt: float) -> None:
        """An attempt was answered ``rtt`` seconds after it was sent."""
        if self.srtt == 0.0:
            self.srtt = max(rtt, 1e-6)
            self.rttvar = rtt / 2
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) * 0.25
            self.srtt += (rtt - self.srtt) * 0.125
        self.rto = min(self.srtt + max(4 * self.rttvar, RTO_MARGIN), self.timeout)
        cwnd = self.cwnd
        if cwnd < self.cap:
            cwnd += 1.0 if cwnd < self.ssthresh else AVOIDANCE_GROWTH
            self.cwnd = cwnd if cwnd < self.cap else self.cap
        self.rate = PACING_GAIN * self.cwnd / self.srtt

    def on_loss(self, sent_at: float, now: float) -> None:
        """An attempt sent at ``sent_at`` got no answer within the RTO."""
        if sent_at < self.recover_after:
            return  # sent before the last cut: the same loss event
        if not self.srtt:
            return  # never answered: a dead or unreachable server, not a congested one
        self.ssthresh = self.cwnd = max(self.cwnd / 2, MIN_WINDOW)
        self.recover_after = now
        self.rate = PACING_GAIN * self.cwnd / self.srtt

    def refill(self, now: float) -> bool:
        """Add the tokens earned since the last refill; True if one can be spent now."""
        tokens = self.tokens + (now - self.refilled) * self.rate
        burst = max(MIN_BURST, self.rate * BURST_SECONDS)
        self.tokens = tokens if tokens < burst else burst
        self.refilled = now
        return self.tokens >= 1.0

    def has_room(self, now: float) -> bool:
        """The window has room and pacing lets one more query go now."""
        return self.inflight < self.cwnd and (
            self.tokens >= 1.0 or not self.rate or self.refill(now)
        )

    def spend(self) -> None:
        """One query goes out (it enters the window and spends a pacing token)."""
        self.inflight += 1
        self.tokens -= 1.0

    def wait(self, attempts: int, retries: int) -> float:
        """How long an attempt (the ``attempts``-th send) is given before the next one."""
        if attempts > retries:
            return self.timeout  # the last attempt waits the full timeout
        return min(self.rto * (1 << (attempts - 1)), self.timeout)


class Expiry(Enum):
    """What to do with a question whose latest attempt's wait is over."""

    DROP = "drop"  # nobody waits for the answer any more
    RESEND = "resend"  # another attempt (the earlier ones stay registered)
    TIMEOUT = "timeout"  # every attempt had its wait: the answer is TIMEOUT
    GIVE_UP = "give up"  # TIMEOUT, and no nameserver ever answered: abandon every question


def expiry(
    *,
    alive: bool,
    attempts: int,
    retries: int,
    servers: Iterable[ServerFlow],
    give_up_on_silence: bool,
) -> Expiry:
    """Decide the fate of a question whose ``attempts``-th attempt went unanswered in time."""
    if not alive:
        return Expiry.DROP
    if attempts <= retries:
        return Expiry.RESEND
    if give_up_on_silence and not any(server.answered for server in servers):
        return Expiry.GIVE_UP
    return Expiry.TIMEOUT


def sweep_interval(servers: Iterable[ServerFlow], timeout: float) -> float:
    """Seconds until the next look for attempts whose wait is over: a quarter of the least
    RTO, within MIN_SWEEP..MAX_SWEEP, and at most a fifth of ``timeout``."""
    rto = min(server.rto for server in servers)
    return min(max(rto / 4, MIN_SWEEP), MAX_SWEEP, timeout / 5)


def pacing_wait(servers: Iterable[ServerFlow]) -> float | None:
    """Seconds until pacing lets a server with room in its window send; None if none waits
    on pacing (no room anywhere, or nothing paced)."""
    wait = None
    for server in servers:
        if server.rate and server.tokens < 1.0 and server.inflight < server.cwnd:
            need = (1.0 - server.tokens) / server.rate
            wait = need if wait is None or need < wait else wait
    return None if wait is None else max(wait, MIN_PACER)
