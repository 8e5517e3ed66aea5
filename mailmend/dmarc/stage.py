"""Staging a domain's DMARC policy by evidence: none -> quarantine -> reject.

The rule (docs/dmarc.md): the policy moves one step only when the reports made under the
policy published now, over the last ``days`` days,

1. number at least ``min_reports`` from at least ``min_orgs`` organisations and cover the
   window (the oldest began at least ``days - 1`` days ago);
2. show every known source (a fleet host, or a service the domain's SPF passes) aligned for
   at least ``min_aligned`` percent of its messages;
3. show no unknown source with more than ``unknown_max`` messages.

Otherwise the policy stays, with one reason per source or shortfall. With a ``ramp`` of
``pct=`` steps (e.g. 25, 50, 100) a stage is entered at the first step and climbs a step per
passing run before the next stage. The policy never moves backwards here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailmend.checks.dmarc import NEXT_STAGE
from mailmend.dmarc.db import DAY, DomainReports
from mailmend.dmarc.sources import Source, SourceClass


@dataclass(frozen=True)
class StageRule:
    days: int = 14
    min_reports: int = 5
    min_orgs: int = 2
    min_aligned: float = 98.0  # percent of a known source's messages
    unknown_max: int = 10  # messages from one unknown source
    ramp: tuple[int, ...] = ()  # pct= steps, ascending, ending at 100

    def __post_init__(self) -> None:
        if self.ramp and (list(self.ramp) != sorted(set(self.ramp)) or self.ramp[-1] != 100):
            raise ValueError("the pct ramp must be ascending whole percentages ending at 100")
        if self.ramp and self.ramp[0] < 1:
            raise ValueError("pct ramp steps must be between 1 and 100")


@dataclass(frozen=True)
class StageDecision:
    domain: str
    policy: str  # published now
    pct: int | None  # published now (None: no pct tag, which means 100)
    target: str  # what to publish
    target_pct: int | None  # None: leave the pct tag as it is
    reasons: tuple[str, ...]  # why it moves, or why it stays (one per source or shortfall)
    sources: tuple[Source, ...] = ()

    @property
    def moves(self) -> bool:
        if self.target != self.policy:
            return True
        return self.target_pct is not None and self.target_pct != (self.pct or 100)

    def headline(self) -> str:
        now = _label(self.policy, self.pct)
        if not self.moves:
            return f"stays at {now}"
        return f"{now} -> {_label(self.target, self.target_pct)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "policy": self.policy,
            "pct": self.pct,
            "target": self.target,
            "target_pct": self.target_pct,
            "moves": self.moves,
            "reasons": list(self.reasons),
            "sources": [s.to_json() for s in self.sources],
        }


def _label(policy: str, pct: int | None) -> str:
    return f"p={policy}" + (f" pct={pct}" if pct is not None and pct != 100 else "")


def _describe(source: Source) -> str:
    s, cls = source.stats, source.cls
    what = f"{cls.kind.value} {cls.name}" if cls.name else cls.kind.value
    if cls.kind is SourceClass.UNKNOWN and not cls.name:
        what = "unknown, no PTR"
    return f"{s.ip} ({what})"


def _next(policy: str, pct: int | None, rule: StageRule) -> tuple[str, int | None]:
    if rule.ramp and policy != "none":
        current = 100 if pct is None else pct
        higher = [step for step in rule.ramp if step > current]
        if higher:
            return policy, higher[0]
    if policy not in NEXT_STAGE:
        return policy, pct
    return NEXT_STAGE[policy], (rule.ramp[0] if rule.ramp else None)


def decide(
    domain: str,
    policy: str,
    pct: int | None,
    evidence: DomainReports | None,
    sources: Sequence[Source],
    rule: StageRule,
    now: int,
) -> StageDecision:
    """Whether ``domain`` moves from ``policy`` (``pct``) on this evidence, and why.

    ``evidence`` and ``sources`` must hold only the reports of the window made under the
    published ``policy`` and ``pct`` (``mailmend.dmarc.db.domain_reports`` /
    ``source_stats`` with ``policy=``).
    """
    target, target_pct = _next(policy, pct, rule)
    if (target, target_pct) == (policy, pct):
        last = f"{_label(policy, pct)} is the last stage"
        return StageDecision(domain, policy, pct, policy, None, (last,), tuple(sources))
    blockers: list[str] = []
    label = _label(policy, pct)
    reports = evidence.reports if evidence else 0
    orgs = len(evidence.orgs) if evidence else 0
    if reports < rule.min_reports or orgs < rule.min_orgs:
        blockers.append(
            f"not enough reports: {reports} from {orgs} organisation(s) made under {label} in "
            f"the last {rule.days} days (need {rule.min_reports} from {rule.min_orgs})"
        )
    elif evidence is not None and evidence.first_begin > now - (rule.days - 1) * DAY:
        days = (now - evidence.first_begin) / DAY
        blockers.append(
            f"the reports made under {label} cover {days:.1f} days (need {rule.days}): "
            "wait until the current stage has been seen that long"
        )
    passing: list[str] = []
    for source in sources:
        s = source.stats
        share = f"{s.aligned_pct:.1f}% of {s.messages} message(s) aligned"
        results = f"DKIM aligned {s.dkim_aligned}, SPF aligned {s.spf_aligned}"
        if source.known and s.aligned_pct < rule.min_aligned:
            blockers.append(
                f"{_describe(source)}: {share} (need {rule.min_aligned:g}%; {results}): "
                "fix its DKIM signing or SPF authorisation first"
            )
        elif not source.known and s.messages > rule.unknown_max:
            blockers.append(
                f"{_describe(source)}: {s.messages} message(s) from an unknown source "
                f"(more than {rule.unknown_max}; {share}): authorise it in SPF and sign its "
                "mail if it is yours; if it is spoofing, stage by hand with --dmarc-stage"
            )
        elif source.known:
            passing.append(f"{_describe(source)}: {share}")
    if blockers:
        return StageDecision(domain, policy, pct, policy, None, tuple(blockers), tuple(sources))
    summary = (
        f"{reports} reports from {orgs} organisations under {label}: every known source "
        f"aligned at >= {rule.min_aligned:g}%, no unknown source over {rule.unknown_max} messages"
    )
    return StageDecision(
        domain, policy, pct, target, target_pct, (summary, *passing), tuple(sources)
    )
