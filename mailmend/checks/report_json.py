"""JSON report, schema 1 (documented in docs/json-schema.md; keep it stable)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mailmend.checks.host import HostReport, count_statuses
from mailmend.checks.result import ListProblem

SCHEMA_VERSION = 1


def report_document(
    reports: Sequence[HostReport],
    generated: datetime | None = None,
    *,
    lists: Sequence[ListProblem] = (),
) -> dict[str, Any]:
    """The report as plain data: ``{"schema", "generated", "hosts", "lists", "summary"}``."""
    when = generated or datetime.now(UTC)
    return {
        "schema": SCHEMA_VERSION,
        "generated": when.isoformat(timespec="seconds"),
        "hosts": [
            {
                "name": r.name,
                "ip": r.ip,
                "ips": list(r.ips),
                "hostname": r.hostname,
                "status": r.status.value,
                "checks": [result.to_json() for result in r.results],
            }
            for r in reports
        ],
        "lists": [problem.to_json() for problem in lists],
        "summary": count_statuses(reports),
    }


def render_json(
    reports: Sequence[HostReport],
    generated: datetime | None = None,
    *,
    lists: Sequence[ListProblem] = (),
) -> str:
    document = report_document(reports, generated, lists=lists)
    return json.dumps(document, indent=2, default=str) + "\n"
