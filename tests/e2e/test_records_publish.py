"""``mailmend records --apply`` against the sandbox's Knot: TSIG-signed RFC 2136 updates.

The DKIM keys are made here (``cryptography``) and handed over as opendkim-genkey .txt files
(``--dkim-txt``), so the test does not depend on the mail deploy having run. The tests run
in file order and share the zones: publish, rerun (all keep), wrong key, changed behind our
back (before the re-read, and between the re-read and the update).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
from pathlib import Path

import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.update
import pytest

from mailmend.checks.dkim_key import DkimPublicKey
from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.nameservers import Nameserver, parse_nameserver
from mailmend.cli import records as records_cli
from mailmend.fleet import load_fleet
from mailmend.records.plan import Action, Plan, build_plan, senders_from_fleet
from mailmend.records.publish import StaleRecord, prepare, publish, read_rrset, send
from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from tests.conftest import genkey_txt

pytestmark = pytest.mark.end_to_end

VERIFICATION = "google-site-verification=sandbox"


@pytest.fixture(scope="module")
def keys(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 2048-bit key per host (4096 for the last), as genkey .txt files: spec -> path."""
    out: dict[str, Path] = {}
    tmp = tmp_path_factory.mktemp("dkim")
    hosts = sandbox.hosts()
    for h in hosts:
        bits = 4096 if h is hosts[-1] else 2048
        out[f"{h.domain}:{h.selector}"] = genkey_txt(tmp, h.selector, bits)
    return out


def server(sb: Sandbox) -> Nameserver:
    return parse_nameserver(sb.net.dns)


def txt(sb: Sandbox, name: str) -> list[str]:
    rrset = read_rrset(name, "TXT", server(sb))
    return sorted(b"".join(rd.strings).decode() for rd in rrset or ())


def external_update(sb: Sandbox, zone: str, name: str, *values: str) -> None:
    """Someone else's change: replace the TXT rrset at ``name``."""
    key = load_key_file(sb.dns.tsig_file)
    update = dns.update.UpdateMessage(zone, keyring=key.key(), keyname=key.key().name)
    rdatas = [dns.rdata.from_text("IN", "TXT", f'"{v}"') for v in values]
    update.replace(name + ".", 60, *rdatas)
    response = dns.query.tcp(update, sb.net.dns, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())


def cli(sb: Sandbox, keys: dict[str, Path], *extra: str) -> int:
    parser = argparse.ArgumentParser()
    records_cli.add_arguments(parser)
    argv = ["--fleet", str(sb.fleet_file), "--server", sb.net.dns]
    argv += ["--tsig-key", str(sb.dns.tsig_file), "--timeout", "2"]
    for spec, path in keys.items():
        argv += ["--dkim-txt", f"{spec}={path}"]
    return records_cli.run(parser.parse_args([*argv, *extra]))


def dkim_keys(keys: dict[str, Path]) -> list[DkimPublicKey]:
    from mailmend.records.dkim import read_genkey_txt

    out = []
    for spec, path in keys.items():
        domain, selector = spec.split(":")
        out.append(read_genkey_txt(path.read_text(), domain, selector))
    return out


def make_plan(sb: Sandbox, keys: dict[str, Path], stage: str | None = None) -> Plan:
    fleet = load_fleet(sb.fleet_file)

    async def go() -> Plan:
        config = EngineConfig(nameservers=(server(sb),), timeout=2)
        async with Engine(config) as engine:
            return await build_plan(
                engine,
                senders_from_fleet(fleet),
                dkim_keys=dkim_keys(keys),
                report_address=fleet.settings.dmarc_report_address,
                dmarc_stage=stage,
            )

    return asyncio.run(go())


