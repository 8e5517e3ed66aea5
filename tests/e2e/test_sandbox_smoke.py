"""The sandbox fleet works end to end: SSH + pyinfra, DNS, SMTP, and a clean ``down``."""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from sandbox import proc
from sandbox.control import Sandbox
from tests.conftest import require_root, run_pyinfra, sandbox_net

pytestmark = pytest.mark.end_to_end


def _mounts_mentioning(path: Path) -> list[str]:
    hits = []
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            text = mountinfo.read_text()
        except OSError:  # the process exited while we read (ENOENT, ESRCH, EINVAL)
            continue
        hits += [line for line in text.splitlines() if str(path) in line]
    return hits


def _ask(server: str, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=3)


def test_sandbox_up_reach_dns_smtp_down(tmp_path: Path) -> None:
    require_root()
    # A block of its own: this test takes its sandbox down, the session's stays up.
    sb = Sandbox(tmp_path / "state", sandbox_net(offset=1))
    sb.up(2)
    try:
        hosts = sb.hosts()
        assert sb.status().healthy

        # pyinfra reaches every host over SSH and reads a fact: its own hostname.
        out = run_pyinfra(sb.fleet_file, "fact", "server.Hostname", "--json", check=True)
        facts = json.loads(out.stdout)
        assert facts["server.Hostname"] == {h.name: h.fqdn for h in hosts}

        # The authoritative server answers the scenario's records.
        a = _ask(sb.net.dns, hosts[0].fqdn, "A")
        assert [rr.to_text() for rrset in a.answer for rr in rrset] == [hosts[0].public_ipv4]
        ptr = _ask(sb.net.dns, "11.2.0.192.in-addr.arpa", "PTR")
        assert ptr.answer[0][0].to_text() == hosts[0].fqdn + "."
        missing = _ask(sb.net.dns, "12.100.51.198.in-addr.arpa", "PTR")  # host 2: no PTR
        assert missing.rcode() == dns.rcode.NXDOMAIN
        test_point = _ask(sb.net.dns, "2.0.0.127.zen.spamhaus.org", "A")
        assert test_point.answer[0][0].to_text() == "127.0.0.2"
        negative = _ask(sb.net.dns, "1.0.0.127.zen.spamhaus.org", "A")
        assert negative.rcode() == dns.rcode.NXDOMAIN
        # The hosts' resolver forwards sandbox zones to Knot.
        mx = _ask(sb.net.resolver, "inbox-a.test", "MX")
        assert mx.answer[0][0].to_text() == "10 mx.sink.test."

        # The SMTP receiver records a message with its arrival time, and rejects on request.
        sb.receiver.set_rules(reject=["gone@inbox-b.test"])
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@alpha.example", "b@inbox-a.test", "smoke"
        msg.set_content("hello")
        with smtplib.SMTP(sb.net.sink, 25, timeout=10) as smtp:
            refused = smtp.send_message(msg, to_addrs=["b@inbox-a.test", "gone@inbox-b.test"])
        assert refused["gone@inbox-b.test"][0] == 550
        got = sb.receiver.received()
        assert len(got) == 1 and got[0].rcpt_tos == ("b@inbox-a.test",)
        assert b"Subject: smoke" in got[0].content()
        assert got[0].time > 0
    finally:
        pids = sb.pids()
        sb.down()

    assert pids and not any(proc.alive(p) for p in pids.values())
    assert _mounts_mentioning(sb.state) == []
    assert not any(sb.status().hosts.values())
