"""``python -m sandbox down`` kills only the sandbox's own processes, never a pid reused since.

A state file outlives a reboot; its pids then name unrelated processes. Each test starts a
live process of its own and points a ``sandbox.json`` at it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import proc
from sandbox.control import Sandbox
from sandbox.scenario import Net
from tests.conftest import require_root


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not the sandbox's (as after a reboot reused the pid)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def write_state(state: Path, data: dict[str, object]) -> Sandbox:
    state.mkdir(parents=True, exist_ok=True)
    (state / "sandbox.json").write_text(json.dumps({"hosts": [], "net_block": 250, **data}))
    return Sandbox(state, Net(250))


def test_a_pid_from_before_a_reboot_is_left_alone(
    tmp_path: Path, stranger: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    before_reboot = {"boot_id": "0d6a2c1e-old-boot", "start": 4242}
    sb = write_state(
        tmp_path, {"pids": {"knot": stranger.pid}, "identities": {"knot": before_reboot}}
    )
    assert sb.pids() == {}
    sb.down()
    assert stranger.poll() is None  # still running
    assert f"knot: pid {stranger.pid} is no longer the sandbox's" in capsys.readouterr().err
    assert json.loads((tmp_path / "sandbox.json").read_text())["pids"] == {}


def test_a_reused_pid_with_another_start_time_is_left_alone(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    now = proc.identity(stranger.pid)
    assert now is not None
    earlier = {**now, "start": int(str(now["start"])) - 100}
    sb = write_state(tmp_path, {"pids": {"mx1": stranger.pid}, "identities": {"mx1": earlier}})
    sb.down()
    assert stranger.poll() is None


def test_an_old_state_file_without_identities_kills_only_sandbox_wrappers(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    sb = write_state(tmp_path, {"pids": {"receiver": stranger.pid}})
    assert sb.pids() == {}
    sb.down()
    assert stranger.poll() is None


def test_the_sandbox_s_own_process_is_still_stopped(tmp_path: Path) -> None:
    require_root()  # a PID namespace, as the sandbox makes them
    pid = proc.spawn(["sleep", "120"], tmp_path / "logs" / "sleep.log")
    sb = write_state(tmp_path / "state", {})
    sb._save({"hosts": [], "pids": {"knot": pid}})  # as `up` records it
    assert sb.pids() == {"knot": pid}
    sb.down()
    assert not proc.alive(pid)
