"""The sandbox's zones say what docs/sandbox.md says (offline: zone text parsed by dnspython)."""

from __future__ import annotations

import dns.zone

from sandbox.dns import render_zone, reverse_zone, scenario_zones
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
    from checks.blocklists import load_blocklists

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
