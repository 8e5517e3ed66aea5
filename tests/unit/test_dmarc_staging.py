"""``--dmarc-stage auto`` decisions from a real database of generated reports and faked DNS."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from mailmend.checks.dns import Rcode
from mailmend.dmarc.db import DAY, open_dmarc_db
from mailmend.dmarc.ingest import Ingester
from mailmend.dmarc.stage import StageDecision, StageRule
from mailmend.dmarc.staging import decide_domains, published_policy, stage_choice
from mailmend.records.plan import (
    Action,
    DomainPlan,
    Plan,
    RecordChange,
    Sender,
    build_plan,
    plan_json,
    render_plan,
)
from tests.dmarc_reports import Row, report_xml
from tests.unit.test_ptr import FakeResolver

NOW = 1_800_000_000
CLEAN, LOUD = "alpha.example", "bravo.example"
ZONE: dict[tuple[str, str], tuple[str, ...] | Rcode] = {
    (f"_dmarc.{CLEAN}", "TXT"): ("v=DMARC1; p=none; rua=mailto:dmarc@alpha.example",),
    (f"_dmarc.{LOUD}", "TXT"): ("v=DMARC1; p=none; rua=mailto:dmarc@alpha.example",),
    ("_dmarc.gamma.example", "TXT"): ("v=DMARC1; p=bogus",),
    (CLEAN, "TXT"): ("v=spf1 ip4:192.0.2.11 include:_spf.mailservice.test ~all",),
    (LOUD, "TXT"): ("v=spf1 ip4:198.51.100.12 ~all",),
    ("_spf.mailservice.test", "TXT"): ("v=spf1 ip4:198.51.100.0/24 -all",),
}
FLEET = {"192.0.2.11": "mx1", "198.51.100.12": "mx2"}


def fill(conn: sqlite3.Connection) -> None:
    """14 days of daily reports from two organisations for both domains; one report made
    under p=quarantine (it must not count while p=none is published)."""
    ingester = Ingester(conn)
    for day in range(1, 15):
        begin = NOW - day * DAY
        for org in ("google.com", "Yahoo"):
            clean = [Row("192.0.2.11", 40), Row("198.51.100.77", 5)]
            loud = [Row("198.51.100.12", 30, header_from=LOUD),
                    Row("203.0.113.50", 9, header_from=LOUD, dkim="fail", spf="fail")]  # fmt: skip
            for domain, rows in ((CLEAN, clean), (LOUD, loud)):
                xml = report_xml(org, f"{org}-{domain}-{day}", domain, rows, begin=begin,
                                 end=begin + DAY - 1)  # fmt: skip
                ingester.add(xml, f"{org}/{domain}/{day}")
    late = report_xml("google.com", "q-1", CLEAN, [Row("203.0.113.99", 5000, dkim="fail",
                      spf="fail")], begin=NOW - DAY, end=NOW - 1, p="quarantine")  # fmt: skip
    ingester.add(late, "late")
    ingester.commit()
    assert not ingester.result.problems


def decisions(tmp_path: Path, rule: StageRule) -> dict[str, StageDecision]:
    conn = open_dmarc_db(tmp_path / "db")
    fill(conn)
    domains = [CLEAN, LOUD, "gamma.example", "delta.example"]
    return asyncio.run(decide_domains(FakeResolver(ZONE), conn, domains, FLEET, rule, NOW))


def test_clean_domain_moves_and_loud_one_stays(tmp_path: Path) -> None:
    found = decisions(tmp_path, StageRule())
    assert sorted(found) == [CLEAN, LOUD]  # gamma: malformed record, delta: none published
    clean, loud = found[CLEAN], found[LOUD]
    assert clean.headline() == "p=none -> p=quarantine"
    assert clean.reasons[0].startswith("28 reports from 2 organisations under p=none")
    assert {s.cls.kind.value for s in clean.sources} == {"fleet", "service"}
    assert loud.headline() == "stays at p=none"
    assert loud.reasons == (
        "203.0.113.50 (unknown, no PTR): 252 message(s) from an unknown source (more than 10; "
        "0.0% of 252 message(s) aligned): authorise it in SPF and sign its mail if it is yours; "
        "if it is spoofing, stage by hand with --dmarc-stage",
    )


def test_a_higher_threshold_lets_the_loud_domain_move(tmp_path: Path) -> None:
    found = decisions(tmp_path, StageRule(unknown_max=300))
    assert found[LOUD].moves


def test_published_policy() -> None:
    assert published_policy(["v=DMARC1; p=quarantine; pct=25"]) == ("quarantine", 25)
    assert published_policy(["v=DMARC1; p=reject"]) == ("reject", None)
    assert published_policy(["v=DMARC1; p=none", "v=DMARC1; p=reject"]) is None
    assert published_policy(["v=spf1 -all"]) is None


# --- the decisions in the records plan -------------------------------------------------------


def test_plan_shows_and_applies_the_decisions(tmp_path: Path) -> None:
    found = decisions(tmp_path, StageRule(ramp=(50, 100)))
    choices = {d: stage_choice(decision) for d, decision in found.items()}
    senders = (
        Sender("mx1", "mx1.alpha.example", "192.0.2.11", None, ((CLEAN, "mx1"),)),
        Sender("mx2", "mx2.bravo.example", "198.51.100.12", None, ((LOUD, "mx2"),)),
    )
    plan = asyncio.run(build_plan(FakeResolver(ZONE), senders, dmarc_stage=choices))
    dmarc = {r.name: r for r in plan.entries() if r.kind == "dmarc"}
    moved, kept = dmarc[f"_dmarc.{CLEAN}"], dmarc[f"_dmarc.{LOUD}"]
    assert (moved.action, moved.value) == (
        Action.CHANGE,
        "v=DMARC1; p=quarantine; rua=mailto:dmarc@alpha.example; pct=50",
    )
    assert (kept.action, kept.value) == (Action.KEEP, ZONE[(f"_dmarc.{LOUD}", "TXT")][0])
    text = render_plan(plan)
    assert "stage (from the reports): p=none -> p=quarantine pct=50" in text
    assert "stage (from the reports): stays at p=none" in text
    assert "- 203.0.113.50 (unknown, no PTR): 252 message(s) from an unknown source" in text
    data = {r["name"]: r for d in plan_json(plan)["domains"] for r in d["records"]}
    stage = data[f"_dmarc.{LOUD}."]["stage"]
    assert (stage["moves"], stage["policy"], stage["target"]) == (False, "none", "none")
    assert stage["sources"][0]["class"] == "fleet"


def test_reasons_are_terminal_safe() -> None:
    decision = StageDecision(CLEAN, "none", None, "none", None, ("evil.test\x1b[2J: 5 messages",))
    change = RecordChange(
        "dmarc",
        f"_dmarc.{CLEAN}",
        "TXT",
        Action.KEEP,
        "v=DMARC1; p=none",
        stage=stage_choice(decision),
    )
    text = render_plan(Plan((DomainPlan(CLEAN, (change,)),), ()))
    assert "- evil.test\\027[2J: 5 messages" in text and "\x1b" not in text
    assert stage_choice(decision).detail["reasons"] == ["evil.test\x1b[2J: 5 messages"]
