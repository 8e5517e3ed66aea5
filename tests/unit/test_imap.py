"""mailmend.imap offline: targets, folder kinds, password references, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmend import imap


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("imap.example.com", ("imap.example.com", 993)),
        ("imap.example.com:1993", ("imap.example.com", 1993)),
        ("127.0.9.26", ("127.0.9.26", 993)),
        ("[2001:db8::1]:993", ("2001:db8::1", 993)),
        ("2001:db8::1", ("2001:db8::1", 993)),
    ],
)
def test_parse_imap_target(text: str, expected: tuple[str, int]) -> None:
    assert imap.parse_imap_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("imap.example.com:0", "port must be a number"),
        ("imap.example.com:99999", "port must be a number"),
        ("imap.example.com:", "port must be a number"),
        ("[2001:db8::1", "missing ']'"),
        ("user@imap.example.com", "no user@ here"),
        ("imap..example.com", "neither an IP address nor a valid host name"),
    ],
)
def test_parse_imap_target_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        imap.parse_imap_target(text)


@pytest.mark.parametrize(
    ("name", "flags", "kind"),
    [
        ("INBOX", (), "inbox"),
        ("Inbox", (), "inbox"),
        ("Junk", (), "junk"),
        ("Spam", (), "junk"),
        ("[Gmail]/Spam", (b"\\HasNoChildren",), "junk"),
        ("Junk E-mail", (), "junk"),  # Outlook / Exchange
        ("Bulk Mail", (), "junk"),  # Yahoo
        ("INBOX.Junk", (), "junk"),
        ("Courrier indésirable", (b"\\Junk",), "junk"),  # named by flag only
        ("Sent", (b"\\Sent",), "other"),
        ("Junkyard", (), "other"),
    ],
)
def test_folder_kind(name: str, flags: tuple[bytes, ...], kind: str) -> None:
    assert imap.folder_kind(name, flags) == kind


def test_password_by_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    assert imap.resolve_password(f"file:{secret}") == "hunter2"
    monkeypatch.setenv("MAILMEND_TEST_IMAP_PW", "s3cret")
    assert imap.resolve_password("env:MAILMEND_TEST_IMAP_PW") == "s3cret"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("hunter2", "IMAP password: 'hunter2' is not env:NAME or file:/path"),
        ("env:MAILMEND_TEST_UNSET_VARIABLE", "environment variable MAILMEND_TEST_UNSET_VARIABLE"),
        ("file:/nonexistent/mailmend/pw", "cannot read /nonexistent/mailmend/pw"),
    ],
)
def test_bad_password_reference_is_one_line(reference: str, message: str) -> None:
    with pytest.raises(imap.ImapError) as err:
        imap.resolve_password(reference)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unreachable_server_is_one_line() -> None:
    # Port 1 on loopback: nothing listens there.
    with pytest.raises(imap.ImapError, match=r"127\.0\.0\.1:1 is unreachable") as err:
        imap.connect("127.0.0.1", 1, "u", "p", timeout=2)
    assert "\n" not in str(err.value)
