"""One watch run: check the fleet, compare with the database, record, alert, publish metrics.

The checks are ``mailmend check``'s (:func:`mailmend.cli.check_reports`). The database is
written in one transaction after the checks; the alerts go out after the commit, from the
``events`` table (an event a killed run did not deliver goes out with the next run).
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mailmend.checks.escape import visible
from mailmend.checks.host import FleetReport
from mailmend.watch.alerts import ALERT_BUDGET, Channel, deliver
from mailmend.watch.history import blocklists_by_zone, follow_up
from mailmend.watch.metrics import Metrics, Snapshot, zones_of
from mailmend.watch.model import (
    UNKNOWN,
    Event,
    Observation,
    diff,
    observations,
    reminder,
    unreachable_hosts,
)
from mailmend.watch.state import WatchDb

Checker = Callable[[], FleetReport]


@dataclass(frozen=True)
class Settings:
    keep: float | None = None  # seconds of history to keep
    remind: float | None = None  # seconds between reminders of a lasting listing
    channels: Sequence[Channel] = ()
    metrics: Metrics | None = None
    quiet: bool = False
    alert_budget: float = ALERT_BUDGET  # seconds a run waits for its alerts


@dataclass(frozen=True)
class Outcome:
    run_id: int
    events: list[dict[str, Any]]
    check_seconds: float
    db_seconds: float
    failed_alerts: int


def run_once(check: Checker, db: WatchDb, settings: Settings) -> Outcome:
    started = time.time()
    t0 = time.perf_counter()
    run = check()
    check_seconds = time.perf_counter() - t0
    now = time.time()
    t1, cpu1 = time.perf_counter(), time.process_time()
    # Tens of thousands of small tuples, none of them cyclic: the cycle collector would only
    # walk the checks' whole heap again and again (it doubled this step's time).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        recorded, run_id, broken, seen = _record(db, run, started, now, settings)
    finally:
        if gc_was_on:
            gc.enable()
    db_seconds = time.perf_counter() - t1
    db.set_db_seconds(run_id, db_seconds, time.process_time() - cpu1)
    if not settings.quiet:
        for event in recorded:
            print(f"{event['kind']}: {visible(event['text'])}", flush=True)
    failed = _alert(db, settings.channels, settings.alert_budget)
    if settings.metrics is not None:
        duration = time.time() - started
        settings.metrics.publish(
            Snapshot(
                seen, zones_of(seen), frozenset(broken), finished=time.time(), duration=duration
            )
        )
    return Outcome(run_id, recorded, check_seconds, db_seconds, failed)


def _record(
    db: WatchDb, run: FleetReport, started: float, now: float, settings: Settings
) -> tuple[list[dict[str, Any]], int, set[str], list[Observation]]:
    """Compare the run with the known state and write it: the run's events as recorded, its
    id, the broken lists, the observations."""
    reports = run.hosts
    seen = observations(reports)
    was_broken, was_down = db.flags("broken"), db.flags("unreachable")
    # A list recovers only on a definite answer; a host not checked this run keeps its flag.
    answered = {o.zone for o in seen if o.check == "dnsbl" and o.status != UNKNOWN}
    broken = {problem.zone for problem in run.lists} | (was_broken - answered)
    down = unreachable_hosts(reports) | (was_down - {r.name for r in reports})
    change = diff(db.known(), seen, now, broken=(was_broken, broken), unreachable=(was_down, down))
    reminders = _reminders(db, change.events, now, settings.remind)
    listing = ("listed", "still_listed")
    needs_lists = any(e.kind in listing for e in [*change.events, *reminders])
    lists = blocklists_by_zone() if needs_lists else {}
    events = [_with_follow_up(e, lists) for e in change.events]
    change.events[:] = events
    run_id = db.record_run(
        started, now, len(reports), seen, change, {"broken": broken, "unreachable": down},
        [_with_follow_up(e, lists) for e in reminders],
    )  # fmt: skip
    if settings.keep is not None:
        db.prune(now - settings.keep)
    return db.events_of_run(run_id), run_id, broken, seen


def _reminders(db: WatchDb, events: list[Event], now: float, remind: float | None) -> list[Event]:
    if remind is None:
        return []
    ending = {(e.host, e.subject, e.zone) for e in events if e.kind == "delisted"}
    return [
        reminder(item, now)
        for item in db.open_listings()
        if now - item.last_alert >= remind and (item.host, item.subject, item.zone) not in ending
    ]


def _with_follow_up(event: Event, lists: dict[str, Any]) -> Event:
    """Listing events carry what to do next (from the list's delisting facts)."""
    if event.kind not in ("listed", "still_listed"):
        return event
    lasted = float(event.data.get("duration_seconds", 0.0))
    codes = [str(c) for c in event.data.get("codes", ())]
    text = follow_up(event.zone, str(event.data.get("list", "")), lasted, lists, codes)
    return replace(event, data={**event.data, "follow_up": text})


def _alert(db: WatchDb, channels: Sequence[Channel], budget: float) -> int:
    """Deliver the pending events (this run's, and any a previous run did not finish)."""
    pending = db.pending_events()
    if not pending:
        return 0
    if not channels:
        db.record_deliveries((), (), [i for i, _ in pending])
        return 0
    have = db.delivered()
    results = deliver(channels, pending, skip=lambda c, i: (c, i) in have, budget=budget)
    done = [(r.channel, i) for r in results for i in r.done]
    db.record_deliveries(done, [c.name for c in channels], [i for i, _ in pending])
    return sum(r.failed for r in results)


def jittered(seconds: float, spread: float = 0.1) -> float:
    """``seconds`` plus or minus ``spread`` (10 %), so that watchers do not run in step."""
    return seconds * (1 + random.uniform(-spread, spread))


def loop(check: Checker, db: WatchDb, settings: Settings, every: float) -> None:
    """Run forever, ``every`` seconds apart (jittered)."""
    while True:
        outcome = run_once(check, db, settings)
        pause = jittered(every)
        if not settings.quiet:
            print(
                f"run {outcome.run_id} done: {len(outcome.events)} events; next in {pause:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        time.sleep(pause)
