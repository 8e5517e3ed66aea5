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
_COMMENT = re.compile(r"(#|//)[^\n]*|/\*.*?\*/", re.DOTALL)
_KEY = re.compile(r'key\s+"?([A-Za-z0-9._-]+)"?\s*\{(.*?)\}\s*;', re.DOTALL)
_STATEMENT = re.compile(r'\s*([a-z-]+)\s+"?([^";\s]+)"?\s*;')


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


def parse_key_file(text: str, source: str = "key file") -> TsigKey:
    """Parse the first ``key "NAME" { algorithm ALG; secret "B64"; };`` of a BIND key file."""
    match = _KEY.search(_COMMENT.sub("", text))
    if not match:
        raise TsigKeyError(f'{source}: no key "NAME" {{ algorithm ...; secret "..."; }}; found')
    name, body = match.group(1), match.group(2)
    statements: dict[str, str] = {}
    for stmt in _STATEMENT.finditer(body):
        statements[stmt.group(1).lower()] = stmt.group(2)
    algorithm = statements.get("algorithm", "").lower()
    if algorithm not in ALGORITHMS:
        known = ", ".join(ALGORITHMS)
        raise TsigKeyError(f"{source}: key {name}: algorithm must be one of {known}")
    if "secret" not in statements:
        raise TsigKeyError(f"{source}: key {name}: no secret")
    try:
        secret = base64.b64decode(statements["secret"], validate=True)
    except binascii.Error:
        raise TsigKeyError(f"{source}: key {name}: the secret is not valid base64") from None
    if not secret:
        raise TsigKeyError(f"{source}: key {name}: the secret is empty")
    return TsigKey(name, algorithm, secret)


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
