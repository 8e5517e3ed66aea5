"""``mailmend check`` end to end for IPv6, against the sandbox's DNS (Knot on 127.8.9.53).

IPv6 situations are staged in the sandbox's zones: AAAA records, PTRs in the documentation
prefix's reverse zone (``8.b.d.0.1.0.0.2.ip6.arpa``), nibble-reversed listings on the lists
that take IPv6 (``ipv6 = true`` in checks/blocklists.toml). Then the real CLI runs and its
JSON (and table) are compared with exactly what an admin must read.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.reversename
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailmend.checks.blocklists import Target, load_blocklists
from mailmend.checks.txt import txt_strings
from sandbox.control import Sandbox
from sandbox.dns import REVERSE_ZONE6, reverse_zone
from sandbox.scenario import Net, Scenario
from tests.conftest import require_root, run_mailmend, sandbox_block

pytestmark = pytest.mark.end_to_end

NET = Net(int(os.environ.get("MAILMEND_IPV6_BLOCK", 0)) or sandbox_block(offset=7))
NAMESERVER = NET.dns
SELECTOR = "s1"
GOOD = "good.example"  # SPF ip6:2001:db8::/64
DUAL = "dual.example"  # SPF covers the dual-stack host's IPv4 only
REV4 = reverse_zone("203.0.113")


@dataclasses.dataclass(frozen=True)
class Case:
    ips: tuple[str, ...]
    hostname: str
    domain: str = GOOD
    ptr: bool = True  # PTR of every IP names the hostname

    @property
    def ip(self) -> str:
        return self.ips[0]


CASES = {
    "good": Case(("2001:db8::25",), f"mx6.{GOOD}"),
    "no_ptr": Case(("2001:db8::26",), f"mx7.{GOOD}", ptr=False),
    "listed": Case(("2001:db8::27",), f"mx8.{GOOD}"),
    "dual": Case(("203.0.113.40", "2001:db8::28"), f"mx9.{DUAL}", DUAL),
}
LISTED_CODE = "127.0.0.3"  # Spamhaus CSS, the usual ZEN listing of an IPv6 sender
SPF = {GOOD: '"v=spf1 ip6:2001:db8::/64 -all"', DUAL: '"v=spf1 ip4:203.0.113.40 -all"'}
LISTS = load_blocklists()
IPV6_LISTS = sorted(bl.zone for bl in LISTS if bl.target is Target.IP and bl.ipv6)
IPV4_LISTS = sorted(bl.zone for bl in LISTS if bl.target is Target.IP)
DOMAIN_LISTS = sorted(bl.zone for bl in LISTS if bl.target is Target.DOMAIN)
ALL_PASS = {"ptr": "pass", "fcrdns": "pass", "spf": "pass", "dkim": "pass", "dmarc": "pass"}


def _public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PUBLISHED_KEY = _public_key()


def _domain_records(domain: str) -> list[Any]:
    return [
        ("@", "TXT", SPF[domain]),
        (f"{SELECTOR}._domainkey", "TXT", txt_strings(f"v=DKIM1; k=rsa; p={PUBLISHED_KEY}")),
        ("_dmarc", "TXT", f'"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}"'),
    ]


def situations(base: Scenario) -> Scenario:
    """The sandbox's own scenario plus every IPv6 situation of these tests."""
    forward: dict[str, list[Any]] = {GOOD: _domain_records(GOOD), DUAL: _domain_records(DUAL)}
    rev4: list[Any] = []
    rev6: list[Any] = []
    for case in CASES.values():
        target = case.hostname + "."
        for ip in case.ips:
            v6 = ":" in ip
            forward[case.domain].append((target, "AAAA" if v6 else "A", ip))
            if case.ptr and v6:
                rev6.append((dns.reversename.from_address(ip).to_text(), "PTR", target))
            elif case.ptr:
                rev4.append((ip.rsplit(".", 1)[1], "PTR", target))
    listings = {zone: dict(subjects) for zone, subjects in base.listings.items()}
    listings.setdefault("zen.spamhaus.org", {})[CASES["listed"].ip] = LISTED_CODE
    return dataclasses.replace(
        base,
        listings=listings,
        broken_zones=(),
        extra_records={
            GOOD: tuple(forward[GOOD]),
            DUAL: tuple(forward[DUAL]),
            REVERSE_ZONE6: tuple(rev6),
            REV4: tuple(rev4),
        },
    )


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_root()
    sandbox = Sandbox(tmp_path_factory.mktemp("sb"), NET)
    sandbox.up(1)
    try:
        sandbox.dns.serve(situations(sandbox.scenario()))
        yield sandbox
    finally:
        sandbox.down()


# --- running the CLI -----------------------------------------------------------------------------


