"""DKIM keys for ``mailmend records``: read from opendkim-genkey's ``SELECTOR.txt``.

The public key comes from the host: the deploy keeps opendkim-genkey's output in
``KEY_DIR/DOMAIN/SELECTOR.txt`` (the public half; the ``.private`` file is never read).
:func:`read_genkey_txt` parses that file with the one DKIM key parser
(:func:`mailmend.checks.dkim_key.parse_key_text`), :func:`fetch_genkey_txt` reads it over SSH
the way pyinfra connects (the fleet's ssh_* fields, BatchMode, the fleet's known_hosts), and
callers that already hold the key (``deploys/mail.py``) pass the model directly.
"""

from __future__ import annotations

import shlex
import subprocess

from mailmend.checks.dkim_key import DkimPublicKey, DkimRecordError, key_files, parse_key_text
from mailmend.fleet import HostSpec
from mailmend.ssh import ssh_argv


class DkimKeyError(ValueError):
    """A public key that cannot be published (unreadable file, bad base64, ssh failure)."""


def read_genkey_txt(text: str, domain: str, selector: str) -> DkimPublicKey:
    """Parse an opendkim-genkey ``SELECTOR.txt`` file (or a bare record or base64 key)."""
    try:
        return parse_key_text(text, domain, selector)
    except DkimRecordError as err:
        raise DkimKeyError(f"DKIM key {selector} for {domain}: {err}") from None


def genkey_txt_path(domain: str, selector: str) -> str:
    return key_files(domain, selector)[2]


def fetch_genkey_txt(
    host: HostSpec, domain: str, selector: str, timeout: float = 30
) -> DkimPublicKey:
    """Read ``KEY_DIR/DOMAIN/SELECTOR.txt`` from ``host`` over SSH and parse it."""
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
