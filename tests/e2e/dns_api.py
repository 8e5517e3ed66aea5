"""What the end-to-end tests of ``records --apply --provider`` share: 2048-bit DKIM keys per
host, the TXT records PowerDNS serves (the DNS behind both provider APIs of the sandbox), and
what a first apply must have published."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query

from mailmend.fleet import load_fleet
from mailmend.records.dkim import read_genkey_txt
from sandbox.control import Sandbox
from tests.conftest import genkey_txt


def dkim_keys_2048(sb: Sandbox, tmp: Path) -> dict[str, Path]:
    """A 2048-bit DKIM key per host, as opendkim-genkey .txt files: DOMAIN:SELECTOR -> path."""
    return {f"{h.domain}:{h.selector}": genkey_txt(tmp, h.selector, 2048) for h in sb.hosts()}


def txt_strings(sb: Sandbox, name: str) -> list[list[bytes]]:
    reply = dns.query.udp(dns.message.make_query(name, "TXT"), sb.net.pdns, timeout=3)
    return sorted(list(rd.strings) for rr in reply.answer for rd in rr)


def txt(sb: Sandbox, name: str) -> list[str]:
    return [b"".join(s).decode() for s in txt_strings(sb, name)]


def fleet_with_dns_table(sb: Sandbox, path: Path, *table: str) -> Path:
    """The sandbox fleet file with a ``[dns]`` table (``table``: its lines after the header)."""
    path.write_text(sb.fleet_text() + "\n" + "\n".join(["[dns]", *table]) + "\n")
    return path


def assert_first_apply_published(sb: Sandbox, keys: dict[str, Path], verification: str) -> None:
    """SPF with each host's IP, the other TXT at bravo's apex kept, each 2048-bit DKIM key as
    two strings, and the first p=none DMARC record, all served in DNS."""
    hosts = sb.hosts()
    for h in hosts:
        (spf,) = [r for r in txt(sb, h.domain) if r.startswith("v=spf1")]
        assert f"ip4:{h.public_ipv4}" in spf.split()
    assert verification in txt(sb, hosts[1].domain)  # the other TXT record at the apex stays
    for spec, path in keys.items():
        domain, selector = spec.split(":")
        key = read_genkey_txt(path.read_text(), domain, selector)
        (strings,) = txt_strings(sb, key.name)
        assert len(strings) == 2 and all(len(s) <= 255 for s in strings)  # 2048-bit: two
        assert b"".join(strings).decode() == key.value()
    report = load_fleet(sb.fleet_file).settings.dmarc_report_address
    assert txt(sb, f"_dmarc.{hosts[0].domain}") == [f"v=DMARC1; p=none; rua=mailto:{report}"]
