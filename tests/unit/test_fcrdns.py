"""FCrDNS check: the FQDN resolves to the IP and the PTR name resolves back."""

from __future__ import annotations

import asyncio

import pytest

from mailmend.checks.dns import Rcode
from mailmend.checks.fcrdns import check_fcrdns
from mailmend.checks.names import reverse_name
from mailmend.checks.result import CheckResult, Status
from tests.unit.test_ptr import FQDN, IP, IP6, FakeResolver

Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]


def run(ip: str, zone: Zone) -> CheckResult:
    return asyncio.run(check_fcrdns(FakeResolver(zone), ip, FQDN))


def good(ip: str, rdtype: str) -> Zone:
    return {(reverse_name(ip), "PTR"): (FQDN + ".",), (FQDN, rdtype): (ip,)}


def test_confirmed_ipv4_passes() -> None:
    assert run(IP, good(IP, "A")).status is Status.PASS


def test_confirmed_ipv6_passes_whatever_the_spelling() -> None:
    zone = good(IP6, "AAAA")
    zone[(FQDN, "AAAA")] = ("2001:0db8:0000:0000:0000:0000:0000:0025",)
    assert run(IP6, zone).status is Status.PASS


def test_fqdn_not_pointing_at_ip_fails_with_record_to_add() -> None:
    zone = good(IP, "A")
    zone[(FQDN, "A")] = ("198.51.100.1",)
    result = run(IP, zone)
    assert result.status is Status.FAIL
    assert result.fix == f"add the record: {FQDN}. A {IP}"


def test_missing_aaaa_fails_with_aaaa_record() -> None:
    zone = good(IP6, "AAAA")
    del zone[(FQDN, "AAAA")]
    result = run(IP6, zone)
    assert result.status is Status.FAIL
    assert result.fix == f"add the record: {FQDN}. AAAA {IP6}"


def test_ptr_name_not_resolving_back_fails() -> None:
    zone = good(IP, "A")
    zone[(reverse_name(IP), "PTR")] = ("203-0-113-7.provider.example.",)
    result = run(IP, zone)
    assert result.status is Status.FAIL
    assert result.fix is not None and "PTR" in result.fix


def test_generic_ptr_that_resolves_back_is_still_confirmed() -> None:
    generic = "203-0-113-7.provider.example."
    zone = good(IP, "A")
    zone[(reverse_name(IP), "PTR")] = (generic,)
    zone[(generic, "A")] = (IP,)
    assert run(IP, zone).status is Status.PASS


def test_no_ptr_fails() -> None:
    zone = good(IP, "A")
    del zone[(reverse_name(IP), "PTR")]
    assert run(IP, zone).status is Status.FAIL


@pytest.mark.parametrize("rcode", [Rcode.SERVFAIL, Rcode.TIMEOUT])
def test_dns_errors_are_unknown(rcode: Rcode) -> None:
    zone = good(IP, "A")
    zone[(FQDN, "A")] = rcode
    assert run(IP, zone).status is Status.UNKNOWN
    zone = good(IP, "A")
    zone[(reverse_name(IP), "PTR")] = rcode
    assert run(IP, zone).status is Status.UNKNOWN
