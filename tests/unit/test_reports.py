"""check_host / check_fleet, and the table, JSON, HTML and Nagios reports."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from mailmend.checks.blocklists import load_blocklists
from mailmend.checks.dns import DnsAnswer, Rcode
from mailmend.checks.host import (
    HostReport,
    HostTarget,
    check_fleet,
    check_host,
    count_statuses,
)
from mailmend.checks.names import reverse_name
from mailmend.checks.report_html import render_html
from mailmend.checks.report_json import render_json, report_document
from mailmend.checks.report_nagios import render_nagios
from mailmend.checks.report_table import render_table
from mailmend.checks.result import CheckResult, ListProblem, Status
from mailmend.cli.check import exit_code, render
from tests.unit.test_ptr import FQDN, IP, FakeResolver

D = "example.com"


def res(
    check: str, status: Status, summary: str = "s", fix: str | None = None, **extra: Any
) -> CheckResult:
    return CheckResult(check, status, "subject", summary, (), fix, extra)


def host(name: str, *results: CheckResult) -> HostReport:
    return HostReport(name, IP, f"{name}.example.com", list(results), (IP,))


def good_zone() -> dict[tuple[str, str], tuple[str, ...] | Rcode]:
    return {
        (reverse_name(IP), "PTR"): (FQDN + ".",),
        (FQDN, "A"): (IP,),
        (D, "TXT"): (f"v=spf1 ip4:{IP} -all",),
        (f"_dmarc.{D}", "TXT"): (f"v=DMARC1; p=reject; rua=mailto:d@{D}",),
    }


TARGET = HostTarget("mx1", FQDN, (IP,), ((D, None),))


# --- check_host / check_fleet --------------------------------------------------------------------


def test_check_host_runs_every_check_in_order() -> None:
    report = asyncio.run(check_host(FakeResolver(good_zone()), TARGET))
    assert [r.check for r in report.results] == ["ptr", "fcrdns", "spf", "dkim", "dmarc"]
    assert report.status is Status.WARN  # no DKIM selector known
    assert (report.name, report.ip, report.hostname) == ("mx1", IP, FQDN)


@dataclass(frozen=True)
class FakeList:
    zone: str
    target: str


IP_LIST, DOMAIN_LIST = FakeList("ip.example", "ip"), FakeList("dom.example", "domain")
HEALTH = {"ip.example": "ok", "dom.example": "broken"}
S5H_BROKEN = ListProblem(
    "all.s5h.net",
    "S5H blocklist",
    "broken",
    "list is broken/wildcarding: it lists test point 127.0.0.1",
    "Nothing to fix on the hosts: its answers are ignored for every host.",
)


def fake_dnsbl(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Replace checks.dnsbl; return the calls it gets."""
    calls: list[tuple[object, ...]] = []

    async def list_health(engine: object, lists: object, dqs_key: str | None = None) -> object:
        calls.append(("health", lists, dqs_key))
        await asyncio.sleep(0.01)  # hosts must wait for it
        return HEALTH

    async def check_ip(
        engine: object, ip: str, lists: object, dqs_key: str | None = None, health: object = None
    ) -> list[CheckResult]:
        calls.append(("ip", ip, lists, dqs_key, health))
        return [res("dnsbl", Status.PASS, listed=False), res("dnsbl", Status.FAIL, listed=True)]

    async def check_domain(
        engine: object,
        domain: str,
        lists: object,
        dqs_key: str | None = None,
        health: object = None,
    ) -> list[CheckResult]:
        calls.append(("domain", domain, lists, dqs_key, health))
        return [res("dnsbl", Status.PASS, listed=False)]

    def list_problems(lists: list[FakeList], health: dict[str, str]) -> list[ListProblem]:
        return [S5H_BROKEN for bl in lists if health.get(bl.zone) == "broken"]

    fake = types.ModuleType("mailmend.checks.dnsbl")
    fake.list_health = list_health  # type: ignore[attr-defined]
    fake.list_problems = list_problems  # type: ignore[attr-defined]
    fake.check_ip = check_ip  # type: ignore[attr-defined]
    fake.check_domain = check_domain  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mailmend.checks.dnsbl", fake)
    return calls


