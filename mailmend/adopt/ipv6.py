"""Send over IPv4 while a host's IPv6 address has no working PTR.

Gmail (and others) refuse mail from an IPv6 address without a PTR that resolves back, and
many VPSes get an IPv6 address with no PTR. When the host has a public IPv6 address whose
FCrDNS check (:func:`mailmend.checks.fcrdns.check_fcrdns`, asked from the admin's machine) does not
pass, or the fleet says ``send_ipv6 = false``, Postfix's SMTP client prefers IPv4
(``smtp_address_preference = ipv4``: receiving is untouched). Once the PTR is right, the next
deploy drops the setting and mail goes over both again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The parameter and value that keep outgoing mail on IPv4.
SETTING = ("smtp_address_preference", "ipv4")
_ONE_LOOP = threading.Lock()  # pyinfra's hosts are greenlets of one thread


@dataclass(frozen=True)
class Decision:
    ipv4_only: bool
    reason: str  # why, for the plan ("" when both are used)


def decide(
    ipv6: str | None, fleet_says: bool | None, fcrdns_status: str | None, why: str
) -> Decision:
    """IPv4 only or both, and why (``fcrdns_status``: the check's status, None if not asked).

    >>> decide("2001:db8::1", None, "fail", "2001:db8::1 has no PTR").reason
    'IPv4 only: 2001:db8::1 has no PTR (receivers refuse IPv6 mail without a PTR)'
    >>> decide("2001:db8::1", None, "pass", "ok")
    Decision(ipv4_only=False, reason='')
    """
    if not ipv6:
        return Decision(False, "")
    if fleet_says is False:
        return Decision(True, "IPv4 only: send_ipv6 = false in the fleet file")
    if fleet_says is True or fcrdns_status == "pass":
        return Decision(False, "")
    if fcrdns_status is None or fcrdns_status == "unknown":
        return Decision(True, f"IPv4 only: the IPv6 PTR could not be checked ({why})")
    return Decision(True, f"IPv4 only: {why} (receivers refuse IPv6 mail without a PTR)")


def check_ipv6_ptr(
    ipv6: str, fqdn: str, nameservers: Sequence[str], timeout: float = 1.5
) -> tuple[str, str]:
    """(status, summary) of the FCrDNS check of ``ipv6`` against ``fqdn``, asked from here."""
    from mailmend.checks.engine import Engine, EngineConfig
    from mailmend.checks.fcrdns import check_fcrdns
    from mailmend.checks.nameservers import parse_nameserver, system_nameservers

    servers = tuple(parse_nameserver(s) for s in nameservers) or system_nameservers()
    config = EngineConfig(nameservers=servers, timeout=timeout, deadline=4 * timeout + 2)

    async def run() -> Any:
        async with Engine(config) as engine:
            return await check_fcrdns(engine, ipv6, fqdn)

    with _ONE_LOOP:
        result = asyncio.run(run())
    return str(result.status), str(result.summary)


def ipv6_decision(data: Mapping[str, Any], fqdn: str) -> Decision:
    """The decision for one host from its data (public_ipv6, send_ipv6, nameservers)."""
    ipv6 = data.get("public_ipv6")
    fleet_says = data.get("send_ipv6")
    if not ipv6 or fleet_says is not None:
        return decide(ipv6, fleet_says, None, "")
    servers = data.get("mailmend_nameservers") or []
    status, summary = check_ipv6_ptr(
        ipv6, fqdn, servers, float(data.get("mailmend_check_timeout") or 1.5)
    )
    return decide(ipv6, None, status, summary)
