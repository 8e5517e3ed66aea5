"""records.plan: add / change / keep against what is published; zone snippet; JSON; and the
update a plan turns into (prerequisites, specific rdata only)."""

from __future__ import annotations

import asyncio
import json

import dns.name
import dns.rdatatype
import dns.rrset
import dns.update
import dns.zone

from mailmend.checks.dkim_key import DkimPublicKey
from mailmend.checks.dns import Rcode
from mailmend.checks.names import reverse_name
from mailmend.records.dkim import read_genkey_txt
from mailmend.records.plan import (
    Action,
    Plan,
    RecordChange,
    Sender,
    build_plan,
    plan_json,
    render_plan,
    render_zone,
)
from mailmend.records.publish import StaleRecord, _add_changes
from tests.unit.test_ptr import FakeResolver
from tests.unit.test_records_dkim_dmarc import rsa_b64

D = "example.com"
IP = "203.0.113.7"
IP6 = "2001:db8::25"
FQDN = "mx1.example.com"
REPORTS = "dmarc@example.com"
Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]
SENDER = Sender("mx1", FQDN, IP, IP6, ((D, "mx1"),))
KEY = read_genkey_txt(rsa_b64(4096), D, "mx1")


def plan_for(
    zone: Zone,
    keys: tuple[DkimPublicKey, ...] = (KEY,),
    report: str | None = REPORTS,
    stage: str | None = None,
    senders: tuple[Sender, ...] = (SENDER,),
) -> Plan:
    return asyncio.run(
        build_plan(
            FakeResolver(zone), senders, dkim_keys=keys, report_address=report, dmarc_stage=stage
        )
    )


def by_kind(plan: Plan, kind: str) -> RecordChange:
    return next(r for r in plan.entries() if r.kind == kind)


def test_nothing_published_everything_added() -> None:
    plan = plan_for({})
    assert by_kind(plan, "spf").action is Action.ADD
    assert by_kind(plan, "spf").value == f"v=spf1 ip4:{IP} ip6:{IP6} ~all"
    assert by_kind(plan, "dkim").action is Action.ADD
    assert by_kind(plan, "dmarc").value == f"v=DMARC1; p=none; rua=mailto:{REPORTS}"
    assert by_kind(plan, "a").action is Action.ADD and by_kind(plan, "aaaa").value == IP6
    ptr = by_kind(plan, "ptr")
    assert ptr.action is Action.ASK
    assert ptr.reason.startswith(f"ask the VPS provider: set PTR of {IP} to {FQDN}")
    assert len(plan.changes()) == 5  # spf, dkim, dmarc, A, AAAA; never PTR


def published_zone() -> Zone:
    return {
        (D, "TXT"): ("google-site-verification=abc", f"v=spf1 ip4:{IP} ip6:{IP6} ~all"),
        (f"mx1._domainkey.{D}", "TXT"): (KEY.value(),),
        (f"_dmarc.{D}", "TXT"): (f"v=DMARC1; p=none; rua=mailto:{REPORTS}",),
        (FQDN, "A"): (IP,),
        (FQDN, "AAAA"): (IP6,),
        ("7.113.0.203.in-addr.arpa", "PTR"): (FQDN + ".",),
        (reverse_name(IP6), "PTR"): (FQDN + ".",),
    }


def test_all_published_all_keep() -> None:
    plan = plan_for(published_zone())
    assert {r.action for r in plan.entries()} == {Action.KEEP}
    assert plan.changes() == []
    assert "0 to add, 0 to change, 7 unchanged" in render_plan(plan)
    zone_text = render_zone(plan)
    assert f"; ptr 7.113.0.203.in-addr.arpa. is already {FQDN}. (the provider's zone)" in zone_text
    assert "IN PTR" not in zone_text  # never published by us


def test_change_lists_old_and_new_and_keeps_other_txt() -> None:
    zone = published_zone()
    zone[(D, "TXT")] = ("google-site-verification=abc", "v=spf1 include:_spf.example.net -all")
    zone[("_spf.example.net", "TXT")] = ("v=spf1 ip4:192.0.2.0/24 -all",)
    zone[(f"_dmarc.{D}", "TXT")] = (f"v=DMARC1; p=none; rua=mailto:{REPORTS}",)
    plan = plan_for(zone, stage="quarantine")
    spf = by_kind(plan, "spf")
    assert spf.action is Action.CHANGE
    assert spf.remove == ("v=spf1 include:_spf.example.net -all",)
    assert spf.value == f"v=spf1 include:_spf.example.net ip4:{IP} ip6:{IP6} -all"
    assert "google-site-verification=abc" in spf.rrset
    dmarc = by_kind(plan, "dmarc")
    assert dmarc.action is Action.CHANGE and "p=quarantine" in (dmarc.value or "")
    text = render_plan(plan)
    assert "  change  spf" in text and '- "v=spf1 include:_spf.example.net -all"' in text
    assert "  keep    dkim" in text
    assert "0 to add, 2 to change, 5 unchanged" in text


def test_other_dkim_key_is_changed_and_missing_key_skipped() -> None:
    zone = published_zone()
    zone[(f"mx1._domainkey.{D}", "TXT")] = (f"v=DKIM1; k=rsa; p={rsa_b64(2048)}",)
    assert by_kind(plan_for(zone), "dkim").action is Action.CHANGE
    skipped = by_kind(plan_for(zone, keys=()), "dkim")
    assert skipped.action is Action.SKIP and "--dkim-from-hosts" in skipped.reason


