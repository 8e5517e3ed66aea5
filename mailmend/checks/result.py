"""Typed results shared by every check: a status, a one-line summary and the details.

Checks return these; they never print. The CLI and the reports render them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from mailmend.checks.dns import DnsAnswer


class Status(StrEnum):
    """Outcome of one check. Order of severity: fail > unknown > warn > pass."""

    PASS = "pass"  # noqa: S105 (a status, not a password)
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"  # DNS could not tell (timeout, SERVFAIL, REFUSED, rewritten answer)


SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.UNKNOWN: 2, Status.FAIL: 3}


@dataclass(frozen=True)
class CheckResult:
    """One check of one subject (an IP or a domain).

    ``extra`` carries check-specific fields that are part of the JSON schema
    (for ``dnsbl``: ``zone``, ``listed``, ``codes``, ``meaning``, ``delist``).
    """

    check: str
    status: Status
    subject: str
    summary: str
    details: tuple[str, ...] = ()
    fix: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "status": self.status.value,
            "subject": self.subject,
            "summary": self.summary,
            "details": list(self.details),
            "fix": self.fix,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class ListProblem:
    """A blocklist that failed its own test points (it lists everything, or nothing it
    should): the list's problem, reported once for the whole run and never in a host's
    results, status or exit code."""

    zone: str
    name: str
    health: str  # "broken" (checks.dnsbl.Health)
    reason: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def worst(statuses: list[Status]) -> Status:
    """The most severe status of a list (pass for an empty list)."""
    return max(statuses, key=SEVERITY.__getitem__, default=Status.PASS)


def dns_unknown(check: str, subject: str, answer: DnsAnswer) -> CheckResult:
    """The result for a question DNS could not answer (SERVFAIL, TIMEOUT, REFUSED, ...)."""
    return CheckResult(
        check=check,
        status=Status.UNKNOWN,
        subject=subject,
        summary=f"DNS could not answer {answer.rdtype} {answer.name}: {answer.rcode.value}",
        fix="retry later, or ask another resolver (--nameserver)",
    )
