"""``pyinfra inventory.py deploys/mail.py`` on the sandbox fleet: real Postfix and OpenDKIM.

One deploy at 30 mails per minute (a 2 s gap, to keep the test short), then: identity,
DKIM signatures verified by dkimpy against the sandbox DNS, pacing, idempotence, a setting
Postfix rejects, a host that is down, and convergence after a step failed once (a wrapper on
the host fails the first call of postmap, the reload or the OpenDKIM restart) or the deploy
was interrupted (SIGINT at several points).
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import re
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import dns.message
import dns.query
import pytest

from mailmend.checks.txt import txt_strings
from sandbox.control import Sandbox
from sandbox.receiver import Received
from sandbox.scenario import SandboxHost
from tests.conftest import REPO, run_pyinfra

pytestmark = pytest.mark.end_to_end

RATE = 30  # per minute in this test's fleet: one delivery every 2 s
INTERVAL = 60 / RATE


def deploy(
    sb: Sandbox, fleet: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    proc = run_pyinfra(fleet, "-y", "--json", "deploys/mail.py", *args, env=env)
    try:
        out: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        if proc.returncode == 0 or "No hosts remaining" not in proc.stderr:
            raise AssertionError(f"no JSON ({proc.returncode}):\n{proc.stderr}") from None
        out = {}  # every host failed: pyinfra prints no JSON
    out["returncode"] = proc.returncode
    out["stderr"] = proc.stderr
    return out


def changed_ops(result: dict[str, Any]) -> list[str]:
    """Every operation that changed something on a host, the report steps (Records, Checks)
    included: they run no command and must report no change."""
    return [f"{op['name']} on {op['success']}" for op in result["results"]["operations"]
            if op["success"]]  # fmt: skip


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
    # mx3's provider is known (fleet key vps_provider): the plan and the checks name the
    # command that sets its PTR; mx2's is not: they say to ask the provider.
    fleet = write_fleet(
        sandbox, tmp_path_factory.mktemp("fleet"), "fleet.toml",
        hosts={"mx3": {"vps_provider": "hetzner"}},
    )  # fmt: skip
    result = deploy(sandbox, fleet)
    assert result["returncode"] == 0, result["stderr"]
    said = result["stderr"]
    mx2, mx3 = sandbox.hosts()[1], sandbox.hosts()[2]
    assert f"run mailmend ptr --host mx3 --apply: sets PTR of {mx3.public_ipv4} to " in said
    assert f"run mailmend ptr --fleet {fleet} --host mx3 --apply (it asks hetzner" in said
    assert f"ask your VPS provider to set the PTR of {mx2.public_ipv4} to {mx2.fqdn}" in said
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


def test_the_admins_lines_are_kept_and_backups_are_pruned(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    """Issue 15 item 13: /etc/hosts and TrustedHosts keep the admin's lines; backups of a
    replaced file are pruned to ``backups_keep``."""
    h = sandbox.hosts()[1]
    nas, clients = "10.9.8.7 nas.internal nas", "198.51.100.0/24"
    sandbox.ssh(h, f"echo '{nas}' >> /etc/hosts && echo '{clients}' >> /etc/opendkim/TrustedHosts"
                   " && for i in $(seq 10 21); do"
                   " : > /etc/postfix/main.cf.mailmend-20200101T0000${i}Z; done")  # fmt: skip
    listing = "ls -1 /etc/postfix/ | grep '^main.cf.mailmend-'"
    before = set(sandbox.ssh(h, listing).split())
    slower = write_fleet(sandbox, tmp_path, "slower.toml")
    slower.write_text(slower.read_text().replace(f"rate_limit_per_minute = {RATE}",
                                                 "rate_limit_per_minute = 20"))  # fmt: skip
    try:
        result = deploy(sandbox, slower, "--limit", h.name, "--data", "backups_keep=3")
        assert result["returncode"] == 0, result["stderr"]
        hosts = sandbox.ssh(h, "cat /etc/hosts").splitlines()
        assert nas in hosts
        assert [h.public_ipv4, h.fqdn, h.name] in [line.split() for line in hosts]
        assert clients in sandbox.ssh(h, "cat /etc/opendkim/TrustedHosts").splitlines()
        backups = sandbox.ssh(h, listing).split()
        (new,) = set(backups) - before  # this run's backup of main.cf
        assert backups == sorted(before | {new})[-3:]  # the newest three, 12+ before
        # The admin's lines are part of the file now: a rerun changes nothing.
        again = deploy(sandbox, slower, "--limit", h.name, "--data", "backups_keep=3")
        assert changed_ops(again) == []
        send_signed(sandbox, h, "with the admin's TrustedHosts line")
    finally:
        sandbox.ssh(h, f"sed -i '/^{nas}$/d' /etc/hosts && sed -i '\\#^{clients}$#d'"
                       " /etc/opendkim/TrustedHosts")  # fmt: skip
        assert deploy(sandbox, deployed)["returncode"] == 0


# -- convergence after a failure or an interruption (issue 15, item 2) -----------------------


@contextmanager
def failing_once(sb: Sandbox, h: SandboxHost, path: str, word: str) -> Iterator[str]:
    """Replace the tool at ``path`` on ``h`` by a wrapper failing the first call whose
    arguments contain ``word``; yields the flag file the failure leaves behind."""
    flag = f"/run/mailmend-test-failed-{posixpath.basename(path)}"
    script = "\n".join([
        "#!/bin/sh",
        f'case " $* " in *{word}*) if [ ! -e {flag} ]; then : > {flag};',
        f'  echo "test wrapper: {path} $* fails once" >&2; exit 1; fi;; esac',
        f'exec {path}.real "$@"',
        "",
    ])  # fmt: skip
    sb.ssh(h, f"rm -f {flag} && mv {path} {path}.real && printf %s {_shell_quote(script)} > {path}"
              f" && chmod 755 {path}")  # fmt: skip
    try:
        yield flag
    finally:
        sb.ssh(h, f"mv -f {path}.real {path}")


def failed_once(sb: Sandbox, h: SandboxHost, flag: str) -> bool:
    return sb.ssh(h, f"[ -e {flag} ] && echo yes || true").strip() == "yes"


def postfix_runs_main_cf(sb: Sandbox, h: SandboxHost) -> bool:
    """Postfix's master (re)loaded its configuration after main.cf was last written: its last
    ``reload`` or ``daemon started`` line in the log is not older than main.cf."""
    out = sb.ssh(h, (
        "m=$(stat -c %Y /etc/postfix/main.cf);"
        " l=$(grep -E 'postfix/master\\[[0-9]+\\]: (reload|daemon started)' /var/log/postfix.log"
        " | tail -n 1 | cut -c1-15); echo \"$m $(date -d \"$l\" +%s)\""
    ))  # fmt: skip
    written, loaded = (int(x) for x in out.split())
    return loaded >= written


def send_signed(sb: Sandbox, h: SandboxHost, subject: str) -> None:
    """One message over SMTP from ``h`` arrives with a DKIM signature that verifies."""
    before = len(sb.receiver.received())
    with smtplib.SMTP(h.ssh_addr, 25, timeout=30) as smtp:
        smtp.send_message(message(f"app@{h.domain}", "signed@inbox-a.test", subject))
    raw = wait_for(sb, before + 1)[before].content()
    assert b"DKIM-Signature:" in raw, subject
    assert dkim.verify(raw, dnsfunc=sandbox_dns_txt(sb)), subject


def changed_names(result: dict[str, Any]) -> str:
    return "\n".join(changed_ops(result))


def test_a_failed_postmap_of_the_relay_credentials_is_redone(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    h = sandbox.hosts()[0]
    nexthop = f"[{sandbox.net.host(99)}]:2525"
    fleet = write_fleet(sandbox, tmp_path, "relay.toml", hosts={h.name: {
        "relay_host": nexthop, "relay_credentials": "env:MAILMEND_TEST_RELAY",
    }})  # fmt: skip
    lookup = f"postmap -q '{nexthop}' hash:/etc/postfix/sasl_passwd || true"
    try:
        first = deploy(sandbox, fleet, "--limit", h.name, env={"MAILMEND_TEST_RELAY": "u:one"})
        assert first["returncode"] == 0, first["stderr"]
        assert sandbox.ssh(h, lookup).strip() == "u:one"
        two = {"MAILMEND_TEST_RELAY": "u:two"}
        with failing_once(sandbox, h, "/usr/sbin/postmap", "sasl_passwd") as flag:
            failed = deploy(sandbox, fleet, "--limit", h.name, env=two)
            assert failed["returncode"] != 0
            assert failed_once(sandbox, h, flag)
        assert sandbox.ssh(h, lookup).strip() == "u:one"  # stale: what the rerun must repair
        rerun = deploy(sandbox, fleet, "--limit", h.name, env=two)
        assert rerun["returncode"] == 0, rerun["stderr"]
        assert "Index the relay credentials" in changed_names(rerun)
        assert sandbox.ssh(h, lookup).strip() == "u:two"
        assert sandbox.ssh(h, "stat -c %a /etc/postfix/sasl_passwd.db").strip() == "600"
        assert changed_ops(deploy(sandbox, fleet, "--limit", h.name, env=two)) == []
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0


def test_a_failed_postmap_of_the_suppression_table_is_redone(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    h = sandbox.hosts()[1]
    blocked = "blocked@inbox-c.test"
    deny = tmp_path / "deny.txt"
    deny.write_text(f"{blocked}\n")
    data = ("--limit", h.name, "--data", f"hygiene_deny_file={deny}")
    table = "/etc/postfix/mailmend/suppress_recipients"
    lookup = f"postmap -q {blocked} hash:{table} || true"
    try:
        with failing_once(sandbox, h, "/usr/sbin/postmap", "suppress_recipients") as flag:
            failed = deploy(sandbox, deployed, *data)
            assert failed["returncode"] != 0
            assert failed_once(sandbox, h, flag)
        assert blocked in sandbox.ssh(h, f"cat {table}")
        assert sandbox.ssh(h, lookup).strip() == ""  # the text has it, the .db does not
        rerun = deploy(sandbox, deployed, *data)
        assert rerun["returncode"] == 0, rerun["stderr"]
        assert sandbox.ssh(h, lookup).startswith("REJECT 5.7.1")
        transport = f"postmap -q {blocked} hash:/etc/postfix/mailmend/suppress_transport"
        assert sandbox.ssh(h, f"{transport} || true").startswith("error:5.7.1")
        with smtplib.SMTP(h.ssh_addr, 25, timeout=30) as smtp:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.send_message(message(f"app@{h.domain}", blocked, "denied"))
        assert changed_ops(deploy(sandbox, deployed, *data)) == []
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0


def test_a_failed_postfix_reload_is_redone(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    h = sandbox.hosts()[2]
    slower = write_fleet(sandbox, tmp_path, "slower.toml")
    slower.write_text(slower.read_text().replace(f"rate_limit_per_minute = {RATE}",
                                                 "rate_limit_per_minute = 20"))  # fmt: skip
    try:
        with failing_once(sandbox, h, "/usr/sbin/postfix", "reload") as flag:
            failed = deploy(sandbox, slower, "--limit", h.name)
            assert failed["returncode"] != 0
            assert failed_once(sandbox, h, flag)
        assert sandbox.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == "3s"
        assert not postfix_runs_main_cf(sandbox, h)  # swapped, not loaded
        rerun = deploy(sandbox, slower, "--limit", h.name)
        assert rerun["returncode"] == 0, rerun["stderr"]
        assert "Reload Postfix" in changed_names(rerun)
        assert postfix_runs_main_cf(sandbox, h)
        assert changed_ops(deploy(sandbox, slower, "--limit", h.name)) == []
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0


def test_a_failed_opendkim_restart_is_redone_and_signing_never_lapses(
    sandbox: Sandbox, deployed: Path
) -> None:
    h = sandbox.hosts()[0]
    moved = "/var/spool/postfix/opendkim/moved.sock"
    data = ("--limit", h.name, "--data", f"opendkim_socket={moved}")
    try:
        with failing_once(sandbox, h, "/etc/init.d/opendkim", "restart") as flag:
            failed = deploy(sandbox, deployed, *data)
            assert failed["returncode"] != 0
            assert failed_once(sandbox, h, flag)
        # OpenDKIM kept its old socket, and Postfix was not pointed at the new one.
        milters = sandbox.ssh(h, "postconf -h smtpd_milters").strip()
        assert milters == "unix:opendkim/opendkim.sock"
        send_signed(sandbox, h, "after a failed restart")
        rerun = deploy(sandbox, deployed, *data)
        assert rerun["returncode"] == 0, rerun["stderr"]
        assert "Restart OpenDKIM" in changed_names(rerun)
        assert sandbox.ssh(h, "postconf -h smtpd_milters").strip() == "unix:opendkim/moved.sock"
        assert sandbox.ssh(h, f"[ -S {moved} ] && echo yes").strip() == "yes"
        assert postfix_runs_main_cf(sandbox, h)
        send_signed(sandbox, h, "on the moved socket")
        assert changed_ops(deploy(sandbox, deployed, *data)) == []
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0
    send_signed(sandbox, h, "back on the default socket")


def test_mail_stays_signed_while_postfix_still_names_the_old_socket(
    sandbox: Sandbox, deployed: Path
) -> None:
    """OpenDKIM moved to a new socket, Postfix's reload failed: the old path is a link to the
    new socket, so signing never lapses; the rerun reloads Postfix."""
    h = sandbox.hosts()[2]
    data = ("--limit", h.name, "--data", "opendkim_socket=/var/spool/postfix/opendkim/moved.sock")
    try:
        with failing_once(sandbox, h, "/usr/sbin/postfix", "reload") as flag:
            failed = deploy(sandbox, deployed, *data)
            assert failed["returncode"] != 0
            assert failed_once(sandbox, h, flag)
        assert not postfix_runs_main_cf(sandbox, h)  # it still names opendkim.sock
        link = sandbox.ssh(h, "readlink /var/spool/postfix/opendkim/opendkim.sock").strip()
        assert link == "moved.sock"
        send_signed(sandbox, h, "through the link")
        rerun = deploy(sandbox, deployed, *data)
        assert rerun["returncode"] == 0, rerun["stderr"]
        assert postfix_runs_main_cf(sandbox, h)
        send_signed(sandbox, h, "on the moved socket, reloaded")
        assert changed_ops(deploy(sandbox, deployed, *data)) == []
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0
    send_signed(sandbox, h, "back on the default socket after a link")


def test_an_interrupted_deploy_fails_and_the_rerun_converges(
    sandbox: Sandbox, deployed: Path, tmp_path: Path
) -> None:
    """SIGINT to the process group (Ctrl-C) at several points of a deploy changing main.cf
    on every host: ``scripts/deploy`` exits 130 (pyinfra alone exits 0), the rerun converges."""
    try:
        for delay, rate, gap in ((2.0, 20, "3s"), (5.0, 15, "4s"), (8.0, 12, "5s")):
            fleet = write_fleet(sandbox, tmp_path, f"rate{rate}.toml")
            text = fleet.read_text()
            fleet.write_text(text.replace(f"rate_limit_per_minute = {RATE}",
                                          f"rate_limit_per_minute = {rate}"))  # fmt: skip
            proc = subprocess.Popen(
                ["bash", "scripts/deploy"], cwd=REPO, start_new_session=True, text=True,
                env={**os.environ, "MAILMEND_FLEET": str(fleet)},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(delay)
            assert proc.poll() is None, f"the deploy ended before {delay} s"
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 130, (out[-2000:], err[-2000:])
            assert "the deploy was interrupted" in err
            rerun = deploy(sandbox, fleet)
            assert rerun["returncode"] == 0, rerun["stderr"]
            for h in sandbox.hosts():
                assert sandbox.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == gap
                assert postfix_runs_main_cf(sandbox, h), (delay, h.name)
            assert changed_ops(deploy(sandbox, fleet)) == [], delay
    finally:
        assert deploy(sandbox, deployed)["returncode"] == 0
    for h in sandbox.hosts():
        send_signed(sandbox, h, f"after the interruptions {h.name}")
