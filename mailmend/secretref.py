"""Secrets by reference: ``env:NAME`` or ``file:/path``, resolved on the admin's machine.

The one resolver of the project (relay credentials, IMAP passwords). A secret never appears
in a message: errors name the reference, not what it points to.

    >>> resolve("env:MAILMEND_TEST_SECRET", environ={"MAILMEND_TEST_SECRET": "s3cret\\n"})
    's3cret'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from mailmend.rules import secret_reference_problem


class SecretRefError(ValueError):
    """A reference that is malformed or points at nothing readable (one-line message)."""


def resolve(
    reference: str,
    environ: Mapping[str, str] | None = None,
    read_file: Callable[[Path], str] | None = None,
) -> str:
    """The secret ``reference`` points to, without its trailing newline."""
    kind, _, where = reference.partition(":")
    if kind not in ("env", "file"):
        raise SecretRefError(f"{reference!r} is not env:NAME or file:/path")
    problem = secret_reference_problem(reference)  # the fleet check's rule
    if problem:
        raise SecretRefError(problem)
    if kind == "env":
        env = os.environ if environ is None else environ
        if where not in env:
            raise SecretRefError(f"environment variable {where} is not set")
        secret = env[where]
    else:
        path = Path(where)
        try:
            secret = (read_file or Path.read_text)(path)
        except OSError as err:
            raise SecretRefError(f"cannot read {path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise SecretRefError(f"{path} is not UTF-8 text") from None
    return secret.strip("\r\n")
