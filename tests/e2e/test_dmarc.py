"""DMARC reports end to end: a report mailbox on the sandbox's receiving provider (Dovecot,
IMAPS), ``mailmend dmarc fetch`` / ``sources`` as an admin runs them, and ``mailmend records
--dmarc-stage auto --apply`` against the sandbox's Knot.

The sandbox DNS is staged for the test and put back afterwards: alpha.example sends from mx1
and through a mail service its SPF includes; bravo.example sends from mx2, and an unknown IP
(with a PTR) sends as it too. The report mails are generated here (RFC 7489 appendix C) and
put into the ``dmarc-reports`` mailbox with IMAP APPEND; one of them carries a truncated zip,
and one report arrives twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from mailmend.imap import connect
from mailmend.records.publish import read_rrset
from sandbox.control import Sandbox
from sandbox.dns import reverse_zone
from tests.conftest import run_mailmend
from tests.dmarc_reports import Row, gzipped, report_mail, report_xml, zipped

pytestmark = pytest.mark.end_to_end

DAY = 86_400
SERVICE_IP = "198.51.100.140"  # in the range _spf.mailservice.test authorises
UNKNOWN_IP = "203.0.113.50"  # no SPF authorises it; PTR mail.forgotten.test
UNKNOWN_PTR = "mail.forgotten.test"
USER = "dmarc-reports"
ORGS = ("google.com", "Yahoo")


def staged_records(sb: Sandbox) -> dict[str, list[tuple[str, str, str]]]:
    alpha, bravo = sb.hosts()[0], sb.hosts()[1]
    rua = f"rua=mailto:dmarc-reports@{alpha.domain}"
    return {
        alpha.domain: [
            ("@", "TXT", f'"v=spf1 ip4:{alpha.public_ipv4} include:_spf.mailservice.test ~all"'),
            ("_dmarc", "TXT", f'"v=DMARC1; p=none; {rua}"'),
        ],
        bravo.domain: [
            ("@", "TXT", f'"v=spf1 ip4:{bravo.public_ipv4} ~all"'),
            ("_dmarc", "TXT", f'"v=DMARC1; p=none; {rua}"'),
        ],
        "mailservice.test": [("_spf", "TXT", '"v=spf1 ip4:198.51.100.128/25 -all"')],
        reverse_zone("203.0.113"): [("50", "PTR", f"{UNKNOWN_PTR}.")],
    }


@pytest.fixture(scope="module")
def staged(sandbox: Sandbox) -> Iterator[Sandbox]:
    scenario = sandbox.scenario()
    extra = dict(scenario.extra_records)
    for zone, records in staged_records(sandbox).items():
        extra[zone] = (*extra.get(zone, ()), *records)
    sandbox.dns.serve(dataclasses.replace(scenario, extra_records=extra))
    try:
        yield sandbox
    finally:
        sandbox.dns.serve(scenario)  # the zones as the other tests expect them


def imap(sb: Sandbox) -> imapclient.IMAPClient:
    mb = sb.mailbox
    return connect(
        mb.address, 993, mb.address_of(USER), mb.password(USER), cafile=mb.ca_file, timeout=10
    )


def report_mails(sb: Sandbox) -> list[bytes]:
    """14 days of reports from two organisations for alpha and bravo (zip, gzip, XML in
    turn), one of them sent twice, and a mail whose zip is truncated."""
    alpha, bravo = sb.hosts()[0], sb.hosts()[1]
    now = int(time.time())
    mails = []
    for day in range(1, 15):
        begin = (now // DAY - day) * DAY
        for n, org in enumerate(ORGS):
            for domain, rows in (
                (alpha.domain, [Row(alpha.public_ipv4, 60, alpha.domain),
                                Row(SERVICE_IP, 20, alpha.domain, spf="fail")]),
                (bravo.domain, [Row(bravo.public_ipv4, 30, bravo.domain),
                                Row(UNKNOWN_IP, 12, bravo.domain, dkim="fail", spf="fail")]),
            ):  # fmt: skip
                rid = f"{org}-{domain}-{day}"
                xml = report_xml(org, rid, domain, rows, begin=begin, end=begin + DAY - 1)
                kind = (day + n) % 3
                payload, name = (
                    (zipped(xml), f"{rid}.zip"),
                    (gzipped(xml), f"{rid}.xml.gz"),
                    (xml, f"{rid}.xml"),
                )[kind]
                mails.append(report_mail(payload, name, org=org, domain=domain, report_id=rid))
    mails.append(mails[0])  # the same report, delivered twice
    bad = zipped(report_xml("Broken", "b-1", alpha.domain, [Row(alpha.public_ipv4)]))[:-25]
    mails.append(report_mail(bad, "b-1.zip", org="Broken", domain=alpha.domain, report_id="b-1"))
    return mails


@pytest.fixture(scope="module")
def mailbox(staged: Sandbox) -> Sandbox:
    client = imap(staged)
    try:
        for folder in ("Processed",):
            if client.folder_exists(folder):
                client.delete_folder(folder)
        client.select_folder("INBOX")
        if client.search(["ALL"]):
            client.delete_messages(client.search(["ALL"]))
            client.expunge()
        for mail in report_mails(staged):
            client.append("INBOX", mail)
    finally:
        client.logout()
    return staged


def fetch_args(sb: Sandbox, db: Path, password_ref: str) -> list[str]:
    return [
        "dmarc", "fetch", "--imap", f"{sb.net.mailbox}:993", "--imap-user",
        sb.mailbox.address_of(USER),
        "--imap-password", password_ref, "--cafile", str(sb.mailbox.ca_file),
        "--move-to", "Processed", "--db", str(db),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dmarc") / "state" / "watch.db"


def test_fetch_reads_each_report_once(mailbox: Sandbox, db: Path) -> None:
    ref = f"file:{mailbox.mailbox.password_file(USER)}"
    first = run_mailmend(*fetch_args(mailbox, db, ref))
    assert first.returncode == 1, first.stderr  # one mail refused, the rest kept
    assert first.stdout == (
        "56 new report(s) (112 records), 1 already kept, 1 refused, from 58 input(s)\n"
    )
    refused = [line for line in first.stderr.splitlines() if "refused:" in line]
    assert len(refused) == 1
    assert "attachment b-1.zip: truncated or corrupt zip archive" in refused[0]
    assert "Report-ID: <b-1>" in refused[0]
    assert "moved 57 message(s) to Processed" in first.stderr
    client = imap(mailbox)
    try:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search(["ALL"])) == 1  # the refused one stays where it was
        client.select_folder("Processed", readonly=True)
        assert len(client.search(["ALL"])) == 57
    finally:
        client.logout()
    second = run_mailmend(*fetch_args(mailbox, db, ref))
    assert second.returncode == 0, second.stderr
    assert second.stdout == (
        "0 new report(s) (0 records), 0 already kept, 0 refused, from 0 input(s)\n"
    )


def test_sources_classifies_fleet_service_and_unknown(mailbox: Sandbox, db: Path) -> None:
    alpha, bravo = mailbox.hosts()[0], mailbox.hosts()[1]
    proc = run_mailmend(
        "dmarc", "sources", "--db", str(db), "--fleet", str(mailbox.fleet_file), "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    found = {
        (d["domain"], s["ip"]): (s["class"], s["name"], s["messages"], s["orgs"])
        for d in data["domains"]
        for s in d["sources"]
    }
    orgs = sorted(ORGS)
    assert found == {
        (alpha.domain, alpha.public_ipv4): ("fleet", alpha.name, 60 * 28, orgs),
        (alpha.domain, SERVICE_IP): ("service", "include:_spf.mailservice.test", 20 * 28, orgs),
        (bravo.domain, bravo.public_ipv4): ("fleet", bravo.name, 30 * 28, orgs),
        (bravo.domain, UNKNOWN_IP): ("unknown", UNKNOWN_PTR, 12 * 28, orgs),
    }
    table = run_mailmend("dmarc", "sources", "--db", str(db), "--fleet", str(mailbox.fleet_file))
    assert table.returncode == 0, table.stderr
    (row,) = [line.split() for line in table.stdout.splitlines() if UNKNOWN_IP in line]
    assert row[:5] == [UNKNOWN_IP, "unknown", UNKNOWN_PTR, "336", "0.0%"]


def txt(sb: Sandbox, name: str) -> list[str]:
    from mailmend.checks.nameservers import parse_nameserver

    rrset = read_rrset(name, "TXT", parse_nameserver(sb.net.dns))
    return sorted(b"".join(rd.strings).decode() for rd in rrset or ())


def test_records_auto_moves_the_clean_domain_only(mailbox: Sandbox, db: Path) -> None:
    alpha, bravo, charlie = mailbox.hosts()[:3]
    proc = run_mailmend(
        "records", "--fleet", str(mailbox.fleet_file), "--server", mailbox.net.dns,
        "--tsig-key", str(mailbox.dns.tsig_file), "--dmarc-stage", "auto", "--dmarc-db", str(db),
        "--apply",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rua = f"rua=mailto:dmarc-reports@{alpha.domain}"
    assert txt(mailbox, f"_dmarc.{alpha.domain}") == [f"v=DMARC1; p=quarantine; {rua}"]
    assert txt(mailbox, f"_dmarc.{bravo.domain}") == [f"v=DMARC1; p=none; {rua}"]
    out = proc.stdout
    assert "stage (from the reports): p=none -> p=quarantine" in out
    assert "stage (from the reports): stays at p=none" in out
    assert f"- {UNKNOWN_IP} (unknown {UNKNOWN_PTR}): 336 message(s) from an unknown source" in out
    assert f"_dmarc.{charlie.domain}" in out  # no reports: gets its first p=none record
    again = run_mailmend(
        "records", "--fleet", str(mailbox.fleet_file), "--server", mailbox.net.dns,
        "--dmarc-stage", "auto", "--dmarc-db", str(db), "--format", "json",
    )  # fmt: skip
    data = json.loads(again.stdout)
    stages = {
        r["name"]: r["stage"]
        for d in data["domains"]
        for r in d["records"]
        if r["kind"] == "dmarc" and "stage" in r
    }
    # alpha's reports were all made under p=none: none of them counts for p=quarantine
    assert stages[f"_dmarc.{alpha.domain}."]["moves"] is False
    assert "not enough reports: 0 from 0" in stages[f"_dmarc.{alpha.domain}."]["reasons"][0]
    assert stages[f"_dmarc.{bravo.domain}."]["target"] == "none"


def test_bad_input_is_one_line_and_exit_2(mailbox: Sandbox, db: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    cases = [
        fetch_args(mailbox, db, f"file:{wrong}"),
        ["dmarc", "import", "--db", str(db), str(tmp_path / "missing")],
        ["dmarc", "sources", "--db", str(db), "--since", "yesterday"],
    ]
    for argv in cases:
        proc = run_mailmend(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "not-the-password" not in proc.stderr
    assert "IMAP login as 'dmarc-reports@inbox.test'" in run_mailmend(*cases[0]).stderr


def test_fleet_report_has_a_dmarc_section_per_domain(mailbox: Sandbox, db: Path) -> None:
    proc = run_mailmend(
        "check", "--fleet", str(mailbox.fleet_file), "--no-dnsbl", "--format", "html",
        "--dmarc-db", str(db),
    )  # fmt: skip
    assert proc.returncode in (0, 1, 3), proc.stderr
    page = proc.stdout
    for h in mailbox.hosts()[:3]:
        assert f"DMARC {h.domain}" in page
    assert UNKNOWN_PTR in page and "Stage: stays at p=none" in page
