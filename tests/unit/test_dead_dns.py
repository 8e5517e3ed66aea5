"""`mailmend check` and `records` against a dead nameserver: they always end, in time.

The fleets here are fake (loopback addresses, sandbox fleet) and the nameservers are loopback
fault servers (tests.faultdns): a closed port, a silent server, and one that answers a few
questions and then drops everything. The command runs as a real process, so a hang shows as
a guard timeout, not a stuck test run. The guard is generous (deadline + margin): speed is
measured in bench/, not here.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import dns.message
import pytest

from mailmend.cli.options import DEFAULT_DEADLINE
from tests.conftest import CLI_ENV, MAILMEND
from tests.faultdns import FakeDns, aio, drop, servfail

MARGIN = 20.0  # seconds over the deadline before the guard calls it a hang


def _fleet(tmp_path: Path, hosts: int) -> Path:
    lines = ["[fleet]", "sandbox = true", 'nameservers = ["127.2.9.53"]', ""]
    for i in range(hosts):
        ip = f"127.3.{i // 200}.{i % 200 + 10}"
        lines += [
            f"[hosts.mx{i}]",
            f'ssh_host = "{ip}"',
            f'hostname = "mx{i}.alpha.example"',
            f'public_ipv4 = "{ip}"',
            f'domains = [{{ name = "d{i}.alpha.example", selector = "mail" }}]',
            "",
        ]
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: queries get ICMP port unreachable


async def _mailmend(*args: str, guard: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        MAILMEND, *args, env=CLI_ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), guard)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"mailmend {args[0]} still running after {guard:g}s: it hangs")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _every_result_unknown(out: str, hosts: int) -> None:
    report = json.loads(out)
    assert len(report["hosts"]) == hosts
    statuses = {r["status"] for h in report["hosts"] for r in h["checks"]}
    assert statuses == {"unknown"}


class _Dying:
    """Answers SERVFAIL to the first ``answers`` questions, then drops everything."""

    def __init__(self, answers: int) -> None:
        self.left = answers

    def __call__(self, query: dns.message.Message, transport: str) -> dns.message.Message | None:
        self.left -= 1
        return servfail(query, transport) if self.left >= 0 else None


@pytest.mark.parametrize("hosts", [1, 3, 10, 100])
@aio
async def test_check_ends_with_a_silent_nameserver(tmp_path: Path, hosts: int) -> None:
    """Regression (issue 15): with 3+ hosts and a silent server, check never ended (no
    default deadline, and the engine's queue froze). Now it ends, by the default deadline."""
    fleet = _fleet(tmp_path, hosts)
    async with FakeDns(drop) as server:
        code, out, _err = await _mailmend(
            "check", "--fleet", str(fleet), "--nameserver", str(server.nameserver),
            "--format", "json", guard=DEFAULT_DEADLINE + MARGIN,
        )  # fmt: skip
        assert server.udp_queries  # it was asked, and never answered
    assert code == 3
    _every_result_unknown(out, hosts)


@aio
async def test_check_ends_with_a_closed_port(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 12)
    code, out, _err = await _mailmend(
        "check", "--fleet", str(fleet), "--nameserver", f"127.0.0.1:{_closed_port()}",
        "--format", "json", guard=DEFAULT_DEADLINE + MARGIN,
    )  # fmt: skip
    assert code == 3
    _every_result_unknown(out, 12)


@aio
async def test_check_ends_at_the_deadline_when_the_server_dies_mid_run(tmp_path: Path) -> None:
    """A server that answered at first (so it is not 'never answered') and then drops
    everything: only the total deadline ends the run; what is left is unknown, exit 3."""
    fleet = _fleet(tmp_path, 12)
    async with FakeDns(_Dying(answers=30)) as server:
        code, out, _err = await _mailmend(
            "check", "--fleet", str(fleet), "--nameserver", str(server.nameserver),
            "--format", "nagios", "--timeout", "30", "--deadline", "3", guard=3 + MARGIN,
        )  # fmt: skip
    assert code == 3
    assert out.startswith("MAILMEND UNKNOWN") and "0 fail" in out


@aio
async def test_records_says_once_that_the_nameserver_does_not_answer(tmp_path: Path) -> None:
    """Regression (issue 15): one TIMEOUT line per record, 37 s; now one line, exit 1."""
    fleet = _fleet(tmp_path, 10)
    async with FakeDns(drop) as server:
        code, out, err = await _mailmend(
            "records", "--fleet", str(fleet), "--nameserver", str(server.nameserver),
            "--timeout", "0.5", guard=DEFAULT_DEADLINE + MARGIN,
        )  # fmt: skip
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"mailmend records: nameserver {server.nameserver} does not answer (no reply within "
        "0.5s): nothing can be planned; check it or give another --nameserver"
    ]


@pytest.mark.parametrize("command", ["check", "records"])
@pytest.mark.parametrize("option", ["--timeout", "--deadline"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "x"])
@aio
async def test_timeout_and_deadline_must_be_finite_and_positive(
    tmp_path: Path, command: str, option: str, value: str
) -> None:
    fleet = _fleet(tmp_path, 1)
    code, out, err = await _mailmend(
        command, "--fleet", str(fleet), f"{option}={value}", guard=MARGIN
    )
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and option in err and "Traceback" not in err
