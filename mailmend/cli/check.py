"""``mailmend check``: PTR, FCrDNS, SPF, DKIM, DMARC and DNS blocklists, for scripts and
monitoring. Exit codes (see docs/checks.md):

- 0: no check failed (warnings allowed)
- 1: at least one check failed
- 2: usage or input error (bad option, invalid IP, unreadable or invalid fleet file)
- 3: some results are unknown (DNS could not tell) and none failed

With ``--format nagios`` the exit codes follow the Nagios plugin API instead
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from mailmend.checks.dns import Resolver
from mailmend.checks.host import FleetReport, HostReport, HostTarget, check_fleet, count_statuses
from mailmend.checks.result import ListProblem
from mailmend.cli.errors import EXIT_FAIL, EXIT_OK, EXIT_UNKNOWN, UsageError, say, usage_errors
from mailmend.cli.options import (
    DEFAULT_DEADLINE,
    add_dkim_from_hosts,
    add_fleet_argument,
    load_fleet_file,
    read_key_file,
    seconds,
    select_hosts,
    write_output,
)

DQS_ENV = "MAILMEND_DQS_KEY"
AfterChecks = Callable[[Resolver], Awaitable[Any]]  # more DNS work on the checks' engine
FORMATS = ("table", "json", "html", "nagios")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to check (a fleet file, or one host)")
    add_fleet_argument(what)
    what.add_argument(
        "--host",
        metavar="NAME",
        action="append",
        default=[],
        help="only this fleet host (repeatable)",
    )
    what.add_argument(
        "--ip",
        metavar="IP",
        action="append",
        default=[],
        help="check one host by its public IP (IPv4 or IPv6); twice for a dual-stack host",
    )
    what.add_argument("--hostname", metavar="FQDN", help="the FQDN of the --ip host")
    what.add_argument(
        "--domain",
        metavar="DOMAIN[:SELECTOR]",
        action="append",
        default=[],
        help="a domain the --ip host sends for, with its DKIM selector (repeatable)",
    )
    what.add_argument(
        "--dkim-key",
        metavar="DOMAIN:SELECTOR=FILE",
        action="append",
        default=[],
        help="the host's DKIM public key for a --domain (opendkim-genkey's SELECTOR.txt, "
        "a p= record or base64): the published key must be this one (repeatable)",
    )
    add_dkim_from_hosts(what, "and check the published record under it against that key")
    dns = parser.add_argument_group("DNS")
    dns.add_argument(
        "--nameserver",
        metavar="IP[:PORT]",
        action="append",
        default=[],
        help="resolver to ask (repeatable; default: the system resolvers)",
    )
    dns.add_argument(
        "--dqs-key-file", metavar="FILE", help=f"file holding the Spamhaus DQS key (or ${DQS_ENV})"
    )
    dns.add_argument(
        "--dqs-key", metavar="KEY",
        help="the DQS key itself: other users can read it in the process list, prefer "
        f"--dqs-key-file or ${DQS_ENV}",
    )  # fmt: skip
    dns.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="per-query timeout (default 1.5)"
    )
    dns.add_argument(
        "--deadline", type=seconds, default=DEFAULT_DEADLINE, metavar="SECONDS",
        help=f"the whole run ends by then: what is still unanswered is unknown "
        f"(default {DEFAULT_DEADLINE:g})",
    )  # fmt: skip
    dns.add_argument("--no-dnsbl", action="store_true", help="skip the DNS blocklist checks")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format", choices=FORMATS, default="table", help="report format (default table)"
    )
    out.add_argument("--output", metavar="FILE", help="write the report here instead of stdout")
    out.add_argument(
        "--dmarc-db", metavar="FILE",
        help="with --format html: add a DMARC section per domain from this report database "
        "(default: mailmend dmarc's, when it exists)",
    )  # fmt: skip


@usage_errors("check")
def run(args: argparse.Namespace) -> int:
    targets = targets_from_args(args)
    with _dmarc_db(args) as db:
        sections = None if db is None else _dmarc_sections(db, targets)
        run, extra = _check_then(args, targets, sections)
    if getattr(args, "vps_providers", None):  # PTR fixes name `mailmend ptr` (docs/ptr.md)
        from mailmend.providers.ptr import point_fixes_at_ptr

        providers, fleet_path = args.vps_providers
        for report in run.hosts:
            point_fixes_at_ptr(report.results, report.name, providers.get(report.name), fleet_path)
    colour = args.output is None and _colour_ok()
    text, code = render(run.hosts, args.format, colour=colour, lists=run.lists, extra_html=extra)
    write_output(text, args.output)
    unread = getattr(args, "dkim_unread", [])
    for line in unread:
        say("check", line)
    return EXIT_UNKNOWN if unread and code == EXIT_OK else code


def check_reports(args: argparse.Namespace, targets: list[HostTarget]) -> FleetReport:
    """Run the checks of ``mailmend check`` (``args`` as :func:`add_arguments` makes
    them) on ``targets``; ``mailmend watch`` runs them the same way."""
    return _check_then(args, targets, None)[0]


def _check_then(
    args: argparse.Namespace, targets: list[HostTarget], then: AfterChecks | None
) -> tuple[FleetReport, Any]:
    """The checks, then ``then(resolver)`` on the same DNS engine; (report, what it returned)."""
    blocklists = None if args.no_dnsbl else _load_blocklists()
    dqs_key = dqs_key_from_args(args)
    if dqs_key is not None and blocklists is not None:
        from mailmend.checks.dnsbl import validate_dqs_key

        try:
            validate_dqs_key(dqs_key)
        except ValueError as err:
            raise UsageError(f"DQS key: {err}") from None
    progress = _progress if sys.stderr.isatty() else None
    return asyncio.run(_check(args, targets, blocklists, dqs_key, progress, then))


def dqs_key_from_args(args: argparse.Namespace) -> str | None:
    """The DQS key: ``--dqs-key-file``, ``--dqs-key`` (warned about) or ``$MAILMEND_DQS_KEY``."""
    if args.dqs_key is not None and args.dqs_key_file is not None:
        raise UsageError("give --dqs-key-file or --dqs-key, not both")
    if args.dqs_key is not None:
        say(
            "check",
            "warning: --dqs-key is readable by every user of this machine "
            f"(ps, /proc/PID/cmdline): use --dqs-key-file FILE or ${DQS_ENV}",
        )
        return str(args.dqs_key) or None
    if args.dqs_key_file is not None:
        return _read_dqs_key_file(args.dqs_key_file)
    return os.environ.get(DQS_ENV) or None


def _read_dqs_key_file(path: str) -> str:
    try:
        text = read_key_file(path, "--dqs-key-file").decode("ascii", errors="replace").strip()
    except OSError as err:
        raise UsageError(f"--dqs-key-file: cannot read {path}: {err.strerror}") from None
    if not text:
        raise UsageError(f"--dqs-key-file: {path} is empty: put the DQS key in it")
    if os.stat(path).st_mode & 0o077:
        say("check", f"warning: {path} is readable by others: chmod 600 {path}")
    return text


async def _check(
    args: argparse.Namespace,
    targets: list[HostTarget],
    blocklists: Sequence[Any] | None,
    dqs_key: str | None,
    progress: Callable[[int, int], None] | None,
    then: AfterChecks | None = None,
) -> tuple[FleetReport, Any]:
    async with open_resolver(args.nameserver, args.timeout) as resolver:
        run = await check_fleet(
            resolver, targets, blocklists, dqs_key, deadline=args.deadline, progress=progress
        )
        if progress is not None:
            sys.stderr.write("\n")
        extra = None if then is None else await then(resolver)
    return run, extra


@asynccontextmanager
async def open_resolver(nameservers: list[str], timeout: float | None) -> AsyncIterator[Resolver]:
    """The DNS engine on the given nameservers (default: the system's)."""
    from mailmend.checks.engine import Engine, EngineConfig
    from mailmend.checks.nameservers import parse_nameserver, system_nameservers

    try:
        servers = tuple(parse_nameserver(n) for n in nameservers) or system_nameservers()
        config = EngineConfig(nameservers=servers)
        if timeout is not None:
            config = dataclasses.replace(config, timeout=timeout)
    except ValueError as err:
        raise UsageError(str(err)) from None
    async with Engine(config) as engine:
        yield engine


@contextmanager
def _dmarc_db(args: argparse.Namespace) -> Iterator[Any]:
    """With ``--format html``: the DMARC report database (one connection, closed on every
    way out), or None; other formats never open it."""
    if args.format != "html":
        yield None
        return
    from mailmend.dmarc import cli as dmarc_cli

    db = dmarc_cli.check_db(args)
    try:
        yield db
    finally:
        if db is not None:
            db.close()


def _dmarc_sections(db: Any, targets: list[HostTarget]) -> AfterChecks:
    """The DMARC sections of the HTML report, asked on the checks' DNS engine."""
    from mailmend.dmarc import cli as dmarc_cli

    return lambda resolver: dmarc_cli.check_sections(resolver, db, targets)


def _load_blocklists() -> Sequence[Any]:
    from mailmend.checks.blocklists import BlocklistError, load_blocklists

    try:
        return load_blocklists()
    except BlocklistError as err:
        raise UsageError(f"blocklist data: {err}") from None


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\rchecked {done}/{total} hosts")
    sys.stderr.flush()


def _colour_ok() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def targets_from_args(args: argparse.Namespace) -> list[HostTarget]:
    """The hosts to check, from ``--ip`` or a fleet file; raises :class:`UsageError`."""
    if args.ip or args.hostname is not None or args.domain or args.dkim_key:
        if args.fleet or args.host:
            raise UsageError("give either --fleet/--host or --ip/--hostname/--domain, not both")
        if getattr(args, "dkim_from_hosts", False):
            raise UsageError("--dkim-from-hosts reads the hosts of a fleet: give --fleet")
        target = single_target(args.ip, args.hostname, args.domain)
        keys = dkim_keys_from_args(args.dkim_key, target.domains)
        return [dataclasses.replace(target, dkim_public_keys=keys)]
    fleet = load_fleet_file(
        args.fleet, "check", otherwise="check one host with --ip IP --hostname FQDN"
    )
    args.vps_providers = {h.name: h.vps_provider for h in fleet.hosts}, str(fleet.path)
    if not args.nameserver:  # the fleet's resolvers, unless --nameserver says otherwise
        args.nameserver = list(fleet.settings.nameservers)
    selected = select_hosts(fleet, args.host)
    hosts = {h.name for h in selected}
    targets = [t for t in targets_from_fleet(fleet) if t.name in hosts]
    if getattr(args, "dkim_from_hosts", False):
        targets, args.dkim_unread = _with_host_dkim(targets, selected, args.ssh_timeout)
    return targets


def _with_host_dkim(
    targets: list[HostTarget], hosts: Sequence[Any], timeout: float
) -> tuple[list[HostTarget], list[str]]:
    """Each target's domains under the selector its host signs with, with the host's public
    keys; and one line per host whose keys could not be read (checked as the fleet says)."""
    from mailmend.adopt.host_keys import read_hosts

    found = {h.host: h for h in read_hosts(hosts, timeout)}
    out = []
    for target in targets:
        keys = found[target.name]
        selectors = {d.domain: d.selector for d in keys.domains}
        out.append(
            dataclasses.replace(
                target,
                domains=tuple((d, selectors.get(d, s)) for d, s in target.domains),
                dkim_public_keys={
                    (d.domain, d.selector): d.key.public_key_b64
                    for d in keys.domains
                    if d.key is not None
                },
            )
        )
    unchecked = "; its DKIM is checked under the fleet file's selector, without the host's key"
    return out, [h.problem + unchecked for h in found.values() if h.problem]


def targets_from_fleet(fleet: Any) -> list[HostTarget]:
    """One :class:`HostTarget` per fleet host (``mailmend.fleet.Fleet``)."""
    report_address = fleet.settings.dmarc_report_address
    return [
        HostTarget(
            name=h.name,
            hostname=h.hostname,
            ips=tuple(ip for ip in (h.public_ipv4, h.public_ipv6) if ip),
            domains=tuple((d.name, d.selector) for d in h.domains),
            dmarc_report_address=report_address,
        )
        for h in fleet.hosts
    ]


def single_target(ips: list[str], hostname: str | None, domains: list[str]) -> HostTarget:
    """The target of ``--ip IP [--ip IP] --hostname FQDN [--domain DOMAIN[:SELECTOR]]...``."""
    from mailmend import rules

    if not ips or not hostname:
        raise UsageError("--ip and --hostname go together: give both")
    addresses = [_host_address(ip) for ip in ips]
    if len({a.version for a in addresses}) != len(addresses):
        raise UsageError("--ip: give at most one IPv4 and one IPv6 address (one host)")
    problem = rules.fqdn_problem(hostname)
    if problem:
        raise UsageError(f"--hostname: {problem}")
    pairs: list[tuple[str, str | None]] = []
    for text in domains:
        domain, colon, selector = text.partition(":")
        if colon and not selector:
            raise UsageError(f"--domain: {text!r} ends with ':': give DOMAIN or DOMAIN:SELECTOR")
        problem = rules.fqdn_problem(domain, "example.com") or (
            rules.selector_problem(selector) if selector else None
        )
        if problem:
            raise UsageError(f"--domain: {problem}")
        pairs.append((rules.normalize_fqdn(domain), selector or None))
    host = rules.normalize_fqdn(hostname)
    return HostTarget(host, host, tuple(str(a) for a in addresses), tuple(pairs))


def _host_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``--ip``: one host's address; a zone index, unspecified or multicast is refused."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise UsageError(f"--ip: {ip!r} is not an IP address (IPv4 or IPv6)") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise UsageError(
                f"--ip: {ip!r} has a zone index (%...): give the host's public address, "
                "which has none"
            )
        if address.ipv4_mapped:
            raise UsageError(f"--ip: {ip!r} is IPv4-mapped: give the IPv4 address itself")
    if address.is_unspecified or address.is_multicast:
        raise UsageError(f"--ip: {ip!r} is not one host's address: give its public address")
    return address


