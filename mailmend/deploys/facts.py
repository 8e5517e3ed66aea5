"""Custom pyinfra facts for the mail deploys.

Nothing here ever reads a private key off a host: the DKIM fact reads the public half only.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.context import ctx_host, host
from pyinfra.facts.deb import DebPackages

from mailmend.checks.dkim_key import DkimRecordError, parse_key_text

#: Per pyinfra host: what :func:`once` computed in this run.
_ONCE: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


def once(key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` the first time this host asks for ``key`` in this run, then its result.

    For what the deploy steps read while they are planned (pyinfra 3 caches no fact; the
    host is unchanged until every step is planned), never inside an operation.
    """
    seen = _ONCE.setdefault(ctx_host.get(), {})  # type: ignore[no-untyped-call]
    if key not in seen:
        seen[key] = compute()
    return seen[key]


def installed_packages() -> dict[str, Any]:
    """The host's Debian packages (pyinfra's ``DebPackages``), read once for every step."""
    packages: dict[str, Any] = once(DebPackages, lambda: host.get_fact(DebPackages) or {})
    return packages


def parse_dkim_public_key(lines: list[str]) -> str | None:
    """The base64 ``p=`` value from opendkim-genkey's ``SELECTOR.txt`` (or a bare ``p=...``);
    None when there is no key.

    >>> parse_dkim_public_key(['mx1._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; "',
    ...                         '\\t  "p=MIIBIjAN" "BgkqhkiG" )  ; ----- DKIM key mx1'])
    'MIIBIjANBgkqhkiG'
    """
    try:
        key = parse_key_text("\n".join(lines), domain="", selector="")  # the one parser
    except DkimRecordError:
        return None
    return key.public_key_b64


class HostDkimPublicKey(FactBase[Any]):
    """
    The public half of a DKIM key as the base64 ``p=`` value, or ``None`` when there is none.

    Reads ``SELECTOR.txt`` written by ``opendkim-genkey``; for a key put there by hand
    without its ``.txt``, derives the public key with ``openssl`` when the host has it.
    The private key itself never leaves the host.

    .. code:: python

        host.get_fact(HostDkimPublicKey, txt="/etc/opendkim/keys/example.com/mx1.txt",
                      private_key="/etc/opendkim/keys/example.com/mx1.private")
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA..."
    """

    def command(self, txt: str, private_key: str) -> StringCommand:
        return StringCommand(
            "if [ -r", QuoteString(txt), "]; then cat", QuoteString(txt), ";",
            "elif [ -r", QuoteString(private_key), "] && command -v openssl >/dev/null 2>&1;",
            "then printf p=; openssl pkey -in", QuoteString(private_key),
            "-pubout -outform DER 2>/dev/null | base64 | tr -d '\\n'; echo; fi",
        )  # fmt: skip

    def process(self, output: list[str]) -> str | None:
        return parse_dkim_public_key(output)


class HostSigningDkim(FactBase[Any]):
    """
    What the host's OpenDKIM signs each domain with, and the public halves kept under
    ``key_dir``: the raw output of :func:`mailmend.adopt.host_keys.remote_command` (the same
    read-only command ``records --dkim-from-hosts`` runs over ssh), for
    :func:`mailmend.adopt.host_keys.host_keys` to read.
    """

    def command(self, domains: list[str], key_dir: str) -> str:
        from mailmend.adopt import dkim_discovery, host_keys

        return host_keys.remote_command(domains, dkim_discovery.OPENDKIM_CONF, key_dir)

    def process(self, output: list[str]) -> str:
        return "\n".join(output)


class MilterSockets(FactBase[Any]):
    """
    The ``unix:`` milter sockets Postfix's main.cf names (``smtpd_milters``,
    ``non_smtpd_milters``) as absolute paths, each with what is there: ``socket``, ``link``
    (and its target), ``other`` or ``none``. Empty without Postfix.

    .. code:: python

        host.get_fact(MilterSockets, queue_dir="/var/spool/postfix")
        [("socket", "/var/spool/postfix/opendkim/opendkim.sock", "")]
    """

    @staticmethod
    def default() -> list[tuple[str, str, str]]:
        return []

    def command(self, queue_dir: str) -> StringCommand:
        return StringCommand(
            StringCommand("q=", QuoteString(queue_dir.rstrip("/")), _separator=""), ";",
            "postconf -xh smtpd_milters non_smtpd_milters 2>/dev/null",
            "| tr ', {}' '\\n\\n\\n\\n' | sed -n 's/^unix://p' | sort -u",
            "| while IFS= read -r p; do case $p in /*) f=$p;; *) f=\"$q/$p\";; esac;",
            "if [ -L \"$f\" ]; then echo \"link $f $(readlink \"$f\")\";",
            "elif [ -S \"$f\" ]; then echo \"socket $f\";",
            "elif [ -e \"$f\" ]; then echo \"other $f\"; else echo \"none $f\"; fi; done",
        )  # fmt: skip

    def process(self, output: list[str]) -> list[tuple[str, str, str]]:
        out = []
        for line in output:
            kind, _, rest = line.partition(" ")
            path, _, target = rest.partition(" ")
            out.append((kind, path, target))
        return out
