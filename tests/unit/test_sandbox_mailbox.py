"""The receiving provider's pieces that run on this machine (offline)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from sandbox.mailbox import MailboxError, MailboxProvider, ssha256
from sandbox.mxproxy import proxy_header, public_address
from sandbox.scenario import Net


def test_ssha256_is_dovecots_salted_sha256() -> None:
    salt = b"12345678"
    value = ssha256("secret", salt)
    assert value.startswith("{SSHA256}")
    raw = base64.b64decode(value.removeprefix("{SSHA256}"))
    assert raw == hashlib.sha256(b"secret" + salt).digest() + salt


def test_proxy_header_and_peer_map(tmp_path: Path) -> None:
    assert proxy_header("192.0.2.11", 40000, "127.1.9.26", 25) == (
        b"PROXY TCP4 192.0.2.11 127.1.9.26 40000 25\r\n"
    )
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({"127.1.10.1": "192.0.2.11"}))
    assert public_address(peers, "127.1.10.1") == "192.0.2.11"
    assert public_address(peers, "127.0.0.1") == "127.0.0.1"  # not a sandbox host: as it is
    assert public_address(tmp_path / "missing.json", "127.1.10.1") == "127.1.10.1"


def test_users_and_passwords(tmp_path: Path) -> None:
    mb = MailboxProvider(tmp_path, Net(1))
    first = mb.add_user("tester", running=False)
    assert mb.add_user("tester", running=False) == first  # kept, not regenerated
    mb.add_user("dmarc-reports", running=False)
    assert mb.users() == ["tester", "dmarc-reports"]
    assert mb.password_file("tester").stat().st_mode & 0o777 == 0o600
    assert first not in mb.users_file.read_text()
    with pytest.raises(MailboxError, match="not a mailbox name"):
        mb.add_user("../etc", running=False)
