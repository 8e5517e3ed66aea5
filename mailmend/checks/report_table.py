"""Terminal report an admin reads in five seconds: problems first, then a line per host.

Problems are ordered fail, unknown, warn (then host order); each has its fix on the next
line. Colour only when asked (the CLI asks when stdout is a TTY).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailmend.checks.escape import visible
from mailmend.checks.host import HostReport, count_statuses
from mailmend.checks.result import SEVERITY, CheckResult, ListProblem, Status

_COLOURS = {
    Status.FAIL: "\033[1;31m",
    Status.UNKNOWN: "\033[1;35m",
    Status.WARN: "\033[1;33m",
    Status.PASS: "\033[32m",
}
_RESET = "\033[0m"
_WIDTH = 7  # "UNKNOWN"


def _label(status: Status, colour: bool) -> str:
    text = status.value.upper().ljust(_WIDTH)
    return f"{_COLOURS[status]}{text}{_RESET}" if colour else text


def problems(reports: Sequence[HostReport]) -> list[tuple[HostReport, CheckResult]]:
    """Every non-pass result, most severe first, stable in host and check order."""
    found = [(r, c) for r in reports for c in r.results if c.status is not Status.PASS]
    return sorted(found, key=lambda pair: -SEVERITY[pair[1].status])


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in ("fail", "unknown", "warn", "pass"))


def _fix_lines(fix: str | None) -> list[str]:
    if not fix:
        return []
    indent = " " * (_WIDTH + 2)
    first, *more = [visible(line) for line in fix.split("\n")]
    return [f"{indent}fix: {first}", *(f"{indent}     {line}" for line in more)]


def render_table(
    reports: Sequence[HostReport], colour: bool = False, lists: Sequence[ListProblem] = ()
) -> str:
    lines: list[str] = []
    for report, result in problems(reports):
        lines.append(
            f"{_label(result.status, colour)}  {report.name}  {result.check} "
            f"{visible(result.subject)}: {visible(result.summary)}"
        )
        lines.extend(_fix_lines(result.fix))
    for problem in lists:  # the list's problem, not a host's: after the hosts' problems
        broken = "BROKEN".ljust(_WIDTH)
        label = f"{_COLOURS[Status.UNKNOWN]}{broken}{_RESET}" if colour else broken
        lines.append(
            f"{label}  blocklist {problem.zone} ({problem.name}): {visible(problem.reason)}; "
            "its answers are ignored, for every host"
        )
        lines.extend(_fix_lines(problem.fix))
    if lines:
        lines.append("")
    for report in reports:
        where = ", ".join(filter(None, [report.hostname, *report.ips]))
        lines.append(
            f"{_label(report.status, colour)}  {report.name} ({where}): "
            f"{_counts_line(report.counts())}"
        )
    total = count_statuses(reports)
    lines.append(f"{len(reports)} hosts: {_counts_line(total)}")
    return "\n".join(lines) + "\n"