def case_args(case: Case, fmt: str) -> list[str]:
    assert len(case.ips) == 1, "one --ip per check (dual-stack hosts go through a fleet file)"
    return [
        "--ip", case.ip, "--hostname", case.hostname, "--domain", f"{case.domain}:{SELECTOR}",
        "--nameserver", NAMESERVER, "--format", fmt,
    ]  # fmt: skip


def one_host(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert len(doc["hosts"]) == 1
    host: dict[str, Any] = doc["hosts"][0]
    return host


def check_json(case: Case) -> tuple[dict[str, Any], int]:
    proc = run_mailmend("check", *case_args(case, "json"))
    return one_host(proc), proc.returncode


def check_table(case: Case) -> tuple[str, int]:
    proc = run_mailmend("check", *case_args(case, "table"))
    assert proc.stderr == ""
    return proc.stdout, proc.returncode


def results(host: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [r for r in host["checks"] if r["check"] == check]


def statuses(host: dict[str, Any]) -> dict[str, str]:
    """Status of each non-dnsbl check (one result each for one IP and one domain)."""
    out: dict[str, str] = {}
    for result in host["checks"]:
        if result["check"] != "dnsbl":
            assert result["check"] not in out, result
            out[result["check"]] = result["status"]
    return out


def dnsbl_by_subject(host: dict[str, Any]) -> dict[str, list[str]]:
    """subject -> the zones asked about it, sorted."""
    out: dict[str, list[str]] = {}
    for r in results(host, "dnsbl"):
        out.setdefault(r["subject"], []).append(r["zone"])
    return {subject: sorted(zones) for subject, zones in out.items()}


def other_dnsbl_pass(host: dict[str, Any], *zones: str) -> None:
    """Every list result except ``zones`` passes, none listed."""
    for r in results(host, "dnsbl"):
        if r["zone"] not in zones:
            assert (r["status"], r["listed"]) == ("pass", False), r


def n_checks(case: Case) -> int:
    """ptr, fcrdns and the IP lists per IP; spf, dkim, dmarc and the domain lists per domain."""
    per_ip = sum(2 + len(IPV6_LISTS if ":" in ip else IPV4_LISTS) for ip in case.ips)
    return per_ip + 3 + len(DOMAIN_LISTS)


def host_line(case: Case, status: str, fail: int = 0, name: str | None = None) -> str:
    counts = f"{fail} fail, 0 unknown, 0 warn, {n_checks(case) - fail} pass"
    where = ", ".join([case.hostname, *case.ips])
    name = name or case.hostname
    return f"{status.upper():<7}  {name} ({where}): {counts}\n1 hosts: {counts}\n"


def test_ipv6_is_served_by_the_sandbox(sb: Sandbox) -> None:
    """Knot answers AAAA and ip6.arpa PTR as staged, and nothing for the host with no PTR."""

    def ask(name: str, rdtype: str) -> list[str]:
        reply = dns.query.udp(dns.message.make_query(name, rdtype), NAMESERVER, timeout=2)
        return sorted(rr.to_text() for rrset in reply.answer for rr in rrset)

    good, no_ptr = CASES["good"], CASES["no_ptr"]
    assert ask(good.hostname, "AAAA") == [good.ip]
    assert ask(dns.reversename.from_address(good.ip).to_text(), "PTR") == [good.hostname + "."]
    assert ask(dns.reversename.from_address(no_ptr.ip).to_text(), "PTR") == []


# --- the situations ------------------------------------------------------------------------------


def test_ipv6_only_host_all_good(sb: Sandbox) -> None:
    case = CASES["good"]
    host, code = check_json(case)
    assert code == 0
    assert (host["ip"], host["ips"], host["hostname"]) == (case.ip, [case.ip], case.hostname)
    assert statuses(host) == ALL_PASS
    # IPv6 goes to the lists that take IPv6 only; the domain to the domain lists.
    assert dnsbl_by_subject(host) == {case.ip: IPV6_LISTS, GOOD: DOMAIN_LISTS}
    other_dnsbl_pass(host)
    ptr, fcrdns, spf = (results(host, c)[0] for c in ("ptr", "fcrdns", "spf"))
    assert (ptr["subject"], ptr["summary"]) == (case.ip, f"PTR of {case.ip} is {case.hostname}")
    assert fcrdns["summary"] == f"{case.ip} <-> {case.hostname} confirmed"
    assert spf["summary"] == f"SPF of {GOOD} authorises {case.ip}"
    assert f"{case.ip}: authorises {case.ip} (ip6:2001:db8::/64 in {GOOD})" in spf["details"]
    assert check_table(case) == (host_line(case, "pass"), 0)


def test_ipv6_host_without_ptr(sb: Sandbox) -> None:
    case = CASES["no_ptr"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == {**ALL_PASS, "ptr": "fail", "fcrdns": "fail"}
    other_dnsbl_pass(host)
    fix = f"ask your VPS provider to set the PTR of {case.ip} to {case.hostname}"
    ptr, fcrdns = results(host, "ptr")[0], results(host, "fcrdns")[0]
    assert (ptr["subject"], ptr["summary"], ptr["fix"]) == (
        case.ip, f"{case.ip} has no PTR record", fix,
    )  # fmt: skip
    assert (fcrdns["summary"], fcrdns["fix"]) == (
        f"{case.ip} has no PTR, so its reverse DNS cannot be forward-confirmed", fix,
    )  # fmt: skip
    assert check_table(case) == (
        f"FAIL     {case.hostname}  ptr {case.ip}: {case.ip} has no PTR record\n"
        f"         fix: {fix}\n"
        f"FAIL     {case.hostname}  fcrdns {case.ip}: {case.ip} has no PTR, so its reverse DNS "
        "cannot be forward-confirmed\n"
        f"         fix: {fix}\n\n" + host_line(case, "fail", fail=2),
        1,
    )


def test_ipv6_listed_on_spamhaus_zen(sb: Sandbox) -> None:
    case = CASES["listed"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == ALL_PASS
    assert dnsbl_by_subject(host) == {case.ip: IPV6_LISTS, GOOD: DOMAIN_LISTS}
    other_dnsbl_pass(host, "zen.spamhaus.org")
    [zen] = [r for r in results(host, "dnsbl") if r["zone"] == "zen.spamhaus.org"]
    meaning = "CSS: Spamhaus CSS, an IP seen sending low-reputation mail (snowshoe, bad rDNS/HELO)"
    assert (zen["status"], zen["subject"], zen["listed"], zen["codes"], zen["meaning"]) == (
        "fail", case.ip, True, [LISTED_CODE], meaning,
    )  # fmt: skip
    assert zen["summary"] == f"{case.ip} is listed on Spamhaus ZEN: {meaning}"
    assert zen["fix"].startswith("Look the IP up at https://check.spamhaus.org/")
    assert (zen["delist"]["url"], zen["delist"]["self_service"]) == (
        "https://check.spamhaus.org/", True,
    )  # fmt: skip
    table, code = check_table(case)
    assert code == 1
    assert table.startswith(
        f"FAIL     {case.hostname}  dnsbl {case.ip}: {case.ip} is listed on Spamhaus ZEN: "
        f"{meaning}\n         fix: Look the IP up at https://check.spamhaus.org/"
    )
    assert table.endswith("\n\n" + host_line(case, "fail", fail=1))


def test_dual_stack_host_spf_missing_its_ipv6(sb: Sandbox, tmp_path: Path) -> None:
    """``--ip`` takes one address, so a dual-stack host is checked from a fleet file."""
    case = CASES["dual"]
    v4, v6 = case.ips
    fleet = tmp_path / "fleet.toml"
    dual: dict[str, object] = {
        "ssh_host": NET.host(100), "hostname": case.hostname, "public_ipv4": v4,
        "public_ipv6": v6, "domains": [{"name": DUAL, "selector": SELECTOR}],
    }  # fmt: skip
    fleet.write_text(sb.fleet_text(extra_hosts={"dual": dual}))
    args = ["--fleet", str(fleet), "--host", "dual", "--nameserver", NAMESERVER]
    proc = run_mailmend("check", *args, "--format", "json")
    host = one_host(proc)
    assert proc.returncode == 1
    assert (host["name"], host["ip"], host["ips"]) == ("dual", v4, [v4, v6])
    # Both addresses have their PTR and forward-confirm: one result per IP.
    for check in ("ptr", "fcrdns"):
        assert [(r["subject"], r["status"]) for r in results(host, check)] == [
            (v4, "pass"), (v6, "pass"),
        ], check  # fmt: skip
    assert [r["status"] for r in results(host, "dkim") + results(host, "dmarc")] == ["pass"] * 2
    assert dnsbl_by_subject(host) == {v4: IPV4_LISTS, v6: IPV6_LISTS, DUAL: DOMAIN_LISTS}
    other_dnsbl_pass(host)
    [spf] = results(host, "spf")
    record = SPF[DUAL].strip('"')
    assert (spf["status"], spf["subject"]) == ("fail", DUAL)
    assert spf["summary"] == f"SPF of {DUAL} does not authorise {v6} (fail by -all)"
    assert spf["fix"] == f'add ip6:{v6}: {DUAL}. TXT "v=spf1 ip4:{v4} ip6:{v6} -all"'
    assert spf["details"] == [
        f"record: {record}",
        f"{v4}: authorises {v4} (ip4:{v4} in {DUAL})",
        "0 of 10 DNS lookups used",
        f"{v6}: does not authorise {v6} (fail by -all)",
    ]
    table = run_mailmend("check", *args, "--format", "table")
    assert (table.returncode, table.stderr) == (1, "")
    assert table.stdout == (
        f"FAIL     dual  spf {DUAL}: {spf['summary']}\n         fix: {spf['fix']}\n\n"
        + host_line(case, "fail", fail=1, name="dual")
    )
