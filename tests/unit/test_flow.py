"""The engine's flow control alone, on a fake clock (times are plain numbers, no loop, no socket):
retransmission timeout, send window, pacing, and what happens when an attempt's wait is over."""

from __future__ import annotations

import doctest

import pytest

import mailmend.checks.names
import mailmend.checks.nameservers
import mailmend.checks.txt
import mailmend.checks.wire
from mailmend.checks.flow import (
    INITIAL_WINDOW,
    MAX_SWEEP,
    MIN_PACER,
    MIN_SWEEP,
    MIN_WINDOW,
    RTO_MARGIN,
    Expiry,
    ServerFlow,
    expiry,
    pacing_wait,
    sweep_interval,
)

TIMEOUT = 1.5


class Clock:
    """A fake clock: ``now`` moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# --- retransmission timeout ---------------------------------------------------------------------


def test_rto_is_the_timeout_until_the_first_answer() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    assert flow.rto == TIMEOUT and not flow.answered
    assert flow.wait(1, retries=2) == TIMEOUT


def test_rto_learns_srtt_plus_margin_from_answers() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_answer(0.010)
    assert flow.answered
    assert flow.srtt == pytest.approx(0.010) and flow.rttvar == pytest.approx(0.005)
    assert flow.rto == pytest.approx(0.010 + RTO_MARGIN)  # 4 * RTTVAR = 20 ms < 50 ms margin
    for _ in range(50):
        flow.on_answer(0.200)  # the server slowed down: SRTT follows, RTTVAR shrinks again
    assert flow.srtt == pytest.approx(0.200, rel=0.01)
    assert flow.rto == pytest.approx(flow.srtt + max(4 * flow.rttvar, RTO_MARGIN))


def test_a_jittery_server_gets_four_rttvar_not_the_margin() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_answer(0.100)
    flow.on_answer(0.300)
    assert 4 * flow.rttvar > RTO_MARGIN
    assert flow.rto == pytest.approx(flow.srtt + 4 * flow.rttvar)


def test_rto_never_exceeds_the_timeout() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_answer(5.0)
    assert flow.rto == TIMEOUT


def test_wait_doubles_per_attempt_and_the_last_attempt_waits_the_full_timeout() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_answer(0.010)
    rto = flow.rto
    assert [flow.wait(n, retries=3) for n in (1, 2, 3)] == pytest.approx([rto, 2 * rto, 4 * rto])
    assert flow.wait(4, retries=3) == TIMEOUT  # attempt 4 of 1 + 3 is the last
    flow.on_answer(1.0)
    assert flow.wait(3, retries=3) == TIMEOUT  # doubling is capped at the timeout


# --- send window --------------------------------------------------------------------------------


def test_window_starts_small_and_grows_by_one_per_answer_up_to_the_cap() -> None:
    flow = ServerFlow(cap=1000, timeout=TIMEOUT)
    assert flow.cwnd == INITIAL_WINDOW
    for _ in range(10):
        flow.on_answer(0.001)
    assert flow.cwnd == INITIAL_WINDOW + 10
    for _ in range(2000):
        flow.on_answer(0.001)
    assert flow.cwnd == 1000
    assert ServerFlow(cap=20, timeout=TIMEOUT).cwnd == 20  # a cap below the initial window


def test_a_loss_halves_the_window_once_per_round_trip_then_growth_slows() -> None:
    clock = Clock()
    flow = ServerFlow(cap=1000, timeout=TIMEOUT)
    for _ in range(100):
        flow.on_answer(0.010)
    assert flow.cwnd == 200
    sent = clock.now
    lost_at = clock.advance(0.1)
    flow.on_loss(sent, lost_at)
    assert flow.cwnd == 100 and flow.ssthresh == 100
    flow.on_loss(sent, clock.advance(0.001))  # sent before the cut: the same loss event
    assert flow.cwnd == 100
    flow.on_loss(lost_at + 0.001, clock.advance(0.1))  # sent after the cut: a new loss
    assert flow.cwnd == 50
    before = flow.cwnd
    flow.on_answer(0.010)
    assert flow.cwnd == before + 0.25  # congestion avoidance after a loss


def test_the_window_never_falls_below_the_minimum() -> None:
    clock = Clock()
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_answer(0.010)
    for _ in range(20):
        sent = clock.now
        flow.on_loss(sent, clock.advance(1.0))
    assert flow.cwnd == MIN_WINDOW


def test_a_server_that_never_answered_keeps_its_window_on_loss() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    flow.on_loss(0.0, 2.0)  # dead or unreachable, not congested: no cut, no pacing
    assert flow.cwnd == INITIAL_WINDOW and flow.rate == 0.0


def test_room_counts_the_window_and_pacing_tokens() -> None:
    clock = Clock()
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    for _ in range(INITIAL_WINDOW):  # unpaced before the first answer: only the window counts
        assert flow.has_room(clock.now)
        flow.spend()
    assert not flow.has_room(clock.now)
    flow.inflight = 0
    flow.on_answer(0.010)  # paced now: 2 windows per 10 ms
    assert flow.rate == pytest.approx(2 * flow.cwnd / 0.010)
    flow.tokens = 0.0
    flow.refilled = clock.now
    assert not flow.has_room(clock.now)  # no token yet
    assert pacing_wait([flow]) == pytest.approx(max(1 / flow.rate, MIN_PACER))
    assert flow.has_room(clock.advance(1 / flow.rate))
    flow.refill(clock.advance(10.0))
    assert flow.tokens == pytest.approx(flow.rate * 0.002)  # idle time earns a 2 ms burst at most


def test_pacing_wait_is_none_when_no_server_waits_on_pacing() -> None:
    idle = ServerFlow(cap=150, timeout=TIMEOUT)
    assert pacing_wait([idle]) is None  # not paced
    full = ServerFlow(cap=150, timeout=TIMEOUT)
    full.on_answer(0.010)
    full.tokens, full.inflight = 0.0, int(full.cwnd)
    assert pacing_wait([full]) is None  # paced but its window is full


def test_sweep_interval_is_a_quarter_rto_within_bounds() -> None:
    cold = ServerFlow(cap=150, timeout=TIMEOUT)
    assert sweep_interval([cold], TIMEOUT) == MAX_SWEEP
    warm = ServerFlow(cap=150, timeout=TIMEOUT)
    warm.on_answer(0.0001)
    assert sweep_interval([cold, warm], TIMEOUT) == pytest.approx(max(warm.rto / 4, MIN_SWEEP))
    assert sweep_interval([cold], 0.05) == pytest.approx(0.01)  # a fifth of a short timeout


# --- an attempt's wait is over ------------------------------------------------------------------


def fate(
    attempts: int, servers: list[ServerFlow], *, alive: bool = True, give_up: bool = True
) -> Expiry:
    return expiry(
        alive=alive, attempts=attempts, retries=2, servers=servers, give_up_on_silence=give_up
    )


def test_expiry_resends_until_every_attempt_had_its_wait() -> None:
    answered = ServerFlow(cap=150, timeout=TIMEOUT)
    answered.on_answer(0.010)
    assert [fate(n, [answered]) for n in (1, 2, 3)] == [
        Expiry.RESEND,
        Expiry.RESEND,
        Expiry.TIMEOUT,  # 1 + retries attempts had their wait
    ]


def test_expiry_drops_a_question_nobody_waits_for() -> None:
    flow = ServerFlow(cap=150, timeout=TIMEOUT)
    assert fate(1, [flow], alive=False) is Expiry.DROP
    assert fate(3, [flow], alive=False) is Expiry.DROP


def test_give_up_on_silence_only_when_no_server_ever_answered() -> None:
    silent, answered = ServerFlow(150, TIMEOUT), ServerFlow(150, TIMEOUT)
    answered.on_answer(0.010)
    assert fate(3, [silent]) is Expiry.GIVE_UP  # the engine then abandons every question
    assert fate(3, [silent, answered]) is Expiry.TIMEOUT
    assert fate(3, [silent], give_up=False) is Expiry.TIMEOUT
    assert fate(1, [silent]) is Expiry.RESEND  # before the last attempt it is asked again


@pytest.mark.parametrize(
    "module",
    [
        mailmend.checks.names,
        mailmend.checks.nameservers,
        mailmend.checks.txt,
        mailmend.checks.wire,
    ],
)
def test_module_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted and not result.failed
