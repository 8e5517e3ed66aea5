"""Who sends as a domain (classification) and the staging rule, on faked DNS and made-up stats."""

from __future__ import annotations

import asyncio

import pytest

from mailmend.checks.dns import DnsAnswer, Rcode
from mailmend.checks.names import reverse_name
from mailmend.dmarc.db import DomainReports, SourceStats
from mailmend.dmarc.sources import Classification, Source, SourceClass, classify_all
from mailmend.dmarc.stage import DAY, StageRule, decide
from tests.unit.test_ptr import FakeResolver

DOMAIN = "alpha.example"
NOW = 1_800_000_000
ZONE: dict[tuple[str, str], tuple[str, ...] | Rcode] = {
    (DOMAIN, "TXT"): ("v=spf1 ip4:192.0.2.11 include:_spf.mailservice.test ~all",),
    ("_spf.mailservice.test", "TXT"): ("v=spf1 ip4:198.51.100.0/24 -all",),
    (reverse_name("203.0.113.66"), "PTR"): ("bulk.spammer.test.",),
    (reverse_name("203.0.113.77"), "PTR"): Rcode.SERVFAIL,
}
FLEET = {"192.0.2.11": "mx1"}


def stats(ip: str, messages: int = 100, aligned: int | None = None) -> SourceStats:
    ok = messages if aligned is None else aligned
    return SourceStats(DOMAIN, ip, messages, ok, ok, ok, ok, ok, {"none": messages}, ("x",))


def classified(*ips: str) -> dict[str, Classification]:
    sources = asyncio.run(classify_all(FakeResolver(ZONE), [stats(ip) for ip in ips], FLEET))
    return {s.stats.ip: s.cls for s in sources}


def test_fleet_service_and_unknown() -> None:
    found = classified("192.0.2.11", "198.51.100.9", "203.0.113.66", "203.0.113.99")
    assert found["192.0.2.11"] == Classification(SourceClass.FLEET, "mx1")
    assert found["198.51.100.9"] == Classification(
        SourceClass.SERVICE, "include:_spf.mailservice.test"
    )
    assert found["203.0.113.66"] == Classification(SourceClass.UNKNOWN, "bulk.spammer.test")
    assert found["203.0.113.99"] == Classification(SourceClass.UNKNOWN, "", "no PTR")


def test_unknown_says_what_dns_could_not_tell() -> None:
    found = classified("203.0.113.77")
    assert found["203.0.113.77"].kind is SourceClass.UNKNOWN
    assert found["203.0.113.77"].detail == "PTR lookup: SERVFAIL"


def test_spf_error_is_named() -> None:
    zone = {(DOMAIN, "TXT"): ("v=spf1 include:gone.test -all",)}
    resolver = FakeResolver(zone)
    [source] = asyncio.run(classify_all(resolver, [stats("203.0.113.5")], {}))
    assert source.cls.kind is SourceClass.UNKNOWN
    assert "SPF of alpha.example" in source.cls.detail and "gone.test" in source.cls.detail


class Silent(FakeResolver):
    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        await asyncio.sleep(10)
        raise AssertionError("never answered")


def test_classification_has_a_deadline() -> None:
    async def go() -> list[Source]:
        return await classify_all(
            Silent({}), [stats("203.0.113.5"), stats("192.0.2.11")], FLEET, deadline=0.2
        )

    sources = {s.stats.ip: s.cls for s in asyncio.run(go())}
    assert sources["192.0.2.11"].kind is SourceClass.FLEET  # needs no DNS
    assert sources["203.0.113.5"] == Classification(
        SourceClass.UNKNOWN, "", "DNS gave no answer within the 0.2 s deadline"
    )


# --- the staging rule ------------------------------------------------------------------------


def source(ip: str, kind: SourceClass, messages: int, aligned: int, name: str = "") -> Source:
    return Source(stats(ip, messages, aligned), Classification(kind, name))


CLEAN = [
    source("192.0.2.11", SourceClass.FLEET, 1000, 995, "mx1"),
    source("198.51.100.9", SourceClass.SERVICE, 300, 300, "include:_spf.mailservice.test"),
    source("203.0.113.66", SourceClass.UNKNOWN, 4, 0, "bulk.spammer.test"),
]
ENOUGH = DomainReports(DOMAIN, 20, ("Yahoo", "google.com"), ("none",), NOW - 15 * DAY)


