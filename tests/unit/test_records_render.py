"""records: what a blocked domain shows (held back everywhere), and hostile published data in
every output format (plan for a terminal, BIND zone snippet, JSON). Issue 15 items 7 and 11."""

from __future__ import annotations

import asyncio
import json

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

from mailmend.checks.names import reverse_name
from mailmend.records.escape import visible
from mailmend.records.plan import (
    Action,
    Plan,
    Sender,
    build_plan,
    plan_json,
    render_plan,
    render_zone,
)
from tests.unit.test_ptr import FakeResolver
from tests.unit.test_records_plan import FQDN, IP, IP6, KEY, REPORTS, SENDER, Zone, plan_for

IN = dns.rdataclass.IN

D2 = "example.org"
OTHER = Sender("mx2", "mx2.example.org", "198.51.100.2", None, ((D2, "mx2"),))


def live_records(text: str) -> set[tuple[str, str, str]]:
    """(owner, type, rdata) of every record ``dns.zone.from_text`` reads from a snippet."""
    zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)
    return {
        (name.to_text(), dns.rdatatype.to_text(rds.rdtype), rd.to_text())
        for name, node in zone.nodes.items()
        for rds in node.rdatasets
        for rd in rds
    }


def intended(plan: Plan) -> set[tuple[str, str, str]]:
    """What the zone snippet must publish: add, change and keep, never PTR, never held."""
    return {
        (r.name + ".", r.rdtype, dns.rdata.from_text(IN, r.rdtype, r.rdata_text()).to_text())
        for r in plan.entries()
        if r.action in (Action.ADD, Action.CHANGE, Action.KEEP) and r.rdtype != "PTR"
    }


# --- item 7: a blocked domain publishes nothing of itself ------------------------------------


def blocked_plan() -> Plan:
    """example.org's SPF is malformed; its DMARC and its report consent (at example.com, in
    the fleet) would be added were it not blocked."""
    zone: Zone = {(D2, "TXT"): ("v=spf1 ip4:999.1.1.1 -all",)}
    return plan_for(zone, keys=(KEY,), senders=(SENDER, OTHER))


def test_blocked_domain_holds_back_its_records_in_plan_counts_and_changes() -> None:
    plan = blocked_plan()
    (blocked,) = plan.blocked
    assert blocked.domain == D2
    actions = {r.kind: r.action for r in blocked.records}
    assert actions["spf"] is Action.BLOCKED
    assert actions["dmarc"] is Action.HELD and actions["dmarc-auth"] is Action.HELD
    assert [r.name for r in plan.changes() if r.name.endswith(D2)] == [OTHER.fqdn]  # its A
    counts = plan.counts()
    assert counts["held"] == 2 and counts["blocked"] == 1
    assert counts["add"] == len(plan.changes())  # every add counted is sent
    text = render_plan(plan)
    assert f"  add     dmarc      _dmarc.{D2}." not in text
    assert f"  held    dmarc      _dmarc.{D2}. TXT" in text
    assert "1 domain(s) blocked (2 record(s) held back)" in text


def test_blocked_domain_is_only_comments_in_the_zone_and_held_in_json() -> None:
    plan = blocked_plan()
    text = render_zone(plan)
    live = live_records(text)
    assert not any(o.endswith(D2 + ".") and o != OTHER.fqdn + "." for o, _, _ in live), live
    assert live == intended(plan)
    assert f"; held: dmarc _dmarc.{D2}. TXT" in text
    data = json.loads(json.dumps(plan_json(plan)))
    org = next(d for d in data["domains"] if d["domain"] == D2)
    assert {r["kind"]: r["action"] for r in org["records"]} == {
        "spf": "blocked", "dkim": "skip", "dmarc": "held", "dmarc-auth": "held",
    }  # fmt: skip
    assert data["counts"]["held"] == 2
    assert data["counts"]["add"] == sum(
        r["action"] == "add" for d in data["domains"] + data["hosts"] for r in d["records"]
    )


# --- item 11: hostile published data -----------------------------------------------------------

INJECT = "x\nevil.example.com. 60 IN A 6.6.6.6 ;"
TERM = "\x1b]0;pwned\x07\x1b[2J\r\u202e"
HOSTILE_DMARC = f"v=DMARC1; p=none; {INJECT}{TERM}"  # malformed: blocks example.com
HOSTILE_PTR = f"{FQDN}.\nevil.example.com. 60 IN A 6.6.6.6 ;{TERM}."


