"""``mailmend``: the command line. Parses the subcommand and runs it.

A subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``, registered by
one line in :data:`COMMANDS`. Only the chosen subcommand's module is imported (``mailmend
queue`` never loads the DNS engine). Errors and exit codes: :mod:`mailmend.cli.errors`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from mailmend.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, report_usage_error, say


class Subcommand(NamedTuple):
    module: str  # has add_arguments(parser) and run(args) -> int
    help: str


#: name -> (module, help). A new subcommand is one entry here (docs/architecture.md).
COMMANDS: dict[str, Subcommand] = {
    "check": Subcommand(
        "mailmend.cli.check", "check PTR, FCrDNS, SPF, DKIM, DMARC and DNS blocklists"
    ),
    "records": Subcommand(
        "mailmend.cli.records",
        "the SPF, DKIM, DMARC, A and PTR records to publish; --apply publishes (RFC 2136)",
    ),
    "queue": Subcommand(
        "mailmend.cli.queue",
        "triage each host's mail queue; --hold SENDER holds that sender's mail",
    ),
    "ptr": Subcommand(
        "mailmend.providers.cli",
        "each host's PTR record: plan from DNS; --apply sets it through the VPS provider's API",
    ),
    "dmarc": Subcommand(
        "mailmend.dmarc.cli",
        "DMARC aggregate reports: fetch (IMAP), import (files), sources (who sends as a domain)",
    ),
    "watch": Subcommand(
        "mailmend.watch.cli",
        "keep checking the fleet: history in SQLite, alerts on change, Prometheus metrics",
    ),
    "mail-test": Subcommand(
        "mailmend.mailtest.cli",
        "send a test message from each host and read the receiver's verdict over IMAPS",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit 2), not after a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser for ``argv``: every subcommand listed, only the chosen one's options (its
    module imported) added."""
    parser = _Parser(
        prog="mailmend", description="Repair the sending reputation of mail VPSes, fleet-wide."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen(argv)
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.help, description=command.help)
        if name == chosen:
            importlib.import_module(command.module).add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        code: int = importlib.import_module(COMMANDS[args.command].module).run(args)
    except UsageError as err:
        return report_usage_error(args.command, err)
    except KeyboardInterrupt:  # subcommands that were mid-change say what they did first
        say(args.command, "interrupted (Ctrl-C): stopped before the end; run it again")
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
