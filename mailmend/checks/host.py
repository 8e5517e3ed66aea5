"""Run every check for one host (or a fleet) concurrently and collect a :class:`HostReport`.

Per IP: ptr, fcrdns and, with blocklists, the IP lists. Per domain: spf, dkim, dmarc and,
with blocklists, the domain lists. ``checks.dnsbl`` is imported only when blocklists are given.

With blocklists, every list's health is probed once per run (``checks.dnsbl.list_health``,
once per fleet, not per host) and passed to each check, so that the answers of a broken or
wildcarding list never count as listings.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mailmend.checks.dkim import check_dkim
from mailmend.checks.dmarc import check_dmarc
from mailmend.checks.dns import Resolver
from mailmend.checks.fcrdns import check_fcrdns
from mailmend.checks.ptr import check_ptr
from mailmend.checks.result import CheckResult, ListProblem, Status, worst
from mailmend.checks.spf import check_spf

CHECK_ORDER = ("ptr", "fcrdns", "spf", "dkim", "dmarc", "dnsbl")
#: Seconds the checks get after the deadline to turn their TIMEOUT answers into results.
DEADLINE_GRACE = 2.0
Progress = Callable[[int, int], None]


def _no_keys() -> Mapping[tuple[str, str], str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class HostTarget:
    """What to check for one host: its name, FQDN, public IPs and (domain, selector) pairs."""

    name: str
    hostname: str
    ips: tuple[str, ...]
    domains: tuple[tuple[str, str | None], ...] = ()
    dkim_public_keys: Mapping[tuple[str, str], str] = field(default_factory=_no_keys)
    dmarc_report_address: str | None = None


@dataclass(frozen=True)
class HostReport:
    """Every result for one host. ``ip`` is the first public IP; ``ips`` lists them all."""

    name: str
    ip: str
    hostname: str
    results: list[CheckResult]
    ips: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        return worst([r.status for r in self.results])

    def counts(self) -> dict[str, int]:
        return count_statuses([self])


@dataclass(frozen=True)
class FleetReport:
    """A run: every host's report, and the blocklists that were broken for the whole run
    (reported once here, never in a host's results, status or exit code)."""

    hosts: list[HostReport]
    lists: tuple[ListProblem, ...] = ()


def count_statuses(reports: Sequence[HostReport]) -> dict[str, int]:
    """``{"pass": n, "warn": n, "fail": n, "unknown": n}`` over every result of every host."""
    counts = {s.value: 0 for s in (Status.PASS, Status.WARN, Status.FAIL, Status.UNKNOWN)}
    for report in reports:
        for result in report.results:
            counts[result.status.value] += 1
    return counts


def _dnsbl() -> Any:
    return importlib.import_module("mailmend.checks.dnsbl")


def _lists_for(blocklists: Sequence[Any], target: str) -> list[Any]:
    """The lists whose ``target`` is ``"ip"`` or ``"domain"`` (``Blocklist.target``)."""
    return [bl for bl in blocklists if getattr(bl, "target", None) == target]


async def list_health(
    resolver: Resolver, blocklists: Sequence[Any], dqs_key: str | None = None
) -> Mapping[str, Any]:
    """Every list's health (zone -> ``checks.dnsbl.ListHealth``), probed once."""
    health: Mapping[str, Any] = await _dnsbl().list_health(resolver, blocklists, dqs_key)
    return health


async def check_host(
    resolver: Resolver,
    target: HostTarget,
    blocklists: Sequence[Any] | None = None,
    dqs_key: str | None = None,
    health: Mapping[str, Any] | None = None,
) -> HostReport:
    """Run every check for ``target`` concurrently.

    ``health`` is the lists' health from :func:`list_health`; with blocklists and no
    ``health``, the lists are probed first (pass it in when checking many hosts).
    """
    if blocklists is not None and health is None:
        health = await list_health(resolver, blocklists, dqs_key)
    jobs: list[Awaitable[CheckResult | list[CheckResult]]] = []
    for ip in target.ips:
        jobs += [
            check_ptr(resolver, ip, target.hostname),
            check_fcrdns(resolver, ip, target.hostname),
        ]
    for domain, selector in target.domains:
        jobs.append(check_spf(resolver, domain, target.ips))
        if selector is None:
            jobs.append(_no_selector(domain))
        else:
            key = target.dkim_public_keys.get((domain, selector))
            jobs.append(check_dkim(resolver, domain, selector, key))
        jobs.append(check_dmarc(resolver, domain, target.dmarc_report_address))
    if blocklists is not None:
        dnsbl = _dnsbl()
        ip_lists, domain_lists = _lists_for(blocklists, "ip"), _lists_for(blocklists, "domain")
        jobs += [
            dnsbl.check_ip(resolver, ip, ip_lists, dqs_key, health=health) for ip in target.ips
        ]
        jobs += [
            dnsbl.check_domain(resolver, d, domain_lists, dqs_key, health=health)
            for d, _ in target.domains
        ]
    results: list[CheckResult] = []
    for outcome in await asyncio.gather(*jobs):
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    results.sort(key=_order)
    first_ip = target.ips[0] if target.ips else ""
    return HostReport(target.name, first_ip, target.hostname, results, target.ips)


def _order(result: CheckResult) -> int:
    return CHECK_ORDER.index(result.check) if result.check in CHECK_ORDER else len(CHECK_ORDER)


async def _no_selector(domain: str) -> CheckResult:
    return CheckResult(
        "dkim",
        Status.WARN,
        domain,
        f"no DKIM selector known for {domain}: DKIM not checked",
        fix="set the domain's selector in the fleet file",
    )


async def check_fleet(
    resolver: Resolver,
    targets: Sequence[HostTarget],
    blocklists: Sequence[Any] | None = None,
    dqs_key: str | None = None,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> FleetReport:
    """Check every host concurrently, in ``targets`` order.

    At ``deadline`` seconds the resolver is told to give up (``abandon()``, when it has one:
    every open and later question gets TIMEOUT, so each check ends with its own ``unknown``);
    hosts still running :data:`DEADLINE_GRACE` seconds later get one ``unknown`` result.
    ``progress(done, total)`` is called as hosts finish. With blocklists, the lists' health
    is probed once for the whole fleet, inside the deadline; a broken list gives no host a
    result and is reported once in :attr:`FleetReport.lists`.
    """
    health: asyncio.Future[Mapping[str, Any]] | None = None
    if blocklists is not None and targets:
        health = asyncio.ensure_future(list_health(resolver, blocklists, dqs_key))

    async def one(target: HostTarget) -> HostReport:
        lists_health = None if health is None else await asyncio.shield(health)
        return await check_host(resolver, target, blocklists, dqs_key, lists_health)

    tasks = [asyncio.ensure_future(one(t)) for t in targets]
    done_count = 0

    def finished(_: asyncio.Future[HostReport]) -> None:
        nonlocal done_count
        done_count += 1
        if progress is not None:
            progress(done_count, len(tasks))

    for task in tasks:
        task.add_done_callback(finished)
    if tasks:
        _done, running = await asyncio.wait(tasks, timeout=deadline)
        abandon = getattr(resolver, "abandon", None)
        if running and abandon is not None:
            abandon()
            await asyncio.wait(running, timeout=DEADLINE_GRACE)
    pending: list[asyncio.Future[Any]] = [task for task in tasks if not task.done()]
    if health is not None and not health.done():
        pending.append(health)
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    hosts = [
        _timed_out(target, deadline or 0.0) if task.cancelled() else task.result()
        for target, task in zip(targets, tasks, strict=True)
    ]
    lists: tuple[ListProblem, ...] = ()
    if blocklists is not None and health is not None and not health.cancelled():
        lists = tuple(_dnsbl().list_problems(blocklists, health.result()))
    return FleetReport(hosts, lists)


def _timed_out(target: HostTarget, deadline: float) -> HostReport:
    result = CheckResult(
        "deadline",
        Status.UNKNOWN,
        target.name,
        f"checks did not finish within the {deadline:g}s deadline",
        fix="raise --deadline, or check DNS reachability (--nameserver)",
    )
    first_ip = target.ips[0] if target.ips else ""
    return HostReport(target.name, first_ip, target.hostname, [result], target.ips)
