"""Forward-confirmed reverse DNS: the FQDN resolves to the IP, and so does the PTR name.

Receivers check IP -> PTR name -> A/AAAA -> IP. The host's own FQDN must also point at the IP,
or its HELO name does not match its address.
"""

from __future__ import annotations

import asyncio
import ipaddress

from mailmend.checks.dns import DnsAnswer, Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.result import CheckResult, Status, dns_unknown

CHECK = "fcrdns"
MAX_PTR_NAMES = 10  # RFC 7208 5.5 caps the names it follows; so do we


def address_type(ip: str) -> str:
    """``A`` for an IPv4 address, ``AAAA`` for IPv6."""
    return "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"


def contains_ip(answer: DnsAnswer, ip: str) -> bool:
    """The answer's address records include ``ip`` (IPv6 spellings compared as addresses)."""
    want = ipaddress.ip_address(ip)
    for record in answer.records:
        try:
            if ipaddress.ip_address(record) == want:
                return True
        except ValueError:
            continue
    return False


def address_record(fqdn: str, ip: str) -> str:
    """The zone-file line that points ``fqdn`` at ``ip``."""
    return f"{normalize_name(fqdn)}. {address_type(ip)} {ipaddress.ip_address(ip)}"


async def check_fcrdns(resolver: Resolver, ip: str, fqdn: str) -> CheckResult:
    """Check that ``fqdn`` resolves to ``ip`` and that a PTR name of ``ip`` resolves back."""
    rdtype = address_type(ip)
    want = normalize_name(fqdn)
    forward, ptr = await asyncio.gather(
        resolver.query(want + ".", rdtype), resolver.query(reverse_name(ip), "PTR")
    )
    if not forward.ok:
        return dns_unknown(CHECK, ip, forward)
    if not contains_ip(forward, ip):
        now = ", ".join(forward.records) if forward.records else f"no {rdtype} record"
        return CheckResult(
            CHECK,
            Status.FAIL,
            ip,
            f"{want} does not resolve to {ip} ({now})",
            details=("the host's name and address must agree for receivers to trust HELO",),
            fix=f"add the record: {address_record(want, ip)}",
        )
    if not ptr.ok:
        return dns_unknown(CHECK, ip, ptr)
    names = [normalize_name(r) for r in ptr.records][:MAX_PTR_NAMES]
    if not names:
        return CheckResult(
            CHECK,
            Status.FAIL,
            ip,
            f"{ip} has no PTR, so its reverse DNS cannot be forward-confirmed",
            fix=f"ask your VPS provider to set the PTR of {ip} to {want}",
        )
    backs = await asyncio.gather(*(resolver.query(n + ".", rdtype) for n in names))
    if any(contains_ip(back, ip) for back in backs):
        return CheckResult(CHECK, Status.PASS, ip, f"{ip} <-> {', '.join(names)} confirmed")
    failed = [back for back in backs if not back.ok]
    if failed:
        return dns_unknown(CHECK, ip, failed[0])
    return CheckResult(
        CHECK,
        Status.FAIL,
        ip,
        f"PTR name {', '.join(names)} of {ip} does not resolve back to {ip}",
        details=("receivers drop reverse names that are not forward-confirmed",),
        fix=f"ask your VPS provider to set the PTR of {ip} to {want}"
        if want not in names
        else f"add the record: {address_record(want, ip)}",
    )
