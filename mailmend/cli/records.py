"""``mailmend records``: what the fleet's domains and hosts must publish, and publishing it.

A subcommand of :mod:`mailmend.cli.main` (:func:`add_arguments`, :func:`run`).
Exit codes (docs/records.md):

- 0: nothing to do, or the plan was shown / applied and verified
- 1: the server refused the update, the DNS does not show it afterwards, a domain is
  blocked (a malformed published record, a DNS failure) so part of the plan cannot be
  applied, or ``--dkim-from-hosts`` could not read a host's key (one line per such host;
  the other hosts' records are still planned / applied)
- 2: usage or input error (bad option, unreadable fleet or key file, unreadable DKIM key)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field

from mailmend.adopt import host_keys
from mailmend.checks.dkim_key import DkimPublicKey
from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.nameservers import Nameserver, parse_nameserver, system_nameservers
from mailmend.cli.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, UsageError, say, usage_errors
from mailmend.cli.options import (
    DEFAULT_DEADLINE,
    add_dkim_from_hosts,
    add_fleet_argument,
    load_fleet_file,
    read_key_file,
    seconds,
)
from mailmend.dmarc import cli as dmarc_cli
from mailmend.fleet import Fleet
from mailmend.providers import records_apply
from mailmend.records.dkim import DkimKeyError, read_genkey_txt
from mailmend.records.dmarc import StageChoice
from mailmend.records.plan import (
    DEFAULT_TTL,
    Plan,
    Sender,
    build_plan,
    plan_json,
    render_plan,
    render_zone,
    senders_from_fleet,
)
from mailmend.records.publish import (
    Interrupted,
    PublishError,
    ZoneResult,
    prepare,
    published_ttls,
    send,
    verify,
)
from mailmend.records.tsig import TsigKey, TsigKeyError, load_key_file, loose_permissions
from mailmend.rules import fqdn_problem

MIN_TTL, MAX_TTL = 60, 2**31 - 1  # RFC 2181 8: a TTL is at most 2^31 - 1
FORMATS = ("plan", "zone", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("what to read")
    add_fleet_argument(src)
    src.add_argument(
        "--nameserver", metavar="IP[:PORT]", action="append", default=[],
        help="resolver to read the published records from (repeatable; default: --server "
        "when given, else the system resolvers)",
    )  # fmt: skip
    src.add_argument(
        "--timeout", type=seconds, default=3.0, metavar="SECONDS", help="per DNS query (3)"
    )
    src.add_argument(
        "--deadline", type=seconds, default=DEFAULT_DEADLINE, metavar="SECONDS",
        help="reading the published records ends by then, and so does writing them through "
        f"--provider ({DEFAULT_DEADLINE:g})",
    )  # fmt: skip
    add_dkim_from_hosts(src, "and plan the DKIM record under it with that key")
    src.add_argument(
        "--dkim-txt", metavar="DOMAIN:SELECTOR=FILE", action="append", default=[],
        help="a local copy of an opendkim-genkey SELECTOR.txt (repeatable)",
    )  # fmt: skip
    want = parser.add_argument_group("what to propose")
    want.add_argument(
        "--dmarc-stage", choices=("none", "quarantine", "reject", "auto"),
        help="set published DMARC policies to this stage, forward or back (other tags kept); "
        "auto: one step forward where the DMARC reports show it is safe, never back "
        "(docs/dmarc.md)",
    )  # fmt: skip
    want.add_argument(
        "--replace-malformed", action="store_true",
        help="replace malformed SPF/DMARC records instead of waiting for a fix",
    )  # fmt: skip
    want.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL, help=f"TTL of new records ({DEFAULT_TTL})"
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format", choices=FORMATS, default="plan", help="plan (default), zone or json"
    )
    dmarc_cli.add_stage_arguments(parser)
    pub = parser.add_argument_group("publishing (RFC 2136 dynamic update, TSIG)")
    pub.add_argument("--apply", action="store_true", help="send the changes (default: dry run)")
    pub.add_argument("--server", metavar="IP[:PORT]", help="primary nameserver that takes updates")
    pub.add_argument("--tsig-key", metavar="FILE", help='BIND key file: key "NAME" { ... };')
    pub.add_argument("--zone", metavar="ZONE", help="the zone to update (default: found by SOA)")
    records_apply.add_arguments(parser)


@usage_errors("records")
def run(args: argparse.Namespace) -> int:
    _check_options(args)
    fleet = load_fleet_file(args.fleet, "records")
    server = _nameserver(args.server, "--server") if args.server else None
    key = _key(args.tsig_key) if args.tsig_key else None
    provider = records_apply.provider_from(args, fleet)
    if provider is not None and (server is not None or key is not None):
        raise UsageError("give --provider (an API) or --server/--tsig-key (RFC 2136), not both")
    if args.apply and provider is None and (server is None or key is None):
        raise UsageError("--apply needs --server IP[:PORT] and --tsig-key FILE, or --provider NAME")
    dkim = _dkim_keys(args, fleet)
    # Who answers "what is published": --nameserver, else the fleet's own nameservers (a
    # sandbox fleet must name its DNS server), else the primary, else this machine's resolver.
    readers = [_nameserver(n, "--nameserver") for n in args.nameserver]
    if not readers:
        readers = [_nameserver(n, "[fleet] nameservers") for n in fleet.settings.nameservers]
    if not readers:
        readers = [server] if server is not None else _system()
    try:
        with _report_db(args) as reports:  # closed on every way out, Ctrl-C included
            plan, silent = asyncio.run(_plan(args, fleet, dkim, readers, reports))
    except KeyboardInterrupt:
        _say("interrupted while reading the published records: nothing was sent")
        return EXIT_INTERRUPTED
    if silent:
        for ns in silent:
            _say(
                f"nameserver {ns} does not answer (no reply within {args.timeout:g}s): "
                "nothing can be planned; check it or give another --nameserver"
            )
        return EXIT_FAIL
    if args.format == "zone":  # records joining a published rrset keep its TTL
        try:
            plan = plan.with_ttls(published_ttls(plan.entries(), readers[0], args.timeout))
        except KeyboardInterrupt:
            _say("interrupted while reading the published records: nothing was sent")
            return EXIT_INTERRUPTED
    sys.stdout.write(_render(plan, args.format))
    problems = dkim.problems()
    for line in problems:
        _say(line)
    code = EXIT_FAIL if plan.blocked or problems else EXIT_OK
    changes = plan.changes()
    if not args.apply:
        if changes and (server is not None or provider is not None):
            print(f"dry run: {len(changes)} change(s) not sent; add --apply", file=sys.stderr)
        return code
    if not changes:
        print("nothing to publish", file=sys.stderr)
        return code
    if provider is not None:
        return records_apply.apply(args, plan, provider, readers, code)
    assert server is not None and key is not None
    return _apply(args, plan, server, key, code)


def _say(line: str) -> None:
    say("records", line)


def _report_db(args: argparse.Namespace) -> AbstractContextManager[sqlite3.Connection | None]:
    """The DMARC report database for ``--dmarc-stage auto`` (closed on leaving), else None."""
    if args.dmarc_stage != "auto":
        return nullcontext(None)
    return closing(dmarc_cli.stage_db(args))


def _apply(
    args: argparse.Namespace, plan: Plan, server: Nameserver, key: TsigKey, code: int
) -> int:
    """Send the plan's changes, say where every zone stands, verify. SIGINT: exit 130 after
    saying which zones were updated and which not."""
    try:
        updates = prepare(plan, server, key, zone=args.zone, timeout=args.timeout)
        results = send(updates, server, args.timeout)
    except Interrupted as err:
        _say_zones("interrupted", err.results)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        _say("interrupted before any update was sent: no zone was changed")
        return EXIT_INTERRUPTED
    except PublishError as err:
        _say(str(err))
        _say_zones("stopped", err.results or ())
        return EXIT_FAIL
    zones = ", ".join(r.zone for r in results)
    print(f"updated {zones} on {server}: {len(plan.changes())} change(s)", file=sys.stderr)
    for result in results:
        if result.detail:  # an answer was lost: what the read-back showed
            _say(f"zone {result.zone}: updated ({result.detail})")
    try:
        failures = asyncio.run(_verify(server, args, plan))
    except KeyboardInterrupt:
        _say(f"interrupted while verifying: {zones} updated; run records again to check")
        return EXIT_INTERRUPTED
    for failure in failures:
        _say(f"not visible after the update: {failure}")
    return EXIT_FAIL if failures else code


def _say_zones(what: str, results: Sequence[ZoneResult]) -> None:
    """One line per zone: updated, not updated, unknown or not sent (and why)."""
    if not results:
        _say(f"{what} before any update was sent: no zone was changed")
        return
    counts = Counter(r.state for r in results)
    _say(f"{what}: " + ", ".join(f"{n} zone(s) {state}" for state, n in counts.items()))
    for result in results:
        detail = f" ({result.detail})" if result.detail else ""
        _say(f"zone {result.zone}: {result.state}{detail}")


def _check_options(args: argparse.Namespace) -> None:
    """The options' values, before anything is read or contacted."""
    if not MIN_TTL <= args.ttl <= MAX_TTL:
        raise UsageError(f"--ttl {args.ttl}: must be from {MIN_TTL} to {MAX_TTL} seconds")
    if args.zone is not None:
        problem = fqdn_problem(args.zone, "example.com")
        if problem:
            raise UsageError(f"--zone: {problem}")