def dkim_keys_from_args(
    texts: list[str], domains: tuple[tuple[str, str | None], ...]
) -> dict[tuple[str, str], str]:
    """``--dkim-key DOMAIN:SELECTOR=FILE`` values: (domain, selector) -> base64 public key."""
    from mailmend import rules
    from mailmend.checks.dkim_key import DkimRecordError, parse_key_text

    keys: dict[tuple[str, str], str] = {}
    for text in texts:
        pair, sep, path = text.partition("=")
        domain, _, selector = pair.partition(":")
        if not sep or not selector or not path:
            raise UsageError(f"--dkim-key: expected DOMAIN:SELECTOR=FILE, not {text!r}")
        key = (rules.normalize_fqdn(domain), selector.lower())
        if key not in domains:
            raise UsageError(f"--dkim-key: {pair} is not one of the --domain DOMAIN:SELECTOR")
        try:
            text = read_key_file(path, "--dkim-key").decode("utf-8")
            keys[key] = parse_key_text(text, *key).public_key_b64
        except OSError as err:
            raise UsageError(f"--dkim-key: cannot read {path}: {err.strerror}") from None
        except (DkimRecordError, UnicodeDecodeError) as err:
            raise UsageError(f"--dkim-key: {path}: {err}") from None
    return keys


