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

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

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


class ImapTimeout(ImapError):
    """The server did not answer in time (one line): the connection is of no more use."""


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
        raise ImapTimeout(f"IMAP server {where}: no answer within {timeout:g} s") from None
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
    except TimeoutError:
        _close(client)
        raise ImapTimeout(f"IMAP server {where}: no answer to login within {timeout:g} s") from None
    except (OSError, imapclient.exceptions.IMAPClientError) as err:
        _close(client)
        raise ImapError(f"IMAP server {where}: {_reason(err)}") from None
    return client


class Deadline:
    """The end of a whole run, ``seconds`` after ``start`` (default: now), set by ``option``."""

    def __init__(
        self, seconds: float, option: str = "--deadline", start: float | None = None
    ) -> None:
        self.seconds = seconds
        self.option = option
        self.end = (time.monotonic() if start is None else start) + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def wait(self, timeout: float) -> tuple[float, str]:
        """How long the next wait may take (``timeout``, less when the deadline is nearer),
        and the words that say which limit it is; :class:`ImapTimeout` when none is left."""
        left = self.left()
        if left <= timeout:
            if left <= 0:
                raise ImapTimeout(f"the {self.seconds:g} s deadline ({self.option}) passed")
            return left, self.within()
        return timeout, f"within {timeout:g} s (--timeout)"

    def within(self) -> str:
        return f"within the {self.seconds:g} s deadline ({self.option})"


class Bounded:
    """A logged-in client whose every wait ends in time: before each call the socket's
    timeout is set to what :meth:`Deadline.wait` allows, and a watchdog shuts the socket down
    at the deadline (a server that sends a byte now and then cannot stretch a call past it).
    A call that runs out of time raises :class:`ImapTimeout`; the client is then closed.
    Everything else is the client's own method (``bounded.search([...])``)."""

    def __init__(
        self, client: imapclient.IMAPClient, where: str, timeout: float, deadline: Deadline
    ) -> None:
        self._client = client
        self._where = where
        self._timeout = timeout
        self._deadline = deadline
        self._expired = threading.Event()
        self._broken = False
        self._watchdog = threading.Timer(max(0.0, deadline.left()), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self._expired.set()
        try:
            self._client.socket().shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, method, args, kwargs)

        return call

    def _call(
        self, name: str, method: Callable[..., Any], args: Any, kwargs: dict[str, Any]
    ) -> Any:
        if self._broken:
            raise ImapTimeout(f"IMAP server {self._where}: the connection was given up")
        try:
            wait, why = self._deadline.wait(self._timeout)
        except ImapTimeout as err:
            self._broken = True
            raise ImapTimeout(f"IMAP server {self._where}: {err}") from None
        try:
            self._client.socket().settimeout(wait)
            return method(*args, **kwargs)
        except TimeoutError:
            self._broken = True
            raise ImapTimeout(f"IMAP server {self._where}: no answer to {name} {why}") from None
        except (OSError, imapclient.exceptions.IMAPClientError):
            if not self._expired.is_set():
                raise
            self._broken = True
            why = self._deadline.within()
            raise ImapTimeout(f"IMAP server {self._where}: no answer to {name} {why}") from None

    def close(self, logout: bool = True) -> None:
        """Log out when there is time and the server still answers; else just hang up."""
        self._watchdog.cancel()
        if logout and not self._broken and not self._expired.is_set():
            try:
                self._call("logout", self._client.logout, (), {})
                return
            except (OSError, ImapError, imapclient.exceptions.IMAPClientError):
                pass
        _close(self._client)


@contextmanager
def session(
    host: str,
    port: int,
    user: str,
    password: str,
    *,
    cafile: Path | None,
    timeout: float,
    deadline: Deadline,
) -> Iterator[Bounded]:
    """A logged-in :class:`Bounded` client: connecting, logging in and every later wait end
    by ``deadline`` (each within ``timeout``); logged out on the way out, or hung up when
    leaving by an exception (Ctrl-C included)."""
    wait, why = deadline.wait(timeout)
    try:
        client = connect(host, port, user, password, cafile=cafile, timeout=wait)
    except ImapTimeout as err:
        raise ImapTimeout(str(err).replace(f"within {wait:g} s", why)) from None
    bounded = Bounded(client, f"{host}:{port}", timeout, deadline)
    try:
        yield bounded
    except BaseException:  # Ctrl-C or a failure: hang up, wait for no goodbye
        bounded.close(logout=False)
        raise
    bounded.close()


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


def folders(client: imapclient.IMAPClient | Bounded) -> list[tuple[str, FolderKind]]:
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
    client: imapclient.IMAPClient | Bounded, criteria: Sequence[object], kinds: Sequence[FolderKind]
) -> list[tuple[str, FolderKind, int]]:
    """(folder, kind, uid) of every message matching ``criteria`` in folders of ``kinds``."""
    hits: list[tuple[str, FolderKind, int]] = []
    for name, kind in folders(client):
        if kind not in kinds:
            continue
        client.select_folder(name, readonly=True)
        hits += [(name, kind, int(uid)) for uid in client.search(list(criteria))]
    return hits
