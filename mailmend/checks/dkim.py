"""DKIM check: the key record at ``SELECTOR._domainkey.DOMAIN`` exists, parses, is strong
enough and, when the host's key is known, is the host's key (RFC 6376 3.6.1)."""

from __future__ import annotations

from mailmend.checks.dkim_key import (
    DkimPublicKey,
    DkimRecordError,
    key_name,
    parse_key_text,
    parse_record,
)
from mailmend.checks.dns import Resolver
from mailmend.checks.result import CheckResult, Status, dns_unknown
from mailmend.checks.txt import txt_strings

CHECK = "dkim"
MIN_BITS = 1024  # RFC 8301: verifiers must not accept smaller keys
GOOD_BITS = 2048


def rsa_key_bits(der: bytes) -> int:
    """Bits of an RSA public key in DER (SubjectPublicKeyInfo, or bare PKCS#1)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:  # pragma: no cover - cryptography ships with paramiko
        return der_rsa_bits(der)
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as err:
        raise DkimRecordError(f"p= is not a public key: {err}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise DkimRecordError("k=rsa but p= holds another key type")
    return key.key_size


def _der_item(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``offset``."""
    if offset + 2 > len(data):
        raise DkimRecordError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise DkimRecordError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + length > len(data):
        raise DkimRecordError("truncated DER")
    return tag, start, start + length


def der_rsa_bits(der: bytes) -> int:
    """Minimal DER walk to the RSA modulus (no cryptography needed)."""
    tag, start, end = _der_item(der, 0)
    if tag != 0x30:
        raise DkimRecordError("not a DER SEQUENCE")
    tag, inner, inner_end = _der_item(der, start)
    if tag == 0x30:  # SubjectPublicKeyInfo: skip AlgorithmIdentifier, open the BIT STRING
        tag, bits_start, _ = _der_item(der, inner_end)
        if tag != 0x03:
            raise DkimRecordError("no BIT STRING in SubjectPublicKeyInfo")
        return der_rsa_bits(der[bits_start + 1 : end])
    if tag != 0x02:
        raise DkimRecordError("no RSA modulus")
    modulus = der[inner:inner_end].lstrip(b"\x00")
    return len(modulus) * 8 - (8 - modulus[0].bit_length()) if modulus else 0


def dkim_record(domain: str, selector: str, public_key_b64: str, key_type: str = "rsa") -> str:
    """The zone-file line that publishes a DKIM key."""
    key = DkimPublicKey(domain, selector, "".join(public_key_b64.split()), key_type)
    return f"{key.fqdn} TXT {txt_strings(key.value())}"


async def check_dkim(
    resolver: Resolver,
    domain: str,
    selector: str,
    expected_public_key_b64: str | None = None,
) -> CheckResult:
    """Check the DKIM key published for ``selector`` at ``domain``."""
    name = key_name(domain, selector)
    answer = await resolver.query(name + ".", "TXT")
    if not answer.ok:
        return dns_unknown(CHECK, name, answer)
    publish = (
        f"publish: {dkim_record(domain, selector, expected_public_key_b64)}"
        if expected_public_key_b64
        else f"publish the record opendkim-genkey wrote to {selector}.txt at {name}"
    )
    records = [r for r in answer.records if "p=" in r]
    if not records:
        return _result(Status.FAIL, name, f"no DKIM key published at {name}", fix=publish)
    if len(records) > 1:
        return _result(
            Status.FAIL,
            name,
            f"{len(records)} DKIM key records at {name}; verifiers may pick any",
            fix=f"keep one record: {publish}",
        )
    try:
        key = parse_record(records[0], domain, selector)
    except DkimRecordError as err:
        return _result(Status.FAIL, name, f"invalid DKIM record at {name}: {err}", fix=publish)
    return _judge(name, key, expected_public_key_b64, publish)


def _judge(name: str, key: DkimPublicKey, expected: str | None, publish: str) -> CheckResult:
    if key.revoked:
        return _result(
            Status.FAIL, name, f"the DKIM key at {name} is revoked (empty p=)", fix=publish
        )
    if expected is not None and not _matches(key, expected):
        return _result(
            Status.FAIL,
            name,
            "published key does not match the key on the host",
            details=("mail signed on the host fails DKIM verification",),
            fix=publish,
        )
    details = ["t=y: testing mode, verifiers treat signatures as absent"] if key.testing else []
    if key.key_type == "ed25519":
        status = Status.WARN if key.testing else Status.PASS
        return _result(status, name, f"ed25519 DKIM key at {name}", tuple(details))
    try:
        bits = rsa_key_bits(key.key_bytes())
    except DkimRecordError as err:
        return _result(Status.FAIL, name, f"invalid DKIM key at {name}: {err}", fix=publish)
    bigger = "generate a 2048-bit key (opendkim-genkey -b 2048) under a new selector"
    if bits < MIN_BITS:
        return _result(
            Status.FAIL, name, f"{bits}-bit DKIM key at {name}: too weak", tuple(details), bigger
        )
    if bits < GOOD_BITS:
        summary = f"{bits}-bit DKIM key at {name}: use 2048 bits"
        return _result(Status.WARN, name, summary, tuple(details), bigger)
    if key.testing:
        return _result(
            Status.WARN,
            name,
            f"DKIM key at {name} is in testing mode (t=y)",
            tuple(details),
            "remove t=y once signatures verify",
        )
    return _result(Status.PASS, name, f"{bits}-bit RSA DKIM key at {name}")


def _matches(published: DkimPublicKey, expected: str) -> bool:
    """The published key is the host's (``expected``: the key as the host or --dkim-key has it)."""
    try:
        host_key = parse_key_text(expected, published.domain, published.selector)
    except DkimRecordError:
        return False
    return published.same_key(host_key)


def _result(
    status: Status,
    subject: str,
    summary: str,
    details: tuple[str, ...] = (),
    fix: str | None = None,
) -> CheckResult:
    return CheckResult(CHECK, status, subject, summary, details, fix)
