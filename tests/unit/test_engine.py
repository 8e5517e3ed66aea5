"""The engine: wire format, parser, and fault behaviour against loopback fake servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mailmend.checks.dns import Rcode
from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.nameservers import Nameserver, parse_nameserver
from mailmend.checks.wire import build_query, encode_name, parse_response
from tests.faultdns import (
    FakeDns,
    ScriptedUdpDns,
    aio,
    answer,
    drop,
    servfail,
    truncating,
    zone,
)

# --- nameserver parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", Nameserver("127.0.0.1", 53)),
        ("127.0.0.1:5353", Nameserver("127.0.0.1", 5353)),
        ("::1", Nameserver("::1", 53)),
        ("[::1]:5353", Nameserver("::1", 5353)),
        ("[2001:db8::1]", Nameserver("2001:db8::1", 53)),
        (" 10.0.0.1 ", Nameserver("10.0.0.1", 53)),
    ],
)
def test_parse_nameserver(text: str, expected: Nameserver) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    "text", ["dns.google", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x", "[::1", "[::1]5353", ""]
)
def test_parse_nameserver_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(text)


def test_nameserver_str_round_trips() -> None:
    for text in ("127.0.0.1:53", "[::1]:5353"):
        assert str(parse_nameserver(text)) == text


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="nameserver"):
        EngineConfig(nameservers=())
    with pytest.raises(ValueError, match="rate"):
        EngineConfig((Nameserver("127.0.0.1"),), zone_rate_limits={"x.test": 0})


# --- wire format -------------------------------------------------------------------------------


def test_build_query_matches_dnspython() -> None:
    wire = build_query(0x1234, "2.0.0.127.zen.spamhaus.org", "A")
    msg = dns.message.from_wire(wire)
    assert msg.id == 0x1234
    assert msg.flags & dns.flags.RD and not msg.flags & dns.flags.QR
    assert msg.question[0].name.to_text() == "2.0.0.127.zen.spamhaus.org."
    assert msg.question[0].rdtype == 1
    assert wire[2:] == dns.message.make_query("2.0.0.127.zen.spamhaus.org.", "A").to_wire()[2:]


@pytest.mark.parametrize("name", ["", ".", "a..b", "x" * 64 + ".test", ("a" * 60 + ".") * 5])
def test_encode_name_rejects(name: str) -> None:
    if name in ("", "."):
        assert encode_name(name) == b"\x00"
        return
    with pytest.raises(ValueError, match="bad DNS name"):
        encode_name(name)


def test_encode_name_idna_falls_back_to_dnspython() -> None:
    assert encode_name("bücher.example") == dns.name.from_text("bücher.example").to_wire()


def _response(name: str, rdtype: str, records: list[str], rcode: int = 0) -> tuple[bytes, bytes]:
    query_wire = build_query(7, name, rdtype)
    query = dns.message.from_wire(query_wire)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if records:
        response.answer.append(
            dns.rrset.from_text_list(query.question[0].name, 60, "IN", rdtype, records)
        )
    return response.to_wire(), query_wire[12:]


@pytest.mark.parametrize(
    ("rdtype", "records", "expected"),
    [
        ("A", ["127.0.0.2", "127.0.0.10"], ("127.0.0.2", "127.0.0.10")),
        ("AAAA", ["2001:db8::1"], ("2001:db8::1",)),
        ("TXT", ['"v=spf1 " "-all"'], ("v=spf1 -all",)),
        ("MX", ["10 mx.example.com."], ("10 mx.example.com.",)),
        ("PTR", ["mail.example.com."], ("mail.example.com.",)),
        ("CNAME", ["target.example.com."], ("target.example.com.",)),
    ],
)
def test_parse_response_records(rdtype: str, records: list[str], expected: tuple[str, ...]) -> None:
    wire, question = _response("q.example.com", rdtype, records)
    parsed = parse_response(wire, question, dns.rdatatype.from_text(rdtype))
    assert parsed is not None
    assert parsed.qid == 7 and parsed.rcode is Rcode.NOERROR and not parsed.truncated
    assert sorted(parsed.records) == sorted(expected)  # an rrset has no order


def test_parse_response_a_follows_cname_and_compression() -> None:
    query = dns.message.make_query("www.example.com.", "A")
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("www.example.com.", 60, "IN", "CNAME", "a.example.com.")
    )
    response.answer.append(dns.rrset.from_text("a.example.com.", 60, "IN", "A", "192.0.2.1"))
    wire = response.to_wire()
    parsed = parse_response(wire, query.to_wire()[12:], 1)
    assert parsed is not None and parsed.records == ("192.0.2.1",)


@pytest.mark.parametrize(
    ("rcode", "expected"),
    [(dns.rcode.NXDOMAIN, Rcode.NXDOMAIN), (dns.rcode.SERVFAIL, Rcode.SERVFAIL),
     (dns.rcode.REFUSED, Rcode.REFUSED), (dns.rcode.FORMERR, Rcode.OTHER)],
)  # fmt: skip
def test_parse_response_rcodes(rcode: int, expected: Rcode) -> None:
    wire, question = _response("x.test", "A", [], rcode)
    parsed = parse_response(wire, question, 1)
    assert parsed is not None and parsed.rcode is expected and parsed.records == ()


def test_parse_response_rejects_other_question_and_queries() -> None:
    wire, _ = _response("x.test", "A", ["127.0.0.2"])
    _, other = _response("y.test", "A", [])
    assert parse_response(wire, other, 1) is None
    _, question_aaaa = _response("x.test", "AAAA", [])
    assert parse_response(wire, question_aaaa, 28) is None
    query = build_query(7, "x.test", "A")
    assert parse_response(query, query[12:], 1) is None  # QR=0: not a response


def test_parse_response_case_insensitive_and_truncated() -> None:
    wire, question = _response("X.Test", "A", [])
    assert parse_response(wire, question.lower(), 1) is not None
    msg = dns.message.from_wire(wire)
    msg.flags |= dns.flags.TC
    parsed = parse_response(msg.to_wire(), question, 1)
    assert parsed is not None and parsed.truncated


def test_parse_response_malformed_raises_value_error() -> None:
    wire, question = _response("x.test", "A", ["127.0.0.2"])
    with pytest.raises(ValueError, match="malformed"):
        parse_response(wire[:-3], question, 1)


# --- against loopback servers ------------------------------------------------------------------

DATA = {
    ("2.0.0.127.bl.test.", "A"): ["127.0.0.2"],
    ("x.test.", "TXT"): ['"v=spf1 -all"'],
}


def _cfg(server: FakeDns, **kw: float) -> EngineConfig:
    return EngineConfig((server.nameserver,), **kw)  # type: ignore[arg-type]


@aio
async def test_answers_and_nxdomain() -> None:
    async with FakeDns(zone(DATA)) as server, Engine(_cfg(server)) as eng:
        listed = await eng.query("2.0.0.127.bl.test", "A")
        missing = await eng.query("1.0.0.127.bl.test.", "a")
        assert listed.rcode is Rcode.NOERROR and listed.records == ("127.0.0.2",)
        assert listed.name == "2.0.0.127.bl.test."
        assert missing.rcode is Rcode.NXDOMAIN and not missing.exists
        txt = await eng.query("x.test", "TXT")
        assert txt.records == ("v=spf1 -all",)


@aio
async def test_drop_everything_times_out_within_deadline() -> None:
    async with FakeDns(drop) as server, Engine(_cfg(server, timeout=0.1, retries=1)) as eng:
        start = time.monotonic()
        got = await eng.query("a.test", "A")
        assert got.rcode is Rcode.TIMEOUT and not got.ok
        assert time.monotonic() - start < 1.0
        assert len(server.udp_queries) == 2  # first try + one retry
        assert eng.stats.retried == 1 and eng.stats.timeouts == 1


@aio
async def test_silent_server_never_stalls_later_batches() -> None:
    """Regression: re-sent attempts used to keep their place in the send window, so a silent
    server's window filled with superseded attempts and the next batch was never re-sent."""
    kw = {"timeout": 0.1, "retries": 2, "give_up_on_silence": False}
    async with FakeDns(drop) as server, Engine(_cfg(server, **kw)) as eng:
        first = await eng.query_many([("first.test", "A")])
        start = time.monotonic()
        later = await eng.query_many([(f"q{i}.test", "A") for i in range(60)])
        assert {a.rcode for a in first + later} == {Rcode.TIMEOUT}
        assert time.monotonic() - start < 2.0  # three attempts of 0.1 s, not the deadline
        assert len(server.udp_queries) == 3 * 61
        assert all(s.inflight == 0 for s in eng._servers)


