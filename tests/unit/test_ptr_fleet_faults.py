"""``mailmend ptr --apply`` for 12 hosts on five providers when the providers' APIs fail:
one that accepts connections and never answers, one that answers 500 to everything. The run
ends by its ``--deadline``, says one line per host (nothing changed, or that it may have
been), and exits 1.

The official clients (hcloud, hostinger-api, linode-api4, ovh, requests for Vultr) talk to
loopback peers (tests/silent_http.py); DNS is a local server with each host's A record
(tests/faultdns.py). The stand-ins of each provider's documented API run with the sandbox
(tests/e2e/test_ptr_providers.py); none of them can be made to stall.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import CLI_ENV, MAILMEND
from tests.faultdns import ThreadedDns, zone
from tests.silent_http import Failing, Silent, SilentWrites

HOSTS = 12
PROVIDERS = ("hetzner", "hostinger", "linode", "ovh", "vultr")
TIMEOUT, DEADLINE = 2.0, 6.0
SLACK = 2.0  # the process's start (five client libraries imported) on a loaded 2-core machine
EXTRA = ("--deadline", f"{DEADLINE:g}")
ENV = {
    **CLI_ENV,
    "VPS_TOKEN": "t0ken-" + "s3cr3t" * 4,
    "OVH_SECRET": "app-key-1:app-secret-" + "x" * 20 + ":consumer-key-" + "y" * 20,
}


def ip(i: int) -> str:
    return f"192.0.2.{i}"


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    records = {(f"mx{i}.alpha.example.", "A"): [ip(i)] for i in range(1, HOSTS + 1)}
    with ThreadedDns(zone(records)) as address:  # PTRs: none yet (NXDOMAIN)
        yield address


def fleet(tmp_path: Path, url: str, providers: tuple[str, ...] = PROVIDERS) -> Path:
    text = ["[fleet]\n"]
    for i in range(1, HOSTS + 1):
        provider = providers[i % len(providers)]
        secret = "env:OVH_SECRET" if provider == "ovh" else "env:VPS_TOKEN"
        text.append(
            f'[hosts.mx{i}]\nssh_host = "127.0.0.1"\nssh_port = {2200 + i}\n'
            f'hostname = "mx{i}.alpha.example"\npublic_ipv4 = "{ip(i)}"\n'
            f'vps_provider = "{provider}"\nvps_credentials = "{secret}"\n'
            f'vps_endpoint = "{url}"\n'
        )
    path = tmp_path / "fleet.toml"
    path.write_text("".join(text))
    return path


def run_ptr(fleet_file: Path, nameserver: str) -> tuple[subprocess.CompletedProcess[str], float]:
    argv = [
        str(MAILMEND), "ptr", "--fleet", str(fleet_file), "--nameserver", nameserver, "--apply",
        "--timeout", f"{TIMEOUT:g}", "--wait", "3", *EXTRA,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=ENV, check=False)
    return done, time.monotonic() - started


def host_lines(stderr: str) -> dict[str, str]:
    lines = [line for line in stderr.splitlines() if "warning:" not in line]
    by_host = {line.split()[2]: line for line in lines}
    assert len(by_host) == len(lines) == HOSTS, stderr
    return by_host


def test_apis_that_never_answer_end_by_the_deadline(tmp_path: Path, nameserver: str) -> None:
    with Silent() as api:
        done, took = run_ptr(fleet(tmp_path, api.url), nameserver)
        assert api.accepted >= HOSTS  # every host's provider was asked
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert took < DEADLINE + SLACK, took
    for i, line in host_lines(done.stderr).items():
        assert line.startswith(f"mailmend ptr: {i} {ip(int(i[2:]))}: "), line
        assert "did not answer" in line and line.endswith(": not changed"), line


@pytest.mark.parametrize(
    "body",
    [{"message": "Internal Server Error"}, {"error": "Internal server error."}],
    ids=["plain", "vultr-shaped"],
)
def test_an_outage_of_every_api_is_one_line_per_host(
    tmp_path: Path, nameserver: str, body: dict[str, str]
) -> None:
    """The second body is Vultr's error shape; hcloud cannot read it (it wants an object
    under "error") and raised a TypeError traceback before this was mended."""
    with Failing(500, body) as api:
        done, took = run_ptr(fleet(tmp_path, api.url), nameserver)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert took < DEADLINE + SLACK, took
    assert all(method == "GET" for method, _path in api.requests)  # nothing was set
    for i, line in host_lines(done.stderr).items():
        assert line.startswith(f"mailmend ptr: {i} {ip(int(i[2:]))}: "), line
        assert line.endswith("try again later: not changed"), line
        if "error" in body and "hetzner" in line:
            assert "answered an error its client could not read (TypeError)" in line, line
        else:
            assert "provider outage (HTTP 500" in line, line


def test_a_ptr_call_never_answered_says_it_may_have_been_set(
    tmp_path: Path, nameserver: str
) -> None:
    """Vultr's API finds each server, then never answers the PTR call: the provider may have
    carried it out, so no line may say "not changed" (they all did before)."""

    def instances(path: str) -> dict[str, object]:
        query = parse_qs(urlsplit(path).query)
        return {"instances": [{"id": f"v-{n}", "main_ip": n} for n in query.get("main_ip", [])]}

    with SilentWrites(instances) as api:
        done, took = run_ptr(fleet(tmp_path, api.url, ("vultr",)), nameserver)
        writes = len(api.writes)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert took < DEADLINE + SLACK, took
    assert writes == HOSTS
    for i, line in host_lines(done.stderr).items():
        address = ip(int(i[2:]))
        assert line == (
            f"mailmend ptr: {i} {address}: vultr: setting the reverse of {address}: "
            f"{api.url[7:]} did not answer in time: it may have been set: run mailmend ptr "
            "again to see"
        ), line


def test_ctrl_c_says_for_each_host_how_far_it_got(tmp_path: Path, nameserver: str) -> None:
    """SIGINT while 12 hosts wait on a silent API: one line per host (nothing changed yet),
    then that the run was interrupted, exit 130, at once."""
    import signal

    with Silent() as api:
        argv = [
            str(MAILMEND), "ptr", "--fleet", str(fleet(tmp_path, api.url)),
            "--nameserver", nameserver, "--apply", "--timeout", "30", "--deadline", "60",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while api.accepted < HOSTS and time.monotonic() < deadline:
            time.sleep(0.05)  # every host is asking its provider
        assert api.accepted >= HOSTS
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
        took = time.monotonic() - sent
    stderr = err.decode()
    assert proc.returncode == 130, stderr
    assert took < 2.0, took
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "warning:" not in line]
    assert (
        lines[-1] == "mailmend ptr: interrupted (Ctrl-C): run mailmend ptr again to see and finish"
    )
    by_host = {line.split()[2]: line for line in lines[:-1]}
    assert len(by_host) == len(lines) - 1 == HOSTS, stderr
    for line in by_host.values():
        assert line.endswith("did not answer before Ctrl-C: not changed"), line
