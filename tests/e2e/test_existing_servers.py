"""The mail deploy on servers someone already set up (sandbox/existing.py), beside an empty VPS.

One fleet: ``mx1`` (empty), ``mailserver`` (virtual domain to Dovecot over LMTP, submission
587 with Dovecot SASL, custom restrictions, header_checks), ``relay`` (a smarthost with SASL
credentials, through the mailserver's 587) and ``exim`` (Debian's Exim with a smarthost).
``dkim`` (OpenDKIM signing with ``/etc/dkimkeys/default.private``, published at ``default``;
the fleet file names another selector, ``news2026``).
A ``--dry`` run first, then one deploy at 30 mails a minute, then: the Exim host stopped and
unchanged, the others converged, main.cf merged (``postconf -n`` differs only in mailmend's
parameters, master.cf unchanged), submission still authenticates and is signed and paced,
the virtual domain still delivers, the relay's smarthost still carries its mail, a rerun
changes nothing; last, ``replace_mta = true`` replaces Exim and keeps its configuration.
"""

from __future__ import annotations

import itertools
import json
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import pytest

from mailmend.checks.txt import txt_strings
from sandbox.control import Sandbox
from sandbox.existing import MAILBOX_USER
from sandbox.scenario import SandboxHost, default_scenario
from tests.conftest import require_root, run_mailmend, run_pyinfra, sandbox_net
from tests.e2e.test_mail_deploy import (
    changed_ops,
    deploy,
    message,
    sandbox_dns_txt,
    wait_for,
)

pytestmark = pytest.mark.end_to_end

RATE = 30  # per minute: one delivery every 2 s
INTERVAL = 60 / RATE
#: main.cf parameters the merge may change on the mailserver (postconf -n before vs after).
MAILMEND_PARAMETERS = {
    "smtp_helo_name", "smtp_transport_rate_delay", "milter_default_action",
    "access_map_reject_code", "maillog_file", "smtpd_recipient_restrictions", "transport_maps",
    "smtpd_milters", "non_smtpd_milters", "smtp_bind_address",
}  # fmt: skip


EXIM_FILES = "find /etc /usr /var/lib/dpkg -xdev -type f | sort | xargs sha256sum"


def host(sb: Sandbox, name: str) -> SandboxHost:
    return next(h for h in sb.hosts() if h.name == name)


def postconf_n(sb: Sandbox, h: SandboxHost) -> dict[str, str]:
    pairs = (line.partition("=") for line in sb.ssh(h, "postconf -n").splitlines())
    return {k.strip(): v.strip() for k, _, v in pairs}


def snakeoil(sb: Sandbox, h: SandboxHost) -> ssl.SSLContext:
    """Trust exactly the host's own snakeoil certificate (its name is not the host's)."""
    context = ssl.create_default_context(
        cadata=sb.ssh(h, "cat /etc/ssl/certs/ssl-cert-snakeoil.pem")
    )
    context.check_hostname = False
    return context


def sha(sb: Sandbox, h: SandboxHost, *paths: str) -> str:
    return sb.ssh(h, "sha256sum " + " ".join(paths))


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_root()
    net = sandbox_net(offset=60)
    box = Sandbox(tmp_path_factory.mktemp("existing"), net)
    box.up(1, default_scenario(1, net, existing=("mailserver", "relay", "exim", "dkim")))
    try:
        yield box
    finally:
        box.down()


ADMIN_KEY = "/etc/dkimkeys/default.private"
KEY_STAT = f"stat -c '%U %G %a %s %Y' {ADMIN_KEY} && sha256sum {ADMIN_KEY}"


def published(sb: Sandbox, *hosts: tuple[SandboxHost, str]) -> None:
    """Serve the DKIM TXT records of (host, genkey .txt path) pairs in the sandbox DNS (at the
    selector the .txt file is named for)."""
    extra: dict[str, tuple[tuple[str, str, str], ...]] = {}
    for h, path in hosts:
        txt = "".join(re.findall(r'"([^"]*)"', sb.ssh(h, f"cat {path}")))
        selector = Path(path).stem
        extra[h.domain] = ((f"{selector}._domainkey", "TXT", txt_strings(txt)),)
    sb.dns.serve(replace(sb.scenario(), extra_records=extra))


