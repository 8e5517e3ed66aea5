"""mailmend.watch.runner and .state on a real SQLite file, with check results made by hand
(the real checks run in tests/e2e/test_watch.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from mailmend import fleet
from mailmend.checks.host import FleetReport, HostReport
from mailmend.checks.result import CheckResult, Status
from mailmend.watch.metrics import Metrics
from mailmend.watch.runner import Settings, run_once
from mailmend.watch.state import WatchDb

IP = "198.51.100.12"


def report(spamcop: Status, listed: bool, ptr: Status = Status.PASS) -> HostReport:
    summary = f"{IP} is listed on SpamCop Blocking List: spam" if listed else f"{IP} is not listed"
    extra: dict[str, Any] = {"zone": "bl.spamcop.net", "listed": listed, "list_kind": "block"}
    extra["codes"] = ["127.0.0.2"] if listed else []
    return HostReport(
        "mx2",
        IP,
        "mx2.example.com",
        [
            CheckResult("ptr", ptr, IP, f"PTR of {IP} is mx2.example.com"),
            CheckResult("dnsbl", spamcop, IP, summary, extra=extra),
        ],
    )


class Script:
    """The checks' results, one list of reports per run."""

    def __init__(self, *runs: HostReport) -> None:
        self.runs = list(runs)

    def __call__(self) -> FleetReport:
        return FleetReport([self.runs.pop(0)])


def kinds(outcome: Any) -> list[str]:
    return [e["kind"] for e in outcome.events]


def test_runs_events_history_and_metrics(tmp_path: Path) -> None:
    db = WatchDb.open(tmp_path / "w.db")
    metrics = Metrics(tmp_path / "mailmend.prom")
    settings = Settings(keep=None, remind=None, metrics=metrics, quiet=True)
    script = Script(
        report(Status.FAIL, True),
        report(Status.FAIL, True),
        report(Status.UNKNOWN, False, Status.UNKNOWN),
        report(Status.PASS, False),
    )
    assert kinds(run_once(script, db, settings)) == ["listed"]
    text = (tmp_path / "mailmend.prom").read_text()
    line = f'mailmend_dnsbl_listed{{host="mx2",ip="{IP}",zone="bl.spamcop.net"}} 1.0'
    assert line in text
    assert list(tmp_path.glob("mailmend.prom.*")) == []  # written, then renamed
    assert kinds(run_once(script, db, settings)) == []
    unknown = run_once(script, db, settings)
    assert kinds(unknown) == ["host_unreachable"]  # and no "delisted"
    assert "mailmend_dnsbl_listed{" not in generate_latest(metrics.registry).decode()
    (listing,) = db.open_listings()
    assert listing.cleared is None and listing.codes == ("127.0.0.2",)
    cleared = run_once(script, db, settings)
    assert kinds(cleared) == ["delisted"]  # DNS answering again is no event by itself
    assert db.open_listings() == []
    (gone,) = db.listings(None, 0.0)
    assert gone.cleared is not None and gone.cleared >= gone.first_seen
    assert db.run_count() == 4
    last = db.last_run()
    assert last is not None
    assert db.run_results(last.id) == [
        (("mx2", "ptr", IP, ""), "pass", ()),
        (("mx2", "dnsbl", IP, "bl.spamcop.net"), "pass", ()),
    ]
    assert db.run_results(1)[1] == (("mx2", "dnsbl", IP, "bl.spamcop.net"), "fail", ("127.0.0.2",))
    db.close()


def test_reminder_while_a_listing_lasts(tmp_path: Path) -> None:
    db = WatchDb.open(tmp_path / "w.db")
    settings = Settings(remind=0.5, quiet=True)
    script = Script(*(report(Status.FAIL, True) for _ in range(3)))
    assert kinds(run_once(script, db, settings)) == ["listed"]
    assert kinds(run_once(script, db, settings)) == []
    time.sleep(0.6)
    reminded = run_once(script, db, settings)
    assert kinds(reminded) == ["still_listed"]
    assert "it expires by itself" in reminded.events[0]["follow_up"]
    db.close()


