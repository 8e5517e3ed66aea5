"""Nagios/Icinga plugin output: one line with performance data, and the plugin exit code.

Exit codes follow the Nagios plugin API, not mailmend's own: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN. Any fail is CRITICAL; else any unknown is UNKNOWN; else any warn is WARNING.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailmend.checks.host import HostReport, count_statuses
from mailmend.checks.result import ListProblem

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def nagios_state(counts: dict[str, int]) -> int:
    if counts["fail"]:
        return CRITICAL
    if counts["unknown"]:
        return UNKNOWN
    if counts["warn"]:
        return WARNING
    return OK


def render_nagios(
    reports: Sequence[HostReport], lists: Sequence[ListProblem] = ()
) -> tuple[str, int]:
    """``("MAILMEND CRITICAL - 1 fail, 2 warn, 0 unknown on 3 hosts | fail=1 ...\\n", 2)``.

    Broken blocklists are named after the counts (``; broken list: all.s5h.net``) and
    counted in ``broken_lists=N``; they never change the state.
    """
    c = count_statuses(reports)
    state = nagios_state(c)
    broken = f"; broken list: {', '.join(p.zone for p in lists)}" if lists else ""
    line = (
        f"MAILMEND {_STATE_NAMES[state]} - {c['fail']} fail, {c['warn']} warn, "
        f"{c['unknown']} unknown on {len(reports)} hosts{broken} "
        f"| fail={c['fail']} warn={c['warn']} unknown={c['unknown']} pass={c['pass']}"
        f" broken_lists={len(lists)}"
    )
    return line + "\n", state