def hostile_zone() -> Zone:
    return {
        ("example.com", "TXT"): (f"site-verification={INJECT}{TERM}", f"v=spf1 ip4:{IP} -all"),
        ("mx1._domainkey.example.com", "TXT"): (f"v=DKIM1; k=rsa; p=AAAA{INJECT}{TERM}",),
        ("_dmarc.example.com", "TXT"): (HOSTILE_DMARC,),
        ("_dmarc.example.org", "TXT"): (  # valid DMARC; its rua domain ends in the fleet's
            "v=DMARC1; p=none; rua=mailto:a@x\nevil.example.com. 60 IN A 6.6.6.6 \x1b[2J "
            "x.example.com",
        ),
        (FQDN, "A"): (IP,),
        (reverse_name(IP), "PTR"): (HOSTILE_PTR,),
        (reverse_name(IP6), "PTR"): (f"{TERM}.",),
    }


def hostile_plan(replace: bool = False) -> Plan:
    return asyncio.run(
        build_plan(
            FakeResolver(hostile_zone()), (SENDER, OTHER), dkim_keys=(KEY,),
            report_address=REPORTS, replace_malformed=replace,
        )
    )  # fmt: skip


CONTROL = {chr(c) for c in range(0x20) if c != 0x0A} | {"\x7f", "\u202e", "\u2028"}


def test_hostile_data_is_escaped_in_the_terminal_plan() -> None:
    for replace in (False, True):
        text = render_plan(hostile_plan(replace))
        assert not CONTROL & set(text), [c for c in text if c in CONTROL]
        assert "evil.example.com. 60 IN A 6.6.6.6" in text  # shown, on its own line never
        for line in text.splitlines():
            assert not line.startswith("evil"), line
        assert "\\027]0;pwned\\007" in text  # ESC and BEL as visible escapes


def test_hostile_data_cannot_add_a_zone_line() -> None:
    for replace in (False, True):
        plan = hostile_plan(replace)
        text = render_zone(plan)
        assert not CONTROL & set(text)
        live = live_records(text)
        assert live == intended(plan), live ^ intended(plan)
        assert not any(t == "A" and rd == "6.6.6.6" for _, t, rd in live)


def test_hostile_rua_domain_is_never_a_record_name() -> None:
    plan = hostile_plan()
    org = next(d for d in plan.domains if d.domain == "example.org")
    auth = next(r for r in org.records if r.kind == "dmarc-auth")
    assert auth.action is Action.BLOCKED and "not a domain name" in auth.reason
    sent = [r.name for r in plan.changes() if "example.org" in r.name]
    assert org.blocked and sent == [OTHER.fqdn]


def test_json_keeps_the_data_exact_and_ascii() -> None:
    plan = hostile_plan()
    text = json.dumps(plan_json(plan), indent=2)
    assert not CONTROL & set(text) and text.isascii()
    data = json.loads(text)
    com = next(d for d in data["domains"] if d["domain"] == "example.com")
    dmarc = next(r for r in com["records"] if r["kind"] == "dmarc")
    assert dmarc["published"] == [HOSTILE_DMARC]  # exact, escaped by JSON itself


def test_visible_escapes_controls_and_backslash_only() -> None:
    assert visible("p=none; ok é") == "p=none; ok é"
    assert visible("a\nb\x1b\\c\u202e") == "a\\010b\\027\\\\c\\226\\128\\174"


# --- should-fix: the zone snippet keeps the published TTL of an existing rrset --------------


def test_zone_keeps_published_ttl_of_existing_rrsets() -> None:
    from tests.unit.test_records_plan import published_zone

    zone = published_zone()
    zone[(FQDN, "A")] = ()  # a new rrset: --ttl
    plan = plan_for(zone)
    ttls = {(r.name, r.rdtype): 300 for r in plan.entries() if r.rrset}
    text = render_zone(plan.with_ttls(ttls))
    parsed = dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)
    assert parsed.find_rdataset("example.com.", "TXT").ttl == 300  # keep
    assert parsed.find_rdataset("_dmarc.example.com.", "TXT").ttl == 300
    assert parsed.find_rdataset(f"{FQDN}.", "A").ttl == 3600  # added: --ttl
    assert parsed.find_rdataset(f"{FQDN}.", "AAAA").ttl == 300