# --- rendering and exit codes --------------------------------------------------------------------


def exit_code(reports: Sequence[HostReport]) -> int:
    """0 nothing failed, 1 a check failed, 3 unknowns and no failure."""
    counts = count_statuses(reports)
    if counts["fail"]:
        return EXIT_FAIL
    if counts["unknown"]:
        return EXIT_UNKNOWN
    return EXIT_OK


def render(
    reports: Sequence[HostReport],
    fmt: str,
    *,
    colour: bool = False,
    lists: Sequence[ListProblem] = (),
    extra_html: Any = None,
) -> tuple[str, int]:
    """The report text in ``fmt`` and the exit code that goes with it. Broken ``lists``
    are shown once, for the fleet, and never change the exit code; ``extra_html`` (the
    DMARC sections) ends the HTML page."""
    if fmt == "nagios":
        from mailmend.checks.report_nagios import render_nagios

        return render_nagios(reports, lists)
    if fmt == "json":
        from mailmend.checks.report_json import render_json

        return render_json(reports, lists=lists), exit_code(reports)
    if fmt == "html":
        from mailmend.checks.report_html import render_html

        return render_html(reports, lists=lists, extra_html=extra_html), exit_code(reports)
    from mailmend.checks.report_table import render_table

    return render_table(reports, colour, lists), exit_code(reports)
