"""Hostile published records through the real path (Knot, the DNS engine, the installed CLI):
a DMARC TXT that carries a zone line, ESC and BEL; a domain blocked by it holds back all of its
records in every format and in ``--apply`` (issue 15 items 7 and 11)."""

from __future__ import annotations

import json
import subprocess

import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.update
import dns.zone
import pytest

from mailmend.records.publish import read_rrset
from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from tests.conftest import CLI_ENV, MAILMEND
from tests.e2e.test_records_publish import external_update, server, txt

pytestmark = pytest.mark.end_to_end

HOSTILE = b"v=DMARC1; p=none; x\nevil.alpha.example. 60 IN A 6.6.6.6 ;\x1b]0;pwned\x07\x1b[2J\r"
CONTROL = {chr(c) for c in range(0x20) if c != 0x0A} | {"\x7f"}


def put_txt(sb: Sandbox, zone: str, name: str, value: bytes) -> None:
    key = load_key_file(sb.dns.tsig_file)
    update = dns.update.UpdateMessage(zone, keyring=key.key(), keyname=key.key().name)
    rd = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value])
    update.replace(name + ".", 60, rd)
    response = dns.query.tcp(update, sb.net.dns, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR


def records(sb: Sandbox, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [str(MAILMEND), "records", "--fleet", str(sb.fleet_file), "--server", sb.net.dns]
    argv += ["--tsig-key", str(sb.dns.tsig_file), "--timeout", "2", *extra]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=CLI_ENV, check=False
    )


def test_hostile_dmarc_is_escaped_everywhere_and_its_domain_held(sandbox: Sandbox) -> None:
    alpha, bravo = (h.domain for h in sandbox.hosts()[:2])
    put_txt(sandbox, alpha, f"_dmarc.{alpha}", HOSTILE)
    external_update(sandbox, alpha, alpha, "v=spf1 -all")  # the plan would change it
    external_update(sandbox, bravo, f"_dmarc.{bravo}", "v=DMARC1; p=none")  # would change
    try:
        plan = records(sandbox)
        assert plan.returncode == 1  # alpha is blocked
        assert not CONTROL & set(plan.stdout + plan.stderr)
        assert f"{alpha} (BLOCKED: nothing is published for it)" in plan.stdout
        assert "\\010evil.alpha.example. 60 IN A 6.6.6.6 ;\\027]0;pwned\\007" in plan.stdout
        assert f"  held    spf        {alpha}. TXT" in plan.stdout

        zone_out = records(sandbox, "--format", "zone")
        assert not CONTROL & set(zone_out.stdout)
        parsed = dns.zone.from_text(
            zone_out.stdout, origin=dns.name.root, relativize=False, check_origin=False
        )
        owners = {name.to_text() for name in parsed.nodes}
        assert "evil.alpha.example." not in owners
        # alpha's own records are comments; bravo's and charlie's report consent lives in
        # alpha's zone but belongs to them, and mx1 is a host
        mine = {o for o in owners if o.endswith(f"{alpha}.") and "._report._dmarc." not in o}
        assert mine == {f"{sandbox.hosts()[0].fqdn}."}, mine
        assert f"{bravo}." in owners and f"_dmarc.{bravo}." in owners

        data = json.loads(records(sandbox, "--format", "json").stdout)
        (blocked,) = [d for d in data["domains"] if d["blocked"]]
        dmarc = next(r for r in blocked["records"] if r["kind"] == "dmarc")
        assert dmarc["published"] == [HOSTILE.decode()]
        assert {r["action"] for r in blocked["records"]} <= {"blocked", "held", "skip", "keep"}

        applied = records(sandbox, "--apply")
        assert applied.returncode == 1, applied.stderr
        assert txt(sandbox, alpha) == ["v=spf1 -all"]  # held back: not sent
        assert txt(sandbox, f"_dmarc.{bravo}") != ["v=DMARC1; p=none"]  # bravo went out
    finally:
        report = f"v=DMARC1; p=none; rua=mailto:dmarc@{alpha}"
        external_update(sandbox, alpha, f"_dmarc.{alpha}", report)


def test_zone_snippet_writes_the_published_ttl(sandbox: Sandbox) -> None:
    """A record kept (or joining an rrset) is written with the TTL Knot serves, not --ttl."""
    bravo = sandbox.hosts()[1].domain
    external_update(sandbox, bravo, f"_dmarc.{bravo}", "v=DMARC1; p=none")  # TTL 60
    out = records(sandbox, "--format", "zone", "--ttl", "7200").stdout
    parsed = dns.zone.from_text(out, origin=dns.name.root, relativize=False, check_origin=False)
    assert parsed.find_rdataset(f"_dmarc.{bravo}.", "TXT").ttl == 60
    fqdn = sandbox.hosts()[1].fqdn
    served = read_rrset(fqdn, "A", server(sandbox))
    assert served is not None
    assert parsed.find_rdataset(f"{fqdn}.", "A").ttl == served.ttl != 7200  # kept as served