def test_check_host_calls_dnsbl_per_ip_and_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_dnsbl(monkeypatch)
    lists = [IP_LIST, DOMAIN_LIST]
    report = asyncio.run(check_host(FakeResolver(good_zone()), TARGET, lists, "KEY"))
    assert calls == [
        ("health", lists, "KEY"),
        ("ip", IP, [IP_LIST], "KEY", HEALTH),
        ("domain", D, [DOMAIN_LIST], "KEY", HEALTH),
    ]
    assert [r.check for r in report.results].count("dnsbl") == 3
    assert report.status is Status.FAIL
    assert "listed: subject" in render_html([report])  # the fake results have no zone


def test_check_host_uses_the_health_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_dnsbl(monkeypatch)
    given = {"ip.example": "given"}
    asyncio.run(check_host(FakeResolver(good_zone()), TARGET, [IP_LIST], None, given))
    assert [c[0] for c in calls] == ["ip", "domain"]
    assert calls[0][-1] is given and calls[1][2] == []


def test_check_fleet_probes_list_health_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_dnsbl(monkeypatch)
    other = HostTarget("mx2", "mx2.example.com", ("198.51.100.2",))
    run = asyncio.run(
        check_fleet(FakeResolver(good_zone()), [TARGET, other], [IP_LIST, DOMAIN_LIST])
    )
    assert [c[0] for c in calls].count("health") == 1
    assert all(c[-1] == HEALTH for c in calls if c[0] != "health")
    assert [r.name for r in run.hosts] == ["mx1", "mx2"]
    assert run.lists == (S5H_BROKEN,)  # the broken list, once for the fleet


def test_check_fleet_deadline_covers_the_health_probe() -> None:
    lists = load_blocklists()
    reports = asyncio.run(check_fleet(SlowResolver({}), [TARGET], lists, deadline=0.05)).hosts
    assert reports[0].status is Status.UNKNOWN
    assert "deadline" in reports[0].results[0].summary


def test_check_fleet_keeps_order_and_reports_progress() -> None:
    other = HostTarget("mx2", "mx2.example.com", ("198.51.100.2",))
    seen: list[tuple[int, int]] = []
    reports = asyncio.run(
        check_fleet(
            FakeResolver(good_zone()), [TARGET, other], progress=lambda d, t: seen.append((d, t))
        )
    ).hosts
    assert [r.name for r in reports] == ["mx1", "mx2"]
    assert seen == [(1, 2), (2, 2)]


class SlowResolver(FakeResolver):
    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        await asyncio.sleep(10)
        return await super().query(name, rdtype)


def test_deadline_turns_unfinished_hosts_unknown() -> None:
    reports = asyncio.run(check_fleet(SlowResolver({}), [TARGET], deadline=0.05)).hosts
    assert reports[0].status is Status.UNKNOWN
    assert "deadline" in reports[0].results[0].summary


# --- exit codes and counts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([Status.PASS], 0),
        ([Status.PASS, Status.WARN], 0),
        ([Status.WARN, Status.FAIL, Status.UNKNOWN], 1),
        ([Status.WARN, Status.UNKNOWN], 3),
        ([], 0),
    ],
)
def test_exit_code_mapping(statuses: list[Status], code: int) -> None:
    assert exit_code([host("a", *(res("ptr", s) for s in statuses))]) == code


@pytest.mark.parametrize(
    ("statuses", "state", "word"),
    [
        ([Status.PASS], 0, "OK"),
        ([Status.WARN], 1, "WARNING"),
        ([Status.WARN, Status.FAIL, Status.UNKNOWN], 2, "CRITICAL"),
        ([Status.WARN, Status.UNKNOWN], 3, "UNKNOWN"),
    ],
)
def test_nagios_states(statuses: list[Status], state: int, word: str) -> None:
    line, code = render_nagios([host("a", *(res("ptr", s) for s in statuses))])
    assert code == state
    assert line.startswith(f"MAILMEND {word} - ")
    assert render([host("a", *(res("ptr", s) for s in statuses))], "nagios")[1] == state


def test_nagios_line_format() -> None:
    reports = [
        host("a", res("ptr", Status.FAIL), *[res("spf", Status.PASS)] * 20),
        host("b", res("ptr", Status.WARN), *[res("spf", Status.PASS)] * 10),
        host("c", res("ptr", Status.WARN), *[res("spf", Status.PASS)] * 10),
    ]
    line, code = render_nagios(reports)
    assert line == (
        "MAILMEND CRITICAL - 1 fail, 2 warn, 0 unknown on 3 hosts "
        "| fail=1 warn=2 unknown=0 pass=40 broken_lists=0\n"
    )
    assert code == 2


