"""A bad value that reaches a deploy through host data (``--data``, ``group_data/``) stops
pyinfra with one line naming the host and the field: a pyinfra ``DeployError``, no traceback.

These run pyinfra for real against ``@local`` with ``--dry``: the value check is the first
thing the mail deploy does (``hostname_deploy`` builds its context before adding any
operation), so nothing is gathered from or changed on this machine; the tests assert that no
operation was prepared.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from mailmend.deploys import contexts

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")


def run_pyinfra(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYINFRA), *args, "--dry", "-y"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output
    assert "Beginning operation run" not in output and "Proposed changes" not in output
    lines = [line for line in output.splitlines() if "pyinfra error" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_deploy_value_error_is_a_pyinfra_deploy_error() -> None:
    err = contexts.DeployValueError("mx1", "hostname", "bad")
    assert isinstance(err, DeployError) and isinstance(err, ValueError)
    assert str(err) == "host mx1: hostname: bad"


def test_bad_data_on_the_command_line_is_one_line() -> None:
    proc = run_pyinfra(["@local", str(ROOT / "deploys" / "mail.py"), "--data", "hostname=bad name"])
    line = one_error_line(proc)
    # The fleet file's own message for the same value (one rule set).
    assert "host @local: hostname: 'bad name' contains ' ' at position 4;" in line


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('hostname = "mx1.example.com\\nrelayhost = evil"', "host @local: hostname: "),
        (
            'hostname = "mx1.example.com"\npublic_ipv4 = "mx1"',
            "host @local: public_ipv4: 'mx1' is not an IPv4 address",
        ),
    ],
)
def test_bad_group_data_is_one_line(tmp_path: Path, setting: str, expected: str) -> None:
    (tmp_path / "inventory.py").write_text('hosts = ["@local"]\n')
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(setting + "\n")
    deploy = str(ROOT / "deploys" / "mail.py")
    line = one_error_line(run_pyinfra([str(tmp_path / "inventory.py"), deploy], cwd=tmp_path))
    assert expected in line
