"""Usage errors and exit codes, shared by every ``mailmend`` subcommand.

Exit codes (docs/checks.md, docs/records.md, docs/hygiene.md):

- 0: nothing failed (or the action succeeded)
- 1: a check failed, a host is flagged, an update was refused or an action failed
- 2: usage or input error (bad option, unreadable or invalid fleet file): one line a problem
- 3: some results are unknown and none failed
- 130: interrupted (SIGINT), as a shell reports it (128 + 2)
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

P = ParamSpec("P")


class UsageError(Exception):
    """Bad input from the user: printed as one line (or one problem a line), exit 2."""


def say(command: str, line: str) -> None:
    """One line on stderr, prefixed ``mailmend COMMAND: ``."""
    print(f"mailmend {command}: {line}", file=sys.stderr)


def report_usage_error(command: str, err: UsageError) -> int:
    """Print ``err`` (one problem a line) and return :data:`EXIT_USAGE`."""
    for line in str(err).splitlines() or [""]:
        say(command, line)
    return EXIT_USAGE


def usage_errors(command: str) -> Callable[[Callable[P, int]], Callable[P, int]]:
    """Decorate a subcommand's ``run``: a :class:`UsageError` becomes its lines and exit 2
    (also when ``run`` is called directly, not through :func:`mailmend.cli.main.main`)."""

    def wrap(run: Callable[P, int]) -> Callable[P, int]:
        @functools.wraps(run)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> int:
            try:
                return run(*args, **kwargs)
            except UsageError as err:
                return report_usage_error(command, err)

        return wrapped

    return wrap
