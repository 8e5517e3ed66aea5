"""DNSBL rules, naming, DQS, list health; fake resolvers and loopback fault servers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest

from mailmend.checks.blocklists import Blocklist, load_blocklists
from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.dnsbl import (
    Health,
    check_domain,
    check_ip,
    check_ips,
    judge,
    list_health,
    list_problems,
    query_name,
    validate_dqs_key,
)
from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.result import CheckResult, Status
from tests.faultdns import FakeDns, aio, drop, servfail

LISTS = {bl.zone: bl for bl in load_blocklists()}
ZEN = LISTS["zen.spamhaus.org"]
KEY = "abcdefghijklmnopqrstuvwxyz"
IP = "203.0.113.7"
ZEN_NAME = "7.113.0.203.zen.spamhaus.org."


class FakeResolver(Resolver):
    """Answers from a table; NXDOMAIN for the rest. Records every question."""

    def __init__(
        self,
        table: Mapping[str, Sequence[str] | Rcode] | None = None,
        default: Rcode = Rcode.NXDOMAIN,
    ) -> None:
        self.table = dict(table or {})
        self.default = default
        self.asked: list[str] = []

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        self.asked.append(name)
        value = self.table.get(name, self.default)
        if isinstance(value, Rcode):
            return DnsAnswer(name, rdtype, value)
        return DnsAnswer(name, rdtype, Rcode.NOERROR, tuple(value))


async def _one(
    table: Mapping[str, Sequence[str] | Rcode], bl: Blocklist = ZEN, **kw: object
) -> CheckResult:
    results = await check_ip(FakeResolver(table), IP, [bl], **kw)  # type: ignore[arg-type]
    assert len(results) == 1
    result = results[0]
    assert result.check == "dnsbl" and result.subject == IP
    assert set(result.extra) == {"zone", "listed", "codes", "meaning", "delist", "list_kind"}
    json.dumps(result.to_json())
    return result


# --- the rules ---------------------------------------------------------------------------------


@aio
async def test_nxdomain_passes_not_listed() -> None:
    result = await _one({})
    assert result.status is Status.PASS and result.extra["listed"] is False
    assert result.extra["zone"] == "zen.spamhaus.org" and result.extra["list_kind"] == "block"


@aio
async def test_listing_code_fails_with_meaning_and_delisting() -> None:
    result = await _one({ZEN_NAME: ["127.0.0.2"]})
    assert result.status is Status.FAIL and result.extra["listed"] is True
    assert result.extra["codes"] == ["127.0.0.2"]
    assert "SBL" in result.extra["meaning"] and "SBL" in result.summary
    assert result.extra["delist"]["url"] == "https://check.spamhaus.org/"
    assert result.fix and "check.spamhaus.org" in result.fix


@aio
async def test_policy_code_warns() -> None:
    for code in ("127.0.0.10", "127.0.0.11"):
        result = await _one({ZEN_NAME: [code]})
        assert result.status is Status.WARN, code
        assert "PBL" in result.extra["meaning"] and result.fix and "policy" in result.fix


@aio
async def test_policy_plus_spam_code_fails() -> None:
    result = await _one({ZEN_NAME: ["127.0.0.10", "127.0.0.4"]})
    assert result.status is Status.FAIL and "XBL" in result.extra["meaning"]


@pytest.mark.parametrize("code", ["127.255.255.252", "127.255.255.254", "127.255.255.255"])
@aio
async def test_error_codes_are_unknown_with_reason_and_fix(code: str) -> None:
    result = await _one({ZEN_NAME: [code]})
    assert result.status is Status.UNKNOWN and result.extra["listed"] is False
    assert result.fix and ("resolver" in result.fix or "key" in result.fix)


@aio
async def test_public_resolver_code_explains_dqs() -> None:
    result = await _one({ZEN_NAME: ["127.255.255.254"]})
    assert "public" in result.summary and "DQS" in (result.fix or "")


@aio
async def test_answer_outside_loopback_means_rewritten_nxdomain() -> None:
    result = await _one({ZEN_NAME: ["198.51.100.80"]})
    assert result.status is Status.UNKNOWN and result.extra["listed"] is False
    assert "rewrote NXDOMAIN" in result.summary


@pytest.mark.parametrize("rcode", [Rcode.TIMEOUT, Rcode.SERVFAIL, Rcode.REFUSED, Rcode.OTHER])
@aio
async def test_no_answer_is_unknown_never_pass(rcode: Rcode) -> None:
    result = await _one({ZEN_NAME: rcode})
    assert result.status is Status.UNKNOWN and result.extra["listed"] is False
    assert str(rcode) in result.summary


@aio
async def test_unknown_code_on_blocklist_fails() -> None:
    result = await _one({ZEN_NAME: ["127.0.0.77"]})
    assert result.status is Status.FAIL and result.extra["meaning"] == "unknown code 127.0.0.77"


@aio
async def test_allowlist_hit_is_good_news() -> None:
    dnswl = LISTS["list.dnswl.org"]
    result = await _one({"7.113.0.203.list.dnswl.org.": ["127.0.15.2"]}, dnswl)
    assert result.status is Status.PASS and result.extra["listed"] is True
    assert "allowlist" in result.summary and "(good)" in result.summary
    assert result.extra["list_kind"] == "allow" and result.extra["delist"] is None


@aio
async def test_allowlist_never_fails() -> None:
    dnswl = LISTS["list.dnswl.org"]
    for answer in (["127.0.0.99"], Rcode.NXDOMAIN):
        result = await _one({"7.113.0.203.list.dnswl.org.": answer}, dnswl)
        assert result.status is Status.PASS


@aio
async def test_hostkarma_good_codes_pass() -> None:
    karma = LISTS["hostkarma.junkemailfilter.com"]
    name = "7.113.0.203.hostkarma.junkemailfilter.com."
    assert (await _one({name: ["127.0.0.1"]}, karma)).status is Status.PASS
    assert (await _one({name: ["127.0.0.5"]}, karma)).status is Status.PASS
    assert (await _one({name: ["127.0.0.2"]}, karma)).status is Status.FAIL


@aio
async def test_bitmask_domain_list() -> None:
    uribl = LISTS["multi.uribl.com"]
    name = "spam.example.multi.uribl.com."
    results = await check_domain(FakeResolver({name: ["127.0.0.10"]}), "Spam.Example.", [uribl])
    assert results[0].status is Status.FAIL and results[0].subject == "spam.example"
    assert "black" in results[0].extra["meaning"] and "red" in results[0].extra["meaning"]
    grey = await check_domain(FakeResolver({name: ["127.0.0.4"]}), "spam.example", [uribl])
    assert grey[0].status is Status.WARN
    refused = await check_domain(FakeResolver({name: ["127.0.0.1"]}), "spam.example", [uribl])
    assert refused[0].status is Status.UNKNOWN
    odd = await check_domain(FakeResolver({name: ["127.0.0.32"]}), "spam.example", [uribl])
    assert odd[0].status is Status.FAIL and "unknown code 127.0.0.32" in odd[0].extra["meaning"]


@aio
async def test_check_domain_uses_only_domain_lists() -> None:
    resolver = FakeResolver()
    results = await check_domain(resolver, "example.com", list(LISTS.values()))
    assert {r.extra["zone"] for r in results} == {
        "dbl.spamhaus.org",
        "multi.surbl.org",
        "multi.uribl.com",
    }
    assert "example.com.dbl.spamhaus.org." in resolver.asked
    with pytest.raises(ValueError, match="domain"):
        await check_domain(resolver, "localhost", list(LISTS.values()))


# --- naming, IPv6, DQS -------------------------------------------------------------------------


def test_ipv6_names_are_nibbles() -> None:
    name = query_name(ZEN, "2001:db8::1")
    labels = name.split(".")
    assert labels[:32] == list("1" + "0" * 23 + "8bd01002")
    assert name.endswith(".zen.spamhaus.org.")


@aio
async def test_ipv6_checks_only_lists_that_cover_ipv6() -> None:
    resolver = FakeResolver()
    results = await check_ip(resolver, "2001:db8::1", list(LISTS.values()))
    zones = {r.extra["zone"] for r in results}
    assert "zen.spamhaus.org" in zones and "b.barracudacentral.org" not in zones
    assert all(len(name.split(".")) > 32 for name in resolver.asked)


def test_dqs_naming() -> None:
    assert query_name(ZEN, IP, KEY) == f"7.113.0.203.{KEY}.zen.dq.spamhaus.net."
    dbl = LISTS["dbl.spamhaus.org"]
    assert query_name(dbl, "example.com", KEY) == f"example.com.{KEY}.dbl.dq.spamhaus.net."
    spamcop = LISTS["bl.spamcop.net"]
    assert query_name(spamcop, IP, KEY) == "7.113.0.203.bl.spamcop.net."


@aio
async def test_dqs_key_never_appears_in_results() -> None:
    dqs_name = f"7.113.0.203.{KEY}.zen.dq.spamhaus.net."
    for answer in (["127.0.0.2"], ["127.255.255.252"], Rcode.TIMEOUT, ["10.1.2.3"], ["127.0.0.10"]):
        resolver = FakeResolver({dqs_name: answer})
        results = await check_ip(resolver, IP, list(LISTS.values()), dqs_key=KEY)
        assert dqs_name in resolver.asked
        text = json.dumps([r.to_json() for r in results])
        assert KEY not in text
        zen = next(r for r in results if r.extra["zone"] == "zen.spamhaus.org")
        assert zen.status is not Status.PASS


def test_bad_dqs_key_is_rejected_without_echo() -> None:
    with pytest.raises(ValueError) as info:
        validate_dqs_key("bad key.with.dots")
    assert "bad key" not in str(info.value)


@aio
async def test_check_ips_batches_many() -> None:
    resolver = FakeResolver({ZEN_NAME: ["127.0.0.3"]})
    out = await check_ips(resolver, [IP, "198.51.100.1"], [ZEN, LISTS["bl.spamcop.net"]])
    assert [r.status for r in out[IP]] == [Status.FAIL, Status.PASS]
    assert [r.status for r in out["198.51.100.1"]] == [Status.PASS, Status.PASS]


# --- list health -------------------------------------------------------------------------------


@aio
async def test_list_health_ok_and_broken() -> None:
    spamcop = LISTS["bl.spamcop.net"]
    good = FakeResolver({"2.0.0.127.bl.spamcop.net.": ["127.0.0.2"]})
    health = await list_health(good, [spamcop])
    assert health["bl.spamcop.net"].health is Health.OK
    wildcard = FakeResolver(default=Rcode.NOERROR)
    wildcard.table = {
        n: ["127.0.0.2"] for n in ("1.0.0.127.bl.spamcop.net.", "2.0.0.127.bl.spamcop.net.")
    }
    health = await list_health(wildcard, [spamcop])
    assert health["bl.spamcop.net"].health is Health.BROKEN
    dead = await list_health(FakeResolver(), [spamcop])  # positive point not listed
    assert dead["bl.spamcop.net"].health is Health.BROKEN


@aio
async def test_an_ipv6_list_that_lists_its_ipv6_negative_point_is_broken() -> None:
    assert ZEN.ipv6
    v6_negative = query_name(ZEN, "::ffff:7f00:1")
    assert v6_negative.startswith("1.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0")
    ok = FakeResolver({"2.0.0.127.zen.spamhaus.org.": ["127.0.0.2"]})
    assert (await list_health(ok, [ZEN]))["zen.spamhaus.org"].health is Health.OK
    assert v6_negative in ok.asked
    v6_wildcard = FakeResolver(
        {"2.0.0.127.zen.spamhaus.org.": ["127.0.0.2"], v6_negative: ["127.0.0.2"]}
    )
    health = (await list_health(v6_wildcard, [ZEN]))["zen.spamhaus.org"]
    assert health.health is Health.BROKEN and "::ffff:7f00:1" in health.reason
    spamcop = LISTS["bl.spamcop.net"]  # an IPv4-only list is not asked about IPv6
    asked = FakeResolver({"2.0.0.127.bl.spamcop.net.": ["127.0.0.2"]})
    await list_health(asked, [spamcop])
    assert not any("ip6" in n or n.count(".") > 10 for n in asked.asked)


@aio
async def test_broken_list_answers_do_not_count() -> None:
    spamcop = LISTS["bl.spamcop.net"]
    points = ("1.0.0.127", "2.0.0.127", "7.113.0.203")
    everything = {f"{p}.bl.spamcop.net.": ["127.0.0.2"] for p in points}
    resolver = FakeResolver(everything)
    health = await list_health(resolver, [spamcop])
    # Judged alone, its answer is ignored: unknown, never "listed".
    result = judge(
        spamcop, IP, await resolver.query(query_name(spamcop, IP), "A"), health[spamcop.zone]
    )
    assert result.status is Status.UNKNOWN and result.extra["listed"] is False
    assert "broken/wildcarding" in result.summary
    assert result.fix is not None and result.fix.startswith("Nothing to fix on the host")


@aio
async def test_a_broken_list_is_the_lists_problem_not_the_hosts() -> None:
    """Regression (issue 15): the staged broken S5H turned every host UNKNOWN. A broken list
    gives no host a result (and is not even asked about the hosts); it is reported once."""
    spamcop, zen = LISTS["bl.spamcop.net"], LISTS["zen.spamhaus.org"]
    points = ("1.0.0.127", "2.0.0.127", "7.113.0.203")
    resolver = FakeResolver(
        {
            **{f"{p}.bl.spamcop.net.": ["127.0.0.2"] for p in points},
            "2.0.0.127.zen.spamhaus.org.": ["127.0.0.2"],
        }
    )
    health = await list_health(resolver, [spamcop, zen])
    asked = len(resolver.asked)
    results = await check_ip(resolver, IP, [spamcop, zen], health=health)
    assert [r.extra["zone"] for r in results] == ["zen.spamhaus.org"]
    assert [r.status for r in results] == [Status.PASS]
    assert not any("spamcop" in name for name in resolver.asked[asked:])
    [problem] = list_problems([spamcop, zen], health)
    assert (problem.zone, problem.name, problem.health) == (
        "bl.spamcop.net",
        spamcop.name,
        "broken",
    )
    assert problem.reason == "list is broken/wildcarding: it lists test point 127.0.0.1"
    assert problem.fix.startswith("Nothing to fix on the hosts")


@aio
async def test_list_health_refused_rewritten_unreachable() -> None:
    points = ("1.0.0.127", "2.0.0.127")
    refused = FakeResolver({f"{p}.zen.spamhaus.org.": ["127.255.255.254"] for p in points})
    assert (await list_health(refused, [ZEN]))["zen.spamhaus.org"].health is Health.REFUSED
    rewritten = FakeResolver({"1.0.0.127.zen.spamhaus.org.": ["198.51.100.80"]})
    assert (await list_health(rewritten, [ZEN]))["zen.spamhaus.org"].health is Health.REWRITTEN
    timeout = FakeResolver(default=Rcode.TIMEOUT)
    assert (await list_health(timeout, [ZEN]))["zen.spamhaus.org"].health is Health.UNREACHABLE


@aio
async def test_list_health_with_dqs_key_uses_dq_zone() -> None:
    resolver = FakeResolver()
    await list_health(resolver, [ZEN], dqs_key=KEY)
    assert f"1.0.0.127.{KEY}.zen.dq.spamhaus.net." in resolver.asked


# --- faults through the real engine ------------------------------------------------------------


@aio
async def test_silent_server_gives_unknown_never_pass_or_listed() -> None:
    async with FakeDns(drop) as server:
        cfg = EngineConfig((server.nameserver,), timeout=0.05, retries=1, deadline=2.0)
        async with Engine(cfg) as eng:
            health = await list_health(eng, [ZEN, LISTS["bl.spamcop.net"]])
            results = await check_ip(eng, IP, [ZEN, LISTS["bl.spamcop.net"]], health=health)
    assert {h.health for h in health.values()} == {Health.UNREACHABLE}
    assert [r.status for r in results] == [Status.UNKNOWN, Status.UNKNOWN]
    assert not any(r.extra["listed"] for r in results)
    assert "TIMEOUT" in results[0].summary


@aio
async def test_servfail_server_gives_unknown() -> None:
    async with FakeDns(servfail) as server:
        async with Engine(EngineConfig((server.nameserver,))) as eng:
            [result] = await check_ip(eng, IP, [ZEN])
    assert result.status is Status.UNKNOWN and "SERVFAIL" in result.summary
