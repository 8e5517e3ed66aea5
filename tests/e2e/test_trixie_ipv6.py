"""A Debian 13 (trixie) host in the same fleet as a Debian 12 host; IPv6 without a PTR.

``mx1`` runs bookworm and has a public IPv6 address whose PTR is missing at first; ``mx2``
runs trixie (Postfix 3.10). One deploy: both converge, sign and pace; mx1's plan says it
sends over IPv4 and why. Then the IPv6 PTR is served and a rerun sends over both again;
a last rerun changes nothing.
"""

from __future__ import annotations

import itertools
import smtplib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import dns.name
import dns.reversename
import pytest

from mailmend.checks.txt import txt_strings
from sandbox.control import Sandbox
from sandbox.dns import REVERSE_ZONE6
from sandbox.scenario import default_scenario, make_host
from tests.conftest import require_root, sandbox_net
from tests.e2e.test_mail_deploy import (
    changed_ops,
    deploy,
    dkim_txt,
    message,
    sandbox_dns_txt,
    wait_for,
)

pytestmark = pytest.mark.end_to_end

RATE = 30
INTERVAL = 60 / RATE
IPV6 = "2001:db8::11"


def records(sb: Sandbox, ptr: bool, keys: bool) -> dict[str, tuple[tuple[str, str, str], ...]]:
    mx1, mx2 = sb.hosts()
    extra: dict[str, list[tuple[str, str, str]]] = {mx1.domain: [("mx1", "AAAA", IPV6)]}
    if ptr:
        owner = dns.reversename.from_address(IPV6).relativize(dns.name.from_text(REVERSE_ZONE6))
        extra[REVERSE_ZONE6] = [(owner.to_text(), "PTR", mx1.fqdn + ".")]
    if keys:
        for h in (mx1, mx2):
            extra.setdefault(h.domain, []).append(
                (f"{h.selector}._domainkey", "TXT", txt_strings(dkim_txt(sb, h)))
            )
    return {zone: tuple(rows) for zone, rows in extra.items()}


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_root()
    net = sandbox_net(offset=61)
    hosts = (make_host(1, net=net), make_host(2, net=net, suite="trixie"))
    box = Sandbox(tmp_path_factory.mktemp("trixie"), net)
    box.up(2, replace(default_scenario(2, net), hosts=hosts))
    try:
        yield box
    finally:
        box.down()


@pytest.fixture(scope="module")
def fleet(sb: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sb.dns.serve(replace(sb.scenario(), extra_records=records(sb, ptr=False, keys=False)))
    path = tmp_path_factory.mktemp("fleet") / "fleet.toml"
    text = sb.fleet_text(
        defaults={"rate_limit_per_minute": RATE}, hosts={"mx1": {"public_ipv6": IPV6}}
    )
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def first(sb: Sandbox, fleet: Path) -> dict[str, Any]:
    result = deploy(sb, fleet)
    assert result["returncode"] == 0, result["stderr"][-4000:]
    sb.dns.serve(replace(sb.scenario(), extra_records=records(sb, ptr=False, keys=True)))
    return result


def test_trixie_host_runs_debian_13_and_converges(sb: Sandbox, first: dict[str, Any]) -> None:
    mx1, mx2 = sb.hosts()
    assert sb.ssh(mx2, "cat /etc/debian_version").startswith("13")
    assert sb.ssh(mx1, "cat /etc/debian_version").startswith("12")
    assert sb.ssh(mx2, "postconf -h mail_version").startswith("3.10")
    for h in (mx1, mx2):
        assert sb.ssh(h, "postconf -h smtp_transport_rate_delay").strip() == "2s", h.name
        ps = sb.ssh(h, "ps -eo comm")
        assert "opendkim" in ps and "master" in ps, (h.name, ps)


def test_trixie_host_signs_and_paces(sb: Sandbox, first: dict[str, Any]) -> None:
    mx2 = sb.hosts()[1]
    start = len(sb.receiver.received())
    rcpts = [f"t{i}@inbox-{'abc'[i % 3]}.test" for i in range(3)]
    with smtplib.SMTP(mx2.ssh_addr, 25, timeout=30) as smtp:
        for i, rcpt in enumerate(rcpts):
            smtp.send_message(message(f"app@{mx2.domain}", rcpt, f"trixie {i}"))
    got = wait_for(sb, start + len(rcpts), timeout=60)[start:]
    gaps = [b - a for a, b in itertools.pairwise(sorted(r.time for r in got))]
    assert min(gaps) >= 0.9 * INTERVAL, gaps
    for rec in got:
        assert dkim.verify(rec.content(), dnsfunc=sandbox_dns_txt(sb)), rec.path


def test_ipv6_without_ptr_sends_over_ipv4_and_says_why(sb: Sandbox, first: dict[str, Any]) -> None:
    mx1, mx2 = sb.hosts()
    assert f"IPv4 only: {IPV6} has no PTR" in first["stderr"]
    assert sb.ssh(mx1, "postconf -h smtp_address_preference").strip() == "ipv4"
    assert sb.ssh(mx2, "postconf -h smtp_address_preference").strip() == "any"  # no IPv6


def test_after_the_ptr_is_served_a_rerun_sends_over_both(
    sb: Sandbox, fleet: Path, first: dict[str, Any]
) -> None:
    mx1 = sb.hosts()[0]
    sb.dns.serve(replace(sb.scenario(), extra_records=records(sb, ptr=True, keys=True)))
    again = deploy(sb, fleet)
    assert again["returncode"] == 0, again["stderr"][-4000:]
    assert "IPv6 PTR confirmed: sending over IPv4 and IPv6" in again["stderr"]
    assert sb.ssh(mx1, "postconf -h smtp_address_preference").strip() == "any"
    last = deploy(sb, fleet)
    assert changed_ops(last) == []
