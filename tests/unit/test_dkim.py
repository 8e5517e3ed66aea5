"""DKIM key record: presence, parsing, key size, revocation, host key match."""

from __future__ import annotations

import asyncio
import base64
import functools

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailmend.checks.dkim import check_dkim, der_rsa_bits, dkim_record, rsa_key_bits
from mailmend.checks.dkim_key import DkimRecordError, parse_record
from mailmend.checks.dns import Rcode
from mailmend.checks.result import CheckResult, Status
from tests.unit.test_ptr import FakeResolver

D = "example.com"
SEL = "mail"
NAME = "mail._domainkey.example.com"


@functools.cache
def rsa_der(bits: int) -> bytes:
    if bits >= 1024:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    else:  # cryptography refuses to generate weak keys; a public number is enough here
        key = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 1).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def run(records: tuple[str, ...] | Rcode, expected: str | None = None) -> CheckResult:
    zone: dict[tuple[str, str], tuple[str, ...] | Rcode] = {(NAME, "TXT"): records}
    return asyncio.run(check_dkim(FakeResolver(zone), D, SEL, expected))


def test_2048_bit_key_passes() -> None:
    result = run((f"v=DKIM1; k=rsa; p={b64(rsa_der(2048))}",))
    assert result.status is Status.PASS
    assert "2048-bit" in result.summary


def test_1024_bit_key_warns() -> None:
    result = run((f"v=DKIM1; p={b64(rsa_der(1024))}",))
    assert result.status is Status.WARN
    assert result.fix is not None and "2048" in result.fix


def test_512_bit_key_fails() -> None:
    result = run((f"p={b64(rsa_der(512))}",))
    assert result.status is Status.FAIL
    assert "512-bit" in result.summary


def test_key_split_over_strings_with_whitespace_passes() -> None:
    key = b64(rsa_der(2048))
    record = f"v=DKIM1; k=rsa; p={key[:200]} {key[200:]}"
    assert run((record,)).status is Status.PASS


def test_matching_host_key_passes_and_mismatch_fails() -> None:
    published = b64(rsa_der(2048))
    assert run((f"v=DKIM1; p={published}",), expected=published).status is Status.PASS
    other = b64(
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    result = run((f"v=DKIM1; p={published}",), expected=other)
    assert result.status is Status.FAIL
    assert result.summary == "published key does not match the key on the host"
    assert result.fix is not None and other[:100] in result.fix


def test_revoked_key_fails() -> None:
    result = run(("v=DKIM1; k=rsa; p=",))
    assert result.status is Status.FAIL
    assert "revoked" in result.summary


def test_missing_record_fails_with_record_to_publish() -> None:
    key = b64(rsa_der(2048))
    result = run((), expected=key)
    assert result.status is Status.FAIL
    assert result.fix is not None and result.fix.startswith(f"publish: {NAME}. TXT ")


def test_dns_error_is_unknown() -> None:
    assert run(Rcode.SERVFAIL).status is Status.UNKNOWN


@pytest.mark.parametrize(
    "record",
    ["v=DKIM1; p=!!notbase64", "v=DKIM2; p=AAAA", "k=dsa; p=AAAA", "v=DKIM1; p=AAAA; p=BBBB"],
)
def test_invalid_records_fail(record: str) -> None:
    assert run((record,)).status is Status.FAIL
    with pytest.raises(DkimRecordError):
        key = parse_record(record, D, SEL)
        rsa_key_bits(key.key_bytes())


def test_testing_flag_warns() -> None:
    result = run((f"v=DKIM1; t=y; p={b64(rsa_der(2048))}",))
    assert result.status is Status.WARN


def test_ed25519_key_passes() -> None:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert run((f"v=DKIM1; k=ed25519; p={b64(raw)}",)).status is Status.PASS


@pytest.mark.parametrize("bits", [512, 1024, 2048])
def test_minimal_der_parser_agrees_with_cryptography(bits: int) -> None:
    assert der_rsa_bits(rsa_der(bits)) == rsa_key_bits(rsa_der(bits)) == bits


def test_record_strings_are_at_most_255_bytes() -> None:
    line = dkim_record(D, SEL, b64(rsa_der(2048)))
    strings = line.split(" TXT ", 1)[1].split('" "')
    assert len(strings) == 2
    assert all(len(s.strip('"')) <= 255 for s in strings)
