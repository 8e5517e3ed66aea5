"""SPF flattening and the merge keep the record's meaning (issue 15 items 5 and 6).

Property: over generated include/redirect trees (every qualifier, order and nesting), the
flattened record gives every address the result the original gave, and a proposal passes
exactly what the original passed plus the fleet's hosts (unless the record refuses a host with
its own term, which the proposal then says). Both sides are judged by the one evaluator,
:mod:`checks.spf`; the original is evaluated with the lookup limit lifted, to ask what it means.
"""

from __future__ import annotations

import asyncio
import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmend.checks.dns import Rcode
from mailmend.checks.spf import Evaluation, evaluate, parse_record
from mailmend.records.spf import SpfProposal, propose_spf
from mailmend.records.spf_flatten import Flattener, minus, union
from tests.unit.test_ptr import FakeResolver

Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]
TOP = "top.test"
POOL4 = [str(a) for a in ipaddress.ip_network("198.51.100.0/28")]
POOL6 = [str(a) for a in ipaddress.ip_network("2001:db8::/124")]
OUTSIDE = ["198.51.100.200", "2001:db8::1:0", f"::ffff:{POOL4[3]}"]
PROBES = POOL4 + POOL6 + OUTSIDE
HOSTS = ("h0.test", "h1.test", "h2.test")
QUALIFIER = st.sampled_from(["", "+", "-", "~", "?"])


def results(zone: Zone, domain: str, record: str, ips: list[str], limit: int = 10) -> list[str]:
    """The evaluator's result for each of ``ips`` (one event loop for all: fast)."""

    async def one(ip: str) -> str:
        ev = Evaluation(FakeResolver(zone), ipaddress.ip_address(ip), max_lookups=limit)
        found = await evaluate(ev, domain, parse_record(record, domain))
        return found.result if found else "neutral"

    async def every() -> list[str]:
        return [await one(ip) for ip in ips]

    return asyncio.run(every())


def result(zone: Zone, domain: str, record: str, ip: str) -> str:
    return results(zone, domain, record, [ip])[0]


def meanings(zone: Zone, ips: list[str]) -> list[str]:
    """What the published record at TOP says for each of ``ips``, the lookup limit aside."""
    return results(zone, TOP, zone[(TOP, "TXT")][0], ips, limit=10**6)  # type: ignore[index]


def meaning(zone: Zone, ip: str) -> str:
    return meanings(zone, [ip])[0]


@st.composite
def trees(draw: st.DrawFn, fillers: int = 0) -> Zone:
    """A zone: TOP and up to 4 more domains whose records include/redirect to later ones."""
    count = draw(st.integers(1, 5))
    domains = [TOP] + [f"d{i}.test" for i in range(1, count)]
    zone: Zone = {}
    for host in HOSTS:
        zone[(host, "A")] = (draw(st.sampled_from(POOL4)),)
        zone[(host, "AAAA")] = (draw(st.sampled_from(POOL6)),)
    for i, domain in enumerate(domains):
        later = domains[i + 1 :]
        kinds = ["ip4", "ip6", "a", "mx"] + (["include"] * 2 if later else [])
        terms = ["v=spf1"]
        for _ in range(draw(st.integers(0, 5))):
            q, kind = draw(QUALIFIER), draw(st.sampled_from(kinds))
            if kind == "ip4":
                prefix = draw(st.integers(28, 32))
                terms.append(f"{q}ip4:{draw(st.sampled_from(POOL4))}/{prefix}")
            elif kind == "ip6":
                prefix = draw(st.integers(124, 128))
                terms.append(f"{q}ip6:{draw(st.sampled_from(POOL6))}/{prefix}")
            elif kind == "a":
                cidr = draw(st.sampled_from(["", "/30", "/31//126"]))
                terms.append(f"{q}a:{draw(st.sampled_from(HOSTS))}{cidr}")
            elif kind == "mx":
                terms.append(f"{q}mx{draw(st.sampled_from(['', '/29']))}")
            else:
                terms.append(f"{q}include:{draw(st.sampled_from(later))}")
        if domain == TOP:
            terms += [f"include:f{k}.test" for k in range(fillers)]
        end = draw(st.sampled_from(["all", "redirect", "none"] if later else ["all", "none"]))
        if end == "all":
            terms.append(f"{draw(QUALIFIER)}all")
        elif end == "redirect":
            terms.append(f"redirect={draw(st.sampled_from(later))}")
        zone[(domain, "TXT")] = (" ".join(terms),)
        zone[(domain, "MX")] = (f"10 {draw(st.sampled_from(HOSTS))}.",)
    for k in range(fillers):
        zone[(f"f{k}.test", "TXT")] = (f"v=spf1 ip4:192.0.2.{k} -all",)
    return zone


