"""``mailmend records --apply --provider powerdns`` against the sandbox's PowerDNS (real
server, real HTTP API, dns-lexicon's powerdns provider), read back through its DNS.

The tests run in file order and share the zones: apply, rerun (0 changes, provider from the
fleet's [dns] table), a record changed behind our back, a wrong API key, --debug.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.nameservers import parse_nameserver
from mailmend.fleet import load_fleet
from mailmend.providers.dns import DnsProvider, Session, publish
from mailmend.records.dkim import read_genkey_txt
from mailmend.records.plan import Plan, build_plan, senders_from_fleet
from sandbox.control import Sandbox
from tests.conftest import CLI_ENV, MAILMEND
from tests.e2e.dns_api import (
    assert_first_apply_published,
    dkim_keys_2048,
    fleet_with_dns_table,
    txt,
)

pytestmark = pytest.mark.end_to_end

VERIFICATION = "google-site-verification=sandbox-pdns"


@pytest.fixture(scope="module")
def keys(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dkim_keys_2048(sandbox, tmp_path_factory.mktemp("dkim-pdns"))


def provider(sb: Sandbox) -> DnsProvider:
    return DnsProvider(
        "powerdns", {"pdns_server": sb.pdns.api_url}, {"auth_token": "env:PDNS_API_KEY"}
    )


def records(
    sb: Sandbox,
    keys: dict[str, Path],
    *extra: str,
    api_key: str | None = None,
    fleet: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [str(MAILMEND), "records", "--fleet", str(fleet or sb.fleet_file)]
    argv += ["--nameserver", sb.net.pdns, "--timeout", "2", "--deadline", "10"]
    for spec, path in keys.items():
        argv += ["--dkim-txt", f"{spec}={path}"]
    if fleet is None:
        argv += ["--provider", "powerdns", "--provider-option", f"pdns_server={sb.pdns.api_url}"]
        argv += ["--provider-credential", "auth_token=env:PDNS_API_KEY"]
    env = {**CLI_ENV, "PDNS_API_KEY": api_key or sb.pdns.api_key()}
    return subprocess.run(
        [*argv, *extra], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def make_plan(sb: Sandbox, keys: dict[str, Path], stage: str | None = None) -> Plan:
    fleet = load_fleet(sb.fleet_file)
    dkim = [read_genkey_txt(p.read_text(), *spec.split(":")) for spec, p in keys.items()]

    async def go() -> Plan:
        config = EngineConfig(nameservers=(parse_nameserver(sb.net.pdns),), timeout=2)
        async with Engine(config) as engine:
            return await build_plan(
                engine,
                senders_from_fleet(fleet),
                dkim_keys=dkim,
                report_address=fleet.settings.dmarc_report_address,
                dmarc_stage=stage,
            )

    return asyncio.run(go())


def api_session(sb: Sandbox, zone: str) -> Session:
    return Session(provider(sb), {"auth_token": sb.pdns.api_key()}, zone, 300)


def test_apply_through_the_powerdns_api(sandbox: Sandbox, keys: dict[str, Path]) -> None:
    hosts = sandbox.hosts()
    bravo = hosts[1].domain
    api_session(sandbox, bravo).api.create_record("TXT", bravo, VERIFICATION)
    done = records(sandbox, keys, "--apply")
    assert done.returncode == 0, done.stderr
    for h in hosts:
        assert (
            f"mailmend records: zone {h.domain}: " in done.stderr
            and "verified through the API and in DNS" in done.stderr
        ), done.stderr
    assert_first_apply_published(sandbox, keys, VERIFICATION)


def test_rerun_from_the_fleets_dns_table_changes_nothing(
    sandbox: Sandbox, keys: dict[str, Path], tmp_path: Path
) -> None:
    fleet = fleet_with_dns_table(
        sandbox,
        tmp_path / "fleet.toml",
        'provider = "powerdns"',
        f'options = {{ pdns_server = "{sandbox.pdns.api_url}" }}',
        'credentials = { auth_token = "env:PDNS_API_KEY" }',
    )
    done = records(sandbox, keys, "--apply", fleet=fleet)
    assert done.returncode == 0, done.stderr
    assert "nothing to publish" in done.stderr and "written" not in done.stderr
    assert "0 to add, 0 to change" in done.stdout


def test_a_record_changed_behind_our_back_is_not_overwritten(
    sandbox: Sandbox, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = sandbox.hosts()[0].domain
    name = f"_dmarc.{domain}"
    plan = make_plan(sandbox, keys, stage="quarantine")
    assert {r.name for r in plan.changes() if r.kind == "dmarc"} >= {name}
    theirs = f"v=DMARC1; p=none; rua=mailto:someone@{domain}; fo=1"
    session = api_session(sandbox, domain)
    session.api.delete_record(rtype="TXT", name=name)
    session.api.create_record("TXT", name, theirs)
    monkeypatch.setenv("PDNS_API_KEY", sandbox.pdns.api_key())
    outcomes = {o.zone: o for o in publish(plan, provider(sandbox), timeout=5)}
    mine = outcomes[domain]
    assert mine.status == "refused" and not mine.written
    assert f"TXT {name} changed since it was read" in mine.message
    assert txt(sandbox, name) == [theirs]
    others = [o for zone, o in outcomes.items() if zone != domain]
    assert others and all(o.ok for o in others)  # the other zones went through


def test_wrong_api_key_is_one_line_exit_1(sandbox: Sandbox, keys: dict[str, Path]) -> None:
    name = f"_dmarc.{sandbox.hosts()[1].domain}"
    before = txt(sandbox, name)
    wrong = "not-the-key-" + "x" * 16
    done = records(sandbox, keys, "--apply", "--dmarc-stage", "reject", api_key=wrong)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "mailmend records: powerdns API: the provider refused the "
        "credentials (HTTP 401); check the token the reference points at: nothing was written"
    ], done.stderr
    assert wrong not in done.stdout + done.stderr
    assert txt(sandbox, name) == before


def test_debug_never_shows_the_api_key(sandbox: Sandbox, keys: dict[str, Path]) -> None:
    key = sandbox.pdns.api_key()
    done = records(sandbox, keys, "--apply", "--dmarc-stage", "reject", "--debug")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "debug: " in done.stderr  # the provider library's log is there
    assert key not in done.stdout and key not in done.stderr
    assert txt(sandbox, f"_dmarc.{sandbox.hosts()[1].domain}")[0].startswith("v=DMARC1; p=reject")
