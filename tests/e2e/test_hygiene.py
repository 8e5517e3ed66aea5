"""Sending hygiene on the sandbox fleet: real hard bounces, queue triage, per-sender quotas.

Two hosts (own sandbox: block ``MAILMEND_SANDBOX_BLOCK`` + 50, beside the session's),
deployed with ``deploys/mail.py`` at 60 mails a minute;
every run passes the same ``--data``: a temporary allow list and a per-sender quota of
3 recipients a minute, so reruns compare like with like.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from sandbox.control import Sandbox
from sandbox.scenario import SandboxHost
from tests.conftest import require_root, run_mailmend, run_pyinfra, sandbox_net

pytestmark = pytest.mark.end_to_end

RATE = 60
PER_MINUTE = 3
GONE, LATER, VIP = "gone@inbox-a.test", "later@inbox-b.test", "vip@inbox-a.test"
TABLE = "/etc/postfix/mailmend/suppress_recipients"


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_root()
    sandbox = Sandbox(tmp_path_factory.mktemp("sb"), sandbox_net(offset=50))
    sandbox.up(2)
    try:
        yield sandbox
    finally:
        sandbox.down()


@pytest.fixture(scope="module")
def setup(sb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("hygiene")
    fleet = tmp / "fleet.toml"
    fleet.write_text(sb.fleet_text(defaults={"rate_limit_per_minute": RATE}))
    allow = tmp / "allow.txt"
    allow.write_text(f"# test allow list\n{VIP}   # never suppressed\n")
    paths = {"fleet": fleet, "allow": allow}
    result = deploy(paths)
    assert result["returncode"] == 0, result["stderr"][-3000:]
    return paths


def deploy(paths: dict[str, Path]) -> dict[str, Any]:
    proc = run_pyinfra(
        paths["fleet"], "-y", "--json",
        "--data", f"hygiene_allow_file={paths['allow']}",
        "--data", f"hygiene_sender_limits=[[{PER_MINUTE}, 60], [1000, 86400]]",
        "deploys/mail.py",
    )  # fmt: skip
    try:
        out: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        raise AssertionError(f"no JSON from pyinfra ({proc.returncode}):\n{proc.stderr}") from None
    out["returncode"] = proc.returncode
    out["stderr"] = proc.stderr
    out["stdout"] = proc.stdout
    return out


def changed_ops(result: dict[str, Any]) -> list[str]:
    """Every operation that changed something, the report steps (Records, Checks) included."""
    return [f"{op['name']} on {op['success']}" for op in result["results"]["operations"]
            if op["success"]]  # fmt: skip


def message(sender: str, rcpt: str, subject: str) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg.set_content(f"{subject}\n")
    return msg.as_string()


def wait_until(what: str, probe: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def log_has(sb: Sandbox, h: SandboxHost, *needles: str) -> bool:
    log = sb.ssh(h, "cat /var/log/postfix.log")
    return any(all(n in line for n in needles) for line in log.splitlines())


def delivered_to(sb: Sandbox, rcpt: str) -> int:
    return sum(rcpt in rec.rcpt_tos for rec in sb.receiver.received())


def queue(sb: Sandbox, h: SandboxHost) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sb.ssh(h, "postqueue -j").splitlines() if line]


def test_hard_bounces_are_suppressed_fleet_wide(sb: Sandbox, setup: dict[str, Path]) -> None:
    h1, h2 = sb.hosts()
    sb.receiver.set_rules(reject=[GONE, VIP], defer=[LATER])
    with smtplib.SMTP(h1.ssh_addr, 25, timeout=30) as smtp:
        sender = f"shop@{h1.domain}"
        smtp.sendmail(sender, [GONE, LATER, "ok1@inbox-c.test"], message(sender, GONE, "b1"))
        sender = f"crm@{h1.domain}"
        smtp.sendmail(sender, [VIP], message(sender, VIP, "b2"))
    wait_until("the hard bounces and the deferral in h1's log", lambda: (
        log_has(sb, h1, f"to=<{GONE}>", "dsn=5.1.1", "status=bounced")
        and log_has(sb, h1, f"to=<{VIP}>", "dsn=5.1.1", "status=bounced")
        and log_has(sb, h1, f"to=<{LATER}>", "status=deferred")
    ))  # fmt: skip
    assert delivered_to(sb, "ok1@inbox-c.test") == 1

    result = deploy(setup)
    assert result["returncode"] == 0, result["stderr"][-3000:]
    output = result["stdout"] + result["stderr"]
    print("\n".join(line for line in output.splitlines() if "suppress" in line or "queue" in line))
    assert f"newly suppressed: {GONE}" in output
    # transport_maps is answered over long-lived connections: Postfix is reloaded for it.
    assert any(op.startswith("Hygiene | Reload Postfix") for op in changed_ops(result))
    assert f"hard-bounced but on the allow list, not suppressed: {VIP}" in output
    for h in (h1, h2):  # h2 never saw the bounce: fleet-wide
        table = sb.ssh(h, f"cat {TABLE}")
        assert f"{GONE} REJECT 5.1.1 suppressed by mailmend: hard bounce 5.1.1 on" in table
        assert LATER not in table  # soft
        assert VIP not in table  # allow list
        assert GONE in sb.ssh(h, "cat /etc/postfix/mailmend/suppress_transport")
        assert sb.ssh(h, f"postmap -q {GONE} hash:{TABLE}").startswith("REJECT 5.1.1")

    # SMTP, on the host that never saw the bounce: refused at RCPT, the others deliver.
    sender = f"app@{h2.domain}"
    with smtplib.SMTP(h2.ssh_addr, 25, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail(sender, [GONE], message(sender, GONE, "again"))
        code, text = refused.value.recipients[GONE]
        assert code == 550
        assert b"5.1.1" in text and b"suppressed by mailmend" in text
        partial = smtp.sendmail(sender, [GONE, "ok2@inbox-c.test"], message(sender, GONE, "mix"))
        assert set(partial) == {GONE}
    wait_until("ok2 delivered", lambda: delivered_to(sb, "ok2@inbox-c.test") == 1)

    # sendmail(1) never passes smtpd: the transport table bounces it locally; the bounce goes
    # back to the sender (at the sink here) with the suppression text.
    sb.ssh(h2, f"printf 'Subject: local\\n\\nx\\n' | sendmail -f cron@inbox-c.test {GONE}")
    wait_until("the local suppression bounce", lambda: log_has(
        sb, h2, "postfix/error", f"to=<{GONE}>", "status=bounced", "suppressed by mailmend"
    ))  # fmt: skip
    bounce = wait_until("the bounce at the sink", lambda: [
        rec for rec in sb.receiver.received() if rec.rcpt_tos == ("cron@inbox-c.test",)
    ])[0]  # fmt: skip
    assert bounce.mail_from in ("", "<>")  # the null sender
    assert b"suppressed by mailmend: hard bounce 5.1.1" in bounce.content()
    assert delivered_to(sb, GONE) == 0
    # The allow-listed address still goes out (and still bounces at the remote).
    with smtplib.SMTP(h2.ssh_addr, 25, timeout=30) as smtp:
        assert smtp.sendmail(sender, [VIP], message(sender, VIP, "vip")) == {}
    sb.receiver.set_rules()


def test_a_rerun_without_new_bounces_changes_nothing(sb: Sandbox, setup: dict[str, Path]) -> None:
    again = deploy(setup)
    assert again["returncode"] == 0, again["stderr"][-3000:]
    assert changed_ops(again) == []
    for h in sb.hosts():
        assert GONE in sb.ssh(h, f"cat {TABLE}")  # our own error: bounces are not re-counted


def test_the_allow_list_lifts_a_suppression_whose_bounce_rotated_away(
    sb: Sandbox, setup: dict[str, Path]
) -> None:
    """Issue 15 item 10: the documented way to lift a sticky suppression works without logs."""
    for h in sb.hosts():
        assert GONE in sb.ssh(h, f"cat {TABLE}")
        sb.ssh(h, 'for f in /var/log/postfix.log*; do : > "$f"; done')  # rotated away
    allow_before = setup["allow"].read_text()
    setup["allow"].write_text(f"{allow_before}{GONE}\n")
    try:
        result = deploy(setup)
        assert result["returncode"] == 0, result["stderr"][-3000:]
        assert f"no longer suppressed: {GONE}" in result["stdout"] + result["stderr"]
        for h in sb.hosts():
            assert GONE not in sb.ssh(h, f"cat {TABLE}")
            assert GONE not in sb.ssh(h, "cat /etc/postfix/mailmend/suppress_transport")
            assert sb.ssh(h, f"postmap -q {GONE} hash:{TABLE} || true").strip() == ""
    finally:
        setup["allow"].write_text(allow_before)


def mailmend_queue(fleet: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mailmend("queue", "--fleet", str(fleet), *args, timeout=120)


def test_queue_triage_flags_and_holds_one_sender(sb: Sandbox, setup: dict[str, Path]) -> None:
    h1, _ = sb.hosts()
    mass, other = f"mass@{h1.domain}", f"news@{h1.domain}"
    sb.receiver.set_rules(defer=["bulk@inbox-c.test", "other@inbox-c.test"])
    try:
        sb.ssh(h1, (
            f"for i in $(seq 60); do printf 'Subject: bulk %s\\n\\nx\\n' $i"
            f" | sendmail -f {mass} bulk@inbox-c.test; done;"
            f" for i in 1 2 3; do printf 'Subject: news\\n\\nx\\n'"
            f" | sendmail -f {other} other@inbox-c.test; done"
        ))  # fmt: skip
        wait_until("63 queued messages", lambda: len(queue(sb, h1)) >= 63)
        triage = mailmend_queue(setup["fleet"], "--json")
        assert triage.returncode == 1, triage.stderr  # flagged
        hosts = {item["host"]: item for item in json.loads(triage.stdout)["hosts"]}
        flags = hosts["mx1"]["triage"]["flags"]
        assert [(f["kind"], f["sender"]) for f in flags] == [("mass_mailing", mass)]
        assert hosts["mx2"]["triage"]["flags"] == []

        print(mailmend_queue(setup["fleet"]).stdout)  # docs/hygiene.md shows this output
        held = mailmend_queue(setup["fleet"], "--host", "mx1", "--hold", mass)
        assert held.returncode == 0, held.stdout + held.stderr
        entries = queue(sb, h1)
        assert {e["queue_name"] for e in entries if e["sender"] == mass} == {"hold"}
        assert len([e for e in entries if e["sender"] == mass]) == 60
        assert {e["queue_name"] for e in entries if e["sender"] == other} <= {
            "incoming", "active", "deferred"
        }  # fmt: skip
        assert len([e for e in entries if e["sender"] == other]) == 3
    finally:
        sb.receiver.set_rules()
        sb.ssh(h1, "postsuper -d ALL")


def test_the_fourth_message_in_a_minute_is_deferred_then_delivered(
    sb: Sandbox, setup: dict[str, Path]
) -> None:
    _, h2 = sb.hosts()
    sender = f"form@{h2.domain}"
    rcpts = [f"quota{i}@inbox-b.test" for i in range(PER_MINUTE + 1)]
    with smtplib.SMTP(h2.ssh_addr, 25, timeout=30) as smtp:
        start = time.monotonic()
        for rcpt in rcpts[:PER_MINUTE]:
            assert smtp.sendmail(sender, [rcpt], message(sender, rcpt, rcpt)) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
            smtp.sendmail(sender, [rcpts[-1]], message(sender, rcpts[-1], "over"))
    code, text = deferred.value.recipients[rcpts[-1]]
    assert 400 <= code < 500, (code, text)
    assert b"4.7.1" in text and b"quota" in text
    assert log_has(sb, h2, "NOQUEUE: reject: RCPT", "450 4.7.1", rcpts[-1])
    # The client keeps it and retries after the window: accepted and delivered.
    time.sleep(max(0.0, 61 - (time.monotonic() - start)))
    with smtplib.SMTP(h2.ssh_addr, 25, timeout=30) as smtp:
        assert smtp.sendmail(sender, [rcpts[-1]], message(sender, rcpts[-1], "retry")) == {}
    wait_until("all four delivered", lambda: all(delivered_to(sb, r) == 1 for r in rcpts))
    assert [e for e in queue(sb, h2) if e["sender"] == sender] == []  # nothing left, nothing lost
