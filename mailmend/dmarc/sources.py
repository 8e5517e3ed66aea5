"""Who sends as each domain: every source IP the reports name, classified.

- ``fleet``: one of the fleet's hosts (by its public IPv4 or IPv6 address);
- ``service``: the domain's SPF record passes it, by the term named (an ``include:`` of a
  mail service, usually): evaluated with the project's SPF evaluator (:mod:`checks.spf`);
- ``unknown``: neither, with its PTR name: a forgotten sender to authorise, or spoofing.

DNS is asked through a :class:`checks.dns.Resolver` under one deadline for all sources;
a source DNS could not classify in time is ``unknown`` and says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mailmend.checks.dns import Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.spf import Evaluation, SPFError, evaluate, fetch_record
from mailmend.dmarc.db import SourceStats

DEFAULT_DEADLINE = 10.0  # seconds for classifying every source


class SourceClass(StrEnum):
    FLEET = "fleet"
    SERVICE = "service"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Classification:
    kind: SourceClass
    name: str  # the fleet host, the SPF term that passes it, or the PTR name ("" if none)
    detail: str = ""  # why it is unknown beyond "no SPF pass" (SPF error, DNS failure)


@dataclass(frozen=True)
class Source:
    stats: SourceStats
    cls: Classification

    @property
    def known(self) -> bool:
        return self.cls.kind is not SourceClass.UNKNOWN

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "ip": s.ip,
            "class": self.cls.kind.value,
            "name": self.cls.name or None,
            "detail": self.cls.detail or None,
            "messages": s.messages,
            "aligned": s.aligned,
            "aligned_pct": round(s.aligned_pct, 2),
            "dkim": {"aligned": s.dkim_aligned, "pass": s.dkim_pass},
            "spf": {"aligned": s.spf_aligned, "pass": s.spf_pass},
            "disposition": dict(s.dispositions),
            "orgs": list(s.orgs),
        }


def fleet_addresses(hosts: Sequence[Any]) -> dict[str, str]:
    """IP -> host name, from ``mailmend.fleet`` hosts (public_ipv4 / public_ipv6)."""
    out: dict[str, str] = {}
    for host in hosts:
        for ip in (host.public_ipv4, host.public_ipv6):
            if ip:
                out[ipaddress.ip_address(ip).compressed] = host.name
    return out


async def spf_pass(resolver: Resolver, domain: str, ip: str) -> tuple[str | None, str]:
    """(the term of ``domain``'s SPF record that passes ``ip`` or None, a problem if any)."""
    ev = Evaluation(resolver, ipaddress.ip_address(ip))
    try:
        record = await fetch_record(ev, normalize_name(domain))
        if record is None:
            return None, f"{domain} has no SPF record"
        match = await evaluate(ev, normalize_name(domain), record)
    except SPFError as err:
        return None, f"SPF of {domain}: {err}"
    if match is None or match.result != "pass":
        return None, ""
    where = "" if match.domain == normalize_name(domain) else f" (in {match.domain})"
    return f"{match.term}{where}", ""


async def ptr_name(resolver: Resolver, ip: str) -> tuple[str, str]:
    """(the PTR name or "", a problem if DNS could not tell)."""
    answer = await resolver.query(reverse_name(ip), "PTR")
    if not answer.ok:
        return "", f"PTR lookup: {answer.rcode.value}"
    names = [normalize_name(r) for r in answer.records]
    return (names[0], "") if names else ("", "no PTR")


async def classify(
    resolver: Resolver, domain: str, ip: str, fleet: Mapping[str, str]
) -> Classification:
    host = fleet.get(ip)
    if host is not None:
        return Classification(SourceClass.FLEET, host)
    term, spf_problem = await spf_pass(resolver, domain, ip)
    if term is not None:
        return Classification(SourceClass.SERVICE, term)
    name, ptr_problem = await ptr_name(resolver, ip)
    detail = "; ".join(p for p in (spf_problem, ptr_problem) if p)
    return Classification(SourceClass.UNKNOWN, name, detail)


async def classify_all(
    resolver: Resolver,
    stats: Sequence[SourceStats],
    fleet: Mapping[str, str],
    deadline: float = DEFAULT_DEADLINE,
) -> list[Source]:
    """Every source classified; those DNS did not settle by ``deadline`` are unknown."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline

    async def one(s: SourceStats) -> Source:
        try:
            async with asyncio.timeout_at(end):
                return Source(s, await classify(resolver, s.domain, s.ip, fleet))
        except TimeoutError:
            note = f"DNS gave no answer within the {deadline:g} s deadline"
            return Source(s, Classification(SourceClass.UNKNOWN, "", note))

    return list(await asyncio.gather(*(one(s) for s in stats)))


def by_domain(sources: Sequence[Source]) -> dict[str, list[Source]]:
    out: dict[str, list[Source]] = {}
    for source in sources:
        out.setdefault(source.stats.domain, []).append(source)
    return out
