"""records.tsig: BIND key files; the secret never shows up in errors or reprs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailmend.records.tsig import TsigKeyError, load_key_file, parse_key_file

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TEXT = (
    '# made by tsig-keygen\nkey "mailmend-sandbox" {\n\talgorithm hmac-sha256;\n'
    f'\tsecret "{SECRET}";\n}};\n'
)


def test_parse_bind_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text(TEXT)
    key = load_key_file(path)
    assert (key.name, key.algorithm) == ("mailmend-sandbox", "hmac-sha256")
    assert key.secret == b"0123456789abcdef0123456789abcdef"
    assert SECRET not in repr(key) and "0123456789" not in repr(key)
    assert key.key().name.to_text() == "mailmend-sandbox."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nothing here", "no key"),
        (TEXT.replace("hmac-sha256", "hmac-foo"), "algorithm must be"),
        (TEXT.replace(SECRET, "!!notbase64!!"), "not valid base64"),
        ('key "k" { algorithm hmac-sha256; };', "no secret"),
    ],
)
def test_bad_key_files_never_print_the_secret(text: str, message: str) -> None:
    with pytest.raises(TsigKeyError, match=message) as info:
        parse_key_file(text)
    assert SECRET not in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TsigKeyError, match="cannot read"):
        load_key_file(tmp_path / "missing.key")