# --- a broken list: once, for the fleet, in every format; never a host's status or exit code --

PBL = res("dnsbl", Status.WARN, "policy listing on Spamhaus ZEN: PBL", zone="zen.spamhaus.org")
TIMED_OUT = res("dnsbl", Status.UNKNOWN, "no usable answer (TIMEOUT)", zone="bl.example")
WARNED = [host("mx3", res("ptr", Status.PASS), res("dmarc", Status.WARN, "p=none"), PBL)]


def test_nagios_names_broken_lists_and_keeps_the_state() -> None:
    line, code = render_nagios(WARNED, [S5H_BROKEN])
    assert line == (
        "MAILMEND WARNING - 0 fail, 2 warn, 0 unknown on 1 hosts; broken list: all.s5h.net "
        "| fail=0 warn=2 unknown=0 pass=1 broken_lists=1\n"
    )
    assert code == 1


@pytest.mark.parametrize("fmt", ["table", "json", "html", "nagios"])
def test_broken_list_is_shown_once_and_never_changes_the_exit_code(fmt: str) -> None:
    text, code = render(WARNED * 1, fmt, lists=[S5H_BROKEN])
    assert code == render(WARNED, fmt)[1] == (1 if fmt == "nagios" else 0)
    assert text.count("all.s5h.net") == 1


def test_table_shows_the_broken_list_after_the_hosts_problems() -> None:
    text = render_table(WARNED, lists=[S5H_BROKEN])
    assert text.splitlines()[2:4] == [
        "BROKEN   blocklist all.s5h.net (S5H blocklist): list is broken/wildcarding: it lists "
        "test point 127.0.0.1; its answers are ignored, for every host",
        "         fix: Nothing to fix on the hosts: its answers are ignored for every host.",
    ]
    assert text.splitlines()[-1] == "1 hosts: 0 fail, 0 unknown, 2 warn, 1 pass"


def test_json_lists_section() -> None:
    doc = json.loads(render_json(WARNED, lists=[S5H_BROKEN]))
    assert doc["lists"] == [
        {
            "zone": "all.s5h.net",
            "name": "S5H blocklist",
            "health": "broken",
            "reason": "list is broken/wildcarding: it lists test point 127.0.0.1",
            "fix": "Nothing to fix on the hosts: its answers are ignored for every host.",
        }
    ]
    assert doc["hosts"][0]["status"] == "warn" and doc["summary"]["unknown"] == 0


def test_html_lists_section_and_warning_cards() -> None:
    page = render_html(WARNED, lists=[S5H_BROKEN])
    assert '<div class="card warn"><b>1</b><span>hosts with warnings</span></div>' in page
    assert "Blocklists not counted" in page
    assert (
        '<span class="check">S5H blocklist</span><span class="subject">all.s5h.net</span>' in page
    )


def test_html_cell_shows_a_real_listing_before_unknown() -> None:
    """Regression (issue 15): mx3's blocklist cell said '? 1 unknown / 22' and hid its PBL
    listing. The cell shows the real finding first, links to it, and counts the unknown."""
    mx3 = host("mx3", PBL, TIMED_OUT, res("dnsbl", Status.PASS, zone="ok.example"))
    page = render_html([mx3])
    assert (
        '<td class="warn" title="policy listing on Spamhaus ZEN: PBL"><a href="#h0-p1">'
        "\u26a0 policy: zen.spamhaus.org (+1 unknown)</a></td>"
    ) in page
    assert '<div class="problem warn" id="h0-p1">' in page  # problems: unknown first, then warn
    assert mx3.status is Status.UNKNOWN  # the host's status still ranks unknown above warn


# --- JSON ---


def test_json_schema_keys() -> None:
    reports = [
        host(
            "a",
            res("ptr", Status.FAIL, fix="do x"),
            res("dnsbl", Status.PASS, zone="z", listed=False),
        )
    ]
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    doc = json.loads(render_json(reports, when))
    assert set(doc) == {"schema", "generated", "hosts", "lists", "summary"}
    assert doc["lists"] == []
    assert doc["schema"] == 1
    assert doc["generated"] == "2026-01-02T03:04:05+00:00"
    assert set(doc["summary"]) == {"pass", "warn", "fail", "unknown"}
    assert doc["summary"] == {"pass": 1, "warn": 0, "fail": 1, "unknown": 0}
    (h,) = doc["hosts"]
    assert {"name", "ip", "hostname", "status", "checks"} <= set(h)
    assert h["status"] == "fail"
    assert set(h["checks"][0]) == {"check", "status", "subject", "summary", "details", "fix"}
    assert h["checks"][1]["zone"] == "z" and h["checks"][1]["listed"] is False
    assert report_document(reports, when) == doc


