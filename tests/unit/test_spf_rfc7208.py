"""The official RFC 7208 test suite (OpenSPF, release 2014.04, from the pyspf 2.0.14 sdist),
run through :func:`checks.spf.fetch_record` + :func:`checks.spf.evaluate` with each
scenario's zone data served by a fake resolver.

Every test passes, or is listed in docs/checks.md ("RFC 7208 conformance") as a deviation with
its reason; a listed test is a strict xfail, so a deviation that stops deviating fails here.
The suite and its licence are in ``tests/unit/rfc7208/`` (BSD, see the LICENSE file there).
Only the result is compared: ``exp=`` explanations are a receiver's business, not a checker's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.spf import (
    Evaluation,
    SPFPermError,
    SPFTempError,
    evaluate,
    fetch_record,
    valid_domain,
)
from mailmend.checks.wire import encode_name

ROOT = Path(__file__).resolve().parents[2]
SUITE = Path(__file__).with_name("rfc7208") / "rfc7208-tests.yml"
DOCS = ROOT / "docs" / "checks.md"


@dataclass(frozen=True)
class Case:
    scenario: str
    name: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    zone: dict[str, list[Any]]


def load_cases() -> list[Case]:
    cases: list[Case] = []
    with SUITE.open(encoding="utf-8") as stream:
        for scenario in yaml.safe_load_all(stream):
            zone = {name.lower(): list(rdata or []) for name, rdata in scenario["zonedata"].items()}
            for name, test in scenario["tests"].items():
                result = test["result"]
                cases.append(
                    Case(
                        scenario["description"],
                        name,
                        str(test["host"]),
                        str(test.get("mailfrom") or ""),
                        str(test.get("helo") or ""),
                        tuple(result) if isinstance(result, list) else (result,),
                        zone,
                    )
                )
    return cases


class SuiteResolver(Resolver):
    """Serves one scenario's zone data the way the suite's reference driver does: a name not
    in the data is NXDOMAIN (``error.*`` names time out), a name in it without the asked type is
    NODATA unless it is marked ``TIMEOUT``, a CNAME is followed once, and SPF-type records stand
    in for TXT when a name has no TXT (RFC 7208 dropped type SPF). Names DNS cannot carry raise
    ValueError like the real engine does."""

    def __init__(self, zone: dict[str, list[Any]]) -> None:
        self.zone = zone

    async def query(self, name: str, rdtype: str, *, follow: bool = True) -> DnsAnswer:
        encode_name(name)  # the real engine refuses such a name before sending it
        key = name.rstrip(".").lower()
        entries = self.zone.get(key)
        if entries is None:
            rcode = Rcode.TIMEOUT if key.startswith("error.") else Rcode.NXDOMAIN
            return DnsAnswer(name, rdtype, rcode)
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        records: list[str] = []
        cname: str | None = None
        for entry in entries:
            if entry == "TIMEOUT":
                continue
            ((kind, value),) = entry.items()
            if kind == "SPF" and not has_txt:
                kind = "TXT"
            if kind == "CNAME":
                cname = str(value)
            if kind != rdtype:
                continue
            if value == "TIMEOUT":
                return DnsAnswer(name, rdtype, Rcode.TIMEOUT)
            if value != "NONE":
                records.append(_text(kind, value))
        if not records and cname is not None and follow:
            return await self.query(cname + ".", rdtype, follow=False)
        if not records and "TIMEOUT" in entries:
            return DnsAnswer(name, rdtype, Rcode.TIMEOUT)
        return DnsAnswer(name, rdtype, Rcode.NOERROR, tuple(records))


def _text(kind: str, value: Any) -> str:
    if kind == "TXT":
        return "".join(value) if isinstance(value, list) else str(value)
    if kind == "MX":
        preference, exchange = value
        return f"{preference} {exchange}."
    if kind == "PTR":
        return f"{value}."
    return str(value)


async def check_host(case: Case) -> str:
    """RFC 7208 check_host() for the MAIL FROM identity (or HELO when MAIL FROM is empty)."""
    sender = case.mailfrom or f"postmaster@{case.helo}"
    local, _, domain = sender.rpartition("@")
    if not local:
        local = "postmaster"
    if not valid_domain(domain):
        return "none"  # 4.3: a malformed domain is "none", before any DNS
    ip = ipaddress.ip_address(case.host)
    ev = Evaluation(SuiteResolver(case.zone), ip, sender=f"{local}@{domain}", helo=case.helo)
    try:
        record = await fetch_record(ev, domain)
        if record is None:
            return "none"
        found = await evaluate(ev, domain, record)
    except SPFTempError:
        return "temperror"
    except SPFPermError:
        return "permerror"
    return found.result if found else "neutral"


def documented_deviations() -> dict[str, str]:
    """Test name -> reason, from the table in docs/checks.md (the one place they are listed)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### RFC 7208 conformance", 1)[1].split("\n#", 1)[0]
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.+?) \|$", section, re.MULTILINE)
    }


CASES = load_cases()
DEVIATIONS = documented_deviations()


def test_the_suite_is_the_whole_official_suite() -> None:
    assert len(CASES) == 203
    assert len({c.name for c in CASES}) == 203


def test_every_documented_deviation_is_a_test_of_the_suite() -> None:
    names = {c.name for c in CASES}
    assert set(DEVIATIONS) <= names, set(DEVIATIONS) - names
    assert all(DEVIATIONS.values())


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c,
            id=c.name,
            marks=[pytest.mark.xfail(strict=True, reason=DEVIATIONS[c.name])]
            if c.name in DEVIATIONS
            else [],
        )
        for c in CASES
    ],
)
def test_rfc7208_suite(case: Case) -> None:
    result = asyncio.run(check_host(case))
    assert result in case.results, f"{case.scenario}: expected {case.results}, got {result}"
