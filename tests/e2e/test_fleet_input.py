"""Bad or dangerous fleet input on the sandbox: it never reaches a host. Real queued bounces.

- ``postfix_main_cf = { default_transport = "relay" }`` used to be deployed, and 6 messages
  then left within 0.1 s instead of 2 s apart: the fleet check refuses it, no host is touched,
  and the measured gaps still hold.
- ``mailmend queue`` reads the real ``postqueue -j`` of a host with queued bounces (Postfix 3.7
  prints ``"sender": "MAILER-DAEMON"``): it counts them, flags backscatter, and holds them only
  when asked with ``--bounces`` (``--hold ''`` is refused).
"""

from __future__ import annotations

import itertools
import json
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.control import Sandbox
from tests.conftest import run_mailmend, run_pyinfra
from tests.e2e.test_mail_deploy import INTERVAL, deploy, message, wait_for, write_fleet

pytestmark = pytest.mark.end_to_end


@pytest.fixture(scope="module")
def fleet(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_fleet(sandbox, tmp_path_factory.mktemp("fleet"), "fleet.toml")
    result = deploy(sandbox, path)
    assert result["returncode"] == 0, result["stderr"][-3000:]
    return path


def burst_gaps(sandbox: Sandbox, host_index: int, count: int = 6) -> list[float]:
    h = sandbox.hosts()[host_index]
    before = len(sandbox.receiver.received())
    with smtplib.SMTP(h.ssh_addr, 25, timeout=30) as smtp:
        for i in range(count):
            rcpt = f"pace{i}@inbox-{'abc'[i % 3]}.test"
            smtp.send_message(message(f"news@{h.domain}", rcpt, f"pace {i}"))
    got = wait_for(sandbox, before + count, timeout=60)[before:]
    times = sorted(rec.time for rec in got)
    return [b - a for a, b in itertools.pairwise(times)]


def test_a_setting_that_bypasses_the_pacing_never_reaches_a_host(
    sandbox: Sandbox, fleet: Path, tmp_path: Path
) -> None:
    target = sandbox.hosts()[1]
    live = {h.name: sandbox.ssh(h, "cat /etc/postfix/main.cf") for h in sandbox.hosts()}
    bad = write_fleet(sandbox, tmp_path, "bypass.toml", hosts={
        target.name: {"postfix_main_cf": {"default_transport": "relay"}},
    })  # fmt: skip
    result = run_pyinfra(bad, "-y", "deploys/mail.py")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("mailmend: error:")]
    assert len(errors) == 1, result.stderr
    assert f"host '{target.name}': postfix_main_cf.default_transport:" in errors[0]
    assert "mail would leave unpaced" in errors[0]
    assert "no host was contacted" in result.stderr
    for h in sandbox.hosts():
        assert sandbox.ssh(h, "cat /etc/postfix/main.cf") == live[h.name]
        assert "default_transport" not in sandbox.ssh(h, "postconf -n")
    gaps = burst_gaps(sandbox, 1)
    print(f"gaps after the refused setting (s): {[round(g, 2) for g in gaps]}")
    assert min(gaps) >= 0.9 * INTERVAL, gaps


def queue_entries(sandbox: Sandbox, host_index: int) -> list[dict[str, Any]]:
    out = sandbox.ssh(sandbox.hosts()[host_index], "postqueue -j")
    return [json.loads(line) for line in out.splitlines() if line]


def test_queue_sees_real_bounces_and_holds_them_only_when_asked(
    sandbox: Sandbox, fleet: Path
) -> None:
    h = sandbox.hosts()[0]
    queue = ("queue", "--fleet", str(fleet), "--host", h.name)
    # Keep outbound mail queued; bounces for unknown local users from three senders.
    sandbox.ssh(h, "postconf -e defer_transports=smtp && postfix reload")
    try:
        sandbox.ssh(h, (
            "for i in 1 2 3; do printf 'Subject: nobody %s\\n\\nx\\n' $i | sendmail"
            f" -f app$i@inbox-a.test nosuchuser$i@{h.fqdn}; done;"
            f" printf 'Subject: news\\n\\nx\\n' | sendmail -f news@{h.domain} r@inbox-b.test"
        ))  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(e["sender"] == "MAILER-DAEMON" for e in queue_entries(sandbox, 0)) == 3:
                break
            time.sleep(0.2)
        assert sum(e["sender"] == "MAILER-DAEMON" for e in queue_entries(sandbox, 0)) == 3

        triage = run_mailmend(*queue, "--format", "json", "--bounce-count", "3")
        assert triage.returncode == 1, triage.stderr  # flagged: backscatter
        [host] = json.loads(triage.stdout)["hosts"]
        assert host["triage"]["bounces"] == 3
        assert [f["kind"] for f in host["triage"]["flags"]] == ["backscatter"]
        table = run_mailmend(*queue, "--bounce-count", "3")
        print(table.stdout)  # docs/hygiene.md shows this output
        assert table.stdout.splitlines()[1].split()[5] == "3"  # the BOUNCES column

        for empty in (["--hold", ""], ["--delete", "", "--yes"], ["--hold", "MAILER-DAEMON"]):
            refused = run_mailmend(*queue, *empty)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert "--bounces" in refused.stderr and "Traceback" not in refused.stderr
        assert {e["queue_name"] for e in queue_entries(sandbox, 0)} == {"deferred"}

        held = run_mailmend(*queue, "--hold", "--bounces")
        assert held.returncode == 0, held.stdout + held.stderr
        assert "held 3 messages from bounces (MAILER-DAEMON)" in held.stdout
        names = {(e["sender"], e["queue_name"]) for e in queue_entries(sandbox, 0)}
        assert names == {("MAILER-DAEMON", "hold"), (f"news@{h.domain}", "deferred")}
    finally:
        sandbox.ssh(h, "postsuper -d ALL; postconf -X defer_transports; postfix reload")
