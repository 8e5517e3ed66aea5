"""``mailmend check`` end to end against the sandbox's DNS (Knot on 127.4.9.53).

Every situation of issue 4 is staged in the sandbox's zones (check-only IPs in 203.0.113.208/28
and .230, check-only domains), then the real CLI runs and its JSON and table are compared
with exactly what an admin must read. Fault tests run the CLI against loopback fake servers.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailmend.checks.blocklists import Target, load_blocklists
from mailmend.checks.txt import txt_strings
from mailmend.cli.options import DEFAULT_DEADLINE
from sandbox.control import Sandbox
from sandbox.dns import PROVIDER_ZONE, reverse_zone
from sandbox.scenario import Net, Scenario
from tests.conftest import require_root, run_mailmend, run_pyinfra, sandbox_block
from tests.faultdns import Handler, ThreadedDns, drop, servfail, zone

pytestmark = pytest.mark.end_to_end

# Block 4 under scripts/test (the docs' output shows 127.4.9.53); MAILMEND_CHECKS_BLOCK moves
# it, so that two engineers can run this module at once without two Knots on one address.
NET = Net(int(os.environ.get("MAILMEND_CHECKS_BLOCK", 0)) or sandbox_block(offset=3))
NAMESERVER = NET.dns
GOOD = "good.example"
SELECTOR = "s1"
REV = reverse_zone("203.0.113")


@dataclasses.dataclass(frozen=True)
class Case:
    ip: str
    hostname: str
    domain: str = GOOD
    ptr: str | None = "right"  # right | elsewhere | None (no PTR)


CASES = {
    "good": Case("203.0.113.210", f"mx.{GOOD}"),
    "no_ptr": Case("203.0.113.211", f"mx11.{GOOD}", ptr=None),
    "ptr_elsewhere": Case("203.0.113.212", f"mx12.{GOOD}", ptr="elsewhere"),
    "listed": Case("203.0.113.213", f"mx13.{GOOD}"),
    "pbl": Case("203.0.113.214", f"mx14.{GOOD}"),
    "refused": Case("203.0.113.215", f"mx15.{GOOD}"),
    "spf_uncovered": Case("203.0.113.230", f"mx30.{GOOD}"),
    "spf_lookups": Case("203.0.113.210", f"mx.{GOOD}", "manyinc.example"),
    "dmarc_none": Case("203.0.113.210", f"mx.{GOOD}", "dmarcnone.example"),
    "dkim_other_key": Case("203.0.113.210", f"mx.{GOOD}", "badkey.example"),
    # Hosts of their own for the fleet report (a fleet's hostnames and IPs are unique).
    "report_spf_lookups": Case("203.0.113.216", f"mx16.{GOOD}", "manyinc.example"),
    "report_dmarc_none": Case("203.0.113.217", f"mx17.{GOOD}", "dmarcnone.example"),
}
ZEN_LISTINGS = {
    CASES["listed"].ip: "127.0.0.4",
    CASES["pbl"].ip: "127.0.0.11",
    CASES["refused"].ip: "127.255.255.254",
}
SPF = '"v=spf1 ip4:203.0.113.208/28 -all"'
MANY_INCLUDES = " ".join(f"include:i{n}.manyinc.example" for n in range(1, 12))
LISTS = load_blocklists()
IP_LISTS = [bl for bl in LISTS if bl.target is Target.IP]
DOMAIN_LISTS = [bl for bl in LISTS if bl.target is Target.DOMAIN]


def _public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PUBLISHED_KEY = _public_key()
HOST_KEY = _public_key()  # the key badkey.example's host really signs with


def _domain_records(domain: str, spf: str = SPF, policy: str = "reject") -> list[Any]:
    return [
        ("@", "TXT", spf),
        (f"{SELECTOR}._domainkey", "TXT", txt_strings(f"v=DKIM1; k=rsa; p={PUBLISHED_KEY}")),
        ("_dmarc", "TXT", f'"v=DMARC1; p={policy}; rua=mailto:dmarc@{domain}"'),
    ]


def situations(base: Scenario, broken: bool = False) -> Scenario:
    """The sandbox's own scenario plus every check-only situation of these tests."""
    good = _domain_records(GOOD)
    good.append(("s2._domainkey", "TXT", txt_strings(f"v=DKIM1; k=rsa; p={PUBLISHED_KEY}")))
    rev: list[Any] = []
    provider: list[Any] = []
    for case in {c.ip: c for c in CASES.values()}.values():  # every hostname is in GOOD
        good.append((case.hostname + ".", "A", case.ip))
        last = case.ip.rsplit(".", 1)[1]
        if case.ptr == "right":
            rev.append((last, "PTR", case.hostname + "."))
        elif case.ptr == "elsewhere":
            generic = f"ip-{case.ip.replace('.', '-')}.{PROVIDER_ZONE}."
            rev.append((last, "PTR", generic))
            provider.append((generic, "A", case.ip))
    many = _domain_records(
        "manyinc.example", f'"v=spf1 {MANY_INCLUDES} ip4:{CASES["good"].ip} -all"'
    )
    many += [(f"i{n}", "TXT", '"v=spf1 -all"') for n in range(1, 12)]
    listings = {zone: dict(subjects) for zone, subjects in base.listings.items()}
    listings.setdefault("zen.spamhaus.org", {}).update(ZEN_LISTINGS)
    return dataclasses.replace(
        base,
        listings=listings,
        broken_zones=("all.s5h.net",) if broken else (),
        extra_records={
            GOOD: tuple(good),
            REV: tuple(rev),
            PROVIDER_ZONE: tuple(provider),
            "manyinc.example": tuple(many),
            "dmarcnone.example": tuple(_domain_records("dmarcnone.example", policy="none")),
            "badkey.example": tuple(_domain_records("badkey.example")),
            # mx1's DKIM record, for the pyinfra check deploy (its host key differs).
            base.hosts[0].domain: (
                ("mx1._domainkey", "TXT", txt_strings(f"v=DKIM1; k=rsa; p={PUBLISHED_KEY}")),
            ),
        },
    )


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_root()
    sandbox = Sandbox(tmp_path_factory.mktemp("sb"), NET)
    sandbox.up(3)
    try:
        sandbox.dns.serve(situations(sandbox.scenario()))
        yield sandbox
    finally:
        sandbox.down()


