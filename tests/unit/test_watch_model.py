"""mailmend.watch.model: the rules that turn results into events (pure, offline)."""

from __future__ import annotations

import pytest

from mailmend.checks.host import HostReport
from mailmend.checks.result import CheckResult, Status
from mailmend.watch.model import (
    Known,
    Listing,
    Observation,
    diff,
    format_duration,
    observations,
    reminder,
    unreachable_hosts,
)

IP = "198.51.100.12"
ZONE = "bl.spamcop.net"


def dnsbl(status: str, listed: bool, codes: str = "") -> Observation:
    summary = f"{IP} is listed on SpamCop Blocking List: spam" if listed else f"{IP} not listed"
    return Observation("mx2", "dnsbl", IP, ZONE, status, listed, codes, summary, "SpamCop")


def listed_known(since: float = 100.0) -> Known:
    return Known("fail", True, "127.0.0.2", "listed", since)


def test_first_listing_is_one_listed_event() -> None:
    out = diff({}, [dnsbl("fail", True, "127.0.0.2")], 200.0)
    assert [(e.kind, e.text) for e in out.events] == [
        ("listed", f"mx2: {IP} is listed on SpamCop ({ZONE}, 127.0.0.2)")
    ]
    assert out.known[("mx2", "dnsbl", IP, ZONE)].since == 200.0


def test_same_listing_again_is_no_event_and_keeps_its_start() -> None:
    key = ("mx2", "dnsbl", IP, ZONE)
    out = diff({key: listed_known(100.0)}, [dnsbl("fail", True, "127.0.0.2")], 200.0)
    assert out.events == []
    assert key not in out.known or out.known[key].since == 100.0


def test_delisted_says_how_long_it_lasted() -> None:
    key = ("mx2", "dnsbl", IP, ZONE)
    out = diff({key: listed_known(100.0)}, [dnsbl("pass", False)], 100.0 + 3 * 86400 + 7200)
    (event,) = out.events
    assert event.kind == "delisted"
    assert event.data["duration_seconds"] == 3 * 86400 + 7200
    assert event.text == f"mx2: {IP} is no longer listed on {ZONE} (listed for 3 d 2 h)"


@pytest.mark.parametrize("listed_before", [True, False])
def test_unknown_never_starts_or_ends_a_listing(listed_before: bool) -> None:
    key = ("mx2", "dnsbl", IP, ZONE)
    before = listed_known() if listed_before else Known("pass", False, "", "no", 1.0)
    out = diff({key: before}, [dnsbl("unknown", False)], 500.0)
    assert out.events == [] and out.known == {}


def test_ptr_lost_and_changed() -> None:
    key = ("mx1", "ptr", IP, "")
    right = Known("pass", False, "", f"PTR of {IP} is mx1.example.com", 1.0)
    lost = Observation("mx1", "ptr", IP, "", "fail", False, "", f"{IP} has no PTR record")
    (event,) = diff({key: right}, [lost], 9.0).events
    assert (event.kind, event.data["previous_status"]) == ("ptr_lost", "pass")
    other = Observation("mx1", "ptr", IP, "", "fail", False, "", f"PTR of {IP} is x.test")
    (event,) = diff({key: right}, [other], 9.0).events
    assert event.kind == "ptr_changed"
    assert (
        event.text == f"mx1 ptr {IP}: PTR of {IP} is x.test (was: PTR of {IP} is mx1.example.com)"
    )


def test_spf_status_change_and_first_sight() -> None:
    key = ("mx1", "spf", "example.com", "")
    obs = Observation("mx1", "spf", "example.com", "", "fail", False, "", "no SPF record")
    (first,) = diff({}, [obs], 1.0).events
    assert (first.kind, first.data["previous_status"]) == ("status_changed", None)
    passing = Observation("mx1", "spf", "example.com", "", "pass", False, "", "ok")
    assert diff({}, [passing], 1.0).events == []  # a passing check seen first: nothing to say
    (change,) = diff({key: Known("pass", False, "", "ok", 1.0)}, [obs], 2.0).events
    assert change.text == "mx1 spf example.com: pass -> fail: no SPF record"


def test_list_and_host_flags_give_events_on_change_only() -> None:
    out = diff({}, [], 5.0, broken=(set(), {"all.s5h.net"}), unreachable=({"mx1"}, {"mx2"}))
    assert [(e.kind, e.host or e.zone) for e in out.events] == [
        ("host_unreachable", "mx2"),  # mx1 answering again is no event
        ("list_broken", "all.s5h.net"),
    ]
    again = diff({}, [], 6.0, broken=({"all.s5h.net"},) * 2, unreachable=({"mx2"},) * 2)
    assert again.events == []


def test_reminder_text() -> None:
    item = Listing("mx2", IP, ZONE, "SpamCop", ("127.0.0.2",), 0.0, 1.0, None, 0.0)
    event = reminder(item, 90000.0)
    assert (event.kind, event.text) == (
        "still_listed",
        f"mx2: {IP} is still listed on SpamCop ({ZONE}), for 1 d 1 h now",
    )


def _result(check: str, status: Status, **extra: object) -> CheckResult:
    return CheckResult(
        check, status, IP, f"{IP} is listed on SpamCop Blocking List: x", extra=extra
    )


def test_observations_from_reports() -> None:
    report = HostReport(
        "mx2",
        IP,
        "mx2.example.com",
        [
            _result("dnsbl", Status.FAIL, zone=ZONE, listed=True, codes=["127.0.0.2"]),
            _result("dnsbl", Status.PASS, zone="list.dnswl.org", listed=True, list_kind="allow"),
            _result("ptr", Status.PASS),
        ],
    )
    seen = observations([report])
    assert [(o.check, o.zone, o.listed, o.list_name) for o in seen] == [
        ("dnsbl", ZONE, True, "SpamCop Blocking List"),
        ("dnsbl", "list.dnswl.org", False, ""),  # an allowlist hit is not a listing
        ("ptr", "", False, ""),
    ]
    assert unreachable_hosts([report]) == set()
    dead = HostReport("mx2", IP, "mx2.example.com", [_result("deadline", Status.UNKNOWN)])
    assert unreachable_hosts([dead]) == {"mx2"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42, "42 s"), (420, "7 min"), (3600, "1 h"), (3720, "1 h 2 min"), (86400 * 2, "2 d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
