"""PTR check: right, missing, generic, elsewhere, DNS errors; IPv4 and IPv6."""

from __future__ import annotations

import asyncio

import pytest

from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.names import reverse_name
from mailmend.checks.ptr import check_ptr, ip_spellings, looks_generic
from mailmend.checks.result import CheckResult, Status

IP = "203.0.113.7"
IP6 = "2001:db8::25"
FQDN = "mx1.example.com"


class FakeResolver(Resolver):
    """Answers from a dict of (name, type) -> records or rcode; anything else is NXDOMAIN."""

    def __init__(self, zone: dict[tuple[str, str], tuple[str, ...] | Rcode]) -> None:
        self.zone = {(n.rstrip(".").lower(), t): v for (n, t), v in zone.items()}
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.rstrip(".").lower(), rdtype)
        self.asked.append(key)
        value = self.zone.get(key)
        if value is None:
            return DnsAnswer(name, rdtype, Rcode.NXDOMAIN)
        if isinstance(value, Rcode):
            return DnsAnswer(name, rdtype, value)
        return DnsAnswer(name, rdtype, Rcode.NOERROR, value)


def run(ip: str, zone: dict[tuple[str, str], tuple[str, ...] | Rcode]) -> CheckResult:
    return asyncio.run(check_ptr(FakeResolver(zone), ip, FQDN))


def test_reverse_name_uses_nibbles_for_ipv6() -> None:
    assert reverse_name(IP) == "7.113.0.203.in-addr.arpa."
    assert reverse_name(IP6).startswith("5.2.0.0.0.0.0.0")
    assert reverse_name(IP6).endswith(".8.b.d.0.1.0.0.2.ip6.arpa.")


@pytest.mark.parametrize("ip", [IP, IP6])
def test_ptr_naming_the_fqdn_passes(ip: str) -> None:
    result = run(ip, {(reverse_name(ip), "PTR"): ("MX1.example.com.",)})
    assert result.status is Status.PASS
    assert result.check == "ptr" and result.subject == ip


@pytest.mark.parametrize("ip", [IP, IP6])
def test_missing_ptr_fails_and_says_what_to_ask(ip: str) -> None:
    result = run(ip, {})
    assert result.status is Status.FAIL
    assert result.fix == f"ask your VPS provider to set the PTR of {ip} to {FQDN}"


@pytest.mark.parametrize(
    "name",
    [
        "203-0-113-7.static.provider.example.",
        "ip-203.0.113.7.provider.example.",
        "7.113.0.203.rev.provider.example.",
        "vps203-000-113-007.provider.example.",
        "host-cb007107.provider.example.",
    ],
)
def test_generic_ptr_fails_as_provider_default(name: str) -> None:
    result = run(IP, {(reverse_name(IP), "PTR"): (name,)})
    assert result.status is Status.FAIL
    assert "generic" in result.summary
    assert result.fix is not None and FQDN in result.fix


def test_generic_ipv6_ptr_is_recognised() -> None:
    assert looks_generic("2001-db8--25.v6.provider.example.", IP6)
    assert looks_generic("20010db8000000000000000000000025.provider.example.", IP6)
    assert not looks_generic("mail.example.org.", IP6)


def test_ptr_naming_another_host_fails_without_calling_it_generic() -> None:
    result = run(IP, {(reverse_name(IP), "PTR"): ("mail.other.example.",)})
    assert result.status is Status.FAIL
    assert "generic" not in result.summary
    assert "mail.other.example" in result.summary
    assert result.fix is not None and FQDN in result.fix


def test_several_ptr_records_warn() -> None:
    result = run(IP, {(reverse_name(IP), "PTR"): (FQDN + ".", "other.example.")})
    assert result.status is Status.WARN


@pytest.mark.parametrize("rcode", [Rcode.SERVFAIL, Rcode.TIMEOUT, Rcode.REFUSED])
def test_dns_errors_are_unknown(rcode: Rcode) -> None:
    result = run(IP, {(reverse_name(IP), "PTR"): rcode})
    assert result.status is Status.UNKNOWN
    assert rcode.value in result.summary


def test_ip_spellings_cover_forward_reverse_and_padding() -> None:
    forms = ip_spellings(IP)
    for form in ("203-0-113-7", "203.0.113.7", "7.113.0.203", "203_0_113_7", "203000113007"):
        assert form in forms
