"""``mailmend dmarc sources`` output: a table, JSON (docs/dmarc.md) or an HTML page.

Report data comes from strangers: in the table every control or format character is shown
escaped (``\\027``, :func:`checks.escape.visible`), in HTML jinja2 escapes
everything; JSON is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import markupsafe

from mailmend.checks.escape import visible
from mailmend.checks.report_html import html_templates
from mailmend.dmarc.db import DomainReports
from mailmend.dmarc.sources import Source
from mailmend.dmarc.stage import StageDecision

JSON_VERSION = 1
MAX_CELL = 60
DISPOSITIONS = ("none", "quarantine", "reject")

ENV = html_templates("mailmend.dmarc")


@dataclass(frozen=True)
class DomainView:
    """One domain's sources in a window, and its stage decision when one was made."""

    domain: str
    reports: DomainReports | None
    sources: tuple[Source, ...]
    decision: StageDecision | None = None

    @property
    def messages(self) -> int:
        return sum(s.stats.messages for s in self.sources)

    @property
    def aligned_pct(self) -> float:
        total = self.messages
        return 100.0 * sum(s.stats.aligned for s in self.sources) / total if total else 100.0

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "reports": self.reports.reports if self.reports else 0,
            "orgs": list(self.reports.orgs) if self.reports else [],
            "messages": self.messages,
            "aligned_pct": round(self.aligned_pct, 2),
            "sources": [s.to_json() for s in self.sources],
            "stage": self.decision.to_json() if self.decision else None,
        }


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal (controls escaped as ``\\DDD``), cut to ``limit``."""
    out = visible(text)
    if limit is not None and len(out) > limit:
        return out[: limit - 3] + "..."
    return out


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def render_table(views: Sequence[DomainView], since: datetime) -> str:
    lines: list[str] = []
    head = ("SOURCE", "CLASS", "NAME", "MESSAGES", "ALIGNED", "DKIM al/pass", "SPF al/pass",
            "none/quar/rej", "REPORTED BY")  # fmt: skip
    for view in views:
        count = view.reports.reports if view.reports else 0
        orgs = len(view.reports.orgs) if view.reports else 0
        lines.append(
            f"{printable(view.domain)}: {view.messages} message(s) from {len(view.sources)} "
            f"source(s), {_pct(view.aligned_pct)} aligned; {count} report(s) from {orgs} "
            f"organisation(s) since {since:%Y-%m-%d %H:%M} UTC"
        )
        rows = [head]
        for source in view.sources:
            s, cls = source.stats, source.cls
            name = cls.name or (f"({cls.detail})" if cls.detail else "")
            rows.append(
                (
                    s.ip, cls.kind.value, printable(name, MAX_CELL), str(s.messages),
                    _pct(s.aligned_pct), f"{s.dkim_aligned}/{s.dkim_pass}",
                    f"{s.spf_aligned}/{s.spf_pass}",
                    "/".join(str(s.dispositions.get(k, 0)) for k in DISPOSITIONS),
                    printable(", ".join(s.orgs), MAX_CELL),
                )
            )  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        numeric = {3, 4}
        for row in rows:
            cells = [
                c.rjust(widths[i]) if i in numeric else c.ljust(widths[i])
                for i, c in enumerate(row)
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        if view.decision is not None:
            lines.append(f"  stage: {printable(view.decision.headline())}")
            lines += [f"    - {printable(r)}" for r in view.decision.reasons]
        lines.append("")
    if not views:
        lines.append(f"no reports since {since:%Y-%m-%d %H:%M} UTC")
    return "\n".join(lines).rstrip("\n") + "\n"


def sources_json(views: Sequence[DomainView], since: datetime) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "since": since.isoformat(timespec="seconds"),
        "domains": [v.to_json() for v in views],
    }


def render_json(views: Sequence[DomainView], since: datetime) -> str:
    return json.dumps(sources_json(views, since), indent=2) + "\n"


def render_html(
    views: Sequence[DomainView], since: datetime, generated: datetime | None = None
) -> str:
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    return ENV.get_template("sources.html.j2").render(
        views=views, since=since.isoformat(timespec="seconds"), generated=when
    )


def render_sections(views: Sequence[DomainView]) -> markupsafe.Markup:
    """The DMARC sections alone (style included), for the fleet report of ``mailmend check``."""
    html = ENV.get_template("dmarc_sections.html.j2").render(views=views)
    return markupsafe.Markup(html)  # noqa: S704 (an autoescaping template's output)
