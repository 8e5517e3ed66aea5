"""DKIM key records: the TXT value from a host's public key, split into 255-byte strings.

The public key comes from the host: the deploy keeps opendkim-genkey's output in
``/etc/opendkim/keys/DOMAIN/SELECTOR.txt`` (the public half; the ``.private`` file is never
read). :func:`read_genkey_txt` parses that file, :func:`fetch_genkey_txt` reads it over SSH
the way pyinfra connects (the fleet's ssh_* fields, BatchMode, the fleet's known_hosts), and
callers that already hold the key (``deploys/mail.py``) pass it directly.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
import subprocess
from dataclasses import dataclass

from mailmend.checks.dkim import DkimRecordError, key_name, parse_key_record
from mailmend.fleet import HostSpec
from mailmend.ssh import ssh_argv

KEYS_DIR = "/etc/opendkim/keys"
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class DkimKeyError(ValueError):
    """A public key that cannot be published (unreadable file, bad base64, ssh failure)."""


@dataclass(frozen=True)
class DkimPublicKey:
    """The public key of one (domain, selector), as published in ``p=``."""

    domain: str
    selector: str
    public_key_b64: str
    key_type: str = "rsa"

    @property
    def name(self) -> str:
        return key_name(self.domain, self.selector)

    def value(self) -> str:
        """The record value, ``v=DKIM1; k=rsa; p=...`` (joined, before splitting)."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key_b64}"

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key_b64)


def public_key(domain: str, selector: str, key_b64: str, key_type: str = "rsa") -> DkimPublicKey:
    """Validate a base64 public key (whitespace removed) for publishing."""
    compact = "".join(key_b64.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: not valid base64") from None
    if not raw:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: empty key")
    if key_type not in ("rsa", "ed25519"):
        raise DkimKeyError(f"DKIM key {selector} for {domain}: unknown key type {key_type}")
    return DkimPublicKey(domain.rstrip(".").lower(), selector, compact, key_type)


def read_genkey_txt(text: str, domain: str, selector: str) -> DkimPublicKey:
    """Parse an opendkim-genkey ``SELECTOR.txt`` file (a zone-file line with quoted strings)."""
    strings = _QUOTED.findall(text)
    if not strings:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: no quoted strings in the .txt")
    joined = "".join(s.replace('\\"', '"').replace("\\\\", "\\") for s in strings)
    try:
        parsed = parse_key_record(joined)
    except DkimRecordError as err:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: {err}") from None
    if not parsed.public_key:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: the .txt holds a revoked key")
    b64 = base64.b64encode(parsed.public_key).decode("ascii")
    return DkimPublicKey(domain.rstrip(".").lower(), selector, b64, parsed.key_type)


def genkey_txt_path(domain: str, selector: str) -> str:
    return f"{KEYS_DIR}/{domain}/{selector}.txt"


def fetch_genkey_txt(
    host: HostSpec, domain: str, selector: str, timeout: float = 30
) -> DkimPublicKey:
    """Read ``/etc/opendkim/keys/DOMAIN/SELECTOR.txt`` from ``host`` over SSH and parse it."""
    path = genkey_txt_path(domain, selector)
    command = "cat -- " + shlex.quote(path)
    try:
        done = subprocess.run(
            ssh_argv(host, command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DkimKeyError(f"{host.name}: cannot read {path}: {err}") from None
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1:] or [f"ssh exited {done.returncode}"]
        raise DkimKeyError(f"{host.name}: cannot read {path}: {why[0]}")
    return read_genkey_txt(done.stdout, domain, selector)


def same_key(published_value: str, key: DkimPublicKey) -> bool:
    """The published record carries this key (same type and key bytes, not revoked)."""
    try:
        parsed = parse_key_record(published_value)
    except DkimRecordError:
        return False
    return parsed.key_type == key.key_type and parsed.public_key == key.key_bytes()
