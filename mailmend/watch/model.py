"""From check results to observations, and from the last known state to events (pure).

One observation per (host, check, subject, zone) per run; ``zone`` is the list for ``dnsbl``
results and ``""`` otherwise. The *known* state of a key is its last observation whose status
was not ``unknown``: an unknown answer (a timeout, a refused query, a broken list) is recorded
but never starts or ends a listing, nor changes a status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # `watch history` and `status` never load the checks
    from mailmend.checks.host import HostReport

UNKNOWN = "unknown"
Key = tuple[str, str, str, str]  # host, check, subject, zone

#: Event kinds, in the order a run reports them.
KINDS = (
    "host_unreachable",
    "list_broken",
    "list_recovered",
    "listed",
    "still_listed",
    "delisted",
    "ptr_lost",
    "ptr_changed",
    "status_changed",
)


class Observation(NamedTuple):
    """One result of one run (a named tuple: a run makes tens of thousands)."""

    host: str
    check: str
    subject: str
    zone: str
    status: str
    listed: bool  # on a blocklist (a spam listing or a policy listing such as the PBL)
    codes: str  # the list's return codes, comma-separated ("127.0.0.2,127.0.0.4"), or ""
    summary: str
    list_name: str = ""

    @property
    def key(self) -> Key:
        return (self.host, self.check, self.subject, self.zone)


class Known(NamedTuple):
    """The last known (not unknown) state of a key, and since when it holds."""

    status: str
    listed: bool
    codes: str  # comma-separated, as in :class:`Observation`
    summary: str
    since: float


@dataclass(frozen=True)
class Listing:
    """One listing of a subject on a list, from first seen to cleared (None: still listed)."""

    host: str
    subject: str
    zone: str
    list_name: str
    codes: tuple[str, ...]
    first_seen: float
    last_seen: float
    cleared: float | None
    last_alert: float


@dataclass(frozen=True)
class Event:
    kind: str
    time: float
    host: str
    check: str
    subject: str
    zone: str
    text: str  # one line for a human (hostile text is escaped by each output)
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": self.time,
            "host": self.host,
            "check": self.check,
            "subject": self.subject,
            "zone": self.zone,
            "text": self.text,
            **self.data,
        }


# --- observations --------------------------------------------------------------------------------


def observations(reports: Sequence[HostReport]) -> list[Observation]:
    """One observation per result of every host (the ``deadline`` stand-in included)."""
    out = []
    for report in reports:
        host = report.name
        for result in report.results:
            status = result.status.value
            if result.check != "dnsbl":
                out.append(Observation(host, result.check, result.subject, "", status, False,
                                       "", result.summary))  # fmt: skip
                continue
            extra = result.extra
            zone = str(extra.get("zone") or "")
            listed = (
                status in ("fail", "warn")
                and bool(extra.get("listed"))
                and extra.get("list_kind") != "allow"
            )
            name = _list_name(result.summary.split(":", 1)[0], zone) if listed else ""
            codes = ",".join(extra.get("codes") or ())  # address strings (mailmend.checks.dnsbl)
            out.append(Observation(host, "dnsbl", result.subject, zone, status, listed, codes,
                                   result.summary, name))  # fmt: skip
    return out


def _list_name(summary_head: str, zone: str) -> str:
    """The list's name from "IP is listed on NAME" (or the zone when the text differs)."""
    for marker in (" is listed on ", " has a policy listing on "):
        if marker in summary_head:
            return summary_head.split(marker, 1)[1]
    return zone


def unreachable_hosts(reports: Sequence[HostReport]) -> set[str]:
    """Hosts whose every result is unknown: DNS could not tell anything about them."""
    return {
        r.name for r in reports if r.results and all(c.status.value == UNKNOWN for c in r.results)
    }


# --- events --------------------------------------------------------------------------------------


@dataclass
class Diff:
    events: list[Event]
    known: dict[Key, Known]  # the new known state of every key that changed or is new


