"""DMARC records: a first ``p=none`` record with reports, the next stage of a staged rollout,
and the authorisation records that report addresses at other domains need.

Staging is none -> quarantine -> reject. An explicit stage (``--dmarc-stage quarantine``) sets
that policy, forward or back (a rollback after legitimate mail was lost); a stage chosen from
the reports (``--dmarc-stage auto``) only ever moves forward. Every other tag of the published
record is kept in its order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mailmend.checks.dmarc import (
    POLICIES,
    DmarcRecordError,
    authorisation_name,
    dmarc_name,
    is_dmarc,
    needs_authorisation,
    parse_record,
)
from mailmend.checks.names import normalize_name

__all__ = [
    "DmarcProposal",
    "ReportAuthorisation",
    "StageChoice",
    "authorisations",
    "propose_dmarc",
    "render_tags",
]


@dataclass(frozen=True)
class ReportAuthorisation:
    """``DOMAIN._report._dmarc.REPORTDOMAIN TXT "v=DMARC1"`` (RFC 7489 7.1)."""

    domain: str
    report_domain: str

    @property
    def name(self) -> str:
        return authorisation_name(self.domain, self.report_domain)

    value = "v=DMARC1"


@dataclass(frozen=True)
class StageChoice:
    """Where ``--dmarc-stage auto`` puts a domain, from its reports (``mailmend.dmarc``).

    ``stage`` None keeps the published policy; ``pct`` sets the pct= tag (100 removes it,
    None leaves it). ``headline`` and ``reasons`` say why; ``detail`` is the decision as JSON.
    """

    stage: str | None
    pct: int | None = None
    headline: str = ""
    reasons: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DmarcProposal:
    """What ``_dmarc.DOMAIN`` should hold.

    ``value`` is None when nothing can be proposed; ``problem`` says why the published
    record(s) cannot be used (malformed, several records): the domain waits for a fix.
    """

    name: str
    published: tuple[str, ...]  # the v=DMARC1 records found
    value: str | None
    problem: str | None = None
    notes: tuple[str, ...] = ()


def render_tags(tags: dict[str, str]) -> str:
    """``v=DMARC1; p=...; other tags in order``."""
    rest = [f"{k}={v}" for k, v in tags.items() if k not in ("v", "p")]
    return "; ".join(["v=DMARC1", f"p={tags['p']}", *rest])


def _first(domain: str, report_address: str | None) -> str:
    address = report_address or f"dmarc-reports@{normalize_name(domain)}"
    return f"v=DMARC1; p=none; rua=mailto:{address}"


def propose_dmarc(
    domain: str,
    txt_records: tuple[str, ...],
    report_address: str | None,
    stage: str | None = None,
    replace_malformed: bool = False,
    pct: int | None = None,
    back: bool = False,
) -> DmarcProposal:
    """The DMARC record for ``domain`` given the TXT records at ``_dmarc.DOMAIN``.

    ``stage`` (none, quarantine or reject) moves the policy forward, keeping the other tags,
    and back too when ``back`` (an explicit stage, never one chosen from the reports);
    ``pct`` (a step of a pct= ramp) sets pct=, 100 removes it.
    """
    name = dmarc_name(domain)
    published = tuple(r for r in txt_records if is_dmarc(r))
    notes: list[str] = []
    if not published:
        value = _first(domain, report_address)
        if stage and stage != "none":
            notes.append(f"start at p=none and read reports before p={stage}")
        notes.append("read the aggregate reports, then stage: --dmarc-stage quarantine")
        return DmarcProposal(name, published, value, notes=tuple(notes))
    if len(published) > 1:
        problem = (
            f"{len(published)} DMARC records at {name}: receivers ignore them all "
            "(RFC 7489 6.6.3); keep exactly one"
        )
        return _broken(name, published, problem, domain, report_address, replace_malformed)
    try:
        record = parse_record(published[0])
    except DmarcRecordError as err:
        problem = f"malformed DMARC record at {name}: {err} (record: {published[0]})"
        return _broken(name, published, problem, domain, report_address, replace_malformed)
    tags = dict(record.tags)
    tags.pop("v", None)
    current = record.policy
    if stage and POLICIES.index(stage) > POLICIES.index(current):
        tags["p"] = stage
        notes.append(f"p={current} -> p={stage}: watch the reports for legitimate mail failing")
    elif stage and stage != current and back:
        tags["p"] = stage
        notes.append(f"p={current} -> p={stage}: moved BACK, as asked (--dmarc-stage {stage})")
    elif stage and stage != current:
        notes.append(f"p={current} is already past p={stage}: not moved back")
    if pct is not None and tags.get("pct", "100") != str(pct):
        if pct == 100:
            tags.pop("pct", None)
        else:
            tags["pct"] = str(pct)
        notes.append(f"pct={pct}: the policy applies to that share of failing mail")
    if not record.addresses("rua") and report_address:
        tags["rua"] = f"mailto:{report_address}"
        notes.append("rua= added: without reports nobody sees who sends as the domain")
    if "pct" in tags:
        notes.append("pct= is dropped by RFC 9989: do not rely on it")
    unchanged = tags == {k: v for k, v in record.tags.items() if k != "v"}
    value = published[0] if unchanged else render_tags({"v": "DMARC1", **tags})
    return DmarcProposal(name, published, value, notes=tuple(notes))


def _broken(
    name: str,
    published: tuple[str, ...],
    problem: str,
    domain: str,
    report_address: str | None,
    replace_malformed: bool,
) -> DmarcProposal:
    if replace_malformed:
        note = f"replacing: {problem}"
        return DmarcProposal(name, published, _first(domain, report_address), notes=(note,))
    return DmarcProposal(name, published, None, problem=problem)


def authorisations(domain: str, value: str | None) -> tuple[ReportAuthorisation, ...]:
    """The authorisation records the report addresses of ``value`` need."""
    if value is None:
        return ()
    try:
        record = parse_record(value)
    except DmarcRecordError:
        return ()
    out: list[ReportAuthorisation] = []
    for tag in ("rua", "ruf"):
        for address in record.addresses(tag):
            if needs_authorisation(domain, address):
                auth = ReportAuthorisation(
                    normalize_name(domain), normalize_name(address.rpartition("@")[2])
                )
                if auth not in out:
                    out.append(auth)
    return tuple(out)
