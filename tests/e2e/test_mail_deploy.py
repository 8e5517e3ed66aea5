"""``pyinfra inventory.py deploys/mail.py`` on the sandbox fleet: real Postfix and OpenDKIM.

One deploy at 30 mails per minute (a 2 s gap, to keep the test short), then: identity,
DKIM signatures verified by dkimpy against the sandbox DNS, pacing, idempotence, a setting
Postfix rejects, and a host that is down.
"""

from __future__ import annotations

import itertools
import json
import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import dns.message
import dns.query
import pytest

from checks.dkim import txt_strings
from sandbox.control import Sandbox
from sandbox.receiver import Received
from sandbox.scenario import SandboxHost
from tests.conftest import run_pyinfra

pytestmark = pytest.mark.end_to_end

RATE = 30  # per minute in this test's fleet: one delivery every 2 s
INTERVAL = 60 / RATE


def deploy(sb: Sandbox, fleet: Path, *args: str) -> dict[str, Any]:
    proc = run_pyinfra(fleet, "-y", "--json", "deploys/mail.py", *args)
    try:
        out: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        raise AssertionError(f"no JSON from pyinfra ({proc.returncode}):\n{proc.stderr}") from None
    out["returncode"] = proc.returncode
    out["stderr"] = proc.stderr
    return out


# Report steps (python.call) run every time and pyinfra counts them as "Success"; they read
# DNS from the admin's machine and change nothing on the hosts.
REPORT_STEPS = ("Checks |", "Records |")


def changed_ops(result: dict[str, Any]) -> list[str]:
    """Operations that changed something on a host (report steps excluded)."""
    return [
        f"{op['name']} on {op['success']}"
        for op in result["results"]["operations"]
        if op["success"] and not op["name"].startswith(REPORT_STEPS)
    ]


def write_fleet(sb: Sandbox, tmp: Path, name: str, **kw: Any) -> Path:
    path = tmp / name
    path.write_text(sb.fleet_text(defaults={"rate_limit_per_minute": RATE}, **kw))
    return path


def dkim_txt(sb: Sandbox, h: SandboxHost) -> str:
    """The public half of the host's key as a TXT value (the private key stays there)."""
    txt = sb.ssh(h, f"cat /etc/opendkim/keys/{h.domain}/{h.selector}.txt")
    return "".join(re.findall(r'"([^"]*)"', txt))


def key_digest(sb: Sandbox, h: SandboxHost) -> str:
    return sb.ssh(h, f"sha256sum /etc/opendkim/keys/{h.domain}/{h.selector}.private").split()[0]


def publish_dkim(sb: Sandbox) -> None:
    extra = {
        h.domain: ((f"{h.selector}._domainkey", "TXT", txt_strings(dkim_txt(sb, h))),)
        for h in sb.hosts()
    }
    sb.dns.serve(replace(sb.scenario(), extra_records=extra))


def wait_for(sb: Sandbox, count: int, timeout: float = 90) -> list[Received]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sb.receiver.received()
        if len(got) >= count:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{len(sb.receiver.received())} of {count} messages arrived")


def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@mailmend.test>"
    msg.set_content(f"{subject}\n")
    return msg


def sandbox_dns_txt(sb: Sandbox):  # type: ignore[no-untyped-def]
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        q = dns.message.make_query(name.decode().rstrip("."), "TXT")
        r = dns.query.udp(q, sb.net.dns, timeout=timeout)
        for rrset in r.answer:
            for rr in rrset:
                return b"".join(rr.strings)
        return b""

    return dnsfunc


