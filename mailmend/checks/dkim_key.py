"""DKIM public keys: the one model, the one parser, the one comparison, where the keys live.

A :class:`DkimPublicKey` is the public half of one (domain, selector) key as published in
``p=``. :func:`parse_key_text` reads every form a key comes in: opendkim-genkey's
``SELECTOR.txt`` (a zone-file line of quoted strings; ``\\"`` and ``\\\\`` inside a string are
unescaped), a bare ``v=DKIM1; k=rsa; p=...`` record as DNS answers it, or bare base64.
:meth:`DkimPublicKey.same_key` is the comparison (same type, same key bytes). The deploy keeps
keys in ``KEY_DIR/DOMAIN/SELECTOR.private`` beside opendkim-genkey's ``SELECTOR.txt``;
``KEY_DIR`` is the default of the ``opendkim_key_dir`` tuning key.

>>> text = 'mx1._domainkey IN TXT ( "v=DKIM1; k=rsa; " "p=QUJD" )'
>>> key = parse_key_text(text, "Example.COM", "mx1")
>>> key.name, key.value()
('mx1._domainkey.example.com', 'v=DKIM1; k=rsa; p=QUJD')
>>> key.same_key(parse_key_text("v=DKIM1; h=sha256; p=QUJD", "example.com", "mx1"))
True
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from mailmend.checks.names import normalize_name
from mailmend.checks.tag_list import TagListError, parse_tag_list
from mailmend.checks.txt import split_txt

__all__ = [
    "KEY_DIR",
    "DkimPublicKey",
    "DkimRecordError",
    "key_files",
    "key_name",
    "parse_key_text",
]

KEY_DIR = "/etc/opendkim/keys"
KEY_TYPES = ("rsa", "ed25519")
_ED25519_BYTES = 32  # RFC 8463: p= of an ed25519 key is the bare 32-byte key
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class DkimRecordError(ValueError):
    """Not a usable DKIM key (record or file): the message says why."""


def key_name(domain: str, selector: str) -> str:
    """``SELECTOR._domainkey.DOMAIN`` (lower-case domain, no trailing dot)."""
    return f"{selector}._domainkey.{normalize_name(domain)}"


def key_files(domain: str, selector: str, key_dir: str = KEY_DIR) -> tuple[str, str, str]:
    """(directory, private key, opendkim-genkey's ``.txt``) of one key under ``key_dir``."""
    directory = f"{key_dir.rstrip('/')}/{domain}"
    return directory, f"{directory}/{selector}.private", f"{directory}/{selector}.txt"


@dataclass(frozen=True)
class DkimPublicKey:
    """The public key of one (domain, selector), as published in ``p=`` (base64, no spaces).

    ``public_key_b64`` is empty for a revoked key (``p=``); ``testing`` is ``t=y``.
    """

    domain: str
    selector: str
    public_key_b64: str
    key_type: str = "rsa"
    testing: bool = False

    @property
    def name(self) -> str:
        """``SELECTOR._domainkey.DOMAIN``, no trailing dot."""
        return key_name(self.domain, self.selector)

    @property
    def fqdn(self) -> str:
        """The record's name, absolute (with the trailing dot)."""
        return self.name + "."

    def value(self) -> str:
        """The record value, ``v=DKIM1; k=rsa; p=...`` (joined, before splitting)."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key_b64}"

    @property
    def strings(self) -> tuple[str, ...]:
        """The value in TXT strings of at most 255 bytes."""
        return split_txt(self.value())

    @property
    def revoked(self) -> bool:
        return not self.public_key_b64

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key_b64)

    def zone_line(self) -> str:
        """The record in zone-file form, as opendkim-genkey writes it: ``NAME. IN TXT ( ... )``."""
        quoted = " ".join(f'"{s}"' for s in self.strings)
        return f"{self.fqdn} IN TXT ( {quoted} )"

    def same_key(self, other: DkimPublicKey) -> bool:
        """The same key: same type and same key bytes; a revoked key is the same as nothing."""
        return (
            not self.revoked
            and self.key_type == other.key_type
            and self.key_bytes() == other.key_bytes()
        )


def parse_record(value: str, domain: str, selector: str) -> DkimPublicKey:
    """Parse a DKIM key record's value (``v=DKIM1; k=rsa; p=...``, RFC 6376 3.6.1)."""
    try:
        tags = parse_tag_list(value)
    except TagListError as err:
        raise DkimRecordError(str(err)) from None
    if "v" in tags and (tags["v"] != "DKIM1" or next(iter(tags)) != "v"):
        raise DkimRecordError("v= must be the first tag and be DKIM1")
    if "p" not in tags:
        raise DkimRecordError("no p= tag (the public key)")
    key_type = tags.get("k", "rsa").lower()
    if key_type not in KEY_TYPES:
        raise DkimRecordError(f"unknown key type k={key_type}")
    data = "".join(tags["p"].split())
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error:
        raise DkimRecordError("p= is not valid base64") from None
    testing = "y" in [f.strip() for f in tags.get("t", "").split(":")]
    return DkimPublicKey(normalize_name(domain), selector, data, key_type, testing)


def parse_key_text(text: str, domain: str, selector: str) -> DkimPublicKey:
    """The host's key in ``text``: opendkim-genkey's ``SELECTOR.txt``, a bare key record, or
    bare base64 (an ed25519 key when it is 32 bytes). Raises :class:`DkimRecordError`, also
    for a revoked key (a key to sign with has a public half)."""
    strings = _QUOTED.findall(text)
    if strings:
        value = "".join(s.replace('\\"', '"').replace("\\\\", "\\") for s in strings)
    else:
        value = text.strip()
    if "=" in value.rstrip("="):
        key = parse_record(value, domain, selector)
    else:
        data = "".join(value.split())
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise DkimRecordError("the public key is not valid base64") from None
        key_type = "ed25519" if len(raw) == _ED25519_BYTES else "rsa"
        key = DkimPublicKey(normalize_name(domain), selector, data, key_type)
    if key.revoked:
        raise DkimRecordError("no public key (empty p=)")
    return key