def test_clean_domain_moves_one_step() -> None:
    decision = decide(DOMAIN, "none", None, ENOUGH, CLEAN, StageRule(), NOW)
    assert (decision.target, decision.moves) == ("quarantine", True)
    assert decision.headline() == "p=none -> p=quarantine"
    assert decision.reasons[0].startswith("20 reports from 2 organisations under p=none")
    assert "192.0.2.11 (fleet mx1): 99.5% of 1000 message(s) aligned" in decision.reasons
    again = decide(DOMAIN, "quarantine", None, ENOUGH, CLEAN, StageRule(), NOW)
    assert again.target == "reject"
    last = decide(DOMAIN, "reject", None, ENOUGH, CLEAN, StageRule(), NOW)
    assert (last.moves, last.reasons) == (False, ("p=reject is the last stage",))


def test_unknown_sender_with_volume_keeps_the_policy() -> None:
    loud = [*CLEAN, source("203.0.113.70", SourceClass.UNKNOWN, 500, 0, "mail.forgotten.test")]
    decision = decide(DOMAIN, "none", None, ENOUGH, loud, StageRule(), NOW)
    assert (decision.target, decision.moves) == ("none", False)
    assert decision.headline() == "stays at p=none"
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith(
        "203.0.113.70 (unknown mail.forgotten.test): 500 message(s) from an unknown source "
        "(more than 10; 0.0% of 500 message(s) aligned)"
    )


def test_known_source_below_the_bar_keeps_the_policy() -> None:
    weak = [source("192.0.2.11", SourceClass.FLEET, 1000, 970, "mx1"), *CLEAN[1:]]
    decision = decide(DOMAIN, "quarantine", None, ENOUGH, weak, StageRule(), NOW)
    assert not decision.moves
    assert decision.reasons == (
        "192.0.2.11 (fleet mx1): 97.0% of 1000 message(s) aligned (need 98%; DKIM aligned "
        "970, SPF aligned 970): fix its DKIM signing or SPF authorisation first",
    )
    assert decide(DOMAIN, "quarantine", None, ENOUGH, weak, StageRule(min_aligned=95), NOW).moves


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        (None, "not enough reports: 0 from 0 organisation(s) made under p=none"),
        (
            DomainReports(DOMAIN, 20, ("google.com",), ("none",), NOW - 15 * DAY),
            "not enough reports: 20 from 1 organisation(s)",
        ),
        (
            DomainReports(DOMAIN, 4, ("Yahoo", "google.com"), ("none",), NOW - 15 * DAY),
            "(need 5 from 2)",
        ),
        (
            DomainReports(DOMAIN, 9, ("Yahoo", "google.com"), ("none",), NOW - 3 * DAY),
            "the reports made under p=none cover 3.0 days (need 14)",
        ),
    ],
)
def test_too_little_evidence_keeps_the_policy(evidence: DomainReports | None, reason: str) -> None:
    decision = decide(DOMAIN, "none", None, evidence, CLEAN, StageRule(), NOW)
    assert not decision.moves
    assert reason in decision.reasons[0]


def test_pct_ramp() -> None:
    rule = StageRule(ramp=(25, 50, 100))
    steps = []
    policy, pct = "none", None
    for _ in range(8):
        decision = decide(DOMAIN, policy, pct, ENOUGH, CLEAN, rule, NOW)
        if not decision.moves:
            break
        steps.append(decision.headline())
        policy, pct = decision.target, decision.target_pct
    assert steps == [
        "p=none -> p=quarantine pct=25",
        "p=quarantine pct=25 -> p=quarantine pct=50",
        "p=quarantine pct=50 -> p=quarantine",
        "p=quarantine -> p=reject pct=25",
        "p=reject pct=25 -> p=reject pct=50",
        "p=reject pct=50 -> p=reject",
    ]
    with pytest.raises(ValueError, match="ending at 100"):
        StageRule(ramp=(50, 25))


def test_decision_json() -> None:
    data = decide(DOMAIN, "none", None, ENOUGH, CLEAN, StageRule(), NOW).to_json()
    assert (data["policy"], data["target"], data["moves"]) == ("none", "quarantine", True)
    assert data["sources"][0]["class"] == "fleet"
    assert data["sources"][0]["aligned_pct"] == 99.5