def _nameserver(text: str, option: str) -> Nameserver:
    try:
        return parse_nameserver(text)
    except ValueError as err:
        raise UsageError(f"{option}: {err}") from None


def _system() -> list[Nameserver]:
    try:
        return list(system_nameservers())
    except ValueError as err:
        raise UsageError(str(err)) from None


def _key(path: str) -> TsigKey:
    try:
        key = load_key_file(path)
    except TsigKeyError as err:
        raise UsageError(str(err)) from None
    if loose_permissions(path):
        _say(f"warning: {path} is readable by others: chmod 600")
    return key


SKIPPED = "; its DKIM records are skipped"


@dataclass(frozen=True)
class DkimInput:
    """The DKIM keys to plan with, and what ``--dkim-from-hosts`` found on the hosts."""

    keys: list[DkimPublicKey] = field(default_factory=list)
    hosts: list[host_keys.HostKeys] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per host whose keys could not all be read (none given with --dkim-txt)."""
        given = {(k.domain, k.selector) for k in self.keys}
        out = []
        for h in self.hosts:
            if h.problem and any((d.domain, d.selector) not in given for d in h.missing()):
                out.append(h.problem + SKIPPED)
        return out

    def senders(self, fleet: Fleet) -> list[Sender]:
        """The fleet's senders, each domain under the selector its host signs with."""
        selectors = {(h.host, d.domain): d.selector for h in self.hosts for d in h.domains}
        return [
            dataclasses.replace(
                s, domains=tuple((d, selectors.get((s.name, d), sel)) for d, sel in s.domains)
            )
            for s in senders_from_fleet(fleet)
        ]

    def origins(self) -> dict[tuple[str, str], str]:
        return {(d.domain, d.selector): d.origin() for h in self.hosts for d in h.domains}

    def skipped(self) -> dict[tuple[str, str], str]:
        return {(d.domain, d.selector): h.problem + SKIPPED for h in self.hosts if h.problem
                for d in h.missing()}  # fmt: skip


