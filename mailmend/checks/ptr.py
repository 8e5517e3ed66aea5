"""PTR check: the IP's reverse name exists and names the host's FQDN.

Receivers (and lists like SpamRATS NoPtr / Dyna) reject mail from an IP with no PTR or
with the VPS provider's generic default name (``203-0-113-7.provider.example``).
Only the provider can change a PTR, so every fix says what to ask them for.
"""

from __future__ import annotations

import ipaddress

from mailmend.checks.dns import DnsAnswer, Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.result import CheckResult, Status, dns_unknown

CHECK = "ptr"


def ip_spellings(ip: str) -> tuple[str, ...]:
    """The ways a provider's default PTR spells the IP's digits.

    IPv4 203.0.113.7: ``203-0-113-7``, ``203.0.113.7``, ``7.113.0.203``, ``203_0_113_7``,
    zero padded ``203-000-113-007`` / ``203000113007`` and hex ``cb007107``.
    IPv6: the 32 nibbles, and the groups joined by ``-`` (full, short and compressed).
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv4Address):
        octets = [str(o) for o in addr.packed]
        forms: list[str] = []
        for order in (octets, octets[::-1]):
            padded = [o.zfill(3) for o in order]
            for sep in ("-", ".", "_"):
                forms.extend((sep.join(order), sep.join(padded)))
            forms.append("".join(padded))
        forms.append(addr.packed.hex())
        return tuple(forms)
    exploded = addr.exploded
    groups = exploded.split(":")
    return (
        exploded.replace(":", ""),
        "-".join(groups),
        "-".join(g.lstrip("0") or "0" for g in groups),
        addr.compressed.replace(":", "-"),
    )


def looks_generic(ptr_name: str, ip: str) -> bool:
    """True when the PTR name carries the IP's digits: a provider's default name."""
    name = normalize_name(ptr_name)
    return any(form in name for form in ip_spellings(ip))


def ask_provider(ip: str, fqdn: str) -> str:
    return f"ask your VPS provider to set the PTR of {ip} to {normalize_name(fqdn)}"


async def check_ptr(resolver: Resolver, ip: str, fqdn: str) -> CheckResult:
    """Check that the PTR of ``ip`` exists and names ``fqdn``."""
    answer = await resolver.query(reverse_name(ip), "PTR")
    return evaluate_ptr(answer, ip, fqdn)


def evaluate_ptr(answer: DnsAnswer, ip: str, fqdn: str) -> CheckResult:
    """Judge a PTR answer (pure, for reuse by the FCrDNS check and tests)."""
    if not answer.ok:
        return dns_unknown(CHECK, ip, answer)
    want = normalize_name(fqdn)
    names = [normalize_name(r) for r in answer.records]
    if not names:
        return CheckResult(
            CHECK,
            Status.FAIL,
            ip,
            f"{ip} has no PTR record",
            details=("receivers reject or score mail from IPs without reverse DNS",),
            fix=ask_provider(ip, want),
        )
    if want in names:
        if len(names) > 1:
            return CheckResult(
                CHECK,
                Status.WARN,
                ip,
                f"{ip} has {len(names)} PTR records; receivers may use any one",
                details=tuple(f"PTR {n}" for n in names),
                fix=f"{ask_provider(ip, want)} only, removing the others",
            )
        return CheckResult(CHECK, Status.PASS, ip, f"PTR of {ip} is {want}")
    current = ", ".join(names)
    if any(looks_generic(n, ip) for n in names):
        summary = f"PTR of {ip} is the provider's generic name {current}, not {want}"
        why = "a generic PTR looks like a dynamic/residential IP (SpamRATS Dyna and others)"
    else:
        summary = f"PTR of {ip} is {current}, not {want}"
        why = "the PTR must name the host's FQDN, the name it uses in HELO"
    return CheckResult(
        CHECK,
        Status.FAIL,
        ip,
        summary,
        details=(why,),
        fix=ask_provider(ip, want),
    )