def flatten_all(zone: Zone) -> str:
    async def go() -> str:
        flattener = Flattener(FakeResolver(zone))
        terms = zone[(TOP, "TXT")][0].split()  # type: ignore[index]
        for kinds in (("include",), ("a", "mx"), ("redirect",)):
            terms, _ = await flattener.expand(TOP, terms, kinds)
        return " ".join(terms)

    return asyncio.run(go())


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(trees())
def test_flattened_record_gives_every_address_the_original_result(zone: Zone) -> None:
    flat = flatten_all(zone)
    assert "include:" not in flat and "redirect=" not in flat
    assert results(zone, TOP, flat, PROBES) == meanings(zone, PROBES), flat


def same_host(ip: str) -> str:
    """An IPv4-mapped IPv6 address is its IPv4 host (RFC 7208 5)."""
    addr = ipaddress.ip_address(ip)
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped or addr)


def propose(zone: Zone, ips: list[str]) -> SpfProposal:
    resolver = FakeResolver(zone)

    async def go() -> SpfProposal:
        return await propose_spf(resolver, TOP, ips, await resolver.query(TOP + ".", "TXT"))

    return asyncio.run(go())


@SETTINGS
@given(trees(fillers=11), st.lists(st.sampled_from(POOL4 + POOL6 + OUTSIDE[:2]), max_size=3))
def test_proposal_passes_what_the_original_passed_plus_the_fleet(
    zone: Zone, fleet: list[str]
) -> None:
    proposal = propose(zone, fleet)
    assert proposal.value is not None, proposal.problem
    assert proposal.flattened  # 11 fillers: over the limit
    probes = PROBES + fleet
    before, after = meanings(zone, probes), results(zone, TOP, proposal.value, probes)
    hosts = {same_host(ip) for ip in fleet if ip not in proposal.denied}
    for ip, was, now in zip(probes, before, after, strict=True):
        if same_host(ip) in hosts:
            assert now == "pass", (ip, proposal.value)
        else:
            assert (now == "pass") == (was == "pass"), (ip, was, now, proposal.value)
    for ip, term in proposal.denied.items():
        assert meaning(zone, ip) != "pass" and term.lstrip("+-~?").split()[0] != "all"
        assert any(ip in n and "remove that term" in n for n in proposal.notes)


# --- the cases the issue reported ----------------------------------------------------------------


def _crm_zone() -> Zone:
    zone: Zone = {
        ("_spf.crm.test", "TXT"): ("v=spf1 -ip4:198.51.100.200 ip4:198.51.100.128/25 -all",),
    }
    for k in range(10):
        zone[(f"f{k}.test", "TXT")] = (f"v=spf1 ip4:192.0.2.{k} -all",)
    fillers = " ".join(f"include:f{k}.test" for k in range(10))
    zone[(TOP, "TXT")] = (f"v=spf1 include:_spf.crm.test {fillers} -all",)
    return zone


