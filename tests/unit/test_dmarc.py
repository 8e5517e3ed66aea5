"""DMARC record: presence, policy stage, validity, external report authorisation."""

from __future__ import annotations

import asyncio

import pytest

from mailmend.checks.dmarc import check_dmarc, needs_authorisation
from mailmend.checks.dns import Rcode
from mailmend.checks.result import CheckResult, Status
from tests.unit.test_ptr import FakeResolver

D = "example.com"
NAME = "_dmarc.example.com"
AUTH = "example.com._report._dmarc.reports.example.net"
Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]


def run(records: tuple[str, ...] | Rcode, more: Zone | None = None) -> CheckResult:
    zone: Zone = {(NAME, "TXT"): records, **(more or {})}
    return asyncio.run(check_dmarc(FakeResolver(zone), D, "dmarc@reports.example.net"))


def test_reject_with_local_rua_passes() -> None:
    result = run(("v=DMARC1; p=reject; rua=mailto:dmarc@example.com",))
    assert result.status is Status.PASS


def test_quarantine_passes_and_names_the_next_stage() -> None:
    result = run(("v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com",))
    assert result.status is Status.PASS
    assert any("p=reject" in d for d in result.details)


def test_no_record_fails_with_suggestion() -> None:
    result = run(("v=spf1 -all",))
    assert result.status is Status.FAIL
    assert result.fix == (
        f'publish: {NAME}. TXT "v=DMARC1; p=none; rua=mailto:dmarc@reports.example.net"'
    )


def test_p_none_warns_naming_the_next_stage() -> None:
    result = run(("v=DMARC1; p=none; rua=mailto:dmarc@example.com",))
    assert result.status is Status.WARN
    assert "p=none" in result.summary
    assert result.fix is not None and "p=quarantine" in result.fix and "p=reject" in result.fix


def test_two_records_fail() -> None:
    result = run(("v=DMARC1; p=reject", "v=DMARC1; p=none"))
    assert result.status is Status.FAIL
    assert "2 DMARC records" in result.summary


@pytest.mark.parametrize(
    "record",
    [
        "v=DMARC1; p=block",
        "v=DMARC1; rua=mailto:a@example.com",
        "v=DMARC1; p=reject; sp=maybe",
        "v=DMARC1; p=reject; adkim=x",
        "v=DMARC1; p=reject; rua=https://example.com/r",
    ],
)
def test_invalid_records_fail(record: str) -> None:
    result = run((record,))
    assert result.status is Status.FAIL
    assert "invalid" in result.summary


def test_external_rua_without_authorisation_fails_with_record() -> None:
    result = run(("v=DMARC1; p=reject; rua=mailto:d@reports.example.net",))
    assert result.status is Status.FAIL
    assert result.fix == f'ask reports.example.net to publish: {AUTH}. TXT "v=DMARC1"'


def test_external_rua_with_authorisation_passes() -> None:
    result = run(
        ("v=DMARC1; p=reject; rua=mailto:d@reports.example.net!10m",),
        {(AUTH, "TXT"): ("v=DMARC1",)},
    )
    assert result.status is Status.PASS


def test_external_ruf_without_authorisation_warns() -> None:
    result = run(
        ("v=DMARC1; p=reject; rua=mailto:d@example.com; ruf=mailto:f@reports.example.net",)
    )
    assert result.status is Status.WARN
    assert result.fix is not None and AUTH in result.fix


def test_authorisation_lookup_error_is_unknown() -> None:
    result = run(
        ("v=DMARC1; p=reject; rua=mailto:d@reports.example.net",), {(AUTH, "TXT"): Rcode.TIMEOUT}
    )
    assert result.status is Status.UNKNOWN


def test_missing_rua_warns() -> None:
    assert run(("v=DMARC1; p=reject",)).status is Status.WARN


def test_pct_is_noted_as_ignored() -> None:
    result = run(("v=DMARC1; p=reject; pct=50; rua=mailto:d@example.com",))
    assert result.status is Status.PASS
    assert any("RFC 9989" in d for d in result.details)


def test_dns_error_is_unknown() -> None:
    assert run(Rcode.SERVFAIL).status is Status.UNKNOWN


def test_same_organisation_needs_no_authorisation() -> None:
    assert not needs_authorisation("example.com", "d@mail.example.com")
    assert not needs_authorisation("shop.example.com", "d@example.com")
    assert needs_authorisation("example.com", "d@example.net")
