"""``mailmend records --dmarc-stage auto``: the stage decision of each fleet domain.

Reads the DMARC record each domain publishes now, the reports made under it in the window
(the shared database) and classifies their sources, then applies the rule of
:mod:`mailmend.dmarc.stage`. A domain without exactly one valid DMARC record gets no decision:
the records plan already says what is wrong with it (or proposes the first ``p=none``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence

from mailmend.checks.dmarc import DmarcRecordError, dmarc_name, is_dmarc, parse_record
from mailmend.checks.dns import Resolver
from mailmend.dmarc.db import DAY, domain_reports, source_stats
from mailmend.dmarc.render import DomainView
from mailmend.dmarc.sources import DEFAULT_DEADLINE, classify_all
from mailmend.dmarc.stage import StageDecision, StageRule, decide
from mailmend.records.dmarc import StageChoice


def published_policy(records: Sequence[str]) -> tuple[str, int | None] | None:
    """(p, pct) of the one valid DMARC record among ``records``; None otherwise."""
    found = [r for r in records if is_dmarc(r)]
    if len(found) != 1:
        return None
    try:
        record = parse_record(found[0])
    except DmarcRecordError:
        return None
    pct_text = record.tags.get("pct", "")
    pct = int(pct_text) if pct_text.isdigit() and int(pct_text) <= 100 else None
    return record.policy, pct


async def decide_domain(
    resolver: Resolver,
    conn: sqlite3.Connection,
    domain: str,
    fleet: Mapping[str, str],
    rule: StageRule,
    now: int,
    deadline: float = DEFAULT_DEADLINE,
) -> StageDecision | None:
    answer = await resolver.query(dmarc_name(domain) + ".", "TXT")
    current = published_policy(answer.records) if answer.ok else None
    if current is None:
        return None
    since = now - rule.days * DAY
    evidence = domain_reports(conn, since, domain, current).get(domain)
    stats = source_stats(conn, since, domain, current)
    sources = await classify_all(resolver, stats, fleet, deadline)
    return decide(domain, current[0], current[1], evidence, sources, rule, now)


async def decide_domains(
    resolver: Resolver,
    conn: sqlite3.Connection,
    domains: Sequence[str],
    fleet: Mapping[str, str],
    rule: StageRule,
    now: int,
    deadline: float = DEFAULT_DEADLINE,
) -> dict[str, StageDecision]:
    """The decision for each of ``domains`` that publishes one valid DMARC record."""
    found = await asyncio.gather(
        *(decide_domain(resolver, conn, d, fleet, rule, now, deadline) for d in domains)
    )
    return {d: decision for d, decision in zip(domains, found, strict=True) if decision}


def stage_choice(decision: StageDecision) -> StageChoice:
    """The records plan's view of a decision: what to publish, and why (the plan escapes)."""
    return StageChoice(
        stage=decision.target if decision.moves else None,
        pct=decision.target_pct if decision.moves else None,
        headline=decision.headline(),
        reasons=decision.reasons,
        detail=decision.to_json(),
    )


async def fleet_views(
    resolver: Resolver,
    conn: sqlite3.Connection,
    domains: Sequence[str],
    fleet: Mapping[str, str],
    rule: StageRule,
    now: int,
    since: int,
    deadline: float = DEFAULT_DEADLINE,
) -> list[DomainView]:
    """Per domain: its sources since ``since`` and its stage decision (for reports)."""
    stats = [s for d in domains for s in source_stats(conn, since, d)]
    reports = domain_reports(conn, since)
    sources, decisions = await asyncio.gather(
        classify_all(resolver, stats, fleet, deadline),
        decide_domains(resolver, conn, domains, fleet, rule, now, deadline),
    )
    return [
        DomainView(
            d,
            reports.get(d),
            tuple(s for s in sources if s.stats.domain == d),
            decisions.get(d),
        )
        for d in domains
    ]
