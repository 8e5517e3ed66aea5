"""The TSIG key that signs dynamic updates, read from a BIND-format key file.

Only a file is accepted, never ``NAME:ALG:SECRET`` on the command line (it would land in the
shell history and in ``ps``). The file is what ``tsig-keygen NAME`` / ``ddns-confgen`` and the
sandbox write::

    key "mailmend-sandbox" {
        algorithm hmac-sha256;
        secret "base64...";
    };

The secret never appears in an error message, a ``repr`` or a log line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import dns.name
import dns.tsig

ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_PUNCTUATION = "{};"


@dataclass(frozen=True)
class _Token:
    text: str = field(repr=False)  # may be the secret
    quoted: bool = False

    def punct(self, char: str) -> bool:
        return not self.quoted and self.text == char


class TsigKeyError(ValueError):
    """The key file cannot be used (the message never contains the secret)."""


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str  # e.g. hmac-sha256
    secret: bytes = field(repr=False)

    def key(self) -> dns.tsig.Key:
        """The dnspython key for ``UpdateMessage(keyring=...)``."""
        return dns.tsig.Key(
            dns.name.from_text(self.name), self.secret, dns.name.from_text(self.algorithm)
        )


def _tokens(text: str) -> list[_Token]:
    """The tokens of a BIND configuration text, as BIND's lexer reads it.

    Comments (``//`` and ``#`` to the end of the line, ``/* ... */``) count only outside
    quoted strings; a quoted string ends at the next unescaped ``"`` (``\\`` escapes one
    character) and may hold anything, ``//`` included. ``{``, ``}`` and ``;`` are tokens of
    their own; any other run of non-space characters is a word. Raises :class:`TsigKeyError`
    for an unterminated string or comment (the message never quotes the text).
    """
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise TsigKeyError("a /* comment is not closed")
            i = end + 2
        elif char == '"':
            i, value = _quoted(text, i + 1)
            out.append(_Token(value, quoted=True))
        elif char in _PUNCTUATION:
            out.append(_Token(char))
            i += 1
        else:
            start = i
            while i < n and not (
                text[i].isspace()
                or text[i] in _PUNCTUATION + '"#'
                or text.startswith(("//", "/*"), i)
            ):
                i += 1
            out.append(_Token(text[start:i]))
    return out


def _quoted(text: str, i: int) -> tuple[int, str]:
    """The string that starts after the quote at ``i - 1``: (index after its end, value)."""
    chars: list[str] = []
    while i < len(text):
        char = text[i]
        if char == '"':
            return i + 1, "".join(chars)
        if char == "\\" and i + 1 < len(text):
            i += 1
            char = text[i]
        chars.append(char)
        i += 1
    raise TsigKeyError('a quoted string is not closed (missing ")')


def _block(toks: list[_Token], start: int) -> tuple[list[list[_Token]], int]:
    """The statements of the ``{ ... }`` block opening at ``toks[start]``, and the index after
    its ``}``. A statement is its tokens up to ``;`` (nested blocks kept whole)."""
    statements: list[list[_Token]] = []
    current: list[_Token] = []
    depth, i = 0, start + 1
    while i < len(toks):
        tok = toks[i]
        i += 1
        if tok.punct("{"):
            depth += 1
        elif tok.punct("}"):
            if depth == 0:
                if current:
                    raise TsigKeyError("a statement in the key block does not end with ;")
                return statements, i
            depth -= 1
        elif tok.punct(";") and depth == 0:
            statements.append(current)
            current = []
            continue
        current.append(tok)
    raise TsigKeyError("a { block is not closed")


def parse_key_file(text: str, source: str = "key file") -> TsigKey:
    """Parse the first ``key "NAME" { algorithm ALG; secret "B64"; };`` of a BIND key file.

    Other top-level statements (``server``, ``options``, ...) are skipped.
    """
    try:
        found = _first_key(_tokens(text))
    except TsigKeyError as err:
        raise TsigKeyError(f"{source}: {err}") from None
    if found is None:
        raise TsigKeyError(f'{source}: no key "NAME" {{ algorithm ...; secret "..."; }}; found')
    name, statements = found
    algorithm = statements.get("algorithm", "").lower()
    if algorithm not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise TsigKeyError(f"{source}: key {name}: algorithm must be one of {known}")
    if "secret" not in statements:
        raise TsigKeyError(f"{source}: key {name}: no secret")
    try:
        secret = base64.b64decode("".join(statements["secret"].split()), validate=True)
    except binascii.Error:
        raise TsigKeyError(f"{source}: key {name}: the secret is not valid base64") from None
    if not secret:
        raise TsigKeyError(f"{source}: key {name}: the secret is empty")
    return TsigKey(name, algorithm, secret)


def _first_key(toks: list[_Token]) -> tuple[str, dict[str, str]] | None:
    """(name, {statement: value}) of the first top-level ``key`` statement."""
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.punct("{"):
            _, i = _block(toks, i)  # a block of a statement that is not a key: skip it
            continue
        i += 1
        if tok.quoted or tok.text.lower() != "key" or i + 1 >= len(toks):
            continue
        name_tok, brace = toks[i], toks[i + 1]
        if not brace.punct("{") or any(name_tok.punct(c) for c in _PUNCTUATION):
            continue
        if not _NAME.fullmatch(name_tok.text):
            raise TsigKeyError("the key name must be letters, digits, '.', '_' or '-'")
        body, _ = _block(toks, i + 1)
        statements: dict[str, str] = {}
        for statement in body:
            if len(statement) == 2 and not statement[0].quoted:
                statements[statement[0].text.lower()] = statement[1].text
        return name_tok.text, statements
    return None


def load_key_file(path: str | os.PathLike[str]) -> TsigKey:
    """Read a BIND-format key file; raises :class:`TsigKeyError`."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as err:
        raise TsigKeyError(f"cannot read the TSIG key file {source}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise TsigKeyError(f"{source}: not a text file") from None
    return parse_key_file(text, source)


def loose_permissions(path: str | os.PathLike[str]) -> bool:
    """The key file is readable by group or others (a warning, not an error)."""
    try:
        return bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False
