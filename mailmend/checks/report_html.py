"""One self-contained HTML file: host counts, a hosts x checks grid, then every problem with
its fix. Each red, amber or purple cell links to its problem; hovering it shows the summary.

The page is ``checks/report.html.j2``: inline CSS, no scripts, no external assets. Everything
is escaped (jinja2 autoescape); only http(s) URLs become links.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
import markupsafe

from mailmend.checks.host import CHECK_ORDER, HostReport, count_statuses
from mailmend.checks.report_table import problems
from mailmend.checks.result import CheckResult, ListProblem, Status


def html_templates(package: str) -> jinja2.Environment:
    """The templates shipped in ``package``: everything autoescaped, no undefined value."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENV = html_templates("mailmend.checks")
TEMPLATE = "report.html.j2"


_DOMAIN_CHECKS = ("spf", "dkim", "dmarc")
#: What a grid cell shows first: a real finding (a listing, a policy listing) before what DNS
#: could not tell. The host's status (and the exit code) still rank unknown above warn.
SHOWN_FIRST = (Status.FAIL, Status.WARN, Status.UNKNOWN, Status.PASS)
ICONS = {"pass": "\u2714", "warn": "\u26a0", "fail": "\u2716", "unknown": "?", "none": ""}
#: The summary cards: how many hosts are in each state.
CARDS = (
    ("fail", "hosts failing"),
    ("unknown", "hosts DNS could not tell"),
    ("warn", "hosts with warnings"),
    ("pass", "hosts all good"),
)


@dataclass(frozen=True)
class Cell:
    status: str
    text: str
    title: str = ""  # tooltip: the summary of the worst result
    anchor: str = ""  # the problem this cell links to


@dataclass(frozen=True)
class Problem:
    result: CheckResult
    delist_url: str | None
    delist_steps: tuple[str, ...]
    anchor: str = ""


@dataclass(frozen=True)
class HostView:
    report: HostReport
    cells: tuple[Cell, ...]
    problems: tuple[Problem, ...]
    anchor: str = ""

    @property
    def status(self) -> str:
        return self.report.status.value


def columns(reports: Sequence[HostReport]) -> list[str]:
    seen = {r.check for report in reports for r in report.results}
    return [c for c in CHECK_ORDER if c in seen] + sorted(seen - set(CHECK_ORDER))


def cell(results: list[CheckResult], check: str, anchors: Mapping[int, str] | None = None) -> Cell:
    """One grid cell: its most important real finding first (:data:`SHOWN_FIRST`), linked
    to that problem (``anchors``: ``id(result)`` -> anchor); dnsbl names the lists."""
    if not results:
        return Cell("none", "no domain" if check in _DOMAIN_CHECKS else "not checked")
    status = next(s for s in SHOWN_FIRST if any(r.status is s for r in results))
    shown = next(r for r in results if r.status is status)
    icon = ICONS[status.value]
    link = (anchors or {}).get(id(shown), "") if status is not Status.PASS else ""
    unknown = sum(1 for r in results if r.status is Status.UNKNOWN)
    also = f" (+{unknown} unknown)" if unknown and status is not Status.UNKNOWN else ""
    if check == "dnsbl":
        return Cell(
            status.value, f"{icon} {_dnsbl_text(results, status)}{also}", shown.summary, link
        )
    if len(results) == 1 or all(r.status is status for r in results):
        return Cell(status.value, f"{icon} {status.value}{also}", shown.summary, link)
    bad = sum(1 for r in results if r.status is status)
    text = f"{icon} {bad} {status.value} / {len(results)}{also}"
    return Cell(status.value, text, shown.summary, link)


def _dnsbl_text(results: list[CheckResult], status: Status) -> str:
    """``clean (22 lists)``, ``listed: zen.spamhaus.org``, ``policy: ...``, ``1 unknown / 19``."""
    if status is Status.PASS:
        return f"clean ({len(results)} list{'s' if len(results) != 1 else ''})"
    zones = [str(r.extra.get("zone", r.subject)) for r in results if r.status is status]
    if status is Status.UNKNOWN:
        return f"{len(zones)} unknown / {len(results)}"
    what = "listed" if status is Status.FAIL else "policy"
    shown = ", ".join(zones[:2]) + (f" +{len(zones) - 2}" if len(zones) > 2 else "")
    return f"{what}: {shown}"


def _web_url(value: object) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value
    return None


def delisting(extra: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(URL, steps) from a dnsbl result's ``delist`` (a URL, text, a mapping or an object)."""
    value = extra.get("delist")
    if value is None:
        return None, ()
    if isinstance(value, str):
        url = _web_url(value)
        return url, () if url else (value,)

    def get(key: str) -> object:
        return value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)

    steps = get("steps")
    if isinstance(steps, str):
        texts = [steps]
    elif isinstance(steps, list | tuple):
        texts = [str(s) for s in steps]
    else:
        texts = []
    for key in ("expiry", "procedure", "text"):
        text = get(key)
        if isinstance(text, str) and text:
            texts.append(text)
    return _web_url(get("url")), tuple(texts)


def _problem(result: CheckResult, anchor: str) -> Problem:
    """A problem with its delisting steps, minus those its fix already says."""
    url, steps = delisting(result.extra)
    fix = result.fix or ""
    return Problem(result, url, tuple(s for s in steps if s not in fix), anchor)


def render_html(
    reports: Sequence[HostReport],
    generated: datetime | None = None,
    *,
    lists: Sequence[ListProblem] = (),
    extra_html: markupsafe.Markup | None = None,
) -> str:
    """The page; ``lists`` (broken blocklists) get a section of their own, under the grid;
    ``extra_html`` (rendered by an autoescaping template: the DMARC sections) goes at its end."""
    cols = columns(reports)
    ordered = problems(reports)
    views = []
    for index, report in enumerate(reports):
        mine = tuple(
            _problem(result, f"h{index}-p{n}")
            for n, result in enumerate(r for rep, r in ordered if rep is report)
        )
        anchors = {id(problem.result): problem.anchor for problem in mine}
        cells = tuple(cell([r for r in report.results if r.check == c], c, anchors) for c in cols)
        views.append(HostView(report, cells, mine, f"h{index}"))
    host_counts = {key: 0 for key, _ in CARDS}
    for report in reports:
        host_counts[report.status.value] += 1
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    template = _ENV.get_template(TEMPLATE)
    return template.render(
        generated=when, hosts=views, columns=cols, summary=count_statuses(reports),
        host_counts=host_counts, cards=CARDS, icons=ICONS, lists=lists,
        extra=extra_html or "",
    )  # fmt: skip
