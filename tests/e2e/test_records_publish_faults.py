"""``mailmend records --apply`` when answers are lost or the admin presses Ctrl-C (issue 15
item 8): a proxy in front of the sandbox's Knot loses the reply to an update Knot applied, or
holds a message while the test sends SIGINT. Every run must say which zones were updated and
which not, and what it says must be what Knot serves.

Each test sets up what it needs (every DMARC record at p=none) and leaves every record the
plan touches as it found it, so the tests run alone, in any order, and before or after the
other files that publish into the shared sandbox."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import dns.query
import dns.rcode
import dns.rrset
import dns.update
import pytest

from mailmend.fleet import load_fleet
from mailmend.records.publish import read_rrset
from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from tests.conftest import CLI_ENV, MAILMEND
from tests.dnsproxy import DROP_REPLY, HOLD, HOLD_REPLY, PASS, DnsProxy
from tests.e2e.test_records_publish import external_update, server, txt

pytestmark = pytest.mark.end_to_end

Found = dict[tuple[str, str], "dns.rrset.RRset | None"]  # (name, type) -> rrset


@pytest.fixture(scope="module")
def found(sandbox: Sandbox) -> Found:
    """Every rrset the tests' plan may change, as the sandbox holds it before this file."""
    plan = subprocess.run(
        [*argv(sandbox, sandbox.net.dns)[:-1], "--format", "json"],
        capture_output=True, text=True, timeout=60, env=CLI_ENV, check=True,
    )  # fmt: skip
    keys = {
        (r["name"].rstrip("."), r["type"])
        for d in json.loads(plan.stdout)["domains"]
        for r in d["records"]
    }
    assert any(name.startswith("_dmarc.") for name, _ in keys), plan.stdout
    return {k: read_rrset(*k, server(sandbox)) for k in sorted(keys)}


def zone_of(sb: Sandbox, name: str) -> str:
    return max((z for z in sb.dns.zone_names() if f".{name}".endswith(f".{z}")), key=len)


@pytest.fixture(autouse=True)
def leave_as_found(sandbox: Sandbox, found: Found) -> Iterator[None]:
    """After each test: put back every rrset the test changed, and check it is back."""
    yield
    key = load_key_file(sandbox.dns.tsig_file).key()
    for (name, rdtype), before in found.items():
        if read_rrset(name, rdtype, server(sandbox)) == before:
            continue
        update = dns.update.UpdateMessage(zone_of(sandbox, name), keyring=key, keyname=key.name)
        if before is None:
            update.delete(name + ".", rdtype)
        else:
            update.replace(name + ".", before)
        response = dns.query.tcp(update, sandbox.net.dns, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    assert {k: read_rrset(*k, server(sandbox)) for k in found} == found


def domains(sb: Sandbox) -> list[str]:
    return [h.domain for h in sb.hosts()]


def reset(sb: Sandbox) -> str:
    """Every domain's DMARC back to p=none; returns the record (the plan moves it on)."""
    report = load_fleet(sb.fleet_file).settings.dmarc_report_address
    record = f"v=DMARC1; p=none; rua=mailto:{report}"
    for domain in domains(sb):
        external_update(sb, domain, f"_dmarc.{domain}", record)
    return record


def policies(sb: Sandbox) -> list[str]:
    out = []
    for domain in domains(sb):
        (record,) = txt(sb, f"_dmarc.{domain}")
        out.append(record.split(";")[1].strip())
    return out


def argv(sb: Sandbox, server: str, nameserver: str | None = None) -> list[str]:
    return [
        str(MAILMEND), "records", "--fleet", str(sb.fleet_file),
        "--nameserver", nameserver or sb.net.dns, "--server", server,
        "--tsig-key", str(sb.dns.tsig_file), "--timeout", "2",
        "--dmarc-stage", "quarantine", "--apply",
    ]  # fmt: skip


def upstream(sb: Sandbox) -> tuple[str, int]:
    host, _, port = sb.net.dns.partition(":")
    return host, int(port or 53)


@pytest.mark.parametrize("loss", [DROP_REPLY, HOLD_REPLY])
def test_lost_reply_to_an_applied_update_is_read_back_as_updated(
    sandbox: Sandbox, loss: str
) -> None:
    reset(sandbox)
    first = domains(sandbox)[0]
    rule = lambda kind, n: loss if (kind, n) == ("update", 0) else PASS  # noqa: E731
    with DnsProxy(upstream(sandbox), rule) as proxy:
        done = subprocess.run(
            argv(sandbox, proxy.address), capture_output=True, text=True, timeout=60,
            env=CLI_ENV, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "that zone was not changed" not in done.stderr
    assert f"zone {first}: updated (no clear answer from 127.0.0.1:" in done.stderr
    assert "read back: every change is published" in done.stderr
    assert "not visible" not in done.stderr
    assert policies(sandbox) == ["p=quarantine"] * 3


def run_and_interrupt(
    sb: Sandbox, proxy: DnsProxy, nameserver: str | None = None
) -> tuple[int, str]:
    proc = subprocess.Popen(
        argv(sb, proxy.address, nameserver), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=CLI_ENV,
    )  # fmt: skip
    try:
        if nameserver is None:
            assert proxy.reached.wait(30), "the proxy never held the message"
        else:
            time.sleep(1.5)  # reading from a nameserver that never answers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    proxy.release()
    return proc.returncode, err


def test_sigint_while_reading_sends_nothing(sandbox: Sandbox) -> None:
    before = reset(sandbox)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    with silent, DnsProxy(upstream(sandbox), lambda kind, n: PASS) as proxy:
        code, err = run_and_interrupt(sandbox, proxy, f"127.0.0.1:{silent.getsockname()[1]}")
    assert code == 130
    assert err.strip() == (
        "mailmend records: interrupted while reading the published records: nothing was sent"
    )
    assert {r for d in domains(sandbox) for r in txt(sandbox, f"_dmarc.{d}")} == {before}


@pytest.mark.parametrize(
    ("held", "action", "expected"),
    [
        # the re-read before any update (prerequisites being built)
        (("query", 0), HOLD, None),
        # the first zone's update, never forwarded: nothing changed anywhere
        (("update", 0), HOLD, ["not updated", "not sent", "not sent"]),
        # the second zone's update reached Knot, its reply is held: two zones updated
        (("update", 1), HOLD_REPLY, ["updated", "updated", "not sent"]),
    ],
)
def test_sigint_says_which_zones_were_updated(
    sandbox: Sandbox, held: tuple[str, int], action: str, expected: list[str] | None
) -> None:
    reset(sandbox)
    rule = lambda kind, n: action if (kind, n) == held else PASS  # noqa: E731
    with DnsProxy(upstream(sandbox), rule) as proxy:
        code, err = run_and_interrupt(sandbox, proxy)
    assert code == 130, err
    assert "Traceback" not in err
    names = domains(sandbox)
    if expected is None:
        assert "interrupted before any update was sent: no zone was changed" in err
        assert policies(sandbox) == ["p=none"] * 3
        return
    for domain, state in zip(names, expected, strict=True):
        assert f"mailmend records: zone {domain}: {state}" in err, err
    assert f"zone {names[0]}: not updated (interrupted; read back: as it was" in err or (
        expected[0] == "updated"
    )
    want = ["p=quarantine" if s == "updated" else "p=none" for s in expected]
    assert policies(sandbox) == want, err
