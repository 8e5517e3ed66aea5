"""IMAPS access to a mailbox (``mail-test`` reads its test messages, ``dmarc`` its reports).

Built on imapclient. Every failure to reach or log in is an :class:`ImapError` with a
one-line message that says what to do next and never contains the password. Folder names
differ by provider: :func:`folder_kind` says whether a folder is the inbox, junk or other,
from its SPECIAL-USE flag (RFC 6154) or its usual name (``Junk``, ``Spam``, ``Junk E-mail``,
Gmail's ``[Gmail]/Spam``).

    >>> parse_imap_target("imap.example.com:1993")
    ('imap.example.com', 1993)
    >>> folder_kind("[Gmail]/Spam", ())
    'junk'
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import imapclient
import imapclient.exceptions

from mailmend import secretref
from mailmend.rules import ssh_host_problem

IMAPS_PORT = 993
DEFAULT_TIMEOUT = 30.0

FolderKind = Literal["inbox", "junk", "other"]

#: Names (lower-cased, last path segment or the full path) that mean junk at common providers.
JUNK_NAMES = frozenset(
    {"junk", "spam", "junk e-mail", "junk email", "bulk mail", "[gmail]/spam", "inbox/junk",
     "inbox.junk", "inbox/spam", "inbox.spam"}
)  # fmt: skip
_JUNK_FLAG = b"\\Junk"


class ImapError(Exception):
    """The mailbox could not be reached or opened (one line; the password never in it)."""


def parse_imap_target(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError if bad."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected :PORT after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = IMAPS_PORT
    if port_text or text.endswith(":"):
        if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: the port must be a number between 1 and 65535")
        port = int(port_text)
    problem = ssh_host_problem(host) if "@" not in host else f"{host!r}: no user@ here"
    if problem:
        raise ValueError(problem)
    return host, port


def resolve_password(reference: str) -> str:
    """The password behind ``env:NAME`` or ``file:/path``; ImapError if it cannot be read."""
    try:
        password = secretref.resolve(reference)
    except secretref.SecretRefError as err:
        raise ImapError(f"IMAP password: {err}") from None
    if not password:
        raise ImapError(f"IMAP password: {reference} is empty")
    return password


def tls_context(cafile: Path | None = None) -> ssl.SSLContext:
    """Certificate and host name verified; ``cafile`` adds a CA (the sandbox's, in tests)."""
    ctx = ssl.create_default_context()
    if cafile is not None:
        ctx.load_verify_locations(cafile=str(cafile))
    return ctx


def connect(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    cafile: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> imapclient.IMAPClient:
    """An IMAPS connection, logged in as ``user``; raises ImapError on any failure."""
    where = f"{host}:{port}"
    try:
        ctx = tls_context(cafile)
    except (OSError, ssl.SSLError) as err:
        raise ImapError(f"cannot load the CA file {cafile}: {_reason(err)}") from None
    try:
        client = imapclient.IMAPClient(host, port=port, ssl=True, ssl_context=ctx, timeout=timeout)
    except ssl.SSLCertVerificationError as err:
        raise ImapError(
            f"IMAP server {where}: TLS certificate not trusted ({err.verify_message}); "
            "check the host name, or the CA"
        ) from None
    except ssl.SSLError as err:
        raise ImapError(f"IMAP server {where}: TLS failed ({_reason(err)}); is it IMAPS?") from None
    except TimeoutError:
        raise ImapError(f"IMAP server {where}: no answer within {timeout:g} s") from None
    except OSError as err:
        raise ImapError(
            f"IMAP server {where} is unreachable ({_reason(err)}); check --imap HOST[:PORT]"
        ) from None
    except imapclient.exceptions.IMAPClientError as err:
        raise ImapError(f"IMAP server {where}: {_reason(err)}") from None
    try:
        client.login(user, password)
    except imapclient.exceptions.LoginError:
        _close(client)
        raise ImapError(
            f"IMAP login as {user!r} at {where} failed: wrong user or password "
            "(check --imap-user and what --imap-password points to)"
        ) from None
    except (OSError, imapclient.exceptions.IMAPClientError) as err:
        _close(client)
        raise ImapError(f"IMAP server {where}: {_reason(err)}") from None
    return client


def _close(client: imapclient.IMAPClient) -> None:
    try:
        client.shutdown()
    except (OSError, imapclient.exceptions.IMAPClientError):
        pass


def _reason(err: BaseException) -> str:
    """The error's text on one line, at most 200 characters, control characters escaped."""
    text = str(err) or type(err).__name__
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text[:200]


def folder_kind(name: str, flags: Iterable[bytes]) -> FolderKind:
    """``inbox``, ``junk`` or ``other`` for a folder, by its SPECIAL-USE flag or its name."""
    if name.upper() == "INBOX":
        return "inbox"
    if _JUNK_FLAG in set(flags):
        return "junk"
    lowered = name.lower()
    last = lowered.replace(".", "/").rsplit("/", 1)[-1]
    if lowered in JUNK_NAMES or last in JUNK_NAMES:
        return "junk"
    return "other"


def folders(client: imapclient.IMAPClient) -> list[tuple[str, FolderKind]]:
    """Every selectable folder with its kind; inbox first, then junk, then the rest."""
    out: list[tuple[str, FolderKind]] = []
    for flags, _delim, name in client.list_folders():
        if b"\\Noselect" in flags or b"\\NonExistent" in flags:
            continue
        text = name.decode() if isinstance(name, bytes) else str(name)
        out.append((text, folder_kind(text, flags)))
    order = {"inbox": 0, "junk": 1, "other": 2}
    return sorted(out, key=lambda f: order[f[1]])


def search_folders(
    client: imapclient.IMAPClient, criteria: Sequence[object], kinds: Sequence[FolderKind]
) -> list[tuple[str, FolderKind, int]]:
    """(folder, kind, uid) of every message matching ``criteria`` in folders of ``kinds``."""
    hits: list[tuple[str, FolderKind, int]] = []
    for name, kind in folders(client):
        if kind not in kinds:
            continue
        client.select_folder(name, readonly=True)
        hits += [(name, kind, int(uid)) for uid in client.search(list(criteria))]
    return hits
