"""records.dkim (TXT splitting, genkey .txt, ssh argv) and records.dmarc (first record, stages)."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailmend.checks.dkim_key import DkimPublicKey, parse_record
from mailmend.checks.txt import split_txt
from mailmend.fleet import HostSpec
from mailmend.records.dkim import DkimKeyError, read_genkey_txt
from mailmend.records.dmarc import authorisations, propose_dmarc
from mailmend.ssh import ssh_argv


def rsa_b64(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize("bits", [2048, 4096])
def test_split_dkim_value_strings_at_most_255_bytes(bits: int) -> None:
    key = read_genkey_txt(rsa_b64(bits), "example.com", "mx1")
    value = key.value()
    strings = split_txt(value)
    assert len(strings) == -(-len(value) // 255)
    assert all(len(s.encode()) <= 255 for s in strings)
    assert "".join(strings) == value
    assert parse_record("".join(strings), "example.com", "mx1").key_bytes() == key.key_bytes()


def test_split_never_cuts_a_utf8_character() -> None:
    value = "é" * 300
    strings = split_txt(value)
    assert all(len(s.encode()) <= 255 for s in strings) and "".join(strings) == value
    assert split_txt("") == ("",)


GENKEY = """mx1._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "
\t  "p=%s"
\t  "%s" )  ; ----- DKIM key mx1 for example.com
"""


def test_read_genkey_txt_joins_its_strings() -> None:
    b64 = rsa_b64(2048)
    key = read_genkey_txt(GENKEY % (b64[:200], b64[200:]), "example.com", "mx1")
    assert key.public_key_b64 == b64 and key.name == "mx1._domainkey.example.com"
    assert published(f"v=DKIM1; h=sha256; k=rsa; p={b64}").same_key(key)
    assert not published(f"v=DKIM1; k=rsa; p={rsa_b64(2048)}").same_key(key)
    with pytest.raises(DkimKeyError, match=r"DKIM key mx1 for example\.com: .*not valid base64"):
        read_genkey_txt("garbage", "example.com", "mx1")
    with pytest.raises(DkimKeyError):
        read_genkey_txt("not base64!", "example.com", "mx1")


def published(value: str) -> DkimPublicKey:
    return parse_record(value, "example.com", "mx1")


def test_ssh_argv_is_batch_mode_with_fleet_known_hosts() -> None:
    host = HostSpec(
        name="mx1", ssh_host="192.0.2.1", ssh_port=2222, ssh_key="/k", ssh_known_hosts_file="/kh"
    )
    argv = ssh_argv(host, "cat -- /etc/opendkim/keys/example.com/mx1.txt")
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert "UserKnownHostsFile=/kh" in argv and argv[argv.index("-p") + 1] == "2222"
    assert argv[-2:] == ["192.0.2.1", "cat -- /etc/opendkim/keys/example.com/mx1.txt"]


# --- DMARC --------------------------------------------------------------------------------


def test_no_dmarc_gives_p_none_with_fleet_rua() -> None:
    p = propose_dmarc("example.com", ("unrelated",), "dmarc@example.com")
    assert p.value == "v=DMARC1; p=none; rua=mailto:dmarc@example.com"
    assert p.published == () and p.problem is None


def test_stage_moves_forward_keeping_tags() -> None:
    rec = "v=DMARC1; p=none; rua=mailto:d@example.com; adkim=s; fo=1"
    p = propose_dmarc("example.com", (rec,), "x@example.com", "quarantine")
    assert p.value == "v=DMARC1; p=quarantine; rua=mailto:d@example.com; adkim=s; fo=1"
    r = propose_dmarc("example.com", (p.value or "",), None, "reject")
    assert r.value == "v=DMARC1; p=reject; rua=mailto:d@example.com; adkim=s; fo=1"


def test_stage_never_goes_back_and_unchanged_record_is_kept_verbatim() -> None:
    """A stage chosen from the reports (back=False) never moves back."""
    rec = "v=DMARC1;p=reject;rua=mailto:d@example.com"
    p = propose_dmarc("example.com", (rec,), None, "quarantine")
    assert p.value == rec
    assert any("not moved back" in n for n in p.notes)
    assert propose_dmarc("example.com", (rec,), None).value == rec


@pytest.mark.parametrize(("stage", "policy"), [("quarantine", "quarantine"), ("none", "none")])
def test_an_explicit_stage_moves_back_keeping_tags(stage: str, policy: str) -> None:
    rec = "v=DMARC1; p=reject; rua=mailto:d@example.com; adkim=s"
    p = propose_dmarc("example.com", (rec,), None, stage, back=True)
    assert p.value == f"v=DMARC1; p={policy}; rua=mailto:d@example.com; adkim=s"
    assert f"p=reject -> p={policy}: moved BACK, as asked (--dmarc-stage {stage})" in p.notes
    same = propose_dmarc("example.com", (rec,), None, "reject", back=True)
    assert same.value == rec  # the stage it is at: nothing to do


def test_an_explicit_stage_goes_back_through_the_plan_and_auto_never_does() -> None:
    from mailmend.records.dmarc import StageChoice
    from mailmend.records.plan import _dmarc, _Reader
    from tests.unit.test_ptr import FakeResolver

    rec = "v=DMARC1; p=reject; rua=mailto:d@example.com"
    resolver = FakeResolver({("_dmarc.example.com", "TXT"): (rec,)})
    back = asyncio.run(_dmarc(_Reader(resolver), "example.com", None, "none", False))
    assert back.value == "v=DMARC1; p=none; rua=mailto:d@example.com"
    auto = StageChoice("quarantine", headline="from the reports")
    kept = asyncio.run(_dmarc(_Reader(resolver), "example.com", None, auto, False))
    assert kept.value == rec


def test_missing_rua_is_added() -> None:
    p = propose_dmarc("example.com", ("v=DMARC1; p=none",), "d@example.com")
    assert p.value == "v=DMARC1; p=none; rua=mailto:d@example.com"


def test_malformed_and_duplicate_dmarc_block_unless_replaced() -> None:
    bad = propose_dmarc("example.com", ("v=DMARC1; p=maybe",), "d@example.com")
    assert bad.value is None and bad.problem is not None
    assert "p=maybe is not none, quarantine or reject" in bad.problem
    two = propose_dmarc("example.com", ("v=DMARC1; p=none", "v=DMARC1; p=reject"), None)
    assert two.value is None and "2 DMARC records" in (two.problem or "")
    fixed = propose_dmarc("example.com", ("v=DMARC1; p=maybe",), "d@example.com", None, True)
    assert fixed.value == "v=DMARC1; p=none; rua=mailto:d@example.com"


def test_external_rua_needs_an_authorisation_record() -> None:
    value = "v=DMARC1; p=none; rua=mailto:agg@reports.example.net,mailto:d@example.com"
    (auth,) = authorisations("example.com", value)
    assert auth.name == "example.com._report._dmarc.reports.example.net"
    assert auth.value == "v=DMARC1"
    assert authorisations("example.com", "v=DMARC1; p=none; rua=mailto:d@sub.example.com") == ()