# --- running the CLI -----------------------------------------------------------------------------


def case_args(case: Case, *extra: str) -> list[str]:
    return [
        "--ip", case.ip, "--hostname", case.hostname, "--domain", f"{case.domain}:{SELECTOR}",
        "--nameserver", NAMESERVER, *extra,
    ]  # fmt: skip


def check_json(case: Case, *extra: str) -> tuple[dict[str, Any], int]:
    proc = run_mailmend("check", *case_args(case, *extra), "--format", "json")
    assert proc.stderr == ""
    doc = json.loads(proc.stdout)
    assert len(doc["hosts"]) == 1
    host: dict[str, Any] = doc["hosts"][0]
    return host, proc.returncode


def check_table(case: Case, *extra: str) -> tuple[str, int]:
    proc = run_mailmend("check", *case_args(case, *extra), "--format", "table")
    assert proc.stderr == ""
    return proc.stdout, proc.returncode


def by_check(host: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for result in host["checks"]:
        out.setdefault(result["check"], []).append(result)
    return out


def dnsbl(host: dict[str, Any], zone: str) -> dict[str, Any]:
    found = [r for r in host["checks"] if r["check"] == "dnsbl" and r["zone"] == zone]
    assert len(found) == 1, zone
    result: dict[str, Any] = found[0]
    return result


def statuses(host: dict[str, Any]) -> dict[str, str]:
    """Status of each non-dnsbl check (one result each for one IP and one domain)."""
    checks = by_check(host)
    assert all(len(v) == 1 for k, v in checks.items() if k != "dnsbl")
    return {k: v[0]["status"] for k, v in checks.items() if k != "dnsbl"}


def other_dnsbl_pass(host: dict[str, Any], *zones: str) -> None:
    """Every list result except ``zones`` passes, none listed; every list was asked."""
    results = [r for r in host["checks"] if r["check"] == "dnsbl"]
    assert sorted(r["zone"] for r in results) == sorted(bl.zone for bl in LISTS)
    for r in results:
        if r["zone"] not in zones:
            assert (r["status"], r["listed"]) == ("pass", False), r


ALL_PASS = {"ptr": "pass", "fcrdns": "pass", "spf": "pass", "dkim": "pass", "dmarc": "pass"}
N_CHECKS = 5 + len(LISTS)  # ptr, fcrdns, spf, dkim, dmarc + one result per list


def host_line(case: Case, status: str, fail: int = 0, unknown: int = 0, warn: int = 0) -> str:
    passed = N_CHECKS - fail - unknown - warn
    counts = f"{fail} fail, {unknown} unknown, {warn} warn, {passed} pass"
    where = f"{case.hostname} ({case.hostname}, {case.ip})"
    return f"{status.upper():<7}  {where}: {counts}\n1 hosts: {counts}\n"


# --- the situations ------------------------------------------------------------------------------


def test_all_good(sb: Sandbox) -> None:
    case = CASES["good"]
    host, code = check_json(case)
    assert code == 0
    assert statuses(host) == ALL_PASS
    other_dnsbl_pass(host)
    assert host["status"] == "pass"
    assert check_table(case) == (host_line(case, "pass"), 0)


def test_ptr_missing(sb: Sandbox) -> None:
    case = CASES["no_ptr"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == {**ALL_PASS, "ptr": "fail", "fcrdns": "fail"}
    other_dnsbl_pass(host)
    fix = f"ask your VPS provider to set the PTR of {case.ip} to {case.hostname}"
    ptr = by_check(host)["ptr"][0]
    assert (ptr["summary"], ptr["fix"]) == (f"{case.ip} has no PTR record", fix)
    assert check_table(case) == (
        f"FAIL     {case.hostname}  ptr {case.ip}: {case.ip} has no PTR record\n"
        f"         fix: {fix}\n"
        f"FAIL     {case.hostname}  fcrdns {case.ip}: {case.ip} has no PTR, so its reverse DNS "
        "cannot be forward-confirmed\n"
        f"         fix: {fix}\n\n" + host_line(case, "fail", fail=2),
        1,
    )


def test_ptr_points_elsewhere(sb: Sandbox) -> None:
    case = CASES["ptr_elsewhere"]
    host, code = check_json(case)
    assert code == 1
    # The provider's generic name resolves back, so FCrDNS holds, for the wrong name.
    assert statuses(host) == {**ALL_PASS, "ptr": "fail"}
    other_dnsbl_pass(host)
    generic = f"ip-{case.ip.replace('.', '-')}.{PROVIDER_ZONE}"
    summary = f"PTR of {case.ip} is the provider's generic name {generic}, not {case.hostname}"
    fix = f"ask your VPS provider to set the PTR of {case.ip} to {case.hostname}"
    assert check_table(case) == (
        f"FAIL     {case.hostname}  ptr {case.ip}: {summary}\n         fix: {fix}\n\n"
        + host_line(case, "fail", fail=1),
        1,
    )


def test_listed_on_one_list_with_its_meaning(sb: Sandbox) -> None:
    case = CASES["listed"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == ALL_PASS
    other_dnsbl_pass(host, "zen.spamhaus.org")
    zen = dnsbl(host, "zen.spamhaus.org")
    meaning = "XBL: Exploits Block List, a compromised host or infected machine (CBL data)"
    assert (zen["status"], zen["listed"], zen["codes"], zen["meaning"]) == (
        "fail", True, ["127.0.0.4"], meaning,
    )  # fmt: skip
    assert zen["delist"]["url"] == "https://check.spamhaus.org/"
    assert zen["delist"]["self_service"] is True
    table, code = check_table(case)
    assert code == 1
    assert table.startswith(
        f"FAIL     {case.hostname}  dnsbl {case.ip}: {case.ip} is listed on Spamhaus ZEN: "
        f"{meaning}\n         fix: Look the IP up at https://check.spamhaus.org/"
    )
    assert table.endswith("\n\n" + host_line(case, "fail", fail=1))
    assert table.count("\n") == 5


def test_spamhaus_pbl_is_a_warning_not_a_listing(sb: Sandbox) -> None:
    case = CASES["pbl"]
    host, code = check_json(case)
    assert code == 0
    other_dnsbl_pass(host, "zen.spamhaus.org")
    zen = dnsbl(host, "zen.spamhaus.org")
    meaning = "PBL (Spamhaus maintained): this range is not meant to send mail directly"
    assert (zen["status"], zen["listed"], zen["codes"], zen["meaning"]) == (
        "warn", True, ["127.0.0.11"], meaning,
    )  # fmt: skip
    assert zen["fix"].startswith("A policy listing, not spam.")
    assert check_table(case) == (
        f"WARN     {case.hostname}  dnsbl {case.ip}: {case.ip} has a policy listing on "
        f"Spamhaus ZEN: {meaning}\n         fix: {zen['fix']}\n\n"
        + host_line(case, "warn", warn=1),
        0,
    )


def test_spamhaus_public_resolver_answer_is_unknown_with_the_way_out(sb: Sandbox) -> None:
    case = CASES["refused"]
    host, code = check_json(case)
    assert code == 3
    assert statuses(host) == ALL_PASS
    other_dnsbl_pass(host, "zen.spamhaus.org")
    zen = dnsbl(host, "zen.spamhaus.org")
    assert (zen["status"], zen["listed"], zen["codes"]) == ("unknown", False, ["127.255.255.254"])
    assert "public/open or shared resolver" in zen["summary"]
    fix = (
        "Use a local recursive resolver (unbound on the host) or a free Spamhaus DQS key "
        "($MAILMEND_DQS_KEY or --dqs-key-file FILE)."
    )
    assert zen["fix"] == fix
    assert check_table(case) == (
        f"UNKNOWN  {case.hostname}  dnsbl {case.ip}: Spamhaus ZEN did not answer about "
        f"{case.ip}: Spamhaus refused the query because it came through a public/open or "
        f"shared resolver\n         fix: {fix}\n\n" + host_line(case, "unknown", unknown=1),
        3,
    )


def test_spf_not_covering_the_ip(sb: Sandbox) -> None:
    case = CASES["spf_uncovered"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == {**ALL_PASS, "spf": "fail"}
    other_dnsbl_pass(host)
    summary = f"SPF of {GOOD} does not authorise {case.ip} (fail by -all)"
    fix = f'add ip4:{case.ip}: {GOOD}. TXT "v=spf1 ip4:203.0.113.208/28 ip4:{case.ip} -all"'
    assert check_table(case) == (
        f"FAIL     {case.hostname}  spf {GOOD}: {summary}\n         fix: {fix}\n\n"
        + host_line(case, "fail", fail=1),
        1,
    )


def test_spf_over_ten_lookups(sb: Sandbox) -> None:
    case = CASES["spf_lookups"]
    host, code = check_json(case)
    assert code == 1
    assert statuses(host) == {**ALL_PASS, "spf": "fail"}
    spf = by_check(host)["spf"][0]
    assert spf["summary"].startswith("permerror: the SPF record needs more than 10 DNS lookups")
    fix = "replace includes by ip4:/ip6: terms or drop unused ones: at most 10 lookups"
    assert spf["fix"] == fix
    table, code = check_table(case)
    assert (code, table.count("\n")) == (1, 5)
    assert f"spf manyinc.example: {spf['summary']}\n         fix: {fix}\n" in table


def test_dmarc_p_none_is_a_warning(sb: Sandbox) -> None:
    case = CASES["dmarc_none"]
    host, code = check_json(case)
    assert code == 0
    assert statuses(host) == {**ALL_PASS, "dmarc": "warn"}
    assert check_table(case) == (
        "WARN     mx.good.example  dmarc _dmarc.dmarcnone.example: DMARC policy of "
        "dmarcnone.example is p=none (monitoring only)\n"
        "         fix: when reports show all your mail passes, move to p=quarantine, "
        "then p=reject\n\n" + host_line(case, "warn", warn=1),
        0,
    )


def test_dkim_record_not_matching_the_host_key(sb: Sandbox, tmp_path: Path) -> None:
    case = CASES["dkim_other_key"]
    key_file = tmp_path / f"{SELECTOR}.txt"  # as opendkim-genkey writes it, split in strings
    quoted = txt_strings(f"v=DKIM1; h=sha256; k=rsa; p={HOST_KEY}")
    key_file.write_text(f"{SELECTOR}._domainkey\tIN\tTXT\t( {quoted} )  ; ----- DKIM key\n")
    arg = ("--dkim-key", f"{case.domain}:{SELECTOR}={key_file}")
    host, code = check_json(case, *arg)
    assert code == 1
    assert statuses(host) == {**ALL_PASS, "dkim": "fail"}
    record = txt_strings(f"v=DKIM1; k=rsa; p={HOST_KEY}")
    assert check_table(case, *arg) == (
        f"FAIL     mx.good.example  dkim {SELECTOR}._domainkey.badkey.example: published key "
        "does not match the key on the host\n"
        f"         fix: publish: {SELECTOR}._domainkey.badkey.example. TXT {record}\n\n"
        + host_line(case, "fail", fail=1),
        1,
    )
    # The key it publishes is right for the key it was given.
    key_file.write_text(f"p={PUBLISHED_KEY}\n")
    assert check_json(case, *arg)[1] == 0


def test_fleet_file_exit_code(sb: Sandbox) -> None:
    proc = run_mailmend(
        "check", "--fleet", str(sb.fleet_file), "--nameserver", NAMESERVER, "--format", "json"
    )
    assert proc.returncode == 1
    hosts = {h["name"]: h for h in json.loads(proc.stdout)["hosts"]}
    assert list(hosts) == ["mx1", "mx2", "mx3"]
    assert statuses(hosts["mx2"])["ptr"] == "fail"
    assert dnsbl(hosts["mx2"], "bl.spamcop.net")["status"] == "fail"
    assert statuses(hosts["mx1"])["ptr"] == "pass"
    assert dnsbl(hosts["mx3"], "zen.spamhaus.org")["codes"] == ["127.0.0.10"]


def test_broken_list_is_reported_once_for_the_fleet_and_not_counted(sb: Sandbox) -> None:
    """Runs last among the sandbox tests: it re-stages the zones with all.s5h.net wildcarding.

    Regression (issue 15): the broken list turned every host UNKNOWN (exit 3). It is the
    list's problem: no host result on it, the host passes (exit 0), the list is named once."""
    sb.dns.serve(situations(sb.scenario(), broken=True))
    try:
        case = CASES["good"]
        proc = run_mailmend("check", *case_args(case), "--format", "json")
        assert proc.returncode == 0 and proc.stderr == ""
        doc = json.loads(proc.stdout)
        [host] = doc["hosts"]
        assert host["status"] == "pass" and statuses(host) == ALL_PASS
        zones = sorted(r["zone"] for r in host["checks"] if r["check"] == "dnsbl")
        assert zones == sorted(bl.zone for bl in LISTS if bl.zone != "all.s5h.net")
        assert doc["lists"] == [
            {
                "zone": "all.s5h.net",
                "name": "S5H blocklist",
                "health": "broken",
                "reason": "list is broken/wildcarding: it lists test point 127.0.0.1",
                "fix": BROKEN_LIST_FIX,
            }
        ]
        passed = N_CHECKS - 1
        counts = f"0 fail, 0 unknown, 0 warn, {passed} pass"
        assert check_table(case) == (
            "BROKEN   blocklist all.s5h.net (S5H blocklist): list is broken/wildcarding: it "
            "lists test point 127.0.0.1; its answers are ignored, for every host\n"
            f"         fix: {BROKEN_LIST_FIX}\n\n"
            f"PASS     {case.hostname} ({case.hostname}, {case.ip}): {counts}\n"
            f"1 hosts: {counts}\n",
            0,
        )
        nagios = run_mailmend("check", *case_args(case), "--format", "nagios")
        assert (nagios.returncode, nagios.stdout) == (
            0,
            "MAILMEND OK - 0 fail, 0 warn, 0 unknown on 1 hosts; broken list: all.s5h.net "
            f"| fail=0 warn=0 unknown=0 pass={passed} broken_lists=1\n",
        )
    finally:
        sb.dns.serve(situations(sb.scenario()))


BROKEN_LIST_FIX = (
    "Nothing to fix on the hosts: its answers are ignored for every host, which are checked "
    "on the other lists. If it stays broken, drop it from checks/blocklists.toml."
)


# --- faults: the CLI against nameservers that misbehave -----------------------------------------


EVERY_CHECK = {"ptr", "fcrdns", "spf", "dkim", "dmarc", "dnsbl"}
FAULT_CASE = Case("192.0.2.77", "mx.fault.example", "fault.example")


def fault_args(nameserver: str, *extra: str) -> list[str]:
    return [
        "--ip", FAULT_CASE.ip, "--hostname", FAULT_CASE.hostname,
        "--domain", f"{FAULT_CASE.domain}:{SELECTOR}", "--nameserver", nameserver,
        "--format", "json", *extra,
    ]  # fmt: skip


def assert_all_unknown(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 3, proc.stderr
    host: dict[str, Any] = json.loads(proc.stdout)["hosts"][0]
    assert host["checks"], "no result at all"
    for result in host["checks"]:
        assert result["status"] == "unknown", result
        assert result.get("listed") in (None, False), result
        assert result["fix"], result
    return host


@pytest.mark.parametrize("handler", [drop, servfail], ids=["drops-everything", "servfail"])
def test_broken_nameserver_gives_unknown_never_pass_or_listed(handler: Handler) -> None:
    with ThreadedDns(handler) as nameserver:
        started = time.monotonic()
        proc = run_mailmend("check", *fault_args(nameserver, "--timeout", "0.3"), timeout=30)
        elapsed = time.monotonic() - started
    host = assert_all_unknown(proc)
    assert {r["check"] for r in host["checks"]} == EVERY_CHECK
    assert elapsed < 15


def test_silent_nameserver_stops_at_the_deadline() -> None:
    """At the deadline every open question gets TIMEOUT: each check ends with its own
    unknown result (not one 'deadline' result per host)."""
    with ThreadedDns(drop) as nameserver:
        started = time.monotonic()
        proc = run_mailmend(
            "check", *fault_args(nameserver, "--timeout", "20", "--deadline", "1.5"), timeout=30
        )
        elapsed = time.monotonic() - started
    host = assert_all_unknown(proc)
    assert {r["check"] for r in host["checks"]} == EVERY_CHECK
    assert elapsed < 6


def test_sandbox_fleet_with_its_nameserver_stopped_ends_unknown(sb: Sandbox) -> None:
    """Regression (issue 15): the sandbox fleet (3 hosts) against a stopped nameserver never
    ended. Knot is frozen (SIGSTOP: the port is bound, nothing answers), then thawed."""
    knot = sb.pids()["knot"]
    os.killpg(knot, signal.SIGSTOP)  # its process group: the unshare wrapper and knotd
    try:
        check = run_mailmend(
            "check", "--fleet", str(sb.fleet_file), "--format", "json",
            timeout=DEFAULT_DEADLINE + 30,
        )  # fmt: skip
        records = run_mailmend(
            "records", "--fleet", str(sb.fleet_file), "--nameserver", NAMESERVER,
            timeout=DEFAULT_DEADLINE + 30,
        )  # fmt: skip
    finally:
        os.killpg(knot, signal.SIGCONT)
    assert check.returncode == 3, check.stderr
    hosts = json.loads(check.stdout)["hosts"]
    assert [h["name"] for h in hosts] == ["mx1", "mx2", "mx3"]
    assert {r["status"] for h in hosts for r in h["checks"]} == {"unknown"}
    assert records.returncode == 1 and records.stdout == ""
    assert records.stderr.count("does not answer") == 1, records.stderr
    assert f"nameserver {NAMESERVER}:53 does not answer" in records.stderr


def test_truncated_answers_are_asked_again_over_tcp() -> None:
    ip, fqdn, domain = FAULT_CASE.ip, FAULT_CASE.hostname + ".", FAULT_CASE.domain + "."
    data = {
        ("77.2.0.192.in-addr.arpa.", "PTR"): [fqdn],
        (fqdn, "A"): [ip],
        (domain, "TXT"): [f'"v=spf1 ip4:{ip} -all"'],
        (f"{SELECTOR}._domainkey.{domain}", "TXT"): [
            txt_strings(f"v=DKIM1; k=rsa; p={PUBLISHED_KEY}")
        ],
        (f"_dmarc.{domain}", "TXT"): [f'"v=DMARC1; p=reject; rua=mailto:d@{domain[:-1]}"'],
    }
    table = zone(data)

    def truncating(query: dns.message.Message, transport: str) -> dns.message.Message | None:
        if transport == "udp":
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response
        return table(query, transport)

    server = ThreadedDns(truncating)
    with server as nameserver:
        proc = run_mailmend("check", *fault_args(nameserver, "--no-dnsbl"), timeout=30)
    assert proc.returncode == 0, proc.stdout
    host = json.loads(proc.stdout)["hosts"][0]
    assert statuses(host) == ALL_PASS
    assert len(server.server.tcp_queries) >= 5
    assert len(server.server.udp_queries) == len(server.server.tcp_queries)


# --- the fleet report in a browser ---------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
#: Check-only hosts added to the sandbox fleet for the report: (name, case, domain or None).
REPORT_HOSTS = (
    ("good", CASES["good"], GOOD),
    ("no-ptr", CASES["no_ptr"], None),
    ("ptr-elsewhere", CASES["ptr_elsewhere"], None),
    ("xbl-listed", CASES["listed"], None),
    ("pbl", CASES["pbl"], None),
    ("public-resolver", CASES["refused"], None),
    ("spf-uncovered", CASES["spf_uncovered"], None),
    ("spf-lookups", CASES["report_spf_lookups"], "manyinc.example"),
    ("dmarc-none", CASES["report_dmarc_none"], "dmarcnone.example"),
)


def report_fleet(sb: Sandbox, path: Path) -> Path:
    """The sandbox fleet plus one host per situation (check-only: nothing listens there)."""
    extra: dict[str, dict[str, object]] = {}
    for i, (name, case, domain) in enumerate(REPORT_HOSTS, start=100):
        keys: dict[str, object] = {
            "ssh_host": NET.host(i), "hostname": case.hostname, "public_ipv4": case.ip,
        }  # fmt: skip
        if domain:
            keys["domains"] = [{"name": domain, "selector": SELECTOR}]
        extra[name] = keys
    # spf-uncovered shares its IP's domain with "good": its SPF problem shows on its own.
    extra["spf-uncovered"]["domains"] = [{"name": GOOD, "selector": "s2"}]
    path.write_text(sb.fleet_text(extra_hosts=extra))
    return path


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_html_fleet_report_in_chromium(sb: Sandbox, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install -y chromium (scripts/setup does)")
    fleet = report_fleet(sb, tmp_path / "fleet.toml")
    html = tmp_path / "report.html"
    proc = run_mailmend(
        "check",
        "--fleet",
        str(fleet),
        "--nameserver",
        NAMESERVER,
        "--format",
        "html",
        "--output",
        str(html),
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(
        run_mailmend(
            "check", "--fleet", str(fleet), "--nameserver", NAMESERVER, "--format", "json"
        ).stdout
    )
    png = tmp_path / "report.png"
    shot = chromium(f"--screenshot={png}", "--window-size=1400,1000", html.as_uri(), tmp=tmp_path)
    assert png.exists(), shot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a blank or error page is a few KB
    dom = chromium("--dump-dom", html.as_uri(), tmp=tmp_path).stdout
    text = _html_text(dom)
    for host in doc["hosts"]:
        assert host["name"] in text and host["hostname"] in text
        for result in host["checks"]:
            if result["status"] != "pass" and result["fix"]:
                assert _html_text(result["fix"]) in text, result["fix"]
    if os.environ.get("MAILMEND_REPORT_PNG"):  # docs/img/report.png is refreshed this way
        shutil.copy(png, os.environ["MAILMEND_REPORT_PNG"])


def _html_text(text: str) -> str:
    """Text with tags dropped, entities decoded and whitespace collapsed."""
    import html as html_module
    import re

    return " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", text)).split())


# --- the pyinfra deploy: deploys/check.py --------------------------------------------------------


def sandbox_fleet_with_nameservers(sb: Sandbox, path: Path) -> Path:
    """The sandbox fleet file: it names the sandbox's DNS server as the fleet's resolver."""
    text = sb.fleet_text(hosts={"mx3": {"vps_provider": "linode"}})
    assert f'nameservers = ["{NAMESERVER}"]' in text
    path.write_text(text)
    return path


def test_pyinfra_check_deploy_checks_the_fleet_and_changes_nothing(
    sb: Sandbox, tmp_path: Path
) -> None:
    mx1 = sb.hosts()[0]
    key_dir = f"/etc/opendkim/keys/{mx1.domain}"
    quoted = txt_strings(f"v=DKIM1; h=sha256; k=rsa; p={HOST_KEY}")
    line = f"{mx1.selector}._domainkey IN TXT ( {quoted} )"
    sb.ssh(mx1, f"mkdir -p {key_dir} && printf '%s\\n' '{line}' > {key_dir}/{mx1.selector}.txt")
    for h in sb.hosts():
        sb.ssh(h, "touch /tmp/mailmend-check-marker && sleep 0.01")
    fleet = sandbox_fleet_with_nameservers(sb, tmp_path / "fleet.toml")
    proc = run_pyinfra(fleet, "-y", "deploys/check.py")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # Per host: its problems and fixes. mx1's published key is not the one on the host.
    assert (
        "dkim mx1._domainkey.alpha.example: published key does not match the key on the host" in out
    )
    assert "ask your VPS provider to set the PTR of 198.51.100.12 to mx2.bravo.example" in out
    # mx3's provider is known: its fix names the command that sets the PTR.
    assert (
        f"run mailmend ptr --fleet {fleet.resolve()} --host mx3 --apply (it asks linode to set "
        "the PTR of 203.0.113.13 to mx3.charlie.example)" in out
    )
    assert "198.51.100.12 is listed on SpamCop Blocking List" in out
    # The fleet summary: one line per host, then the totals.
    summary = out[out.index("mailmend checks, fleet summary:") :].splitlines()[1:5]
    assert [line.split()[1] for line in summary[:3]] == ["mx1", "mx2", "mx3"]
    assert all(line.split()[0] == "FAIL" for line in summary[:3])
    assert summary[3].split()[:2] == ["3", "hosts:"]
    # Nothing changed on any host (python.call counts as "Success", never as a change there).
    for h in sb.hosts():
        assert sb.ssh(h, "find /etc /root /var -newer /tmp/mailmend-check-marker -type f") == ""
