"""The on-host hard-bounce scan: one POSIX shell pipeline, only matching lines come back.

The target hosts are Debian minbase with no Python: the scan is ``sh`` + ``grep`` + ``gzip``
(+ ``journalctl`` when the host has it). It reads the log Postfix writes with ``maillog_file``
and every rotation of it (``postfix.log.1``, ``postfix.log.2.gz``, ``postfix.log-20261128.gz``),
then the journal's mail facility, and prints only hard-bounce lines: a 1 GB log never crosses
the network.

    >>> print(scan_command("/var/log/postfix.log", journal=False))  # doctest: +ELLIPSIS
    LC_ALL=C; export LC_ALL; { for f in /var/log/postfix.log* ; do [ -f "$f" ] || continue; ...

Why ``LC_ALL=C``: Postfix logs are ASCII (an SMTPUTF8 address is still matched byte for
byte), so the C locale changes no result and spares grep multibyte decoding. ``-a`` keeps
grep printing lines when a crash left NUL bytes in a log ("binary file matches" otherwise).
Exit status: 0 with or without matches, grep's >= 2 on a real error.
"""

from __future__ import annotations

import re

from pyinfra.api.command import QuoteString, StringCommand

DEFAULT_LOG_FILE = "/var/log/postfix.log"
#: The cheap fixed-string pass over the whole log (grep -F, the fast path).
FIXED_PATTERN = "status=bounced"
#: The exact filter over the few lines the first pass lets through.
HARD_BOUNCE_PATTERN = r"dsn=5\.[0-9]{1,3}\.[0-9]{1,3}, status=bounced"
#: syslog facility ``mail`` (journald's SYSLOG_FACILITY field).
MAIL_FACILITY = 2
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]+\Z")


class ScanPathError(ValueError):
    """A log path the scan refuses (relative, glob or shell characters, ``..``)."""


def log_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be the scanned log (``None`` when it can)."""
    if not _SAFE_PATH.match(path):
        return (
            f"{path!r} is not an absolute path of letters, digits and ._/+- "
            "(no spaces, globs or shell characters)"
        )
    if "/../" in f"{path}/" or path.endswith("/"):
        return f"{path!r} must name a file, without '..'"
    return None


def _first_pass() -> StringCommand:
    return StringCommand("grep", "-ahF", "-e", QuoteString(FIXED_PATTERN))


def scan_command(log_file: str = DEFAULT_LOG_FILE, *, journal: bool = True) -> StringCommand:
    """The shell command that prints the hard-bounce lines of ``log_file*`` (and the journal).

    ``log_file`` is validated, then quoted; the rotation glob is appended unquoted.
    """
    problem = log_path_problem(log_file)
    if problem:
        raise ScanPathError(problem)
    files = StringCommand(QuoteString(log_file), "*", _separator="")
    grep = _first_pass()
    loop = StringCommand(
        "for f in", files, "; do",
        '[ -f "$f" ] || continue;',
        'case "$f" in',
        '*.gz) gzip -dc -- "$f" |', grep, ";;",
        "*.bz2|*.xz|*.zst|*.lz4|*.lzma)",
        "printf 'mailmend: skipped %s (unsupported compression)\\n' \"$f\" >&2 ;;",
        "*)", grep, '-- "$f" ;;',
        "esac; done;",
    )  # fmt: skip
    parts: list[object] = ["LC_ALL=C; export LC_ALL; {", loop]
    if journal:
        parts += [
            "if command -v journalctl >/dev/null 2>&1; then",
            "journalctl -q --no-pager -o short-iso", f"SYSLOG_FACILITY={MAIL_FACILITY}",
            "2>/dev/null |", grep, "; fi;",
        ]  # fmt: skip
    parts += [
        "} | grep -aE -e", QuoteString(HARD_BOUNCE_PATTERN),
        "|| [ $? -eq 1 ]",
    ]  # fmt: skip
    return StringCommand(*parts)


def scan_script(log_file: str = DEFAULT_LOG_FILE, *, journal: bool = True) -> str:
    """:func:`scan_command` as the one-line string a shell runs (``sh -c SCRIPT``)."""
    return str(scan_command(log_file, journal=journal))
