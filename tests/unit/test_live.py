"""Convergence from live state (deploys/live.py), managed blocks (deploys/blocks.py), backup
pruning (deploys/staged.py) and scripts/deploy's interruption check, without a host.

The end-to-end proof (a step failing once, SIGINT mid-deploy, then a converging rerun) is in
tests/e2e/test_mail_deploy.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api.command import StringCommand
from pyinfra.context import ctx_host, ctx_state

from mailmend.deploys import blocks, live
from mailmend.deploys.staged import swap_command

REPO = Path(__file__).resolve().parents[2]
MAIN_CF, MASTER_CF, STAMP = "/etc/postfix/main.cf", "/etc/postfix/master.cf", "/var/lib/x.stamp"


class FakeHost:
    name = "mx1"

    def __init__(self, mtimes: dict[str, float], started: float | None) -> None:
        self.mtimes, self.started = mtimes, started
        self.noops: list[str] = []

    def get_fact(self, cls: type, **kwargs: Any) -> Any:
        if cls is live.Mtimes:
            return [self.mtimes.get(path) for path in kwargs["paths"]]
        assert cls is live.ProcessStart
        return self.started

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def fake(mtimes: dict[str, float], started: float | None = None) -> Iterator[FakeHost]:
    host = FakeHost(mtimes, started)
    with ctx_state.use(SimpleNamespace(is_executing=False)), ctx_host.use(host):
        yield host


def reload_commands(**kw: Any) -> list[str]:
    gen = live.daemon_current._inner(  # type: ignore[attr-defined]
        service="Postfix", configs=[MAIN_CF, MASTER_CF], pidfile="/pid", process="master",
        command=StringCommand("postfix reload"), **kw,
    )  # fmt: skip
    return [c.get_raw_value() for c in gen]


def test_a_config_newer_than_the_running_daemon_triggers_the_reload() -> None:
    with fake({MAIN_CF: 200.0, MASTER_CF: 50.0}, started=100.0):
        assert reload_commands() == ["postfix reload"]


def test_a_daemon_started_after_its_configs_is_left_alone() -> None:
    with fake({MAIN_CF: 90.0, MASTER_CF: 50.0}, started=100.0) as host:
        assert reload_commands() == []
    assert host.noops == ["Postfix runs its current configuration"]


def test_a_successful_reload_stamp_counts_as_loaded_and_a_new_one_is_kept_on_success() -> None:
    with fake({MAIN_CF: 200.0, STAMP: 250.0}, started=100.0):
        assert reload_commands(stamp=STAMP) == []
    with fake({MAIN_CF: 300.0, STAMP: 250.0}, started=100.0):
        (cmd,) = reload_commands(stamp=STAMP)
    assert cmd == (
        "mkdir -p /var/lib && touch /var/lib/x.stamp.new && postfix reload"
        " && mv -f /var/lib/x.stamp.new /var/lib/x.stamp"
    )


def test_a_daemon_that_is_not_running_is_left_to_the_start_step() -> None:
    with fake({MAIN_CF: 200.0}, started=None) as host:
        assert reload_commands() == []
    assert "not running" in host.noops[0]


@pytest.mark.parametrize(
    ("mtimes", "rebuild"),
    [
        ({"/t": 10.0}, True),  # no index: postmap never ran or failed before its rename
        ({"/t": 10.0, "/t.db": 9.0}, True),  # the text changed, postmap failed
        ({"/t": 10.0, "/t.db": 10.5}, False),
        ({}, False),  # no source: nothing to index
    ],
)
def test_an_index_older_than_its_source_is_rebuilt(mtimes: dict[str, float], rebuild: bool) -> None:
    with fake(mtimes):
        gen = live.index_current._inner(  # type: ignore[attr-defined]
            source="/t", index="/t.db", command=StringCommand("postmap hash:/t")
        )
        assert [c.get_raw_value() for c in gen] == (["postmap hash:/t"] if rebuild else [])


def test_table_index_names_the_file_postmap_writes() -> None:
    assert live.table_index("cdb:/etc/x") == ("/etc/x", "/etc/x.cdb")
    with pytest.raises(ValueError, match="not an indexed table"):
        live.table_index("texthash:/etc/x")


def test_process_start_is_boot_time_plus_the_start_ticks() -> None:
    # Pieces printed on a sandbox host: date +%s.%N, /proc/uptime, field 22, CLK_TCK.
    start = live.ProcessStart().process(["1795979100.500000000 378.34 25853 100"])
    assert start == pytest.approx(1795979100.5 - 378.34 + 258.53)
    assert live.ProcessStart().process([]) is None
    assert live.Mtimes().process(["1795979097.7804662030", "-"]) == [1795979097.7804662030, None]


def test_the_admins_lines_survive_outside_the_block() -> None:
    block = "# BEGIN mailmend\n192.0.2.11\tmx1.example mx1\n# END mailmend\n"
    debian = ["127.0.0.1\tlocalhost", "127.0.1.1\tdebian", "10.0.0.9 nas"]
    first = blocks.with_admin_lines(block, debian)
    assert first == block + "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n10.0.0.9 nas\n"
    assert blocks.with_admin_lines(block, first.splitlines()) == first  # idempotent
    legacy = ["# Managed by mailmend (templates/hosts.j2).", "127.0.0.1\tlocalhost"]
    assert blocks.with_admin_lines(block, legacy) == block
    assert blocks.with_admin_lines(block, None) == block
    with pytest.raises(ValueError):
        blocks.with_admin_lines("127.0.0.1 localhost\n", debian)


@pytest.mark.skipif(os.geteuid() != 0, reason="swap_command chowns to root")
def test_a_swap_keeps_only_the_newest_backups(tmp_path: Path) -> None:
    live_file, staged = tmp_path / "main.cf", tmp_path / "staged"
    live_file.write_text("old\n")
    staged.write_text("new\n")
    for i in range(10, 16):
        (tmp_path / f"main.cf.mailmend-20200101T0000{i}Z").write_text("")
    (tmp_path / "main.cf.mailmend-notes").write_text("not a backup\n")
    subprocess.run(
        ["sh", "-c", swap_command(str(staged), str(live_file), "644", keep=3).get_raw_value()],
        check=True,
    )
    assert live_file.read_text() == "new\n"
    left = sorted(p.name for p in tmp_path.glob("main.cf.mailmend-2*"))
    assert len(left) == 3
    assert left[:2] == ["main.cf.mailmend-20200101T000014Z", "main.cf.mailmend-20200101T000015Z"]
    assert (tmp_path / left[2]).read_text() == "old\n"  # today's backup of the replaced file
    assert (tmp_path / "main.cf.mailmend-notes").exists()


def run_deploy_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "pyinfra"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "deploy")], env={**os.environ, "PYINFRA": str(fake)},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_deploy_script_fails_when_pyinfra_was_interrupted(tmp_path: Path) -> None:
    # pyinfra 3.10's SIGINT handler (pyinfra_cli/main.py): click.echo(...); sys.exit(0).
    done = run_deploy_script(tmp_path, "echo 'Exiting upon user request!'; exit 0")
    assert done.returncode == 130
    assert "the deploy was interrupted" in done.stderr
    assert run_deploy_script(tmp_path, "echo ok").returncode == 0
    assert run_deploy_script(tmp_path, "exit 1").returncode == 1
