"""``mailmend records --apply --provider NAME``: the plan published through a DNS provider API.

:mod:`mailmend.cli.records` registers the options (:func:`add_arguments`) and hands over the
plan (:func:`apply`). The provider and its settings come from ``--provider`` /
``--provider-option`` / ``--provider-credential`` or else from the fleet's ``[dns]`` table;
credentials are references (``env:NAME`` / ``file:/path``) only.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.nameservers import Nameserver
from mailmend.cli.errors import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, say
from mailmend.fleet import Fleet
from mailmend.records.plan import Plan, RecordChange
from mailmend.records.publish import verify
from mailmend.rules import option_name_problem, secret_reference_problem

if TYPE_CHECKING:  # the providers extra is imported only when a provider is used
    from mailmend.providers.dns import DnsProvider


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "publishing through a DNS provider's API (dns-lexicon; default: RFC 2136)"
    )
    group.add_argument(
        "--provider", metavar="NAME",
        help="hostinger, or a dns-lexicon provider (powerdns, cloudflare, ...); default: the "
        "fleet's [dns]",
    )  # fmt: skip
    group.add_argument(
        "--provider-option", metavar="KEY=VALUE", action="append", default=[],
        help="a plain provider setting, e.g. pdns_server=https://dns.example.com (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--provider-credential", metavar="KEY=env:NAME|file:PATH", action="append", default=[],
        help="a provider credential BY REFERENCE, e.g. auth_token=env:PDNS_API_KEY (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--debug", action="store_true",
        help="log the provider library's requests on stderr (secrets shown as ***)",
    )  # fmt: skip


def _pairs(items: Sequence[str], option: str, check_value: bool) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        problem = option_name_problem(key) if sep else f"{item!r}: expected KEY=VALUE"
        if not problem and check_value:
            problem = secret_reference_problem(value)
            if problem:
                problem = f"{key}: {problem}"
        if problem:
            raise UsageError(f"{option}: {problem}")
        out[key] = value
    return out


def provider_from(args: argparse.Namespace, fleet: Fleet) -> DnsProvider | None:
    """The DNS provider to publish through, or None for RFC 2136."""
    options = _pairs(args.provider_option, "--provider-option", check_value=False)
    credentials = _pairs(args.provider_credential, "--provider-credential", check_value=True)
    name = args.provider or fleet.dns.provider
    if name is None:
        if options or credentials:
            raise UsageError("--provider-option/--provider-credential need --provider NAME")
        return None
    problem = option_name_problem(name)
    if problem:
        raise UsageError(f"--provider: {problem}")
    if name == fleet.dns.provider:
        options = {**fleet.dns.options, **options}
        credentials = {**fleet.dns.credentials, **credentials}
    try:
        from mailmend.providers import dns as provider_dns
        from mailmend.providers.secrets import ProviderError, debug_logging
    except ImportError as err:
        raise UsageError(
            f"--provider needs {err.name}: pip install 'mailmend[providers]'"
        ) from None
    try:
        provider_dns.load_provider(name)
    except ProviderError as err:
        raise UsageError(str(err)) from None
    problem = provider_dns.settings_problem(name, options, credentials)
    if problem:
        raise UsageError(problem)
    debug_logging(args.debug)
    return provider_dns.DnsProvider(name, options, credentials)


def _say(line: str) -> None:
    from mailmend.providers.secrets import redact

    say("records", redact(line))


def apply(
    args: argparse.Namespace,
    plan: Plan,
    provider: DnsProvider,
    readers: Sequence[Nameserver],
    code: int,
) -> int:
    """Write the plan's changes through ``provider``, say each zone's outcome, verify in DNS."""
    from mailmend.providers import dns as provider_dns
    from mailmend.providers.secrets import BadCredentials, ProviderError

    try:
        outcomes = provider_dns.publish(
            plan, provider, zone=args.zone, timeout=args.timeout, deadline=args.deadline
        )
    except BadCredentials as err:
        _say(f"{err}: nothing was sent")
        return EXIT_USAGE
    except ProviderError as err:
        _say(f"{err}: nothing was written")
        return EXIT_FAIL
    except provider_dns.Interrupted as interrupted:
        for outcome in interrupted.outcomes:
            for line in provider_dns.outcome_lines(outcome):
                _say(line)
        _say("interrupted (Ctrl-C): run records again to see and finish")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # while the zones were looked up: nothing was written yet
        _say("interrupted (Ctrl-C) while looking up the zones: nothing was written")
        return EXIT_INTERRUPTED
    failed = False
    for outcome in outcomes:
        dns_failures: list[str] = []
        if outcome.status == "applied":
            dns_failures = asyncio.run(
                provider_dns.verify_dns(
                    lambda records: _verify(readers, args.timeout, records),
                    outcome.records,
                    deadline=args.deadline,
                )
            )
        for line in provider_dns.outcome_lines(outcome, dns_failures):
            _say(line)
        failed = failed or not outcome.ok or bool(dns_failures)
    return EXIT_FAIL if failed else code


async def _verify(
    readers: Sequence[Nameserver], timeout: float, records: Sequence[RecordChange]
) -> list[str]:
    config = EngineConfig(nameservers=tuple(readers), timeout=timeout)
    async with Engine(config) as engine:  # a new engine each round: no cached answers
        return await verify(engine, records)