def test_flattening_keeps_a_refusal_inside_an_include() -> None:
    zone = _crm_zone()
    proposal = propose(zone, ["203.0.113.7"])
    assert proposal.value is not None and proposal.flattened
    assert meaning(zone, "198.51.100.200") == "fail"
    assert result(zone, TOP, proposal.value, "198.51.100.200") == "fail"
    assert result(zone, TOP, proposal.value, "198.51.100.201") == "pass"
    assert result(zone, TOP, proposal.value, "198.51.100.128") == "pass"
    assert result(zone, TOP, proposal.value, "203.0.113.7") == "pass"
    assert "ip4:198.51.100.128/25" not in proposal.value


def test_a_long_flattened_record_says_it_is_long() -> None:
    zone = _crm_zone()
    long = " ".join(f"ip4:198.51.100.{2 * k}" for k in range(40))  # no two make a block
    zone[("_spf.crm.test", "TXT")] = (f"v=spf1 {long} -all",)
    proposal = propose(zone, ["203.0.113.7"])
    assert proposal.value is not None and len(proposal.value) > 450
    assert any("RFC 7208 3.4 advises at most 450" in n for n in proposal.notes)
    short = propose(_crm_zone(), ["203.0.113.7"])
    assert not any("3.4" in n for n in short.notes)


def test_merge_does_not_append_a_term_the_record_refuses_and_says_so() -> None:
    zone: Zone = {
        (TOP, "TXT"): ("v=spf1 -ip4:198.51.100.20 include:_spf.provider.test -all",),
        ("_spf.provider.test", "TXT"): ("v=spf1 ip4:192.0.2.0/24 -all",),
    }
    proposal = propose(zone, ["198.51.100.20", "203.0.113.9"])
    assert proposal.value == (
        "v=spf1 -ip4:198.51.100.20 include:_spf.provider.test ip4:203.0.113.9 -all"
    )
    assert proposal.added == ("ip4:203.0.113.9",)
    assert proposal.denied == {"198.51.100.20": "-ip4:198.51.100.20"}
    assert "refuses 198.51.100.20 with its own term -ip4:198.51.100.20" in proposal.notes[0]
    assert result(zone, TOP, proposal.value, "203.0.113.9") == "pass"


def test_refusal_through_an_include_qualifier_is_also_left_to_the_admin() -> None:
    zone: Zone = {
        (TOP, "TXT"): ("v=spf1 ~include:_spf.old.test ?all",),
        ("_spf.old.test", "TXT"): ("v=spf1 ip4:198.51.100.0/24 -all",),
    }
    proposal = propose(zone, ["198.51.100.20"])
    assert proposal.value == "v=spf1 ~include:_spf.old.test ?all"
    assert proposal.denied == {"198.51.100.20": "~include:_spf.old.test"}


def test_a_proposal_that_would_not_pass_a_host_is_blocked(monkeypatch: object) -> None:
    import mailmend.records.spf as records_spf

    # a faulty insertion (the new term after -all) must be caught by the evaluation gate
    def after_all(ips: list[str], existing: str | None = None) -> str:
        return f"{existing} " + " ".join(f"ip4:{ip}" for ip in ips)

    setattr_ = monkeypatch.setattr  # type: ignore[attr-defined]
    setattr_(records_spf, "suggest_record", after_all)
    proposal = propose({(TOP, "TXT"): ("v=spf1 -all",)}, ["203.0.113.9"])
    assert proposal.value is None and proposal.problem is not None
    assert "would not pass 203.0.113.9" in proposal.problem


def test_address_sets() -> None:
    net = ipaddress.ip_network
    cut = minus([net("198.51.100.128/25")], [net("198.51.100.200/32")])
    assert net("198.51.100.200/32") not in cut and len(cut) == 7
    assert sum(n.num_addresses for n in cut) == 127
    assert union(cut, [net("198.51.100.200/32")]) == [net("198.51.100.128/25")]
    assert minus([net("2001:db8::/64")], [net("198.51.100.0/24")]) == [net("2001:db8::/64")]
