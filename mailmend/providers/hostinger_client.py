"""Hostinger's official client, ``hostinger-api``, for the PTR and DNS calls mailmend makes.

The client's package ``__init__`` (and that of ``hostinger_api.api``) imports all of its API
modules: 2.5 s of imports here, 1.8 s of them for APIs mailmend never calls. :func:`load`
registers those two packages without running their ``__init__``. The client's own modules are
then imported as usual (``hostinger_api.models`` in full, which the client needs to read its
answers): 0.6 s.

:func:`api_client` builds one client. :func:`errors` turns the client's ``ApiException`` into
one line, with Hostinger's own message and its first validation error.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from contextlib import AbstractContextManager
from typing import Any

from mailmend.providers.secrets import client_errors

_PACKAGES = ("hostinger_api", "hostinger_api.api")


def installed() -> bool:
    return importlib.util.find_spec("hostinger_api") is not None


def load(*modules: str) -> list[Any]:
    """``hostinger_api.X`` modules, without the package's import-everything ``__init__``."""
    for package in _PACKAGES:
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            if spec is None:
                raise ModuleNotFoundError(f"No module named {package!r}", name=package)
            sys.modules[package] = importlib.util.module_from_spec(spec)
    return [importlib.import_module(f"hostinger_api.{name}") for name in modules]


def api_client(endpoint: str, token: str) -> Any:
    """One client; ``retries=0``: urllib3 would otherwise try 4 times, each with the full
    timeout."""
    client, config = load("api_client", "configuration")
    return client.ApiClient(config.Configuration(host=endpoint, access_token=token, retries=0))


def errors(what: str) -> AbstractContextManager[None]:
    """A failed call as one :class:`~mailmend.providers.secrets.ProviderError` line."""
    (exceptions,) = load("exceptions")
    return client_errors(what, exceptions.ApiException, status_and_message)


def status_and_message(err: Any) -> tuple[int, str]:
    """Status and Hostinger's own words (``message``, then the first validation error)."""
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or "")
    errors = body.get("errors")
    if isinstance(errors, dict):
        for field_name, texts in errors.items():
            first = texts[0] if isinstance(texts, list) and texts else texts
            message = f"{message} ({field_name}: {first})" if message else f"{field_name}: {first}"
            break
    return int(err.status or 0), message
