"""One self-contained HTML file: a hosts x checks grid, then every problem with its fix.

Inline CSS, no scripts, no external assets. Everything is escaped (jinja2 autoescape);
only http(s) URLs become links.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2

from checks.host import CHECK_ORDER, HostReport, count_statuses
from checks.report_table import problems
from checks.result import CheckResult, worst

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mailmend report {{ generated }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
td.pass { background: #d7f5d7; } td.warn { background: #fff0b3; }
td.fail { background: #f8c4c4; } td.unknown { background: #e3d4f5; } td.none { color: #999; }
.badge { font-weight: bold; text-transform: uppercase; }
.badge.fail { color: #b00; } .badge.warn { color: #960; } .badge.unknown { color: #609; }
pre { background: #f4f4f4; padding: .5em; white-space: pre-wrap; word-break: break-all; }
li.problem { margin-bottom: 1em; }
</style>
</head>
<body>
<h1>mailmend report</h1>
<p>Generated {{ generated }}: {{ hosts|length }} hosts,
{% for key in ("fail", "unknown", "warn", "pass") -%}
{{ summary[key] }} {{ key }}{{ ", " if not loop.last }}
{%- endfor %}.</p>
<table>
<tr><th>host</th>{% for check in columns %}<th>{{ check }}</th>{% endfor %}</tr>
{% for host in hosts %}
<tr><th>{{ host.report.name }}<br>
<small>{{ host.report.hostname }} {{ host.report.ips|join(" ") }}</small></th>
{% for cell in host.cells %}<td class="{{ cell.status }}">{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% for host in hosts if host.problems %}
<h2>{{ host.report.name }} <small>{{ host.report.hostname }}</small></h2>
<ul>
{% for p in host.problems %}
<li class="problem">
<span class="badge {{ p.result.status.value }}">{{ p.result.status.value }}</span>
<b>{{ p.result.check }}</b> {{ p.result.subject }}: {{ p.result.summary }}
{% if p.result.details %}
<ul>{% for d in p.result.details %}<li>{{ d }}</li>{% endfor %}</ul>
{% endif %}
{% if p.result.fix %}<pre>{{ p.result.fix }}</pre>{% endif %}
{% if p.delist_url or p.delist_steps %}<p>Delisting:
{% if p.delist_url %}<a href="{{ p.delist_url }}">{{ p.delist_url }}</a>{% endif %}</p>
{% if p.delist_steps %}<ul>{% for s in p.delist_steps %}<li>{{ s }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
</li>
{% endfor %}
</ul>
{% endfor %}
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class Cell:
    status: str
    text: str


@dataclass(frozen=True)
class Problem:
    result: CheckResult
    delist_url: str | None
    delist_steps: tuple[str, ...]


@dataclass(frozen=True)
class HostView:
    report: HostReport
    cells: tuple[Cell, ...]
    problems: tuple[Problem, ...]


def columns(reports: Sequence[HostReport]) -> list[str]:
    seen = {r.check for report in reports for r in report.results}
    return [c for c in CHECK_ORDER if c in seen] + sorted(seen - set(CHECK_ORDER))


def cell(results: list[CheckResult], check: str) -> Cell:
    """One grid cell: the worst status; dnsbl says ``N listed / M``."""
    if not results:
        return Cell("none", "-")
    status = worst([r.status for r in results])
    if check == "dnsbl":
        listed = sum(1 for r in results if r.extra.get("listed"))
        return Cell(status.value, f"{listed} listed / {len(results)}")
    if len(results) == 1 or all(r.status is status for r in results):
        return Cell(status.value, status.value)
    bad = sum(1 for r in results if r.status is status)
    return Cell(status.value, f"{bad} {status.value} / {len(results)}")


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


def render_html(reports: Sequence[HostReport], generated: datetime | None = None) -> str:
    cols = columns(reports)
    ordered = problems(reports)
    views = []
    for report in reports:
        cells = tuple(cell([r for r in report.results if r.check == c], c) for c in cols)
        mine = tuple(
            Problem(result, *delisting(result.extra)) for rep, result in ordered if rep is report
        )
        views.append(HostView(report, cells, mine))
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    template = _ENV.from_string(_TEMPLATE)
    return template.render(
        generated=when, hosts=views, columns=cols, summary=count_statuses(reports)
    )
