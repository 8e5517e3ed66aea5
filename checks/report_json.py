"""JSON report, schema 1 (documented in docs/json-schema.md; keep it stable)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from checks.host import HostReport, count_statuses

SCHEMA_VERSION = 1


def report_document(
    reports: Sequence[HostReport], generated: datetime | None = None
) -> dict[str, Any]:
    """The report as plain data: ``{"schema", "generated", "hosts", "summary"}``."""
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
        "summary": count_statuses(reports),
    }


def render_json(reports: Sequence[HostReport], generated: datetime | None = None) -> str:
    return json.dumps(report_document(reports, generated), indent=2, default=str) + "\n"
