"""``mailmend records --apply --provider powerdns`` (and ``hostinger``) for 12 zones when the
API fails: one that
accepts connections and never answers, and one that answers reads (the zones are found) but
never a write. The run ends by ``--deadline``, one line per zone, and no zone whose write was
sent is said to be "not changed".

dns-lexicon's powerdns provider talks to loopback peers (tests/silent_http.py) shaped as the
PowerDNS API (``GET /api/v1/servers/localhost/zones/ZONE.``); the published records are read
from a local DNS server (tests/faultdns.py). The real PowerDNS of the sandbox cannot be made
to stall (tests/e2e/test_records_provider.py runs it).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI_ENV, MAILMEND
from tests.faultdns import ThreadedDns, zone
from tests.silent_http import Silent, SilentWrites

ZONES = 12
TIMEOUT, DEADLINE = 2.0, 6.0
SLACK = 2.0  # the process's start and the plan read from DNS, on a loaded 2-core machine
_ZONE_PATH = re.compile(r"/api/v1/servers/localhost/zones/(d\d+\.example)\.\Z")


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    records: dict[tuple[str, str], list[str]] = {}
    for i in range(1, ZONES + 1):
        records[(f"d{i}.example.", "SOA")] = [f"ns.d{i}.example. h.d{i}.example. 1 2 3 4 5"]
        records[(f"mx{i}.d{i}.example.", "A")] = [f"192.0.2.{i}"]
    with ThreadedDns(zone(records)) as address:
        yield address


def fleet(tmp_path: Path) -> Path:
    text = ['[fleet]\ndmarc_report_address = "dmarc@d1.example"\n']
    for i in range(1, ZONES + 1):
        text.append(
            f'[hosts.mx{i}]\nssh_host = "127.0.0.1"\nssh_port = {2200 + i}\n'
            f'hostname = "mx{i}.d{i}.example"\npublic_ipv4 = "192.0.2.{i}"\n'
            f'domains = [{{ name = "d{i}.example", selector = "s{i}" }}]\n'
        )
    path = tmp_path / "fleet.toml"
    path.write_text("".join(text))
    return path


def records(
    tmp_path: Path, nameserver: str, url: str, provider: str = "powerdns"
) -> tuple[subprocess.CompletedProcess[str], float]:
    option = "pdns_server" if provider == "powerdns" else "endpoint"
    argv = [
        str(MAILMEND), "records", "--fleet", str(fleet(tmp_path)), "--nameserver", nameserver,
        "--provider", provider, "--provider-option", f"{option}={url}",
        "--provider-credential", "auth_token=env:PDNS_API_KEY", "--apply",
        "--timeout", f"{TIMEOUT:g}", "--deadline", f"{DEADLINE:g}",
    ]  # fmt: skip
    env = {**CLI_ENV, "PDNS_API_KEY": "k3y-" + "s3cr3t" * 4}
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)
    return done, time.monotonic() - started


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning:" not in line]


def test_an_api_that_never_answers_ends_by_the_timeout(tmp_path: Path, nameserver: str) -> None:
    with Silent() as api:
        done, took = records(tmp_path, nameserver, api.url)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert took < TIMEOUT + SLACK, took
    # No zone could be found: one line for all of them, and nothing was sent.
    assert said(done.stderr) == [
        f"mailmend records: powerdns API: {api.url[7:]} did not answer in time: nothing was written"
    ]


def test_writes_never_answered_end_by_the_deadline_one_line_per_zone(
    tmp_path: Path, nameserver: str
) -> None:
    def zones(path: str) -> dict[str, object] | None:
        match = _ZONE_PATH.match(path.split("?")[0])
        return {"name": match[1] + ".", "kind": "Native", "rrsets": []} if match else None

    with SilentWrites(zones) as api:
        done, took = records(tmp_path, nameserver, api.url)
        writes = list(api.writes)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert took < DEADLINE + SLACK, took
    lines = said(done.stderr)
    by_zone = {line.split()[3].rstrip(":"): line for line in lines}
    assert sorted(by_zone) == sorted(f"d{i}.example" for i in range(1, ZONES + 1)), lines
    assert len(lines) == ZONES, lines
    sent = {re.sub(r".*/zones/(.*)\.$", r"\1", path) for _method, path in writes}
    assert sent  # some writes went out, and went unanswered
    for name, line in by_zone.items():
        if name in sent:
            assert f"zone {name}: MAY HAVE CHANGED: " in line, line
            assert line.endswith("did not answer in time; run records again to see"), line
        else:
            assert line.endswith(
                f"zone {name}: not changed: not sent: the {DEADLINE:g} s deadline (--deadline) "
                "passed first"
            ), line


# -- Hostinger (its own client, hostinger-api over urllib3): the same faults ------------------
_HOSTINGER = re.compile(r"/api/dns/v1/(zones|snapshots)/(d\d+\.example)\Z")


def hostinger_reads(path: str) -> list[object] | None:
    """A zone of the account (dN.example) is empty and has no snapshot; any other name: 404."""
    return [] if _HOSTINGER.match(path.split("?")[0]) else None


def test_hostinger_api_that_never_answers_ends_by_the_timeout(
    tmp_path: Path, nameserver: str
) -> None:
    with Silent() as api:
        done, took = records(tmp_path, nameserver, api.url, "hostinger")
    assert "Traceback" not in done.stderr, done.stderr
    assert (done.returncode, len(said(done.stderr))) == (1, 1), done.stderr
    assert took < TIMEOUT + SLACK, took
    assert re.fullmatch(
        r"mailmend records: hostinger: reading zone \S+: 127\.0\.0\.1 did not answer in time: "
        r"nothing was written",
        said(done.stderr)[0],
    ), done.stderr


def test_hostinger_updates_never_answered_end_by_the_deadline(
    tmp_path: Path, nameserver: str
) -> None:
    """Validate answers, the PUT never does: a zone whose PUT went out MAY HAVE CHANGED."""
    with SilentWrites(hostinger_reads, checks=lambda path: {"message": "ok"}) as api:
        done, took = records(tmp_path, nameserver, api.url, "hostinger")
        writes = list(api.writes)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1 and took < DEADLINE + SLACK, (took, done.stderr)
    lines = said(done.stderr)
    by_zone = {line.split()[3].rstrip(":"): line for line in lines}
    assert sorted(by_zone) == sorted(f"d{i}.example" for i in range(1, ZONES + 1)), lines
    sent = {path.rsplit("/", 1)[1] for method, path in writes if method == "PUT"}
    assert sent and len(lines) == ZONES, lines
    for name, line in by_zone.items():
        if name in sent:
            assert f"zone {name}: MAY HAVE CHANGED: hostinger: updating zone {name}: " in line
        else:
            assert line.endswith("passed first"), line


def test_hostinger_checks_never_answered_change_nothing(tmp_path: Path, nameserver: str) -> None:
    """Validate (a POST that writes nothing) never answers: every zone says "not changed",
    none "MAY HAVE CHANGED", and no PUT is sent."""
    with SilentWrites(hostinger_reads) as api:
        done, took = records(tmp_path, nameserver, api.url, "hostinger")
        writes = list(api.writes)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1 and took < DEADLINE + SLACK, (took, done.stderr)
    assert writes and {method for method, _path in writes} == {"POST"}
    lines = said(done.stderr)
    assert len(lines) == ZONES and not [line for line in lines if "MAY HAVE" in line], lines
    checked = {path.split("/")[-2] for _method, path in writes}
    for line in lines:
        name = line.split()[3].rstrip(":")
        expected = "did not answer in time" if name in checked else "passed first"
        assert f"zone {name}: not changed: " in line and expected in line, line


def test_ctrl_c_while_writing_says_each_zones_outcome(tmp_path: Path, nameserver: str) -> None:
    """SIGINT while the first zone's write hangs: that zone MAY HAVE CHANGED, the 11 others
    were not sent; one line each, then that the run was interrupted, exit 130, at once."""
    import signal

    def zones(path: str) -> dict[str, object] | None:
        match = _ZONE_PATH.match(path.split("?")[0])
        return {"name": match[1] + ".", "kind": "Native", "rrsets": []} if match else None

    with SilentWrites(zones) as api:
        argv = [
            str(MAILMEND), "records", "--fleet", str(fleet(tmp_path)), "--nameserver", nameserver,
            "--provider", "powerdns", "--provider-option", f"pdns_server={api.url}",
            "--provider-credential", "auth_token=env:PDNS_API_KEY", "--apply",
            "--timeout", "30", "--deadline", "60",
        ]  # fmt: skip
        env = {**CLI_ENV, "PDNS_API_KEY": "k3y-" + "s3cr3t" * 4}
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        waited = time.monotonic() + 30
        while not api.writes and time.monotonic() < waited:
            time.sleep(0.05)
        assert api.writes  # the first zone's write is out, unanswered
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
        took = time.monotonic() - sent
        (first,) = {re.sub(r".*/zones/(.*)\.$", r"\1", path) for _method, path in api.writes}
    stderr = err.decode()
    assert proc.returncode == 130 and took < 2.0 and "Traceback" not in stderr, (took, stderr)
    lines = said(stderr)
    assert (
        lines[-1] == "mailmend records: interrupted (Ctrl-C): run records again to see and finish"
    )
    by_zone = {line.split()[3].rstrip(":"): line for line in lines[:-1]}
    assert len(by_zone) == len(lines) - 1 == ZONES, lines
    assert by_zone.pop(first) == (
        f"mailmend records: zone {first}: MAY HAVE CHANGED: interrupted (Ctrl-C); run records "
        "again to see"
    )
    for name, line in by_zone.items():
        assert line == f"mailmend records: zone {name}: not changed: not sent: interrupted (Ctrl-C)"
