"""``watch history`` and ``watch status``: what the database remembers, for an admin.

Per listing: first seen, last seen, cleared, duration, codes, and a follow-up built from the
list's delisting facts in ``checks/blocklists.toml`` (self-expiring, self-service, paid express).
Every text that came from outside (list names, codes) is escaped for the terminal.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mailmend.checks.escape import visible
from mailmend.watch.model import Listing, format_duration
from mailmend.watch.state import Run, WatchDb

SCHEMA = 1


@functools.cache
def blocklists_by_zone() -> dict[str, Any]:
    """zone -> ``mailmend.checks.blocklists.Blocklist`` (read once per process)."""
    from mailmend.checks.blocklists import load_blocklists

    return {bl.zone: bl for bl in load_blocklists()}


def follow_up(
    zone: str,
    list_name: str,
    lasted: float,
    lists: Mapping[str, Any],
    codes: Sequence[str] = (),
) -> str:
    """What to do about a listing, from the list's delisting facts (or a policy code's fix)."""
    head = f"listed on {list_name or zone}"
    if lasted >= 1:
        head += f" for {format_duration(lasted)}"
    bl = lists.get(zone)
    delisting = getattr(bl, "delisting", None)
    if bl is None or delisting is None:
        return f"{head}; no delisting facts for this list"
    policy = [bl.codes[c] for c in codes if c in bl.codes and bl.codes[c].policy]
    if policy and policy[0].fix:
        return f"{head}; {policy[0].fix}"
    expiry, url = str(delisting.expiry), str(delisting.url)
    if not delisting.self_service and re.search(r"\bexpires?\b", expiry):
        text = f"{head}; it {expiry}: look for what still sends (the queue, the mail log)"
    elif delisting.self_service:
        text = f"{head}; submit the delisting at {url} ({expiry})"
    else:
        text = f"{head}; {expiry}; see {url}"
    if isinstance(delisting.paid_express, str):
        text += f"; {delisting.paid_express}"
    return text


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _short(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def listing_json(item: Listing, now: float, lists: Mapping[str, Any]) -> dict[str, Any]:
    end = item.cleared if item.cleared is not None else now
    lasted = end - item.first_seen
    return {
        "host": item.host,
        "subject": item.subject,
        "zone": item.zone,
        "list": item.list_name,
        "codes": list(item.codes),
        "first_seen": _iso(item.first_seen),
        "last_seen": _iso(item.last_seen),
        "cleared": _iso(item.cleared),
        "active": item.cleared is None,
        "duration_seconds": round(lasted, 3),
        "follow_up": None
        if item.cleared is not None
        else follow_up(item.zone, item.list_name, lasted, lists, item.codes),
    }


def render_history(listings: Sequence[Listing], now: float, fmt: str) -> str:
    lists = blocklists_by_zone()
    rows = [listing_json(item, now, lists) for item in listings]
    if fmt == "json":
        return json.dumps({"schema": SCHEMA, "listings": rows}, indent=2) + "\n"
    if not rows:
        return "no listings in this period\n"
    header = ("HOST", "SUBJECT", "LIST", "FIRST SEEN", "LAST SEEN", "CLEARED", "LASTED", "CODES")
    table: list[tuple[str, ...]] = [header]
    for row, item in zip(rows, listings, strict=True):
        table.append(
            (
                row["host"],
                row["subject"],
                row["zone"],
                _short(item.first_seen),
                _short(item.last_seen),
                _short(item.cleared) if item.cleared is not None else "still listed",
                format_duration(row["duration_seconds"]),
                ",".join(row["codes"]),
            )
        )
    table = [tuple(visible(str(c)) for c in line) for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    follow = [
        f"{r['host']} {r['subject']} {r['zone']}: {r['follow_up']}" for r in rows if r["follow_up"]
    ]
    if follow:
        out += ["", "Follow-up:", *(f"  {visible(line)}" for line in follow)]
    return "\n".join(out) + "\n"


# --- status --------------------------------------------------------------------------------------


def status_json(db: WatchDb, now: float) -> dict[str, Any]:
    lists = blocklists_by_zone()
    run: Run | None = db.last_run()
    return {
        "schema": SCHEMA,
        "last_run": None
        if run is None
        else {
            "id": run.id,
            "started": _iso(run.started),
            "finished": _iso(run.finished),
            "finished_timestamp": run.finished,
            "duration_seconds": round(run.finished - run.started, 3),
            "hosts": run.hosts,
            "results": run.results,
            "unknown": run.unknown,
            "events": run.events,
        },
        "runs": db.run_count(),
        "listings": [listing_json(item, now, lists) for item in db.open_listings()],
        "broken_lists": sorted(db.flags("broken")),
        "unreachable_hosts": sorted(db.flags("unreachable")),
    }


def render_status(data: Mapping[str, Any], fmt: str, where: str = "") -> str:
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    run = data.get("last_run")
    at = f" on {where}" if where else ""
    if not run:
        return f"no watch run recorded yet{at}\n"
    lines = [
        f"last run{at}: {run['finished']} ({run['duration_seconds']:.2f} s): {run['hosts']} hosts, "
        f"{run['results']} results ({run['unknown']} unknown), {run['events']} events; "
        f"{data['runs']} runs kept",
    ]
    listings = data.get("listings") or []
    if listings:
        lines.append(f"{len(listings)} current listing(s):")
        for item in listings:
            lines.append(
                f"  {item['host']} {item['subject']} on {item['zone']} since {item['first_seen']} "
                f"({','.join(item['codes'])})"
            )
            if item.get("follow_up"):
                lines.append(f"    {item['follow_up']}")
    else:
        lines.append("no current listings")
    for zone in data.get("broken_lists") or []:
        lines.append(f"list {zone} is broken: its answers are ignored")
    for host in data.get("unreachable_hosts") or []:
        lines.append(f"{host}: DNS said nothing in the last run (every check unknown)")
    return "\n".join(visible(line) for line in lines) + "\n"