def test_apply_publishes_spf_dkim_dmarc(
    sandbox: Sandbox, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = sandbox.hosts()
    # What is there before: a site verification next to nothing else at bravo's apex, and an
    # SPF record at charlie that already authorises its host through mx.
    external_update(sandbox, hosts[1].domain, hosts[1].domain, VERIFICATION)
    external_update(sandbox, hosts[2].domain, hosts[2].domain, "v=spf1 mx -all")
    assert cli(sandbox, keys, "--apply") == 0
    out, err = capsys.readouterr()
    assert "updated" in err and "not visible" not in err, err
    assert "  add     spf" in out and "  keep    spf        charlie.example." in out
    for h in hosts:
        spf = [r for r in txt(sandbox, h.domain) if r.startswith("v=spf1")]
        assert len(spf) == 1
        if h is hosts[2]:
            assert spf == ["v=spf1 mx -all"]  # covered by mx: nothing added
        else:
            assert f"ip4:{h.public_ipv4}" in spf[0].split()
    assert VERIFICATION in txt(sandbox, hosts[1].domain)  # the other TXT record stays
    for key in dkim_keys(keys):
        (published,) = txt(sandbox, key.name)
        assert published == key.value()
    report = load_fleet(sandbox.fleet_file).settings.dmarc_report_address
    for h in hosts:
        assert txt(sandbox, f"_dmarc.{h.domain}") == [f"v=DMARC1; p=none; rua=mailto:{report}"]
    # bravo and charlie report to alpha.example: alpha agrees, in its own zone
    assert txt(sandbox, f"{hosts[1].domain}._report._dmarc.{hosts[0].domain}") == ["v=DMARC1"]


def test_rerun_keeps_everything_and_sends_nothing(
    sandbox: Sandbox, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = make_plan(sandbox, keys)
    assert plan.changes() == []
    assert {r.action for r in plan.entries()} <= {Action.KEEP, Action.ASK}
    assert cli(sandbox, keys, "--apply") == 0
    out, err = capsys.readouterr()
    assert "nothing to publish" in err and "updated" not in err
    assert "0 to add, 0 to change" in out


def test_an_explicit_stage_moves_forward_and_back_only_when_asked(
    sandbox: Sandbox, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """reject, then quarantine asked explicitly: moved back (a rollback), then none."""
    name = f"_dmarc.{sandbox.hosts()[0].domain}"
    report = load_fleet(sandbox.fleet_file).settings.dmarc_report_address
    for stage in ("reject", "quarantine", "none"):
        assert cli(sandbox, keys, "--apply", "--dmarc-stage", stage) == 0
        assert txt(sandbox, name) == [f"v=DMARC1; p={stage}; rua=mailto:{report}"]
    out = capsys.readouterr().out
    assert "p=reject -> p=quarantine: moved BACK, as asked (--dmarc-stage quarantine)" in out
    assert "p=quarantine -> p=none: moved BACK, as asked (--dmarc-stage none)" in out


def test_wrong_tsig_key_is_refused_and_nothing_changes(
    sandbox: Sandbox, keys: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    domain = sandbox.hosts()[0].domain
    before = txt(sandbox, f"_dmarc.{domain}")
    bad = tmp_path / "bad.key"
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    bad.write_text(f'key "mailmend-sandbox" {{ algorithm hmac-sha256; secret "{secret}"; }};\n')
    bad.chmod(0o600)
    assert cli(sandbox, keys, "--apply", "--dmarc-stage", "quarantine", "--tsig-key", str(bad)) == 1
    err = capsys.readouterr().err
    assert "the server refused the TSIG key mailmend-sandbox: check the key file" in err
    assert secret not in err
    assert txt(sandbox, f"_dmarc.{domain}") == before


def test_changed_before_apply_is_refused(sandbox: Sandbox, keys: dict[str, Path]) -> None:
    domain = sandbox.hosts()[0].domain
    name = f"_dmarc.{domain}"
    plan = make_plan(sandbox, keys, stage="quarantine")
    assert [r.kind for r in plan.changes()] == ["dmarc"] * 3
    theirs = f"v=DMARC1; p=none; rua=mailto:someone@{domain}; fo=1"
    external_update(sandbox, domain, name, theirs)
    key = load_key_file(sandbox.dns.tsig_file)
    with pytest.raises(StaleRecord, match="record changed since it was read: run records again"):
        publish(plan, server(sandbox), key)
    assert txt(sandbox, name) == [theirs]


def test_changed_between_read_and_update_is_refused_by_the_server(
    sandbox: Sandbox, keys: dict[str, Path]
) -> None:
    domain = sandbox.hosts()[0].domain
    name = f"_dmarc.{domain}"
    plan = make_plan(sandbox, keys, stage="quarantine")
    key = load_key_file(sandbox.dns.tsig_file)
    updates = prepare(plan, server(sandbox), key)  # re-read done, prerequisites set
    theirs = f"v=DMARC1; p=none; rua=mailto:other@{domain}"
    external_update(sandbox, domain, name, theirs)
    with pytest.raises(StaleRecord, match=r"the server answered (NXRRSET|YXRRSET)"):
        send(updates, server(sandbox))
    assert txt(sandbox, name) == [theirs]
    # the first refusal stops: the other zones' updates were not sent either
    bravo = sandbox.hosts()[1].domain
    assert all("p=none" in r for r in txt(sandbox, f"_dmarc.{bravo}"))
