"""mail-test reports: a terminal table, JSON (schema in docs/json-schema.md) and an HTML
section per host. Everything read from a message is hostile: the table shows control and
format characters as ``\\DDD`` (:func:`mailmend.records.escape.visible`), JSON escapes by
itself, HTML is autoescaped by jinja2."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import jinja2

from mailmend.checks.escape import visible
from mailmend.checks.report_html import ICONS
from mailmend.checks.result import SEVERITY, CheckResult, Status
from mailmend.mailtest.run import MessageReport

SCHEMA_VERSION = 1
_WIDTH = 7
SECTIONS = (
    ("delivery", "Delivery"),
    ("folder", "Folder"),
    ("spf", "SPF"),
    ("dkim", "DKIM"),
    ("dmarc", "DMARC"),
    ("hop", "Hop"),
    ("content", "Content"),
    ("headers", "Headers"),
)
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mailmend.mailtest", "."),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def counts(reports: Sequence[MessageReport]) -> dict[str, int]:
    out = {s.value: 0 for s in (Status.FAIL, Status.UNKNOWN, Status.WARN, Status.PASS)}
    for rep in reports:
        out[rep.status.value] += 1
    return out


def exit_code(reports: Sequence[MessageReport]) -> int:
    """As ``mailmend check``: 1 a failure, 3 unknowns and no failure, else 0."""
    statuses = {r.status for r in reports}
    if Status.FAIL in statuses:
        return 1
    if Status.UNKNOWN in statuses:
        return 3
    return 0


# --- table -------------------------------------------------------------------------------------


def render_table(reports: Sequence[MessageReport]) -> str:
    lines: list[str] = []
    for rep in reports:
        where = f"{rep.folder} after {rep.delay:g} s" if rep.arrived else "not arrived"
        lines.append(
            f"{rep.status.value.upper():<{_WIDTH}}  {visible(rep.host)}  {visible(rep.domain)} -> "
            f"{visible(rep.to)}  ({where}; token {rep.token})"
        )
        lines += _result_lines(rep.results)
        lines.append("")
    c = counts(reports)
    lines.append(
        f"{len(reports)} message(s): "
        + ", ".join(f"{c[k]} {k}" for k in ("fail", "unknown", "warn", "pass"))
    )
    return "\n".join(lines) + "\n"


def lint_table(results: Sequence[CheckResult], path: str) -> str:
    return "\n".join([f"{visible(path)}:", *_result_lines(results)]) + "\n"


def _result_lines(results: Sequence[CheckResult]) -> list[str]:
    """Most severe first; problems with their details and fix. Outside text made visible."""
    lines = []
    for result in sorted(results, key=lambda r: -SEVERITY[r.status]):
        lines.append(
            f"  {result.status.value.upper():<{_WIDTH}}  {result.check:<8} "
            f"{visible(result.subject)}: {visible(result.summary)}"
        )
        if result.status is not Status.PASS:
            lines += [f"{'':{_WIDTH + 14}}{visible(d)}" for d in result.details[:12]]
            if result.fix:
                lines.append(f"{'':{_WIDTH + 4}}fix: {visible(result.fix)}")
    return lines


# --- JSON --------------------------------------------------------------------------------------


def document(reports: Sequence[MessageReport], generated: datetime | None = None) -> dict[str, Any]:
    when = generated or datetime.now(UTC)
    return {
        "schema": SCHEMA_VERSION,
        "command": "mail-test",
        "generated": when.isoformat(timespec="seconds"),
        "messages": [
            {
                "host": r.host,
                "hostname": r.fqdn,
                "domain": r.domain,
                "to": r.to,
                "sender": r.sender,
                "token": r.token,
                "status": r.status.value,
                "arrived": r.arrived,
                "folder": r.folder,
                "folder_kind": r.folder_kind,
                "delay_seconds": r.delay,
                "size": r.size,
                "deleted": r.deleted,
                "timings": r.timings,
                "checks": [result.to_json() for result in r.results],
            }
            for r in reports
        ],
        "summary": counts(reports),
    }


def render_json(reports: Sequence[MessageReport]) -> str:
    return json.dumps(document(reports), indent=2, default=str) + "\n"


def lint_json(results: Sequence[CheckResult], path: str) -> str:
    doc = {
        "schema": SCHEMA_VERSION,
        "command": "mail-test --lint",
        "file": path,
        "status": max((r.status for r in results), key=SEVERITY.__getitem__).value,
        "checks": [r.to_json() for r in results],
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


# --- HTML --------------------------------------------------------------------------------------


def render_html(reports: Sequence[MessageReport], generated: datetime | None = None) -> str:
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    views = []
    for rep in reports:
        groups = []
        for check, title in SECTIONS:
            mine = [r for r in rep.results if r.check == check]
            if mine:
                groups.append((title, sorted(mine, key=lambda r: -SEVERITY[r.status])))
        views.append((rep, groups))
    return _ENV.get_template("mailtest.html.j2").render(
        generated=when, views=views, summary=counts(reports), icons=ICONS
    )