def test_prune_keeps_the_recent_runs_and_open_listings(tmp_path: Path) -> None:
    db = WatchDb.open(tmp_path / "w.db")
    settings = Settings(quiet=True)
    run_once(Script(report(Status.FAIL, True)), db, settings)
    run_once(Script(report(Status.FAIL, True)), db, settings)
    assert db.prune(time.time() + 1) == 2
    assert db.run_count() == 0 and len(db.open_listings()) == 1
    assert db.conn.execute("SELECT count(*) FROM results").fetchone()[0] == 0
    db.close()


def test_undelivered_events_go_out_with_the_next_run(tmp_path: Path) -> None:
    db = WatchDb.open(tmp_path / "w.db")
    run_once(Script(report(Status.FAIL, True)), db, Settings(quiet=True))
    db.conn.execute("UPDATE events SET alerted = 0")  # as if killed before the alerts
    sent: list[dict[str, Any]] = []

    class Recorder:
        name = "recorder"

        def send(self, event: Any) -> None:
            sent.append(dict(event))

    run_once(Script(report(Status.FAIL, True)), db, Settings(channels=[Recorder()], quiet=True))
    assert [e["kind"] for e in sent] == ["listed"]
    assert db.pending_events() == []
    db.close()


def test_fleet_monitor_host() -> None:
    base = (
        '[hosts.mx1]\nssh_host = "203.0.113.7"\nhostname = "mx1.example.com"\n'
        'public_ipv4 = "203.0.113.7"\n'
    )
    parsed = fleet.parse_fleet('[fleet]\nmonitor_host = "mx1"\n' + base)
    assert parsed.settings.monitor_host == "mx1"
    with pytest.raises(fleet.FleetError) as err:
        fleet.parse_fleet('[fleet]\nmonitor_host = "mx2"\n' + base)
    assert str(err.value) == (
        "fleet.toml: fleet.monitor_host: 'mx2' is not a host of this fleet; did you mean 'mx1'?"
    )


def test_broken_list_from_the_run_and_its_recovery_on_a_definite_answer(tmp_path: Path) -> None:
    from mailmend.checks.result import ListProblem

    db = WatchDb.open(tmp_path / "w.db")
    settings = Settings(quiet=True)
    broken = ListProblem("bl.spamcop.net", "SpamCop", "broken", "lists 127.0.0.1", "drop it")
    only_ptr = HostReport("mx2", IP, "mx2.example.com", [report(Status.PASS, False).results[0]])
    runs = [
        FleetReport([only_ptr], (broken,)),  # a broken list gives no host a result
        FleetReport([report(Status.UNKNOWN, False, Status.UNKNOWN)]),  # DNS down: no news
        FleetReport([report(Status.PASS, False)]),  # a definite answer from the list
    ]
    assert kinds(run_once(lambda: runs.pop(0), db, settings)) == ["list_broken"]
    assert kinds(run_once(lambda: runs.pop(0), db, settings)) == ["host_unreachable"]
    assert db.flags("broken") == {"bl.spamcop.net"}
    assert kinds(run_once(lambda: runs.pop(0), db, settings)) == ["list_recovered"]
    db.close()


def test_a_channel_that_ran_out_of_time_gets_the_event_next_run_the_others_not_again(
    tmp_path: Path,
) -> None:
    db = WatchDb.open(tmp_path / "w.db")
    got: dict[str, list[str]] = {"fast": [], "slow": []}

    class Fast:
        name = "fast"

        def send(self, event: Any) -> None:
            got["fast"].append(event["kind"])

    class Slow:
        name = "slow"
        calls = 0

        def send(self, event: Any) -> None:
            Slow.calls += 1
            if Slow.calls == 1:
                time.sleep(1.5)  # the first run stops waiting before this ends
                return
            got["slow"].append(event["kind"])

    settings = Settings(channels=[Fast(), Slow()], quiet=True, alert_budget=0.5)
    run_once(Script(report(Status.FAIL, True)), db, settings)
    assert got == {"fast": ["listed"], "slow": []}
    assert len(db.pending_events()) == 1
    time.sleep(1.2)  # let the abandoned send end
    run_once(Script(report(Status.FAIL, True)), db, settings)
    assert got == {"fast": ["listed"], "slow": ["listed"]}  # no second copy for "fast"
    assert db.pending_events() == []
    db.close()