@aio
async def test_batch_deadline_gives_timeout_not_hang() -> None:
    cfg_kw = {"timeout": 5.0, "retries": 2, "deadline": 0.3}
    async with FakeDns(drop) as server, Engine(_cfg(server, **cfg_kw)) as eng:
        start = time.monotonic()
        got = await eng.query_many([(f"{i}.test", "A") for i in range(20)])
        assert time.monotonic() - start < 1.5
        assert [a.rcode for a in got] == [Rcode.TIMEOUT] * 20


@aio
async def test_servfail_is_returned() -> None:
    async with FakeDns(servfail) as server, Engine(_cfg(server)) as eng:
        got = await eng.query("a.test", "A")
        assert got.rcode is Rcode.SERVFAIL and not got.ok


@aio
async def test_truncated_udp_answer_is_asked_again_over_tcp() -> None:
    async with FakeDns(truncating(["192.0.2.7"])) as server, Engine(_cfg(server)) as eng:
        got = await eng.query("big.test", "A")
        assert got.rcode is Rcode.NOERROR and got.records == ("192.0.2.7",)
        assert server.udp_queries == [("big.test.", "A")]
        assert server.tcp_queries == [("big.test.", "A")]
        assert eng.stats.tcp_fallbacks == 1


@aio
async def test_duplicate_questions_in_flight_send_one_packet() -> None:
    async with FakeDns(zone(DATA)) as server, Engine(_cfg(server)) as eng:
        answers = await asyncio.gather(*(eng.query("2.0.0.127.bl.test", "A") for _ in range(5)))
        assert {a.records for a in answers} == {("127.0.0.2",)}
        assert len(server.udp_queries) == 1
        assert eng.stats.deduplicated == 4
        again = await eng.query("2.0.0.127.BL.test.", "A")
        assert again.records == ("127.0.0.2",) and eng.stats.cache_hits == 1
        assert len(server.udp_queries) == 1


