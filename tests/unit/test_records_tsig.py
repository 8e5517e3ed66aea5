"""records.tsig: BIND key files; the secret never shows up in errors or reprs."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- BIND syntax: comments only outside quoted strings (issue 15 item 9) ---------------------

SLASHES = "ab//cd+/ef//gh+/ij//kl0123456789ABCDEFGHIJKLMNOPQRST/w=="


def test_secret_with_slashes_is_read_whole() -> None:
    text = f'key "k" {{\n\talgorithm hmac-sha256;\n\tsecret "{SLASHES}";\n}};\n'
    assert parse_key_file(text).secret == base64.b64decode(SLASHES)


def test_comments_outside_quotes_are_comments() -> None:
    text = (
        '/* made by hand; key "decoy" { algorithm hmac-md5; secret "AAAA"; }; */\n'
        '# key "decoy2" { };\n'
        'key "k" { // the sandbox key\n'
        "  algorithm /* inline */ hmac-sha512; # strong\n"
        f'  secret "{SLASHES}"; // "not a string\n'
        "};\n"
    )
    key = parse_key_file(text)
    assert (key.name, key.algorithm, key.secret) == ("k", "hmac-sha512", base64.b64decode(SLASHES))


def test_other_statements_are_skipped_and_unquoted_forms_read() -> None:
    text = (
        'server 192.0.2.1 { keys { "k"; }; };\n'
        f"key k {{ algorithm HMAC-SHA256; secret {SECRET}; }};\n"
    )
    key = parse_key_file(text)
    assert (key.name, key.algorithm) == ("k", "hmac-sha256")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}; }};', "quoted string is not closed"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; /* }};', "comment is not closed"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}";', "block is not closed"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}" }};', "does not end with ;"),
        (f'key "k k" {{ algorithm hmac-sha256; secret "{SECRET}"; }};', "key name must be"),
    ],
)
def test_broken_syntax_is_one_line_without_the_secret(text: str, message: str) -> None:
    with pytest.raises(TsigKeyError, match=message) as info:
        parse_key_file(text, "k.key")
    assert SECRET not in str(info.value) and "\n" not in str(info.value)


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Whole base64 quanta (4 characters, no padding) from the full alphabet or from a few
# characters that make "//" likely; or the base64 of random bytes (padding included).
SECRETS = st.one_of(
    st.lists(st.text(alphabet=B64, min_size=4, max_size=4), min_size=1, max_size=16).map("".join),
    st.lists(st.text(alphabet="/+A", min_size=4, max_size=4), min_size=1, max_size=16).map("".join),
    st.binary(min_size=1, max_size=64).map(lambda b: base64.b64encode(b).decode()),
)


@settings(max_examples=400, deadline=None)
@given(b64=SECRETS, layout=st.sampled_from(["tsig-keygen", "one-line", "commented"]))
def test_any_base64_secret_round_trips(b64: str, layout: str) -> None:
    secret = base64.b64decode(b64, validate=True)
    if layout == "tsig-keygen":
        text = f'key "k" {{\n\talgorithm hmac-sha256;\n\tsecret "{b64}";\n}};\n'
    elif layout == "one-line":
        text = f'key "k" {{ algorithm hmac-sha256; secret "{b64}"; }};'
    else:
        text = (
            f'// {b64}\nkey "k" {{ /* {b64} */ algorithm hmac-sha256; # x\n'
            f'secret "{b64}"; // "{b64}\n}};\n'
        )
    assert parse_key_file(text).secret == secret


def test_every_secret_that_tsig_keygen_style_files_hold() -> None:
    """The 1-in-100 case of the issue, made certain: slashes at every position."""
    for i in range(40):
        b64 = base64.b64encode(bytes([0xFF] * i + [0xFF, 0xFF, 0xFF] + [0] * 3)).decode()
        assert "//" in b64
        text = f'key "k" {{\n\talgorithm hmac-sha256;\n\tsecret "{b64}";\n}};\n'
        assert parse_key_file(text).secret == base64.b64decode(b64)