@pytest.fixture(scope="module")
def deployed(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    fleet = write_fleet(sandbox, tmp_path_factory.mktemp("fleet"), "fleet.toml")
    result = deploy(sandbox, fleet)
    assert result["returncode"] == 0, result["stderr"]
    publish_dkim(sandbox)
    yield fleet


def test_hosts_present_their_fqdn_everywhere(sandbox: Sandbox, deployed: Path) -> None:
    for h in sandbox.hosts():
        assert sandbox.ssh(h, "hostname").strip() == h.fqdn
        assert sandbox.ssh(h, "cat /etc/hostname").strip() == h.fqdn
        assert sandbox.ssh(h, "cat /etc/mailname").strip() == h.fqdn
        hosts_line = [line.split() for line in sandbox.ssh(h, "cat /etc/hosts").splitlines()]
        assert [h.public_ipv4, h.fqdn, h.name] in hosts_line
        assert sandbox.ssh(h, "postconf -h myhostname").strip() == h.fqdn
        assert sandbox.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == "2s"
        assert sandbox.ssh(h, "postconf -h milter_default_action").strip() == "accept"


def test_mail_arrives_dkim_signed_and_verifies(sandbox: Sandbox, deployed: Path) -> None:
    h = sandbox.hosts()[0]
    before = len(sandbox.receiver.received())
    with smtplib.SMTP(h.ssh_addr, 25, timeout=30) as smtp:
        smtp.send_message(message(f"app@{h.domain}", "dkim@inbox-a.test", "dkim smtp"))
    sendmail = message(f"cron@{h.domain}", "dkim@inbox-b.test", "dkim sendmail")
    sandbox.ssh(h, f"printf %s {_shell_quote(sendmail.as_string())} | /usr/sbin/sendmail -t")
    got = wait_for(sandbox, before + 2)[before:]
    dnsfunc = sandbox_dns_txt(sandbox)
    for rec in got:
        raw = rec.content()
        assert b"DKIM-Signature:" in raw
        assert f"d={h.domain}".encode() in raw
        assert dkim.verify(raw, dnsfunc=dnsfunc), rec.path
        tampered = raw.replace(b"dkim ", b"DKIM ", 1)
        assert tampered != raw
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_outbound_is_paced_and_nothing_is_lost(sandbox: Sandbox, deployed: Path) -> None:
    h = sandbox.hosts()[1]
    before = len(sandbox.receiver.received())
    rcpts = [f"burst{i}@inbox-{'abc'[i % 3]}.test" for i in range(6)]
    with smtplib.SMTP(h.ssh_addr, 25, timeout=30) as smtp:
        for i, rcpt in enumerate(rcpts):
            smtp.send_message(message(f"news@{h.domain}", rcpt, f"burst {i}"))
    got = wait_for(sandbox, before + len(rcpts), timeout=60)[before:]
    assert sorted(r for rec in got for r in rec.rcpt_tos) == sorted(rcpts)
    times = sorted(rec.time for rec in got)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.9 * INTERVAL, gaps
    assert sandbox.ssh(h, "postqueue -p").strip() == "Mail queue is empty"


def test_second_run_changes_nothing_and_keeps_keys(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    digests = {h.name: key_digest(sandbox, h) for h in sandbox.hosts()}
    again = deploy(sandbox, deployed)
    assert again["returncode"] == 0, again["stderr"]
    assert changed_ops(again) == []
    # Unrelated data changes (the rate) change main.cf, never the DKIM key.
    slower = write_fleet(sandbox, tmp_path, "slower.toml")
    slower.write_text(
        slower.read_text().replace(f"rate_limit_per_minute = {RATE}", "rate_limit_per_minute = 20")
    )
    changed = deploy(sandbox, slower)
    assert changed["returncode"] == 0, changed["stderr"]
    assert changed_ops(changed)
    assert {h.name: key_digest(sandbox, h) for h in sandbox.hosts()} == digests
    for h in sandbox.hosts():
        mode = sandbox.ssh(h, f"stat -c '%a %U' /etc/opendkim/keys/{h.domain}/{h.selector}.private")
        assert mode.split() == ["600", "opendkim"]
    restored = deploy(sandbox, deployed)
    assert restored["returncode"] == 0, restored["stderr"]


def test_rejected_setting_fails_that_host_only(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    bad_host = sandbox.hosts()[2]
    live_before = sandbox.ssh(bad_host, "cat /etc/postfix/main.cf")
    fleet = write_fleet(sandbox, tmp_path, "bad.toml", hosts={
        bad_host.name: {"postfix_main_cf": {"default_process_limit": "lots"}},
    })  # fmt: skip
    fleet.write_text(
        fleet.read_text().replace(f"rate_limit_per_minute = {RATE}", "rate_limit_per_minute = 15")
    )
    result = deploy(sandbox, fleet)
    assert result["returncode"] != 0
    errors = {h for op in result["results"]["operations"] for h in op["error"]}
    assert errors == {bad_host.name}
    assert "default_process_limit" in result["stderr"]
    # The old config is still live and still delivers; the others took the new rate.
    assert sandbox.ssh(bad_host, "cat /etc/postfix/main.cf") == live_before
    assert "lots" not in sandbox.ssh(bad_host, "postconf -n")
    for h in sandbox.hosts()[:2]:
        assert sandbox.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == "4s"
    before = len(sandbox.receiver.received())
    with smtplib.SMTP(bad_host.ssh_addr, 25, timeout=30) as smtp:
        smtp.send_message(message(f"app@{bad_host.domain}", "still@inbox-c.test", "still up"))
    assert wait_for(sandbox, before + 1)[before].rcpt_tos == ("still@inbox-c.test",)
    assert deploy(sandbox, deployed)["returncode"] == 0


def test_a_host_that_is_down_fails_and_the_rest_converge(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    ghost = {"ssh_host": sandbox.net.host(99), "hostname": "mx99.alpha.example",
             "public_ipv4": "192.0.2.99", "listen_address": sandbox.net.host(99)}  # fmt: skip
    fleet = write_fleet(sandbox, tmp_path, "ghost.toml", extra_hosts={"mx99": ghost})
    result = deploy(sandbox, fleet)
    assert result["returncode"] != 0
    assert "mx99" in result["stderr"]
    assert changed_ops(result) == []  # the live hosts were already converged
    live = {h.name for h in sandbox.hosts()}
    for op in result["results"]["operations"]:  # every step ran on every live host
        assert set(op["no_change"]) | set(op["success"]) == live, op["name"]
        assert op["error"] == [], op["name"]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_dry_run_shows_the_config_diff_and_changes_nothing(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    h = sandbox.hosts()[0]
    live = sandbox.ssh(h, "cat /etc/postfix/main.cf")
    fleet = write_fleet(sandbox, tmp_path, "dry.toml")
    fleet.write_text(fleet.read_text().replace(f"rate_limit_per_minute = {RATE}",
                                               "rate_limit_per_minute = 12"))  # fmt: skip
    proc = run_pyinfra(fleet, "--dry", "--limit", h.name, "deploys/mail.py")
    assert proc.returncode == 0, proc.stderr
    assert "Will modify /etc/postfix/main.cf" in proc.stderr
    diff = [line.strip() for line in proc.stderr.splitlines()]
    assert "- smtp_transport_rate_delay = 2s" in diff
    assert "+ smtp_transport_rate_delay = 5s" in diff
    assert sandbox.ssh(h, "cat /etc/postfix/main.cf") == live