@aio
async def test_query_many_keeps_order_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []
    async with FakeDns(zone(DATA)) as server, Engine(_cfg(server, max_in_flight=3)) as eng:
        questions = [(f"{i}.0.0.127.bl.test", "A") for i in range(1, 11)]
        got = await eng.query_many(questions, progress=lambda d, t: seen.append((d, t)))
    assert [a.rcode for a in got] == [Rcode.NXDOMAIN, Rcode.NOERROR] + [Rcode.NXDOMAIN] * 8
    assert seen[-1] == (10, 10) and len(seen) == 10


@aio
async def test_timeout_is_not_cached() -> None:
    kw = {"timeout": 0.05, "retries": 0, "give_up_on_silence": False}
    async with FakeDns(drop) as server, Engine(_cfg(server, **kw)) as eng:
        await eng.query("a.test", "A")
        await eng.query("a.test", "A")
        assert len(server.udp_queries) == 2


@aio
async def test_wrong_question_with_right_id_is_ignored() -> None:
    def liar(query: dns.message.Message, transport: str) -> dns.message.Message:
        other = dns.message.make_query("evil.test.", "A")
        other.id = query.id
        return answer(other, ["192.0.2.66"])

    async with FakeDns(liar) as server, Engine(_cfg(server, timeout=0.05, retries=0)) as eng:
        got = await eng.query("good.test", "A")
        assert got.rcode is Rcode.TIMEOUT
        assert eng.stats.malformed == 1


@aio
async def test_retry_goes_to_the_next_nameserver() -> None:
    async with FakeDns(drop) as dead, FakeDns(zone(DATA)) as alive:
        cfg = EngineConfig((dead.nameserver, alive.nameserver), timeout=0.1, retries=2)
        async with Engine(cfg) as eng:
            got = await eng.query_many([(f"{i}.0.0.127.bl.test", "A") for i in range(1, 7)])
        assert {a.rcode for a in got} <= {Rcode.NXDOMAIN, Rcode.NOERROR}


@aio
async def test_zone_rate_limit_spaces_queries() -> None:
    cfg_kw = {"zone_rate_limits": {"bl.test": 50.0}}
    async with FakeDns(zone(DATA)) as server:
        cfg = EngineConfig((server.nameserver,), **cfg_kw)  # type: ignore[arg-type]
        async with Engine(cfg) as eng:
            start = time.monotonic()
            await eng.query_many([(f"{i}.0.0.127.bl.test", "A") for i in range(1, 6)])
            await eng.query("other.test", "A")
            assert time.monotonic() - start >= 0.07  # 5 queries at 50/s: 4 gaps of 20 ms


