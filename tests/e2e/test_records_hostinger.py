"""``mailmend records --apply --provider hostinger``: the official client ``hostinger-api``
against a local stand-in of Hostinger's DNS API (tests/providers_standin/hostinger_dns.py,
sources cited there), with the sandbox's PowerDNS behind it, so what is written is read back
in real DNS.

The tests run in file order and share the zones; the module starts and ends with PowerDNS's
zones as the sandbox loaded them (the powerdns tests before it change them too).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmend.fleet import load_fleet
from sandbox.control import Sandbox
from tests.conftest import CLI_ENV, MAILMEND
from tests.e2e.dns_api import (
    assert_first_apply_published,
    dkim_keys_2048,
    fleet_with_dns_table,
    txt,
)
from tests.providers_standin.hostinger_dns import HostingerDnsStandIn

pytestmark = pytest.mark.end_to_end

TOKEN = "hostinger-dns-token-" + "s3cr3t" * 4
VERIFICATION = "google-site-verification=sandbox-hostinger"


@pytest.fixture(scope="module")
def api(sandbox: Sandbox) -> Iterator[HostingerDnsStandIn]:
    sandbox.pdns.restore_zones()
    standin = HostingerDnsStandIn(sandbox, [], TOKEN)
    yield standin
    standin.close()
    sandbox.pdns.restore_zones()


@pytest.fixture(scope="module")
def keys(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dkim_keys_2048(sandbox, tmp_path_factory.mktemp("dkim-hostinger"))


def records(
    sb: Sandbox,
    api: HostingerDnsStandIn,
    keys: dict[str, Path],
    *extra: str,
    token: str = TOKEN,
    fleet: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [str(MAILMEND), "records", "--fleet", str(fleet or sb.fleet_file)]
    argv += ["--nameserver", sb.net.pdns, "--timeout", "2", "--deadline", "10"]
    for spec, path in keys.items():
        argv += ["--dkim-txt", f"{spec}={path}"]
    if fleet is None:
        argv += ["--provider", "hostinger", "--provider-option", f"endpoint={api.url}"]
        argv += ["--provider-credential", "api_token=env:HOSTINGER_API_TOKEN"]
    env = {**CLI_ENV, "HOSTINGER_API_TOKEN": token}
    return subprocess.run(
        [*argv, *extra], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def writes(api: HostingerDnsStandIn) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in api.requests if r.method in ("PUT", "POST", "DELETE")]


def test_apply_through_the_hostinger_api(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path]
) -> None:
    hosts = sandbox.hosts()
    bravo = hosts[1].domain
    api.set_rrset(bravo, bravo, "TXT", [VERIFICATION])
    api.requests.clear()
    done = records(sandbox, api, keys, "--apply")
    assert done.returncode == 0, done.stderr
    domains = sorted({h.domain for h in hosts})
    for domain in domains:
        assert f"mailmend records: zone {domain}: " in done.stderr
        assert f"zone {domain}: rollback point: Hostinger snapshot 1 of " in done.stderr
    assert done.stderr.count("verified through the API and in DNS") == len(domains), done.stderr
    # Per zone: validate, then exactly one PUT (always overwrite), never a DELETE.
    sent = writes(api)
    assert sorted(sent) == sorted(
        [("POST", f"/api/dns/v1/zones/{d}/validate") for d in domains]
        + [("PUT", f"/api/dns/v1/zones/{d}") for d in domains]
    )
    for d in domains:
        validate = sent.index(("POST", f"/api/dns/v1/zones/{d}/validate"))
        assert sent[validate + 1] == ("PUT", f"/api/dns/v1/zones/{d}")
    puts = [r for r in api.requests if r.method == "PUT"]
    assert all(r.body["overwrite"] is True for r in puts)
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in puts)
    assert_first_apply_published(sandbox, keys, VERIFICATION)


def test_rerun_from_the_fleets_dns_table_changes_nothing(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path], tmp_path: Path
) -> None:
    fleet = fleet_with_dns_table(
        sandbox,
        tmp_path / "fleet.toml",
        'provider = "hostinger"',
        f'options = {{ endpoint = "{api.url}" }}',
        'credentials = { auth_token = "env:HOSTINGER_API_TOKEN" }',  # lexicon's name: taken too
    )
    api.requests.clear()
    done = records(sandbox, api, keys, "--apply", fleet=fleet)
    assert done.returncode == 0, done.stderr
    assert "nothing to publish" in done.stderr and "written" not in done.stderr
    assert "0 to add, 0 to change" in done.stdout
    assert writes(api) == []


def test_a_record_changed_behind_our_back_is_not_overwritten(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path]
) -> None:
    """The plan reads DNS; the change is made in "hPanel" before the API write (between
    the plan and the re-read): that zone is refused, the others go through."""
    hosts = sandbox.hosts()
    domain = hosts[0].domain
    name = f"_dmarc.{domain}"
    theirs = f"v=DMARC1; p=none; rua=mailto:someone@{domain}; fo=1"
    original = api.route

    def change_first(request: object, query: dict[str, str]) -> object:
        if getattr(request, "path", "") == f"/api/dns/v1/zones/{domain}" and not done_once:
            done_once.append(True)
            api.set_rrset(domain, name, "TXT", [theirs])
        return original(request, query)  # type: ignore[arg-type]

    done_once: list[bool] = []
    api.route = change_first  # type: ignore[assignment,method-assign]
    try:
        done = records(sandbox, api, keys, "--apply", "--dmarc-stage", "quarantine")
    finally:
        api.route = original  # type: ignore[method-assign]
    assert done.returncode == 1, done.stderr
    assert (
        f"mailmend records: zone {domain}: not changed: TXT {name} changed since it was read "
        "(read 1 record(s), now 1: 1 gone, 1 new)" in done.stderr
    ), done.stderr
    assert txt(sandbox, name) == [theirs]
    for other in {h.domain for h in hosts} - {domain}:
        assert f"zone {other}: " in done.stderr
        assert txt(sandbox, f"_dmarc.{other}")[0].startswith("v=DMARC1; p=quarantine")


def test_a_disabled_record_is_never_deleted(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path]
) -> None:
    domain = sandbox.hosts()[0].domain
    name = f"_dmarc.{domain}"
    report = load_fleet(sandbox.fleet_file).settings.dmarc_report_address
    served = [f"v=DMARC1; p=none; rua=mailto:{report}"]
    api.set_rrset(domain, name, "TXT", served, disabled=("v=DMARC1; p=reject; kept=yes",))
    api.requests.clear()
    done = records(sandbox, api, keys, "--apply", "--dmarc-stage", "quarantine")
    assert done.returncode == 1, done.stderr
    assert (
        f"mailmend records: zone {domain}: not changed: TXT {name} holds a disabled record "
        "at Hostinger" in done.stderr
    ), done.stderr
    assert ("PUT", f"/api/dns/v1/zones/{domain}") not in writes(api)
    (rrset,) = [r for r in api.listing(domain) if r["name"] == "_dmarc" and r["type"] == "TXT"]
    assert {"content": "v=DMARC1; p=reject; kept=yes", "is_disabled": True} in rrset["records"]
    api.set_rrset(domain, name, "TXT", served)


def test_a_body_hostinger_refuses_writes_nothing(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path]
) -> None:
    name = f"_dmarc.{sandbox.hosts()[0].domain}"
    before = txt(sandbox, name)
    api.mode, api.requests[:] = "invalid", []
    try:
        done = records(sandbox, api, keys, "--apply", "--dmarc-stage", "reject")
    finally:
        api.mode = "ok"
    assert done.returncode == 1
    assert [m for m, _ in writes(api)] == ["POST"] * len({h.domain for h in sandbox.hosts()})
    assert "refused the request (HTTP 422: The content is invalid for this record type." in (
        done.stderr
    )
    assert txt(sandbox, name) == before


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("rate_limit", r"rate limited by the provider \(HTTP 429\); try again later"),
        ("outage", r"provider outage \(HTTP 500: Internal server error\); try again later"),
        ("ok", r"the provider refused the credentials \(HTTP 401: Unauthenticated\.\); check "
         r"the token the reference points at"),
    ],
)  # fmt: skip
def test_refusals_before_any_write_are_one_line_exit_1(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path], mode: str, said: str
) -> None:
    """A rate limit, an outage, a wrong token (with --debug: the token never shows)."""
    name = f"_dmarc.{sandbox.hosts()[1].domain}"
    before = txt(sandbox, name)
    wrong = "not-the-token-" + "x" * 16
    api.mode = mode
    try:
        done = records(
            sandbox, api, keys, "--apply", "--dmarc-stage", "reject", "--debug",
            token=wrong if mode == "ok" else TOKEN,
        )  # fmt: skip
    finally:
        api.mode = "ok"
    assert done.returncode == 1, done.stderr
    lines = [s for s in done.stderr.splitlines() if s.startswith("mailmend records: ")]
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        rf"mailmend records: hostinger: reading zone \S+: {said}: nothing was written", lines[0]
    ), lines[0]
    assert "debug: " in done.stderr  # the client's log is there
    assert wrong not in done.stdout + done.stderr and TOKEN not in done.stdout + done.stderr
    assert txt(sandbox, name) == before


def test_an_update_whose_answer_never_comes_is_said_and_the_rerun_converges(
    sandbox: Sandbox, api: HostingerDnsStandIn, keys: dict[str, Path]
) -> None:
    """The PUT went through but its answer came after --timeout: the zone says it may have
    changed (never "not changed") and names the rollback point, exit 1; the next run sees
    what is published."""
    domain = sandbox.hosts()[0].domain
    api.mode, api.late = "answer_late", 4.0
    try:
        done = records(sandbox, api, keys, "--apply", "--dmarc-stage", "quarantine")
    finally:
        api.mode = "ok"
    assert done.returncode == 1, done.stderr
    assert (
        f"mailmend records: zone {domain}: MAY HAVE CHANGED: hostinger: updating zone {domain}: "
        f"127.{sandbox.net.block}.9.60 did not answer in time; run records again to see"
        in done.stderr
    ), done.stderr
    assert f"zone {domain}: rollback point: Hostinger snapshot " in done.stderr
    time.sleep(api.late)  # the stand-in's late answers are gone
    again = records(sandbox, api, keys, "--apply", "--dmarc-stage", "quarantine")
    assert again.returncode == 0, again.stderr
    assert "nothing to publish" in again.stderr
    assert txt(sandbox, f"_dmarc.{domain}")[0].startswith("v=DMARC1; p=quarantine")
