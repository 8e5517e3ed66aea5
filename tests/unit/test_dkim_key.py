"""The one DKIM key model, parser and comparison, on real opendkim-genkey output
(tests/fixtures/opendkim-genkey-*.txt, captured in the sandbox: see tests/fixtures/README.md)."""

from __future__ import annotations

import base64
import doctest
from pathlib import Path

import pytest

import mailmend.checks.dkim_key
from mailmend.checks.dkim import rsa_key_bits
from mailmend.checks.dkim_key import (
    KEY_DIR,
    DkimPublicKey,
    DkimRecordError,
    key_files,
    parse_key_text,
    parse_record,
)
from mailmend.deploys import checks_report, opendkim
from mailmend.deploys.facts import parse_dkim_public_key
from mailmend.records.dkim import genkey_txt_path, read_genkey_txt

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MX1 = (FIXTURES / "opendkim-genkey-mx1.txt").read_text()
S1024 = (FIXTURES / "opendkim-genkey-s1024.txt").read_text()
OPENSSL_MX1 = (FIXTURES / "openssl-pkey-pubout-mx1.txt").read_text()


def test_real_genkey_txt_with_two_key_strings() -> None:
    key = parse_key_text(MX1, "example.com", "mx1")
    assert (key.domain, key.selector, key.key_type, key.testing) == (
        "example.com",
        "mx1",
        "rsa",
        False,
    )
    assert key.name == "mx1._domainkey.example.com"
    assert key.public_key_b64.startswith("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvfRtslpX")
    assert key.public_key_b64.endswith("L35QIDAQAB")
    assert rsa_key_bits(key.key_bytes()) == 2048
    assert key.value() == f"v=DKIM1; k=rsa; p={key.public_key_b64}"
    assert len(key.strings) == 2 and all(len(s.encode()) <= 255 for s in key.strings)


def test_real_genkey_txt_with_one_key_string() -> None:
    key = parse_key_text(S1024, "example.org", "s1024")
    assert rsa_key_bits(key.key_bytes()) == 1024
    assert key.name == "s1024._domainkey.example.org"


def test_every_reader_of_a_genkey_txt_gets_the_same_key() -> None:
    model = parse_key_text(MX1, "example.com", "mx1")
    assert read_genkey_txt(MX1, "example.com", "mx1") == model  # mailmend records --dkim-txt
    assert parse_dkim_public_key(MX1.splitlines()) == model.public_key_b64  # the deploy's fact
    # the fact's other branch (openssl on the private key, no .txt) gives the same key
    from_openssl = parse_key_text(OPENSSL_MX1, "example.com", "mx1")
    assert from_openssl.same_key(model)
    assert parse_dkim_public_key(OPENSSL_MX1.splitlines()) == model.public_key_b64


def test_zone_line_reads_back_as_the_same_key() -> None:
    model = parse_key_text(MX1, "example.com", "mx1")
    line = model.zone_line()
    assert line.startswith('mx1._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=MIIB')
    assert parse_key_text(line, "example.com", "mx1") == model


def test_escaped_quote_inside_a_string_is_unescaped_by_every_reader() -> None:
    """Regression: the deploy's fact (via the checks' parser) cut a string at ``\\"``."""
    b64 = parse_key_text(MX1, "example.com", "mx1").public_key_b64
    text = f'mx1._domainkey IN TXT ( "v=DKIM1; n=say \\"hi\\"; k=rsa; " "p={b64}" )'
    key = parse_key_text(text, "example.com", "mx1")
    assert key.public_key_b64 == b64
    assert parse_dkim_public_key([text]) == b64
    # one string holding \" before p=: the old fact parser paired the wrong quotes (None)
    one = 'x IN TXT ( "' + r"v=DKIM1; n=a\"b; k=rsa; p=" + b64 + '" )'
    assert parse_key_text(one, "example.com", "mx1").public_key_b64 == b64
    assert parse_dkim_public_key([one]) == b64


def test_the_one_comparison() -> None:
    key = parse_key_text(MX1, "example.com", "mx1")
    other = parse_key_text(S1024, "example.com", "mx1")
    assert key.same_key(parse_record(key.value(), "example.com", "mx1"))
    assert not key.same_key(other)
    assert not key.same_key(DkimPublicKey("example.com", "mx1", key.public_key_b64, "ed25519"))
    revoked = parse_record("v=DKIM1; p=", "example.com", "mx1")
    assert revoked.revoked and not revoked.same_key(key)


def test_bare_base64_of_32_bytes_is_an_ed25519_key() -> None:
    raw = bytes(range(32))
    key = parse_key_text(base64.b64encode(raw).decode(), "example.com", "ed")
    assert key.key_type == "ed25519" and key.key_bytes() == raw
    assert key.same_key(parse_record(f"v=DKIM1; k=ed25519; p={key.public_key_b64}", "x", "ed"))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("garbage", "not valid base64"),
        ("", "no public key"),
        ('x IN TXT ( "v=DKIM1; k=rsa; p=" )', "no public key"),
        ('x IN TXT ( "v=DKIM1; k=dsa; p=QUJD" )', "unknown key type"),
        ('x IN TXT ( "v=DKIM1; p=!!" )', "not valid base64"),
    ],
)
def test_unusable_key_text_is_refused(text: str, why: str) -> None:
    with pytest.raises(DkimRecordError, match=why):
        parse_key_text(text, "example.com", "mx1")
    assert parse_dkim_public_key([text]) is None


def test_one_key_directory() -> None:
    assert opendkim.DEFAULTS["opendkim_key_dir"] == KEY_DIR
    assert checks_report.DEFAULTS["opendkim_key_dir"] == KEY_DIR
    assert genkey_txt_path("example.com", "mx1") == f"{KEY_DIR}/example.com/mx1.txt"
    assert key_files("example.com", "mx1", "/srv/keys/") == (
        "/srv/keys/example.com",
        "/srv/keys/example.com/mx1.private",
        "/srv/keys/example.com/mx1.txt",
    )


def test_module_examples() -> None:
    result = doctest.testmod(mailmend.checks.dkim_key)
    assert result.attempted and not result.failed