@aio
async def test_engine_must_be_open() -> None:
    eng = Engine(EngineConfig((Nameserver("127.0.0.1", 9),)))
    with pytest.raises(RuntimeError, match="not open"):
        await eng.query("a.test", "A")


# --- adaptive retransmission and pacing ----------------------------------------------------------


def _warm_up_names(count: int = 8) -> list[tuple[str, str]]:
    return [(f"{i}.0.0.127.bl.test", "A") for i in range(10, 10 + count)]


def _slow(first_hold: float, later: float | None) -> Callable[[str, int], float | None]:
    """Names starting with 'slow.': the first copy answered after ``first_hold`` s, later
    copies after ``later`` s (None: dropped). Every other name: answered at once."""

    def plan(name: str, copy: int) -> float | None:
        if not name.startswith("slow."):
            return 0.0
        return first_hold if copy == 1 else later

    return plan


@aio
async def test_rto_starts_at_timeout_and_adapts_to_round_trips() -> None:
    async with ScriptedUdpDns(zone(DATA), lambda name, n: 0.08) as server:
        cfg = EngineConfig((server.nameserver,), timeout=2.0, retries=2)
        async with Engine(cfg) as eng:
            rto_cold = eng._servers[0].rto
            await eng.query_many(_warm_up_names(20))
            state = eng._servers[0]
    assert rto_cold == 2.0  # nothing measured yet: the configured timeout
    assert 0.07 <= state.srtt < 0.5
    assert state.srtt + 0.05 <= state.rto < 2.0  # SRTT plus at least the 50 ms margin
    async with FakeDns(zone(DATA)) as fast:
        async with Engine(EngineConfig((fast.nameserver,), timeout=2.0)) as eng:
            await eng.query_many(_warm_up_names(20))
            assert eng._servers[0].rto < 0.5  # loopback: SRTT ~ 1 ms + margin


@aio
async def test_late_answer_of_the_first_attempt_is_taken_after_a_resend() -> None:
    # The first copy is answered after 0.3 s, every re-send is dropped. With a learnt RTO of
    # ~50 ms the engine re-sends before that, and must still take the first copy's answer,
    # long before the 2 s timeout.
    async with ScriptedUdpDns(zone(DATA), _slow(0.3, None)) as server:
        async with Engine(EngineConfig((server.nameserver,), timeout=2.0, retries=2)) as eng:
            await eng.query_many(_warm_up_names())
            start = time.monotonic()
            got = await eng.query("slow.test", "A")
            elapsed = time.monotonic() - start
            stats = eng.stats
    assert got.rcode is Rcode.NXDOMAIN  # an answer, not TIMEOUT
    assert 0.25 <= elapsed < 1.0
    assert stats.retried >= 1 and server.copies("slow.test.") == 1 + stats.retried
    assert len(server.answered) == 8 + 1  # the warm-up and the first copy, nothing else
    assert stats.timeouts == 0 and stats.malformed == 0


@aio
async def test_first_answer_wins_and_the_other_is_not_counted_twice() -> None:
    # The first copy is answered after 0.3 s, the re-send at once: the re-send's answer wins,
    # the first copy's late answer is ignored (counted as late, not as malformed or twice).
    seen: list[tuple[int, int]] = []
    async with ScriptedUdpDns(zone(DATA), _slow(0.3, 0.0)) as server:
        async with Engine(EngineConfig((server.nameserver,), timeout=2.0, retries=2)) as eng:
            await eng.query_many(_warm_up_names())
            questions = [("slow.test", "A"), ("slow.other.test", "TXT")]
            got = await eng.query_many(questions, progress=lambda d, t: seen.append((d, t)))
            await asyncio.sleep(0.4)  # let the late answers arrive
            stats = eng.stats
    assert [a.rcode for a in got] == [Rcode.NXDOMAIN, Rcode.NXDOMAIN]
    assert seen == [(1, 2), (2, 2)]  # each question answered once
    assert stats.retried == 2 and stats.late == 2 and stats.malformed == 0
    assert stats.timeouts == 0


