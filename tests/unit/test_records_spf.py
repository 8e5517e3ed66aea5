"""records.spf: the fleet's IPs added to the published SPF record, never replacing it."""

from __future__ import annotations

import asyncio

from mailmend.checks.dns import DnsAnswer, Rcode
from mailmend.checks.spf import parse_record
from mailmend.records.spf import SpfProposal, propose_spf
from tests.unit.test_ptr import FakeResolver

D = "example.com"
IP = "203.0.113.7"
IP2 = "198.51.100.9"
IP6 = "2001:db8::25"
Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]


def propose(zone: Zone, ips: list[str], replace: bool = False) -> SpfProposal:
    resolver = FakeResolver(zone)

    async def go() -> SpfProposal:
        answer = await resolver.query(D + ".", "TXT")
        return await propose_spf(resolver, D, ips, answer, replace)

    return asyncio.run(go())


GOOGLE = {("_spf.google.com", "TXT"): ("v=spf1 ip4:172.217.0.0/19 ~all",)}


def test_no_record_gives_a_new_one_ending_softfail() -> None:
    p = propose({(D, "TXT"): ("google-site-verification=x",)}, [IP, IP6])
    assert p.value == f"v=spf1 ip4:{IP} ip6:{IP6} ~all"
    assert p.published == ()
    assert any("-all" in n for n in p.notes)


def test_existing_include_and_qualifier_kept_ip_added_before_all() -> None:
    zone: Zone = {(D, "TXT"): ("v=spf1 include:_spf.google.com ~all", "other"), **GOOGLE}
    p = propose(zone, [IP])
    assert p.value == f"v=spf1 include:_spf.google.com ip4:{IP} ~all"
    assert p.added == (f"ip4:{IP}",)
    parse_record(p.value or "")


def test_ip_added_once_for_two_hosts_with_same_ip() -> None:
    p = propose({(D, "TXT"): ("v=spf1 -all",)}, [IP, IP])
    assert p.value == f"v=spf1 ip4:{IP} -all"


def test_covered_by_cidr_not_added() -> None:
    p = propose({(D, "TXT"): ("v=spf1 ip4:203.0.113.0/24 -all",)}, [IP, IP2])
    assert p.value == f"v=spf1 ip4:203.0.113.0/24 ip4:{IP2} -all"
    assert p.covered == {IP: "ip4:203.0.113.0/24"}


def test_covered_by_a_and_mx_not_added() -> None:
    zone: Zone = {
        (D, "TXT"): ("v=spf1 a mx -all",),
        (D, "A"): (IP,),
        (D, "MX"): ("10 mx2.example.com.",),
        ("mx2.example.com", "A"): (IP2,),
    }
    p = propose(zone, [IP, IP2])
    assert p.value == "v=spf1 a mx -all"
    assert p.added == ()
    assert p.covered == {IP: "a", IP2: "mx"}


def test_covered_through_an_include() -> None:
    zone: Zone = {
        (D, "TXT"): ("v=spf1 include:_spf.example.net ~all",),
        ("_spf.example.net", "TXT"): (f"v=spf1 ip4:{IP} -all",),
    }
    p = propose(zone, [IP])
    assert p.value == "v=spf1 include:_spf.example.net ~all"
    assert "example.net" in p.covered[IP]


def test_redirect_record_gets_terms_before_redirect() -> None:
    zone: Zone = {
        (D, "TXT"): ("v=spf1 redirect=_spf.example.com",),
        ("_spf.example.com", "TXT"): ("v=spf1 ip4:192.0.2.0/24 -all",),
    }
    p = propose(zone, [IP, "192.0.2.5"])
    assert p.value == f"v=spf1 ip4:{IP} redirect=_spf.example.com"


def test_two_records_are_an_error_with_a_merged_proposal() -> None:
    zone: Zone = {(D, "TXT"): ("v=spf1 mx -all", "v=spf1 include:_spf.google.com ~all"), **GOOGLE}
    p = propose(zone, [IP])
    assert p.value is None and p.problem is not None
    assert "2 SPF records" in p.problem and "permerror" in p.problem
    assert "v=spf1 mx include:_spf.google.com -all" in p.problem
    fixed = propose(zone, [IP], replace=True)
    assert fixed.value == f"v=spf1 mx include:_spf.google.com ip4:{IP} -all"


def test_malformed_says_where_and_blocks() -> None:
    p = propose({(D, "TXT"): ("v=spf1 ip4:999.1.1.1 ~all",)}, [IP])
    assert p.value is None and p.problem is not None
    assert "term 1 'ip4:999.1.1.1'" in p.problem and "invalid ip4" in p.problem
    replaced = propose({(D, "TXT"): ("v=spf1 ip4:999.1.1.1 ~all",)}, [IP], replace=True)
    assert replaced.value == f"v=spf1 ip4:{IP} ~all"


def _over_limit_zone() -> Zone:
    zone: Zone = {}
    includes = []
    for i in range(11):
        name = f"s{i}.example.net"
        includes.append(f"include:{name}")
        zone[(name, "TXT")] = (f"v=spf1 ip4:192.0.2.{i} ~all",)
    zone[(D, "TXT")] = ("v=spf1 " + " ".join(includes) + " -all",)
    return zone


def test_lookup_limit_counts_and_flattens_includes() -> None:
    p = propose(_over_limit_zone(), [IP])
    assert p.value is not None
    assert "include:" not in p.value
    assert p.value.startswith("v=spf1 ip4:192.0.2.0 ip4:192.0.2.1 ")
    assert p.value.endswith(f"ip4:192.0.2.10 ip4:{IP} -all")
    assert len(p.flattened) == 11
    assert p.flattened[0] == "include:s0.example.net -> ip4:192.0.2.0"
    assert p.lookups == 0
    assert any("more than 10 DNS lookups" in n for n in p.notes)


def test_under_limit_is_not_flattened_and_lookups_counted() -> None:
    zone = _over_limit_zone()
    zone[(D, "TXT")] = ("v=spf1 include:s0.example.net include:s1.example.net -all",)
    p = propose(zone, [IP])
    assert p.flattened == () and p.lookups == 2
    assert p.value == f"v=spf1 include:s0.example.net include:s1.example.net ip4:{IP} -all"


def test_new_terms_never_push_over_the_limit() -> None:
    zone = _over_limit_zone()
    zone[(D, "TXT")] = (
        "v=spf1 " + " ".join(f"include:s{i}.example.net" for i in range(10)) + " -all",
    )
    p = propose(zone, [IP, IP6])
    assert p.lookups == 10 and p.flattened == ()
    assert p.value is not None and p.value.endswith(f"ip4:{IP} ip6:{IP6} -all")


def test_dns_failure_raises() -> None:
    zone: Zone = {(D, "TXT"): ("v=spf1 include:_spf.example.net ~all",)}
    zone[("_spf.example.net", "TXT")] = Rcode.SERVFAIL
    resolver = FakeResolver(zone)
    answer = DnsAnswer(D + ".", "TXT", Rcode.NOERROR, ("v=spf1 include:_spf.example.net ~all",))
    from mailmend.records.spf import SpfDnsError

    try:
        asyncio.run(propose_spf(resolver, D, [IP], answer))
    except SpfDnsError as err:
        assert "SERVFAIL" in str(err)
    else:
        raise AssertionError("expected SpfDnsError")
