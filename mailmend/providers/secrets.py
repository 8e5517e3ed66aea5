"""Provider credentials by reference, errors in one line, and no secret in any output.

Credentials are ``env:NAME`` or ``file:/path`` references (:func:`mailmend.secretref.resolve`);
every secret read is remembered so that :func:`redact` and the log filter installed by
:func:`debug_logging` replace it with ``***`` wherever it would appear (``--debug`` included).

Provider libraries speak HTTP through ``requests`` and some never set a timeout: inside
:func:`http_deadline` every request without one gets the given timeout.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from mailmend.checks.escape import visible
from mailmend.secretref import SecretRefError
from mailmend.secretref import resolve as resolve_reference

_SECRETS: set[str] = set()


class ProviderError(Exception):
    """The provider refused or failed: one line (exit 1). ``done`` says what was already
    changed at the provider before the failure (empty: nothing)."""

    done: tuple[str, ...] = ()


class AuthRefused(ProviderError):
    pass


class NotFound(ProviderError):
    pass


class RateLimited(ProviderError):
    pass


class Unavailable(ProviderError):
    pass


class NoAnswer(Unavailable):
    """The provider did not answer in time: a call that changes something may or may not
    have been carried out."""


class BadCredentials(ProviderError):
    """A reference that cannot be read (exit 2: nothing was sent)."""


def resolve(reference: str, what: str) -> str:
    """The secret behind ``reference``; remembered for :func:`redact`."""
    try:
        secret = resolve_reference(reference)
    except SecretRefError as err:
        raise BadCredentials(f"{what}: {err}") from None
    if not secret or any(ord(c) < 32 or ord(c) == 127 for c in secret):
        raise BadCredentials(
            f"{what}: the secret in {reference} is empty or has control characters"
        )
    remember(secret)
    return secret


def remember(secret: str) -> None:
    """Keep ``secret`` (or a part of one) out of every message and log line."""
    if secret:
        _SECRETS.add(secret)


def resolve_all(references: Mapping[str, str], what: str) -> dict[str, str]:
    return {key: resolve(ref, f"{what} {key}") for key, ref in references.items()}


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        return True


def debug_logging(enabled: bool) -> None:
    """``--debug``: the provider libraries' and urllib3's debug log on stderr, secrets
    replaced by ``***``."""
    if not enabled:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Redact())
    handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def _host(err: requests.RequestException) -> str:
    url = err.request.url if err.request is not None and err.request.url else ""
    return urlsplit(str(url)).netloc or "the provider"


def http_error(err: requests.RequestException, what: str) -> ProviderError:
    """One line for a failed HTTP request: status and reason, never the URL's query or body."""
    response = err.response
    if response is None:
        if isinstance(err, requests.Timeout):
            return NoAnswer(f"{what}: {_host(err)} did not answer in time")
        return Unavailable(f"{what}: cannot reach {_host(err)} ({type(err).__name__})")
    return status_error(response.status_code, what)


@contextmanager
def http_errors(what: str) -> Iterator[None]:
    """A failed HTTP exchange (``requests`` or ``urllib3``, which some official clients use
    directly) as one :class:`ProviderError` line."""
    try:
        yield
    except requests.RequestException as err:
        raise http_error(err, what) from None
    except urllib3.exceptions.HTTPError as err:
        raise urllib3_error(err, what) from None


def urllib3_error(err: urllib3.exceptions.HTTPError, what: str) -> ProviderError:
    """One line for a request urllib3 could not complete (no HTTP status came back)."""
    reason = getattr(err, "reason", None) or err
    host = getattr(getattr(err, "pool", None), "host", None) or "the provider"
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return NoAnswer(f"{what}: {host} did not answer in time")
    return Unavailable(f"{what}: cannot reach {host} ({type(reason).__name__})")


@contextmanager
def client_errors(
    what: str, kind: type[Exception], status_and_detail: Callable[[Any], tuple[int, str]]
) -> Iterator[None]:
    """A client library's exception ``kind`` as one line (its status and its own text)."""
    try:
        with http_errors(what):
            yield
    except kind as err:
        status, detail = status_and_detail(err)
        raise status_error(status, what, redact(detail)) from None


def status_error(status: int, what: str, detail: str = "") -> ProviderError:
    extra = f": {visible(redact(detail))[:200]}" if detail else ""  # the provider's text: hostile
    if status in (401, 403):
        return AuthRefused(
            f"{what}: the provider refused the credentials (HTTP {status}{extra}); "
            "check the token the reference points at"
        )
    if status == 404:
        return NotFound(f"{what}: not found at the provider (HTTP 404{extra})")
    if status == 429:
        return RateLimited(f"{what}: rate limited by the provider (HTTP 429); try again later")
    if status >= 500:
        return Unavailable(f"{what}: provider outage (HTTP {status}{extra}); try again later")
    return ProviderError(f"{what}: the provider refused the request (HTTP {status}{extra})")


_DEADLINE: ContextVar[float | None] = ContextVar("http_deadline", default=None)
_REQUEST: Callable[..., Any] = requests.Session.request


def _request(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
    seconds = _DEADLINE.get()
    if seconds is not None and kwargs.get("timeout") is None:
        kwargs["timeout"] = seconds
    return _REQUEST(self, *args, **kwargs)


@contextmanager
def http_deadline(seconds: float) -> Iterator[None]:
    """Every ``requests`` call without a timeout made inside gets ``seconds``. Per thread
    (a context variable): hosts handled in parallel threads each keep their own."""
    requests.Session.request = _request  # type: ignore[method-assign]
    token = _DEADLINE.set(seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)