@aio
async def test_still_timeout_when_no_attempt_is_answered() -> None:
    # With a learnt RTO the re-sends come quickly, but the question only gets TIMEOUT once the
    # last attempt has waited the full timeout.
    async with ScriptedUdpDns(zone(DATA), _slow(None, None)) as server:  # type: ignore[arg-type]
        async with Engine(EngineConfig((server.nameserver,), timeout=0.4, retries=2)) as eng:
            await eng.query_many(_warm_up_names())
            start = time.monotonic()
            got = await eng.query("slow.test", "A")
            elapsed = time.monotonic() - start
            stats = eng.stats
    assert got.rcode is Rcode.TIMEOUT
    assert server.copies("slow.test.") == 3  # first try + 2 retries
    assert 0.4 <= elapsed < 1.2 - 0.1  # sooner than 3 full timeouts, never before one
    assert stats.retried == 2 and stats.timeouts == 1


@aio
async def test_a_cold_server_gets_a_small_first_burst() -> None:
    # 400 questions, room for 400 in flight, 50 ms round trips: the first round trip carries
    # the initial window only, the window then grows as answers come back.
    async with ScriptedUdpDns(zone(DATA), lambda name, n: 0.05) as server:
        cfg = EngineConfig((server.nameserver,), max_in_flight=400, timeout=2.0)
        async with Engine(cfg) as eng:
            got = await eng.query_many([(f"{i}.x.test", "A") for i in range(400)])
            stats = eng.stats
    assert all(a.rcode is Rcode.NXDOMAIN for a in got)
    first = server.arrivals[0][0]
    assert sum(t < first + 0.04 for t, _, _ in server.arrivals) <= 100
    assert stats.sent == 400 and stats.retried == 0


# --- a dead nameserver: every question ends, the engine says which server did not answer -------


@aio
async def test_many_questions_to_a_silent_server_all_end() -> None:
    """Regression (issue 15): superseded attempts stayed in the socket's max_in_flight count, so
    with more questions than max_in_flight a silent server's queue froze (ready>0, pending full
    of old attempts, nothing in flight) and `mailmend check` never ended."""
    kw = {"timeout": 0.05, "retries": 2, "give_up_on_silence": False}  # the window alone
    async with FakeDns(drop) as server, Engine(_cfg(server, **kw)) as eng:
        names = [f"q{i}.test" for i in range(400)]  # all asked before the first one times out
        got = await asyncio.wait_for(
            asyncio.gather(*(eng.query(n, "A") for n in names)), timeout=30
        )
        assert {a.rcode for a in got} == {Rcode.TIMEOUT}
        assert all(s.inflight == 0 for s in eng._servers)


@aio
async def test_a_server_that_never_answered_is_given_up_after_one_question() -> None:
    """Once a question has had every attempt and no nameserver ever answered, the engine
    stops waiting on each question: the rest (and later ones) get TIMEOUT at once."""
    async with FakeDns(drop) as server, Engine(_cfg(server, timeout=0.2, retries=1)) as eng:
        first = await eng.query("first.test", "A")
        assert first.rcode is Rcode.TIMEOUT and eng.abandoned
        sent = len(server.udp_queries)
        later = await asyncio.wait_for(eng.query("later.test", "A"), timeout=0.1)
        assert later.rcode is Rcode.TIMEOUT and len(server.udp_queries) == sent
        assert eng.silent_nameservers() == (server.nameserver,)


@aio
async def test_abandon_ends_open_questions_and_later_ones() -> None:
    async with FakeDns(drop) as server, Engine(_cfg(server, timeout=5.0)) as eng:
        pending = asyncio.gather(*(eng.query(f"{i}.test", "A") for i in range(300)))
        await asyncio.sleep(0.05)
        eng.abandon()
        got = await asyncio.wait_for(pending, timeout=1.0)
        assert {a.rcode for a in got} == {Rcode.TIMEOUT}
        assert (await eng.query("after.test", "A")).rcode is Rcode.TIMEOUT
        with pytest.raises(ValueError, match="record type"):
            await eng.query("after.test", "NOPE")


@aio
async def test_a_server_that_answers_is_not_silent() -> None:
    async with FakeDns(servfail) as server, Engine(_cfg(server, timeout=0.2)) as eng:
        assert (await eng.query("a.test", "A")).rcode is Rcode.SERVFAIL
        assert eng.silent_nameservers() == () and not eng.abandoned


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_config_refuses_timeouts_that_are_not_finite_and_positive(value: float) -> None:
    with pytest.raises(ValueError, match="finite and positive"):
        EngineConfig((Nameserver("127.0.0.1"),), timeout=value)
    with pytest.raises(ValueError, match="finite and positive"):
        EngineConfig((Nameserver("127.0.0.1"),), deadline=value)
