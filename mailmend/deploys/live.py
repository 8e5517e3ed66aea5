"""Convergence from LIVE state: whatever a previous run did or failed to do, a rerun repairs it.

A deploy that decides "reload" or "postmap" from *this run's* changes (``_if=op.did_change``)
leaves a host stale forever when the run failed or was interrupted between the change and
its consequence: the next run sees the file already in place and reports no change. These
facts and operations look at the host instead:

- an **index** (``postmap``'s ``.db``/``.lmdb``/``.cdb``, ``newaliases``' ``aliases.db``)
  missing or older than its source is rebuilt (:func:`index_current`);
- a **daemon** whose configuration files are newer than the configuration it runs is
  reloaded or restarted (:func:`daemon_current`). "The configuration it runs" is the
  process's start time (``/proc/PID/stat``, 10 ms resolution), or, for a daemon that
  re-reads its files on a signal without restarting (``postfix reload``), a stamp file
  mailmend touches just before a reload that then succeeded.

pyinfra re-runs an operation's generator when it executes it and facts are not cached, so
these operations see the files the earlier operations of the same run wrote: on a first run
they fire after the swap, on a rerun after a failure they fire because the host is stale.
Nothing here depends on a particular config step: any step that writes a file a daemon or an
index reads only has to list that file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator, Sequence

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import operation
from pyinfra.context import host, state

#: ``postmap`` table type -> the index file it writes beside the source.
INDEX_SUFFIXES = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}


def table_index(lookup: str) -> tuple[str, str]:
    """``(source, index)`` of a Postfix indexed table named as in main.cf.

    >>> table_index("hash:/etc/postfix/sasl_passwd")
    ('/etc/postfix/sasl_passwd', '/etc/postfix/sasl_passwd.db')
    >>> table_index("lmdb:/etc/postfix/mailmend/suppress_recipients")[1]
    '/etc/postfix/mailmend/suppress_recipients.lmdb'
    """
    kind, _, path = lookup.partition(":")
    if kind not in INDEX_SUFFIXES or not path.startswith("/"):
        raise ValueError(f"{lookup!r}: not an indexed table (hash:, btree:, lmdb:, cdb:)")
    return path, path + INDEX_SUFFIXES[kind]


class Mtimes(FactBase[list[float | None]]):
    """
    Modification times (Unix time with fractions) of ``paths``, in order; ``None`` when absent.

    .. code:: python

        host.get_fact(Mtimes, paths=["/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"])
        [1795979097.78, None]
    """

    @staticmethod
    def default() -> list[float | None]:
        return []

    def command(self, paths: Sequence[str]) -> StringCommand:
        parts: list[str | QuoteString] = []
        for path in paths:
            quoted = QuoteString(path)
            parts += ["if [ -e", quoted, "]; then find", quoted, "-maxdepth 0 -printf '%T@\\n';",
                      "else echo -; fi;"]  # fmt: skip
        return StringCommand(*parts)

    def process(self, output: list[str]) -> list[float | None]:
        return [None if line.strip() == "-" else float(line) for line in output]


class ProcessStart(FactBase[float | None]):
    """
    When the process whose pid is in ``pidfile`` started (Unix time, 10 ms), or ``None`` when
    the pidfile is absent or its pid is not a live process whose command line contains
    ``process`` (a stale pidfile whose pid was reused).

    .. code:: python

        host.get_fact(ProcessStart, pidfile="/run/opendkim/opendkim.pid", process="opendkim")
        1795978950.21
    """

    def command(self, pidfile: str, process: str) -> StringCommand:
        # boot time = now - uptime; start = boot + field 22 of /proc/PID/stat in clock ticks
        # (read after the ") " that ends the command name, which may contain spaces).
        return StringCommand(
            "p=$(tr -d ' \\n' 2>/dev/null <", QuoteString(pidfile), ");",
            "if [ -n \"$p\" ] && [ -r \"/proc/$p/stat\" ] && grep -qa", QuoteString(process),
            "\"/proc/$p/cmdline\"; then",
            "echo \"$(date +%s.%N) $(cut -d' ' -f1 /proc/uptime)",
            "$(sed 's/.*) //' \"/proc/$p/stat\" | cut -d' ' -f20) $(getconf CLK_TCK)\"; fi",
        )  # fmt: skip

    def process(self, output: list[str]) -> float | None:
        if not output:
            return None
        now, uptime, start, ticks = output[0].split()
        return float(now) - float(uptime) + int(start) / int(ticks)


def newer_than(paths: Sequence[str], since: float) -> list[str]:
    """The ``paths`` (on the current host) modified after ``since``."""
    mtimes = host.get_fact(Mtimes, paths=list(paths))
    return [path for path, mtime in zip(paths, mtimes, strict=True) if mtime and mtime > since]


def index_is_current(source: str, index: str) -> bool:
    """True when ``index`` exists and is not older than ``source`` (or there is no source)."""
    source_mtime, index_mtime = host.get_fact(Mtimes, paths=[source, index])
    if source_mtime is None:
        return True
    return index_mtime is not None and index_mtime >= source_mtime


@operation()
def index_current(
    source: str, index: str, command: StringCommand
) -> Generator[StringCommand, None, None]:
    """
    Rebuild an index when it is missing or older than its source (a failed ``postmap`` or an
    interrupted run left it behind), whatever this run changed.

    + source: the text file (``/etc/postfix/sasl_passwd``)
    + index: the file daemons read (``/etc/postfix/sasl_passwd.db``)
    + command: what rebuilds it (``postmap hash:/etc/postfix/sasl_passwd``)
    """
    if index_is_current(source, index):
        host.noop(f"{index} is up to date with {source}")
        return
    yield command


@operation()
def daemon_current(
    service: str,
    configs: Sequence[str],
    pidfile: str,
    process: str,
    command: StringCommand,
    stamp: str | None = None,
) -> Generator[StringCommand, None, None]:
    """
    Reload or restart a running daemon when one of its files is newer than what it loaded.

    + service: its name, for messages
    + configs: every file it reads at (re)load
    + pidfile / process: where its pid is, and a word of its command line (``ProcessStart``)
    + command: the reload or restart (it must fail when the daemon did not take the files)
    + stamp: for a reload that keeps the process: a file touched before ``command`` and kept
      only when it succeeded; the daemon loaded its files at the later of its start and this

    A daemon that is not running is left to the "ensure running" step after this one.
    """
    started = host.get_fact(ProcessStart, pidfile=pidfile, process=process)
    if started is None:
        host.noop(f"{service} is not running (the next step starts it)")
        return
    loaded = started
    if stamp is not None:
        loaded = max(loaded, host.get_fact(Mtimes, paths=[stamp])[0] or 0.0)
    newer = newer_than(configs, loaded)
    if not newer:
        host.noop(f"{service} runs its current configuration")
        return
    if state.is_executing:
        host.log(f"{service} runs an older configuration than {', '.join(newer)}")
    if stamp is None:
        yield command
        return
    fresh = QuoteString(f"{stamp}.new")
    yield StringCommand(
        "mkdir -p", QuoteString(posixpath.dirname(stamp)), "&& touch", fresh,
        "&&", command, "&& mv -f", fresh, QuoteString(stamp),
    )  # fmt: skip