def test_malformed_record_blocks_the_domain_only() -> None:
    zone = published_zone()
    zone[(f"_dmarc.{D}", "TXT")] = ("v=DMARC1; p=sometimes",)
    zone[(FQDN, "A")] = ()
    plan = plan_for(zone)
    (blocked,) = plan.blocked
    assert "malformed DMARC record" in blocked.problems[0]
    assert [r.kind for r in plan.changes()] == ["a"]  # the host's A record still goes out
    assert "BLOCKED" in render_plan(plan)


def test_dns_failure_blocks() -> None:
    zone = published_zone()
    zone[(D, "TXT")] = Rcode.SERVFAIL
    plan = plan_for(zone)
    assert plan.blocked and "SERVFAIL" in plan.blocked[0].problems[0]


def test_external_rua_authorisation_ask_or_add() -> None:
    zone = published_zone()
    zone[(f"_dmarc.{D}", "TXT")] = ("v=DMARC1; p=none; rua=mailto:agg@reports.example.net",)
    auth = by_kind(plan_for(zone), "dmarc-auth")
    assert auth.action is Action.ASK
    assert auth.reason == (
        "ask reports.example.net to publish: example.com._report._dmarc.reports.example.net. "
        'TXT "v=DMARC1"'
    )
    other = Sender("mx2", "mx2.example.org", "198.51.100.2", None, (("example.org", "mx2"),))
    plan = plan_for({}, keys=(), senders=(SENDER, other))
    auths = [r for r in plan.entries() if r.kind == "dmarc-auth"]
    assert [(r.name, r.action) for r in auths] == [
        ("example.org._report._dmarc.example.com", Action.ADD)  # example.com is in the fleet
    ]


def test_zone_snippet_is_valid_bind_with_split_txt() -> None:
    plan = plan_for({})
    text = render_zone(plan)
    zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)
    rdataset = zone.find_rdataset(f"mx1._domainkey.{D}.", "TXT")
    (rd,) = list(rdataset)
    assert all(len(s) <= 255 for s in rd.strings) and len(rd.strings) == 3  # 4096-bit key
    assert b"".join(rd.strings).decode() == KEY.value()
    assert rdataset.ttl == 3600
    spf = zone.find_rdataset(f"{D}.", "TXT")
    assert b"".join(next(iter(spf)).strings).decode() == f"v=spf1 ip4:{IP} ip6:{IP6} ~all"
    assert f"; ask: ptr 7.113.0.203.in-addr.arpa: ask the VPS provider: set PTR of {IP}" in text


def test_json_is_documented_shape() -> None:
    data = json.loads(json.dumps(plan_json(plan_for({}))))
    assert data["version"] == 1 and data["counts"]["add"] == 5
    (domain,) = data["domains"]
    dkim = next(r for r in domain["records"] if r["kind"] == "dkim")
    assert dkim["name"] == f"mx1._domainkey.{D}." and dkim["type"] == "TXT"
    assert "".join(dkim["strings"]) == dkim["value"]
    assert set(dkim) == {
        "kind", "name", "type", "action", "value", "strings", "remove", "published", "reason",
        "notes",
    }  # fmt: skip


# --- the update a change becomes -----------------------------------------------------------


def _update_for(record: RecordChange, current: dns.rrset.RRset | None) -> str:
    message = dns.update.UpdateMessage("example.com.")
    _add_changes(message, record.name, record.rdtype, [record], current, 3600)
    return message.to_text()


def test_update_changes_only_our_rdata_with_exact_rrset_prerequisite() -> None:
    old = "v=spf1 -all"
    record = RecordChange(
        "spf", D, "TXT", Action.CHANGE, f"v=spf1 ip4:{IP} -all", (old,),
        ("google-site-verification=abc", old),
    )  # fmt: skip
    current = dns.rrset.from_text(
        D + ".", 300, "IN", "TXT", '"google-site-verification=abc"', f'"{old}"'
    )
    text = _update_for(record, current)
    prereq, update = text.split(";UPDATE")
    assert 'example.com. 0 IN TXT "google-site-verification=abc"' in prereq
    assert f'example.com. 0 IN TXT "{old}"' in prereq
    assert f'example.com. 0 NONE TXT "{old}"' in update  # delete this rdata only
    assert "google-site-verification" not in update
    assert f'example.com. 300 IN TXT "v=spf1 ip4:{IP} -all"' in update
    assert "ANY TXT" not in update  # never the whole rrset


def test_update_add_requires_absence_only_when_nothing_was_there() -> None:
    record = RecordChange("dmarc", f"_dmarc.{D}", "TXT", Action.ADD, "v=DMARC1; p=none")
    text = _update_for(record, None)
    assert "_dmarc.example.com. NONE TXT" in text.split(";UPDATE")[0]  # absent(name, TXT)


def test_update_refuses_when_rrset_changed_since_read() -> None:
    record = RecordChange("spf", D, "TXT", Action.ADD, "v=spf1 -all", (), ())
    current = dns.rrset.from_text(D + ".", 300, "IN", "TXT", '"v=spf1 mx -all"')
    try:
        _update_for(record, current)
    except StaleRecord as err:
        assert "record changed since it was read: run records again" in str(err)
    else:
        raise AssertionError("expected StaleRecord")
    assert dns.rdatatype.TXT  # keep the import used