def _dkim_keys(args: argparse.Namespace, fleet: Fleet) -> DkimInput:
    found = DkimInput()
    try:
        for spec in args.dkim_txt:
            pair, sep, file = spec.partition("=")
            domain, colon, selector = pair.partition(":")
            if not (sep and colon and domain and selector and file):
                raise UsageError(f"--dkim-txt {spec!r}: expected DOMAIN:SELECTOR=FILE")
            try:
                text = read_key_file(file, "--dkim-txt").decode("utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise UsageError(f"--dkim-txt: cannot read {file}: {err}") from None
            found.keys.append(read_genkey_txt(text, domain, selector))
    except DkimKeyError as err:
        raise UsageError(str(err)) from None
    if args.dkim_from_hosts:
        given = {(k.domain, k.selector) for k in found.keys}
        found.hosts.extend(host_keys.read_hosts(fleet.hosts, args.ssh_timeout))
        found.keys.extend(
            d.key
            for h in found.hosts
            for d in h.domains
            if d.key is not None and (d.domain, d.selector) not in given
        )
    return found


async def _plan(
    args: argparse.Namespace,
    fleet: Fleet,
    dkim: DkimInput,
    readers: list[Nameserver],
    reports: sqlite3.Connection | None,
) -> tuple[Plan, tuple[Nameserver, ...]]:
    """The plan, and the readers that never answered when none did (then the plan is moot)."""
    config = EngineConfig(nameservers=tuple(readers), timeout=args.timeout)
    async with Engine(config) as engine:
        give_up = asyncio.get_running_loop().call_later(args.deadline, engine.abandon)
        stage: str | dict[str, StageChoice] | None = args.dmarc_stage
        if stage == "auto":
            assert reports is not None
            stage = await _auto_stages(args, engine, fleet, reports)
        plan = await build_plan(
            engine,
            dkim.senders(fleet),
            dkim_keys=dkim.keys,
            dkim_origins=dkim.origins(),
            dkim_skipped=dkim.skipped(),
            report_address=fleet.settings.dmarc_report_address,
            dmarc_stage=stage,
            replace_malformed=args.replace_malformed,
            ttl=args.ttl,
        )
        give_up.cancel()
        silent = engine.silent_nameservers()
        return plan, silent if len(silent) == len(readers) else ()


async def _auto_stages(
    args: argparse.Namespace, engine: Engine, fleet: Fleet, reports: sqlite3.Connection
) -> dict[str, StageChoice]:
    """``--dmarc-stage auto``: each fleet domain's choice from its reports."""
    from mailmend.dmarc.sources import fleet_addresses
    from mailmend.dmarc.staging import decide_domains, stage_choice

    domains = sorted({d.name for h in fleet.hosts for d in h.domains})
    decisions = await decide_domains(
        engine, reports, domains, fleet_addresses(fleet.hosts), dmarc_cli.stage_rule(args),
        int(time.time()),
    )  # fmt: skip
    return {domain: stage_choice(decision) for domain, decision in decisions.items()}


async def _verify(server: Nameserver, args: argparse.Namespace, plan: Plan) -> list[str]:
    config = EngineConfig(nameservers=(server,), timeout=args.timeout)
    async with Engine(config) as engine:  # a new engine: no cached answers
        give_up = asyncio.get_running_loop().call_later(args.deadline, engine.abandon)
        failures = await verify(engine, plan.changes())
        give_up.cancel()
        return failures


def _render(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(plan_json(plan), indent=2) + "\n"
    if fmt == "zone":
        return render_zone(plan)
    return render_plan(plan)
