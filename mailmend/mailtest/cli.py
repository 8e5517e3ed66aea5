"""``mailmend mail-test``: options, input checks (exit 2, one line, nothing sent), output.

Exit codes as ``mailmend check``: 0 nothing failed, 1 something failed, 2 bad input,
3 unknowns (a message that never arrived) and no failure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import imapclient
import imapclient.exceptions

from mailmend import imap
from mailmend.cli.errors import EXIT_USAGE, UsageError, report_usage_error
from mailmend.cli.options import (
    add_fleet_argument,
    load_fleet_file,
    seconds,
    select_hosts,
    write_output,
)
from mailmend.mailtest import message as msgmod
from mailmend.mailtest import report
from mailmend.mailtest.headers import lint
from mailmend.mailtest.run import Job, Mailbox, run_all

FORMATS = ("table", "json", "html")
DEFAULT_TIMEOUT = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to send, from where, to whom")
    add_fleet_argument(what)
    what.add_argument(
        "--host", metavar="NAME", action="append", default=[], help="only this host (repeatable)"
    )
    what.add_argument("--to", metavar="ADDRESS", help="the test mailbox's address")
    what.add_argument(
        "--message",
        metavar="FILE.eml",
        help="send this message (recipient replaced) instead of the built-in test message",
    )
    what.add_argument(
        "--lint",
        action="store_true",
        help="check --message offline (headers, local SpamAssassin); send nothing",
    )
    box = parser.add_argument_group("the mailbox (IMAPS)")
    box.add_argument("--imap", metavar="HOST[:PORT]", help="IMAPS server of the test mailbox")
    box.add_argument("--imap-user", metavar="USER", help="IMAP login")
    box.add_argument(
        "--imap-password",
        metavar="env:NAME|file:PATH",
        help="where the IMAP password is (never the password itself)",
    )
    box.add_argument(
        "--imap-cafile",
        metavar="FILE",
        help="trust this CA for the IMAP server too (a private CA; the sandbox's in tests)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"wait this long for each message (default {DEFAULT_TIMEOUT:g}); then unknown",
    )
    run.add_argument("--keep", action="store_true", help="leave the test messages in the mailbox")
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="table", help="default table")
    out.add_argument("--output", metavar="FILE", help="write the report here instead of stdout")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as err:
        return report_usage_error("mail-test", err)
    except (msgmod.MessageError, imap.ImapError) as err:
        print(f"mailmend mail-test: {err}", file=sys.stderr)
        return EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    eml = msgmod.read_eml(args.message) if args.message else None
    if args.lint:
        if eml is None:
            raise UsageError("--lint checks a message file: give --message FILE.eml")
        return _lint(args, eml)
    plan = _plan(args)
    mailbox = _mailbox(args)
    _try_login(mailbox)  # before anything is sent
    text, code = asyncio.run(_send_all(args, plan, mailbox, eml))
    _write(args, text)
    return code


@dataclass(frozen=True)
class _Plan:
    jobs: list[Job]
    nameservers: list[str]
    report_address: str | None
    to: str


def _plan(args: argparse.Namespace) -> _Plan:
    from mailmend import rules

    if not args.to:
        raise UsageError("give --to ADDRESS: the test mailbox the hosts send to")
    problem = rules.email_problem(args.to)
    if problem:
        raise UsageError(f"--to: {problem}")
    fleet = load_fleet_file(args.fleet, "mail-test")
    hosts = select_hosts(fleet, args.host)
    jobs = [Job(h, d.name, d.selector) for h in hosts for d in h.domains]
    if not jobs:
        raise UsageError("no host with a domain to send for: add domains to the fleet file")
    return _Plan(
        jobs, list(fleet.settings.nameservers), fleet.settings.dmarc_report_address, args.to
    )


def _mailbox(args: argparse.Namespace) -> Mailbox:
    if not (args.imap and args.imap_user and args.imap_password):
        raise UsageError(
            "give --imap HOST[:PORT], --imap-user USER and --imap-password env:NAME|file:PATH"
        )
    try:
        host, port = imap.parse_imap_target(args.imap)
    except ValueError as err:
        raise UsageError(f"--imap: {err}") from None
    password = imap.resolve_password(args.imap_password)
    cafile = Path(args.imap_cafile) if args.imap_cafile else None
    if cafile is not None and not cafile.is_file():
        raise UsageError(f"--imap-cafile: {cafile} is not a file")
    # No IMAP wait longer than --timeout (the login before anything is sent included).
    timeout = min(imap.DEFAULT_TIMEOUT, args.timeout)
    return Mailbox(host, port, args.imap_user, password, cafile, timeout)


def _try_login(mailbox: Mailbox) -> None:
    client = mailbox.connect()
    try:
        client.logout()
    except (OSError, imapclient.exceptions.IMAPClientError):
        pass


async def _send_all(
    args: argparse.Namespace, plan: _Plan, mailbox: Mailbox, eml: EmailMessage | None
) -> tuple[str, int]:
    from mailmend.cli.check import open_resolver

    progress = (
        (lambda line: print(f"mail-test: {line}", file=sys.stderr)) if sys.stderr.isatty() else None
    )
    async with open_resolver(plan.nameservers, None) as resolver:
        reports = await run_all(
            plan.jobs,
            mailbox,
            plan.to,
            resolver,
            message=eml,
            timeout=args.timeout,
            keep=args.keep,
            report_address=plan.report_address,
            progress=progress,
        )
    if args.format == "json":
        return report.render_json(reports), report.exit_code(reports)
    if args.format == "html":
        return report.render_html(reports), report.exit_code(reports)
    return report.render_table(reports), report.exit_code(reports)


def _lint(args: argparse.Namespace, eml: EmailMessage) -> int:
    from mailmend.mailtest.content import local_spamassassin

    raw = Path(args.message).read_bytes()
    results = lint(eml, len(raw))
    local = local_spamassassin(raw)
    if local is not None:
        results.append(local)
    if args.format == "json":
        text = report.lint_json(results, args.message)
    else:
        text = report.lint_table(results, args.message)
        if local is None:
            text += (
                "  (SpamAssassin is not installed here: install spamassassin for a local score)\n"
            )
    _write(args, text)
    statuses = {r.status.value for r in results}
    return 1 if "fail" in statuses else 3 if "unknown" in statuses else 0


def _write(args: argparse.Namespace, text: str) -> None:
    write_output(text, args.output)
