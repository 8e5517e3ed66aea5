"""``pyinfra inventory.py deploys/watch.py`` on the sandbox: the watcher lands on the monitor host
only, runs there by itself (cron: sandbox hosts have no systemd), a second deploy changes
nothing, and ``mailmend watch status --remote`` reads its database over SSH."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.control import Sandbox
from sandbox.scenario import SandboxHost
from tests.conftest import run_mailmend, run_pyinfra

pytestmark = pytest.mark.end_to_end

MONITOR = "mx2"


def fleet_with_monitor(sb: Sandbox, path: Path) -> Path:
    path.write_text(sb.fleet_text().replace("[fleet]\n", f'[fleet]\nmonitor_host = "{MONITOR}"\n'))
    return path


def deploy(fleet: Path, *args: str) -> dict[str, Any]:
    proc = run_pyinfra(fleet, "-y", "--json", *args, "deploys/watch.py")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(proc.stdout[proc.stdout.index("{") :])
    return out


def changed_ops(result: dict[str, Any]) -> list[str]:
    return [f"{op['name']} on {op['success']}" for op in result["results"]["operations"]
            if op["success"]]  # fmt: skip


def test_deploy_puts_the_watcher_on_the_monitor_host_and_it_runs_by_itself(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    fleet = fleet_with_monitor(sandbox, tmp_path / "fleet.toml")
    alerts = tmp_path / "alerts.toml"
    alerts.write_text('[[alert]]\ncommand = ["sh", "-c", "cat >> /var/log/mailmend-events"]\n')
    args = ("--data", "watch_every_minutes=1", "--data", f"watch_alerts_file={alerts}")
    try:
        _deploy_and_wait(sandbox, fleet, args)
    finally:  # the session's sandbox goes on serving other tests: no watcher left running
        sandbox.ssh(hosts_of(sandbox)[MONITOR], "rm -f /etc/cron.d/mailmend-watch")


def hosts_of(sandbox: Sandbox) -> dict[str, SandboxHost]:
    return {h.name: h for h in sandbox.hosts()}


def _deploy_and_wait(sandbox: Sandbox, fleet: Path, args: tuple[str, ...]) -> None:
    first = deploy(fleet, *args)
    assert changed_ops(first)
    hosts = hosts_of(sandbox)
    monitor = hosts[MONITOR]
    cron = sandbox.ssh(monitor, "cat /etc/cron.d/mailmend-watch")
    assert (
        "*/1 * * * * root /usr/local/bin/mailmend watch --once --quiet --fleet "
        "/etc/mailmend/fleet.toml --db /var/lib/mailmend/watch.db --keep 90d --remind 24h "
        "--alerts /etc/mailmend/alerts.toml >> /var/log/mailmend-watch.log 2>&1"
    ) in cron
    assert sandbox.ssh(monitor, "stat -c %a /etc/mailmend/alerts.toml").strip() == "600"
    for name in hosts.keys() - {MONITOR}:  # only the monitor host gets it
        assert sandbox.ssh(hosts[name], "test -e /opt/mailmend && echo yes || echo no") == "no\n"

    assert changed_ops(deploy(fleet, *args)) == []  # a second deploy changes nothing

    runs = 0
    status: dict[str, object] = {}
    deadline = time.monotonic() + 200  # cron runs it every minute: the second run within ~2 min
    while runs < 2 and time.monotonic() < deadline:
        time.sleep(10)
        proc = run_mailmend(
            "watch", "status", "--remote", "--fleet", str(fleet), "--format", "json"
        )
        if proc.returncode == 0:
            status = json.loads(proc.stdout)
            runs = int(status["runs"])  # type: ignore[call-overload]
    assert runs >= 2, f"the watcher did not run twice by itself: {status}"
    listings = {(i["host"], i["zone"]) for i in status["listings"]}  # type: ignore[attr-defined]
    assert {("mx2", "bl.spamcop.net"), ("mx3", "zen.spamhaus.org")} <= listings
    events = sandbox.ssh(monitor, "cat /var/log/mailmend-events").splitlines()
    kinds = [json.loads(line)["kind"] for line in events]
    assert kinds.count("listed") == 2  # the first run's two listings, alerted once
    table = run_mailmend("watch", "status", "--remote", "--fleet", str(fleet))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"last run on {MONITOR}: ")