def diff(
    known: Mapping[Key, Known],
    seen: Iterable[Observation],
    now: float,
    *,
    broken: tuple[set[str], set[str]] = (set(), set()),
    unreachable: tuple[set[str], set[str]] = (set(), set()),
) -> Diff:
    """Compare a run's observations with the last known state.

    ``broken`` and ``unreachable`` are (before, now) pairs of list zones and host names.
    """
    out = Diff([], {})
    was_down, is_down = unreachable
    for host in sorted(is_down - was_down):
        out.events.append(Event("host_unreachable", now, host, "", "", "", _UNREACHABLE % host))
    # A host DNS answers for again is no event by itself (only what its answers changed is).
    was_broken, is_broken = broken
    for zone in sorted(is_broken - was_broken):
        out.events.append(Event("list_broken", now, "", "dnsbl", "", zone, _BROKEN % zone))
    for zone in sorted(was_broken - is_broken):
        out.events.append(Event("list_recovered", now, "", "dnsbl", "", zone, _RECOVERED % zone))
    for obs in seen:
        if obs.status == UNKNOWN:
            continue  # never starts or ends anything
        key = obs[:4]  # host, check, subject, zone
        before = known.get(key)
        if before is not None and before[:4] == obs[4:8]:
            continue  # status, listed, codes and summary as known: the common case
        event, since = _compare(before, obs, now)
        if event is not None:
            out.events.append(event)
        out.known[key] = Known(obs.status, obs.listed, obs.codes, obs.summary, since)
    out.events.sort(key=lambda e: KINDS.index(e.kind))
    return out


_UNREACHABLE = "%s: every check is unknown (DNS could not tell); no listing ends because of it"
_BROKEN = "list %s is broken or wildcarding: its answers are ignored until it recovers"
_RECOVERED = "list %s answers its test points again: its answers count again"


def _compare(before: Known | None, obs: Observation, now: float) -> tuple[Event | None, float]:
    """The event (if any) for one key, and the ``since`` of its new known state."""
    if obs.check == "dnsbl":
        return _compare_listing(before, obs, now)
    if before is None:
        if obs.status == "pass":
            return None, now
        return _event("status_changed", obs, now, f"{_where(obs)}: {obs.summary}", None), now
    if obs.check == "ptr" and obs.summary != before.summary:
        lost = obs.status == "fail" and "has no PTR record" in obs.summary
        kind = "ptr_lost" if lost else "ptr_changed"
        text = f"{_where(obs)}: {obs.summary} (was: {before.summary})"
        return _event(kind, obs, now, text, before), now
    if obs.status != before.status:
        text = f"{_where(obs)}: {before.status} -> {obs.status}: {obs.summary}"
        return _event("status_changed", obs, now, text, before), now
    return None, before.since


def _compare_listing(
    before: Known | None, obs: Observation, now: float
) -> tuple[Event | None, float]:
    was_listed = before is not None and before.listed
    if obs.listed and not was_listed:
        codes = obs.codes.replace(",", ", ")
        how = "has a policy listing on" if obs.status == "warn" else "is listed on"
        text = f"{obs.host}: {obs.subject} {how} {obs.list_name} ({obs.zone}, {codes})"
        return _event(
            "listed", obs, now, text, before, codes=split_codes(obs.codes), list=obs.list_name
        ), now
    if was_listed and not obs.listed:
        assert before is not None
        lasted = now - before.since
        text = (
            f"{obs.host}: {obs.subject} is no longer listed on {obs.zone} "
            f"(listed for {format_duration(lasted)})"
        )
        return _event(
            "delisted", obs, now, text, before,
            duration_seconds=round(lasted, 3), listed_since=before.since,
        ), now  # fmt: skip
    return None, before.since if before is not None and was_listed == obs.listed else now


def split_codes(codes: str) -> list[str]:
    return codes.split(",") if codes else []


def _event(
    kind: str, obs: Observation, now: float, text: str, before: Known | None, **data: Any
) -> Event:
    payload = {
        "status": obs.status,
        "previous_status": before.status if before else None,
        "summary": obs.summary,
        **data,
    }
    return Event(kind, now, obs.host, obs.check, obs.subject, obs.zone, text, payload)


def _where(obs: Observation) -> str:
    return f"{obs.host} {obs.check} {obs.subject}"


def reminder(item: Listing, now: float) -> Event:
    """The reminder for a listing that still lasts (``--remind``)."""
    lasted = format_duration(now - item.first_seen)
    text = (
        f"{item.host}: {item.subject} is still listed on {item.list_name} ({item.zone}), "
        f"for {lasted} now"
    )
    data: dict[str, Any] = {
        "list": item.list_name,
        "codes": list(item.codes),
        "listed_since": item.first_seen,
        "duration_seconds": round(now - item.first_seen, 3),
    }
    return Event("still_listed", now, item.host, "dnsbl", item.subject, item.zone, text, data)


def format_duration(seconds: float) -> str:
    """``3 d 4 h``, ``5 h 12 min``, ``7 min``, ``42 s``."""
    s = int(max(seconds, 0))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"
