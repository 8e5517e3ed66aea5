"""The sandbox's zones say what docs/sandbox.md says (offline: zone text parsed by dnspython)."""

from __future__ import annotations

import dataclasses

import dns.name
import dns.reversename
import dns.zone

from mailmend.checks.blocklists import load_blocklists
from mailmend.checks.dnsbl import query_name
from sandbox.dns import (
    PUBLIC_NET6,
    REVERSE_ZONE6,
    render_zone,
    reverse_zone,
    reverse_zone6,
    scenario_zones,
)
from sandbox.scenario import Net, default_scenario


def _zone(name: str, records: list[tuple[str, str, str]]) -> dns.zone.Zone:
    return dns.zone.from_text(render_zone(name, records, 1), origin=name, relativize=False)


def _rdata(zone: dns.zone.Zone, name: str, rdtype: str) -> list[str]:
    rrset = zone.get_rdataset(name, rdtype)
    return sorted(rr.to_text() for rr in rrset) if rrset else []


def test_ptr_situations_and_addresses() -> None:
    scn = default_scenario(3, Net(1))
    zones = scenario_zones(scn)
    mx1 = scn.hosts[0]
    assert mx1.ssh_addr == "127.1.10.1"
    rev = {net: _zone(reverse_zone(net), zones[reverse_zone(net)])
           for net in ("192.0.2", "198.51.100", "203.0.113")}  # fmt: skip
    assert _rdata(rev["192.0.2"], "11.2.0.192.in-addr.arpa.", "PTR") == [mx1.fqdn + "."]
    assert _rdata(rev["198.51.100"], "12.100.51.198.in-addr.arpa.", "PTR") == []
    assert _rdata(rev["203.0.113"], "13.113.0.203.in-addr.arpa.", "PTR") == [
        "ip-203-0-113-13.vps.provider.test."
    ]
    provider = _zone("vps.provider.test", zones["vps.provider.test"])
    assert _rdata(provider, "ip-203-0-113-13.vps.provider.test.", "A") == ["203.0.113.13"]
    alpha = _zone(mx1.domain, zones[mx1.domain])
    assert _rdata(alpha, mx1.fqdn + ".", "A") == [mx1.public_ipv4]
    sink = _zone("sink.test", zones["sink.test"])
    assert _rdata(sink, "mx.sink.test.", "A") == ["127.1.9.25"]


def test_blocklist_zones_have_test_points_listings_and_a_broken_list() -> None:
    zones = scenario_zones(default_scenario(3))
    zen = _zone("zen.spamhaus.org", zones["zen.spamhaus.org"])
    assert _rdata(zen, "2.0.0.127.zen.spamhaus.org.", "A") == ["127.0.0.2"]
    assert _rdata(zen, "1.0.0.127.zen.spamhaus.org.", "A") == []
    assert _rdata(zen, "203.113.0.203.zen.spamhaus.org.", "A") == ["127.255.255.254"]
    assert _rdata(zen, "13.113.0.203.zen.spamhaus.org.", "A") == ["127.0.0.10"]
    spamcop = _zone("bl.spamcop.net", zones["bl.spamcop.net"])
    assert _rdata(spamcop, "12.100.51.198.bl.spamcop.net.", "A") == ["127.0.0.2"]
    broken = _zone("all.s5h.net", zones["all.s5h.net"])
    assert _rdata(broken, "*.all.s5h.net.", "A") == ["127.0.0.2"]
    # Every list of the checks' data file is served (so checks see NXDOMAIN, not REFUSED).
    assert {bl.zone for bl in load_blocklists()} <= set(zones)


def test_domain_lists_answer_for_their_own_test_points() -> None:
    zones = scenario_zones(default_scenario(1))
    for zone, point in (
        ("dbl.spamhaus.org", "dbltest.com"),
        ("multi.surbl.org", "test.surbl.org"),
        ("multi.uribl.com", "test.uribl.com"),
    ):
        served = _zone(zone, zones[zone])
        assert _rdata(served, f"{point}.{zone}.", "A") == ["127.0.0.2"], zone
        assert _rdata(served, f"invalid.{zone}.", "A") == []


def test_ipv6_reverse_zone_is_always_served_and_takes_ptrs_and_aaaa() -> None:
    assert PUBLIC_NET6 == "2001:db8::/32"
    assert REVERSE_ZONE6 == "8.b.d.0.1.0.0.2.ip6.arpa"
    assert reverse_zone6("2001:db8:1::/48") == "1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    base = default_scenario(1)
    empty = _zone(REVERSE_ZONE6, scenario_zones(base)[REVERSE_ZONE6])
    assert [str(name) for name in empty] == [REVERSE_ZONE6 + "."]  # SOA and NS only
    ptr_owner = dns.reversename.from_address("2001:db8::25").to_text()
    assert ptr_owner == "5.2" + ".0" * 22 + ".8.b.d.0.1.0.0.2.ip6.arpa."
    scn = dataclasses.replace(
        base,
        extra_records={
            REVERSE_ZONE6: ((ptr_owner, "PTR", "mx6.good.example."),),
            "good.example": (("mx6", "AAAA", "2001:db8::25"),),
        },
    )
    zones = scenario_zones(scn)
    assert _rdata(_zone(REVERSE_ZONE6, zones[REVERSE_ZONE6]), ptr_owner, "PTR") == [
        "mx6.good.example."
    ]
    good = _zone("good.example", zones["good.example"])
    assert _rdata(good, "mx6.good.example.", "AAAA") == ["2001:db8::25"]


def test_ipv6_listings_are_nibble_reversed_under_the_list() -> None:
    base = default_scenario(3)
    listings = {zone: dict(subjects) for zone, subjects in base.listings.items()}
    listings["zen.spamhaus.org"]["2001:db8::27"] = "127.0.0.3"
    listings["list.dnswl.org"] = {"2001:DB8:0::5": "127.0.5.1"}  # any spelling of the address
    zones = scenario_zones(dataclasses.replace(base, listings=listings))
    zen = _zone("zen.spamhaus.org", zones["zen.spamhaus.org"])
    owner = dns.reversename.from_address(
        "2001:db8::27", v6_origin=dns.name.from_text("zen.spamhaus.org")
    ).to_text()
    assert owner == "7.2" + ".0" * 22 + ".8.b.d.0.1.0.0.2.zen.spamhaus.org."
    assert _rdata(zen, owner, "A") == ["127.0.0.3"]
    assert _rdata(zen, owner, "TXT") == ['"sandbox listing 127.0.0.3"']
    # Exactly the name the checks ask (checks.dnsbl.query_name).
    zen_list = next(bl for bl in load_blocklists() if bl.zone == "zen.spamhaus.org")
    assert query_name(zen_list, "2001:db8::27") == owner
    # The IPv4 listings and test points are unchanged beside it.
    assert _rdata(zen, "2.0.0.127.zen.spamhaus.org.", "A") == ["127.0.0.2"]
    assert _rdata(zen, "13.113.0.203.zen.spamhaus.org.", "A") == ["127.0.0.10"]
    dnswl = _zone("list.dnswl.org", zones["list.dnswl.org"])
    owner = dns.reversename.from_address(
        "2001:db8::5", v6_origin=dns.name.from_text("list.dnswl.org")
    ).to_text()
    assert _rdata(dnswl, owner, "A") == ["127.0.5.1"]