@pytest.fixture(scope="module")
def before(sb: Sandbox) -> dict[str, Any]:
    ms, relay, exim, signer = (host(sb, n) for n in ("mailserver", "relay", "exim", "dkim"))
    published(sb, (signer, "/etc/dkimkeys/default.txt"))  # the key the world knows
    return {
        "dkim_key": sb.ssh(signer, KEY_STAT),
        "postconf": postconf_n(sb, ms),
        "main.cf": sb.ssh(ms, "cat /etc/postfix/main.cf"),
        "master.cf": sha(sb, ms, "/etc/postfix/master.cf"),
        "header_checks": sha(sb, ms, "/etc/postfix/header_checks"),
        "relay_sasl": sha(sb, relay, "/etc/postfix/sasl/sasl_passwd"),
        "relay_master": sha(sb, relay, "/etc/postfix/master.cf"),
        "exim_files": sb.ssh(exim, EXIM_FILES),
    }  # fmt: skip


@pytest.fixture(scope="module")
def fleet(sb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.toml"
    path.write_text(sb.fleet_text(defaults={"rate_limit_per_minute": RATE}))
    return path


@pytest.fixture(scope="module")
def dry(sb: Sandbox, fleet: Path, before: dict[str, Any]) -> str:
    proc = run_pyinfra(fleet, "--dry", "--limit", "mailserver", "deploys/mail.py")
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


@pytest.fixture(scope="module")
def deployed(sb: Sandbox, fleet: Path, dry: str) -> dict[str, Any]:
    result = deploy(sb, fleet)
    ms, signer = host(sb, "mailserver"), host(sb, "dkim")
    published(
        sb,
        (ms, f"/etc/opendkim/keys/{ms.domain}/{ms.selector}.txt"),
        (signer, "/etc/dkimkeys/default.txt"),
    )
    return result


def test_dry_run_shows_the_merge_line_by_line(
    sb: Sandbox, dry: str, before: dict[str, Any]
) -> None:
    ms = host(sb, "mailserver")
    lines = [line.strip() for line in dry.splitlines()]
    assert "smtp_transport_rate_delay: (unset) -> 2s" in lines
    assert "maillog_file: /var/log/mail.log -> /var/log/postfix.log" in lines
    start = lines.index("[mailserver] Will modify /etc/postfix/main.cf")
    diff = lines[start + 1 : lines.index("", start)]
    changed = [" ".join(x.split()) for x in diff if x[:1] in "+-"]
    assert "+ smtp_transport_rate_delay = 2s" in changed
    assert "+ check_recipient_access hash:/etc/postfix/mailmend/suppress_recipients," in changed
    removed = [x for x in changed if x.startswith("-")]
    assert removed == ["- maillog_file = /var/log/mail.log"], removed  # nothing else goes
    assert "/etc/postfix/master.cf" not in dry  # no diff, no upload: master.cf is kept
    assert sb.ssh(ms, "cat /etc/postfix/main.cf") == before["main.cf"]


def test_exim_host_stops_with_its_settings_and_changes_nothing(
    sb: Sandbox, deployed: dict[str, Any], before: dict[str, Any]
) -> None:
    exim = host(sb, "exim")
    assert deployed["returncode"] != 0  # one host failed: the run says so
    out = deployed["stderr"]
    assert "Exim is installed (exim4-daemon-light)" in out
    assert "smarthost (dc_smarthost): smarthost.sink.test::587" in out
    assert "relay domains (dc_relay_domains): partner.example" in out
    assert 'relay_host = "smarthost.sink.test:587"' in out
    assert "replace_mta = true" in out
    files = sb.ssh(exim, EXIM_FILES)
    assert files == before["exim_files"]
    assert "exim4" in sb.ssh(exim, "ps -eo comm")


def test_the_rest_of_the_fleet_converges(sb: Sandbox, deployed: dict[str, Any]) -> None:
    for name in ("mx1", "mailserver", "relay", "dkim"):
        h = host(sb, name)
        assert sb.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == "2s", name
        assert sb.ssh(h, "postconf -h myhostname").strip() == h.fqdn, name
        assert "opendkim" in sb.ssh(h, "ps -eo comm"), name
    mx1 = host(sb, "mx1")
    assert sb.ssh(mx1, "head -1 /etc/postfix/main.cf").startswith("# Managed by mailmend")


def test_mailserver_main_cf_differs_only_in_mailmends_parameters(
    sb: Sandbox, deployed: dict[str, Any], before: dict[str, Any]
) -> None:
    ms = host(sb, "mailserver")
    after = postconf_n(sb, ms)
    old = before["postconf"]
    changed = {k for k in {*old, *after} if old.get(k) != after.get(k)}
    assert changed <= MAILMEND_PARAMETERS, changed - MAILMEND_PARAMETERS
    assert {"smtp_transport_rate_delay", "smtpd_recipient_restrictions"} <= changed
    assert after["smtpd_recipient_restrictions"] == (
        "reject_non_fqdn_recipient, "
        "check_recipient_access hash:/etc/postfix/mailmend/suppress_recipients, "
        "check_policy_service { unix:ratelimit/policy, default_action=DUNNO }, "
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert sha(sb, ms, "/etc/postfix/master.cf") == before["master.cf"]
    assert sha(sb, ms, "/etc/postfix/header_checks") == before["header_checks"]
    backups = sb.ssh(ms, "ls /etc/postfix/").split()
    assert [b for b in backups if b.startswith("main.cf.mailmend-")], backups


def test_submission_still_authenticates_and_is_signed_and_paced(
    sb: Sandbox, deployed: dict[str, Any]
) -> None:
    ms = host(sb, "mailserver")
    password = sb.passwords()["ALICE_PASSWORD"]
    start = len(sb.receiver.received())
    rcpts = [f"sub{i}@inbox-{'abc'[i % 3]}.test" for i in range(3)]
    with smtplib.SMTP(ms.ssh_addr, 587, timeout=30) as smtp:
        smtp.ehlo("laptop.test")
        smtp.starttls(context=snakeoil(sb, ms))
        smtp.ehlo("laptop.test")
        smtp.login(MAILBOX_USER, password)
        for i, rcpt in enumerate(rcpts):
            smtp.send_message(message(MAILBOX_USER, rcpt, f"submission {i}"))
    got = wait_for(sb, start + len(rcpts), timeout=60)[start:]
    assert sorted(r for rec in got for r in rec.rcpt_tos) == sorted(rcpts)
    gaps = [b - a for a, b in itertools.pairwise(sorted(rec.time for rec in got))]
    assert min(gaps) >= 0.9 * INTERVAL, gaps
    dnsfunc = sandbox_dns_txt(sb)
    for rec in got:
        raw = rec.content()
        assert b"d=oldco.example" in raw and dkim.verify(raw, dnsfunc=dnsfunc), rec.path
    with smtplib.SMTP(ms.ssh_addr, 587, timeout=30) as smtp:
        smtp.ehlo("laptop.test")
        smtp.starttls(context=snakeoil(sb, ms))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(MAILBOX_USER, password + "-wrong")


def test_virtual_domain_still_delivers_to_dovecot(sb: Sandbox, deployed: dict[str, Any]) -> None:
    ms = host(sb, "mailserver")
    count = "find /var/vmail/oldco.example/alice/new -type f 2>/dev/null | wc -l"
    start = int(sb.ssh(ms, count))
    with smtplib.SMTP(ms.ssh_addr, 25, timeout=30) as smtp:
        smtp.send_message(message("friend@inbox-a.test", MAILBOX_USER, "inbound after deploy"))
    deadline = time.monotonic() + 30
    while int(sb.ssh(ms, count)) == start:
        assert time.monotonic() < deadline, sb.ssh(ms, "tail -20 /var/log/postfix.log")
        time.sleep(0.3)
    # The admin's header_checks still apply.
    bad = message("friend@inbox-a.test", MAILBOX_USER, "campaign")
    bad["X-Campaign-Id"] = "42"
    with smtplib.SMTP(ms.ssh_addr, 25, timeout=30) as smtp, pytest.raises(smtplib.SMTPDataError):
        smtp.send_message(bad)


def test_relay_smarthost_and_credentials_still_carry_the_mail(
    sb: Sandbox, deployed: dict[str, Any], before: dict[str, Any]
) -> None:
    relay = host(sb, "relay")
    conf = postconf_n(sb, relay)
    assert conf["relayhost"] == "[smarthost.sink.test]:587"
    assert conf["smtp_sasl_password_maps"] == "hash:/etc/postfix/sasl/sasl_passwd"
    assert conf["smtp_tls_security_level"] == "encrypt"
    assert sha(sb, relay, "/etc/postfix/sasl/sasl_passwd") == before["relay_sasl"]
    assert sha(sb, relay, "/etc/postfix/master.cf") == before["relay_master"]
    start = len(sb.receiver.received())
    sb.ssh(
        relay,
        "printf 'Subject: order 1001\\n\\nthanks\\n' | "
        "/usr/sbin/sendmail -f shop@webshop.example buyer@inbox-b.test",
    )
    got = wait_for(sb, start + 1, timeout=60)[start:]
    assert got[0].helo == "mail.oldco.example"  # it left through the smarthost
    log = sb.ssh(relay, "cat /var/log/postfix.log")
    assert "relay=smarthost.sink.test[" in log and "status=sent" in log


def test_existing_dkim_key_is_adopted_untouched_and_signs(
    sb: Sandbox, deployed: dict[str, Any], before: dict[str, Any]
) -> None:
    signer = host(sb, "dkim")
    # once: the summary reuses the OpenDKIM step's adoption (no second read of the host)
    assert (
        deployed["stderr"].count("adopting the existing key default._domainkey.signed.example") == 1
    )
    assert sb.ssh(signer, KEY_STAT) == before["dkim_key"]  # byte-identical, same owner/mode
    assert ADMIN_KEY in sb.ssh(signer, "cat /etc/opendkim/KeyTable")
    assert sb.ssh(signer, "find /etc/opendkim/keys -name '*.private'").strip() == ""
    start = len(sb.receiver.received())
    sb.ssh(
        signer,
        "printf 'From: news@signed.example\\nSubject: signed\\n\\nhello\\n' | "
        "/usr/sbin/sendmail -f news@signed.example reader@inbox-c.test",
    )
    raw = wait_for(sb, start + 1, timeout=60)[start].content()
    assert raw.count(b"DKIM-Signature:") == 1 and b"s=default" in raw
    assert dkim.verify(raw, dnsfunc=sandbox_dns_txt(sb))


def test_records_from_hosts_publishes_the_selector_the_host_signs_with(
    sb: Sandbox, fleet: Path, deployed: dict[str, Any]
) -> None:
    """The fleet names news2026 for signed.example, the adopted key signs as default: records
    reads that from the host and keeps default (no second selector). The Exim host (stopped
    by the deploy) has no key: one line for it, exit 1, every other host still planned."""
    signer = host(sb, "dkim")
    assert signer.selector == "news2026"  # what the fleet file says
    assert "it signs under selector default, not the fleet's news2026" in deployed["stderr"]
    start = time.monotonic()
    proc = run_mailmend(
        "records", "--fleet", str(fleet), "--nameserver", sb.net.dns, "--dkim-from-hosts",
        "--format", "json", timeout=120,
    )  # fmt: skip
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    plan = json.loads(proc.stdout)
    dkim_records = {
        r["name"]: r for d in plan["domains"] for r in d["records"] if r["kind"] == "dkim"
    }
    signed = dkim_records.pop("default._domainkey.signed.example.")
    assert signed["action"] == "keep", signed
    assert signed["origin"] == (
        "selector default is the one dkim signs with (from its opendkim KeyTable); "
        "the fleet file names news2026"
    )
    assert "news2026._domainkey.signed.example." not in dkim_records
    exim = dkim_records.pop("mx._domainkey.eximhost.example.")
    assert exim["action"] == "skip" and exim["reason"].startswith("host exim: no DKIM public key")
    # The hosts mailmend deployed: their own keys, under the fleet's selectors, planned.
    assert {n: r["action"] for n, r in dkim_records.items()} == {
        "mx1._domainkey.alpha.example.": "add",
        "mail._domainkey.oldco.example.": "keep",
        "app._domainkey.webshop.example.": "add",
    }, dkim_records
    problems = [line for line in proc.stderr.splitlines() if "DKIM" in line]
    assert problems == [
        "mailmend records: host exim: no DKIM public key for eximhost.example "
        "(/etc/opendkim/keys/eximhost.example/mx.txt): deploy it (pyinfra inventory.py "
        "deploys/mail.py --limit exim) or give --dkim-txt eximhost.example:mx=FILE; its DKIM "
        "records are skipped"
    ], proc.stderr
    print(f"records --dkim-from-hosts, 5 hosts (one without a key): {took:.1f}s")
    print("\n".join(x for x in deployed["stderr"].splitlines() if "signed.example" in x))
    text = run_mailmend(
        "records", "--fleet", str(fleet), "--nameserver", sb.net.dns, "--dkim-from-hosts",
        timeout=120,
    )  # fmt: skip
    print(text.stdout + text.stderr)  # the doc's example (docs/deploy.md)


def test_check_from_hosts_checks_the_selector_the_host_signs_with(
    sb: Sandbox, fleet: Path, deployed: dict[str, Any]
) -> None:
    """check under the fleet's selector finds nothing at news2026; with --dkim-from-hosts it
    checks default, against the host's own key, and passes."""
    args = ("check", "--fleet", str(fleet), "--nameserver", sb.net.dns, "--host", "dkim",
            "--no-dnsbl", "--format", "json")  # fmt: skip
    plain = json.loads(run_mailmend(*args, timeout=120).stdout)
    proc = run_mailmend(*args, "--dkim-from-hosts", timeout=120)
    report = json.loads(proc.stdout)

    def dkim_result(data: Any) -> dict[str, Any]:
        [h] = data["hosts"]
        [r] = [r for r in h["checks"] if r["check"] == "dkim"]
        return dict(r)

    assert "news2026._domainkey.signed.example" in dkim_result(plain)["summary"]
    assert dkim_result(plain)["status"] == "fail"
    checked = dkim_result(report)
    assert checked["status"] == "pass", checked
    assert "default._domainkey.signed.example" in checked["summary"], checked
    assert proc.stderr == "", proc.stderr
    print(run_mailmend(*args[:-2], "--dkim-from-hosts", timeout=120).stdout)  # docs/deploy.md


def test_pyinfra_check_deploy_checks_the_selector_the_host_signs_with(
    sb: Sandbox, fleet: Path, deployed: dict[str, Any]
) -> None:
    """deploys/check.py alone (no summary step before it) reads the selector on the host too:
    default is checked against the host's key, nothing is asked at news2026."""
    proc = run_pyinfra(fleet, "-y", "--limit", "dkim", "deploys/check.py")
    out = proc.stdout + proc.stderr
    assert "news2026._domainkey" not in out, out
    rows = [line.split() for line in out.splitlines() if "signed.example" in line]
    rows = [r[1:] if r[0].startswith("[") else r for r in rows]  # "[dkim] FAIL dkim CHECK ..."
    problems = [r for r in rows if len(r) > 4 and r[1] == "dkim" and r[0] in ("FAIL", "WARN")]
    assert problems and not [r for r in problems if r[2] == "dkim"], problems
    print("\n".join(line for line in out.splitlines() if "signed.example" in line))


def test_rerun_changes_nothing(sb: Sandbox, fleet: Path, deployed: dict[str, Any]) -> None:
    ms = host(sb, "mailserver")
    main_cf = sha(sb, ms, "/etc/postfix/main.cf")
    again = deploy(sb, fleet)
    changed = [op for op in changed_ops(again) if not op.startswith("Stop:")]
    assert changed == [], changed
    assert sha(sb, ms, "/etc/postfix/main.cf") == main_cf


def test_replace_mta_replaces_exim_and_keeps_its_config(
    sb: Sandbox, deployed: dict[str, Any], tmp_path: Path
) -> None:
    exim = host(sb, "exim")
    conf = "/etc/exim4/update-exim4.conf.conf"
    kept = sha(sb, exim, conf)
    fleet = tmp_path / "replace.toml"
    fleet.write_text(
        sb.fleet_text(
            defaults={"rate_limit_per_minute": RATE}, hosts={"exim": {"replace_mta": True}}
        )
    )
    proc = run_pyinfra(fleet, "-y", "--limit", "exim", "deploys/mail.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replaced by Postfix (replace_mta = true)" in proc.stderr
    installed = sb.ssh(exim, "dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' || true")
    status = dict(line.split(" ", 1) for line in installed.splitlines())
    assert status["postfix"].startswith("ii")
    assert not status.get("exim4-daemon-light", "").startswith("ii")
    assert sha(sb, exim, conf) == kept
    assert sb.ssh(exim, "postconf -h smtp_transport_rate_delay").strip() == "2s"
    assert "exim4" not in sb.ssh(exim, "ps -eo comm").split()
