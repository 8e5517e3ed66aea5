"""``mailmend ptr --fleet F [--host H] [--apply]``: set each host's PTR through its provider.

Exit codes (docs/ptr.md):

- 0: every PTR names its host (nothing to do, or set and seen in DNS)
- 1: a provider refused or failed, a host's forward record is missing (blocked), a PTR must
  be set by hand (no ``vps_provider``), or DNS did not answer
- 2: usage or input error (bad option, unreadable fleet file or credential reference)
- 3: set at the provider but not yet in DNS when the deadline passed ("pending at the
  provider"): run ``mailmend ptr`` again later to check
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.nameservers import Nameserver, parse_nameserver, system_nameservers
from mailmend.cli.errors import EXIT_FAIL, EXIT_OK, EXIT_UNKNOWN, EXIT_USAGE, UsageError
from mailmend.cli.options import add_fleet_argument, load_fleet_file, seconds, select_hosts
from mailmend.fleet import Fleet, HostSpec
from mailmend.providers.ptr import (
    PtrOutcome,
    PtrPlan,
    State,
    Summary,
    plan_fleet,
    render,
    wait_for_ptr,
)

EXIT_PENDING = EXIT_UNKNOWN  # set at the provider, not yet seen in DNS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fleet_argument(parser)
    parser.add_argument(
        "--host", metavar="NAME", action="append", default=[], help="only this host (repeatable)"
    )
    parser.add_argument(
        "--apply", action="store_true", help="ask the providers to set the PTRs (default: plan)"
    )
    parser.add_argument(
        "--rename-droplet", action="store_true",
        help="DigitalOcean: rename the droplet to the host's FQDN (its PTR follows the name)",
    )  # fmt: skip
    parser.add_argument(
        "--nameserver", metavar="IP[:PORT]", action="append", default=[],
        help="resolver to read PTR and A records from (default: the fleet's, else the system's)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="SECONDS",
        help="per DNS query and per provider API request (10)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=seconds, default=120.0, metavar="SECONDS",
        help="how long to poll DNS for a new PTR before calling it pending (120)",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true",
        help="log the provider clients' requests on stderr (secrets shown as ***)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as err:
        for line in str(err).splitlines() or [""]:
            _say(line)
        return EXIT_USAGE


def _say(line: str) -> None:
    from mailmend.providers.secrets import redact

    print(f"mailmend ptr: {redact(line)}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    fleet = load_fleet_file(args.fleet, "ptr")
    hosts = select_hosts(fleet, args.host)
    readers = _readers(args, fleet)
    plans = asyncio.run(_plan(readers, args.timeout, hosts))
    print("PTR records (from DNS) and what to set:")
    for plan in plans:
        print(render(plan))
    todo = [
        p
        for p in plans
        if p.state is State.SET or (p.state is State.RENAME and args.rename_droplet)
    ]
    stuck = [p for p in plans if p.state in (State.BLOCKED, State.MANUAL, State.UNKNOWN)]
    stuck += [p for p in plans if p.state is State.RENAME and not args.rename_droplet]
    if not args.apply:
        if todo:
            _say(f"dry run: {len(todo)} PTR(s) not set; add --apply")
        return EXIT_FAIL if stuck else EXIT_OK
    if not todo:
        _say("nothing to set" if not stuck else f"nothing set: {len(stuck)} PTR(s) need you first")
        return EXIT_FAIL if stuck else EXIT_OK
    from mailmend.providers.secrets import debug_logging

    debug_logging(args.debug)
    summary = Summary()
    by_name = {h.name: h for h in hosts}
    for plan in todo:
        summary.outcomes.append(_apply_one(plan, by_name[plan.host], readers, args))
    for outcome in summary.outcomes:
        _say(_outcome_line(outcome))
    if summary.failed or stuck:
        return EXIT_FAIL
    return EXIT_PENDING if summary.pending else EXIT_OK


def _apply_one(
    plan: PtrPlan, host: HostSpec, readers: Sequence[Nameserver], args: argparse.Namespace
) -> PtrOutcome:
    from mailmend.providers.secrets import BadCredentials, ProviderError, http_deadline, resolve
    from mailmend.providers.vps import adapter

    assert host.vps_provider is not None
    try:
        if host.vps_credentials is None:
            raise BadCredentials(f"host {host.name}: no vps_credentials in the fleet")
        secret = resolve(host.vps_credentials, f"host {host.name}: vps_credentials")
        with http_deadline(args.timeout):
            api = adapter(host.vps_provider, secret, host.vps_endpoint, args.timeout)
            target = api.find(plan.ip)
            api.set_ptr(target, plan.fqdn)
    except ProviderError as err:
        return PtrOutcome(plan, "failed", f"{err}: not changed")
    seen = asyncio.run(
        wait_for_ptr(lambda ip: _ask_ptr(readers, args.timeout, ip), plan.ip, plan.fqdn, args.wait)
    )
    if seen:
        return PtrOutcome(plan, "done", "", done_at_provider=True)
    return PtrOutcome(
        plan,
        "pending",
        f"accepted by {plan.provider} but not in DNS after {args.wait:g}s: pending at the "
        "provider (some take hours); run mailmend ptr again later to check",
        done_at_provider=True,
    )


def _outcome_line(outcome: PtrOutcome) -> str:
    p = outcome.plan
    head = f"{p.host} {p.ip}"
    if outcome.result == "done" and p.state is State.RENAME:
        return f"{head}: droplet renamed to {p.fqdn}; its PTR follows, seen in DNS (FCrDNS holds)"
    if outcome.result == "done":
        return f"{head}: PTR set to {p.fqdn} through {p.provider}, seen in DNS (FCrDNS holds)"
    return f"{head}: {outcome.message}"


async def _plan(
    readers: Sequence[Nameserver], timeout: float, hosts: Sequence[HostSpec]
) -> list[PtrPlan]:
    async with Engine(EngineConfig(nameservers=tuple(readers), timeout=timeout)) as engine:
        return await plan_fleet(engine, hosts)


async def _ask_ptr(readers: Sequence[Nameserver], timeout: float, ip: str) -> tuple[str, ...]:
    async with Engine(EngineConfig(nameservers=tuple(readers), timeout=timeout)) as engine:
        answer = await engine.query(reverse_name(ip), "PTR")  # a new engine: nothing cached
        return tuple(normalize_name(r) for r in answer.records)


def _readers(args: argparse.Namespace, fleet: Fleet) -> list[Nameserver]:
    texts = args.nameserver or list(fleet.settings.nameservers)
    try:
        return [parse_nameserver(t) for t in texts] if texts else list(system_nameservers())
    except ValueError as err:
        raise UsageError(f"--nameserver: {err}") from None