def test_count_statuses() -> None:
    assert count_statuses([host("a", res("x", Status.UNKNOWN)), host("b")]) == {
        "pass": 0,
        "warn": 0,
        "fail": 0,
        "unknown": 1,
    }


# --- table ---


def test_table_lists_problems_first_by_severity_with_fixes() -> None:
    reports = [
        host("a", res("dmarc", Status.WARN, "warned", "fix-w"), res("ptr", Status.PASS, "fine")),
        host(
            "b",
            res("spf", Status.UNKNOWN, "unknown-one"),
            res("ptr", Status.FAIL, "failed", "fix-f"),
        ),
    ]
    lines = render_table(reports).splitlines()
    assert lines[0].startswith("FAIL") and "failed" in lines[0]
    assert lines[1].strip() == "fix: fix-f"
    assert lines[2].startswith("UNKNOWN") and "unknown-one" in lines[2]
    assert lines[3].startswith("WARN") and "warned" in lines[3]
    assert lines[4].strip() == "fix: fix-w"
    assert not any("fine" in line for line in lines)
    assert lines[-3].endswith("a (a.example.com, 203.0.113.7): 0 fail, 0 unknown, 1 warn, 1 pass")
    assert lines[-2].startswith("FAIL") and "b (" in lines[-2]
    assert lines[-1] == "2 hosts: 1 fail, 1 unknown, 1 warn, 1 pass"


def test_table_colour_only_when_asked() -> None:
    reports = [host("a", res("ptr", Status.FAIL))]
    assert "\033[" not in render_table(reports)
    assert "\033[" in render_table(reports, colour=True)


# --- HTML ---


def test_html_escapes_everything() -> None:
    evil = res(
        "ptr",
        Status.FAIL,
        "<script>alert(1)</script>",
        fix='set "<b>"',
        delist="javascript:alert(1)",
    )
    page = render_html([host("<img src=x>", evil)])
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x>" not in page
    assert 'href="javascript' not in page
    assert "<pre>set &#34;&lt;b&gt;&#34;</pre>" in page


def test_html_is_self_contained_grid_with_problems_and_links() -> None:
    reports = [
        host(
            "a",
            res("ptr", Status.PASS),
            res("spf", Status.FAIL, "spf broken", 'example.com. TXT "v=spf1 -all"'),
            res(
                "dnsbl",
                Status.FAIL,
                "listed",
                listed=True,
                zone="zen.spamhaus.org",
                delist={"url": "https://check.spamhaus.org/", "steps": ["fix the PTR first"]},
            ),
            res("dnsbl", Status.PASS, listed=False),
        ),
        host("b", res("ptr", Status.PASS), res("dnsbl", Status.PASS, listed=False)),
    ]
    page = render_html(reports)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert '<td class="pass" title="s">\u2714 pass</td>' in page
    # A problem cell links to the problem, which carries the fix.
    assert '<td class="fail" title="spf broken"><a href="#h0-p0">\u2716 fail</a></td>' in page
    assert '<div class="problem fail" id="h0-p0">' in page
    assert '<a href="#h0-p1">\u2716 listed: zen.spamhaus.org</a>' in page
    assert '<td class="pass" title="s">\u2714 clean (1 list)</td>' in page
    assert '<td class="none">no domain</td>' in page  # host b has no spf result
    assert '<div class="card fail"><b>1</b><span>hosts failing</span></div>' in page
    assert '<div class="card pass"><b>1</b><span>hosts all good</span></div>' in page
    assert '<a href="https://check.spamhaus.org/">' in page
    assert "<li>fix the PTR first</li>" in page
    assert "<pre>example.com. TXT &#34;v=spf1 -all&#34;</pre>" in page


def test_html_says_when_everything_passed() -> None:
    page = render_html([host("a", res("ptr", Status.PASS))])
    assert "Every check passed on every host." in page
    assert 'class="problem' not in page
