"""inventory.py: a bad fleet file stops pyinfra before it connects; a good one becomes groups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mailmend.deploys import hygiene
from mailmend.deploys.contexts import hygiene_context
from mailmend.fleet import parse_fleet
from mailmend.inventory import ALL_GROUP, groups_of

REPO = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")

GOOD = """
[defaults]
ssh_user = "admin"
[groups.eu]
rate_limit_per_minute = 4
[hosts.mx1]
ssh_host = "vps1.example.net"
hostname = "mx1.example.com"
public_ipv4 = "8.8.4.4"
groups = ["eu"]
domains = [{ name = "example.com", selector = "mx1" }]
[hosts.mx2]
ssh_host = "vps2.example.net"
ssh_port = 2200
hostname = "mx2.example.com"
public_ipv4 = "8.8.8.8"
domains = [{ name = "example.com", selector = "mx2" }]
"""


def _debug_inventory(fleet: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYINFRA), "inventory.py", "debug-inventory"],
        cwd=REPO,
        env={"MAILMEND_FLEET": str(fleet), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_fleet_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[hosts.mx1]\nssh_host = "vps1.example.net"\nhostname = "mx1..example.com"\n'
        'public_ipv4 = "8.8.4.4"\nrate_limit_per_minute = 0\n'
    )
    proc = _debug_inventory(bad)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailmend: error:")]
    assert len(errors) == 2
    assert f"{bad}: host 'mx1': hostname:" in errors[0]
    assert "rate_limit_per_minute" in errors[1]
    assert "no host was contacted" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_fleet_file_named_by_env_is_an_input_error(tmp_path: Path) -> None:
    proc = _debug_inventory(tmp_path / "nope.toml")
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_good_fleet_becomes_pyinfra_groups_and_host_data() -> None:
    groups = groups_of(parse_fleet(GOOD, "fleet.toml"))
    assert [name for name, _ in groups[ALL_GROUP]] == ["mx1", "mx2"]
    assert [name for name, _ in groups["eu"]] == ["mx1"]
    data = dict(groups[ALL_GROUP])
    assert data["mx1"]["ssh_hostname"] == "vps1.example.net"
    assert data["mx1"]["ssh_user"] == "admin"
    assert data["mx1"]["rate_limit_per_minute"] == 4
    assert data["mx2"]["rate_limit_per_minute"] == 5
    assert data["mx2"]["ssh_port"] == 2200
    assert data["mx1"]["domains"] == [{"name": "example.com", "selector": "mx1"}]


def test_good_fleet_loads_through_pyinfra(tmp_path: Path) -> None:
    good = tmp_path / "fleet.toml"
    good.write_text(GOOD)
    proc = _debug_inventory(good)
    assert proc.returncode == 0, proc.stderr
    assert "mx1" in proc.stdout + proc.stderr


def test_fleet_nameservers_reach_every_host_as_host_data() -> None:
    from mailmend.fleet import parse_fleet
    from mailmend.inventory import groups_of

    fleet = parse_fleet(
        '[fleet]\nnameservers = ["127.0.9.53"]\n'
        '[hosts.mx1]\nssh_host = "203.0.113.7"\nhostname = "mx1.example.com"\n'
        'public_ipv4 = "203.0.113.7"\n'
    )
    [(name, data)] = groups_of(fleet)["mailmend"]
    assert (name, data["mailmend_nameservers"]) == ("mx1", ["127.0.9.53:53"])
    assert data["mailmend_dmarc_report_address"] is None


def test_sender_limit_per_day_becomes_the_hosts_quotas() -> None:
    text = GOOD.replace("[hosts.mx2]", "sender_limit_per_day = 300\n[hosts.mx2]")
    data = dict(groups_of(parse_fleet(text, "fleet.toml"))[ALL_GROUP])
    # Host data carries the fleet key by its name; the hygiene deploy turns it into windows.
    assert data["mx1"]["sender_limit_per_day"] == 300
    assert "sender_limit_per_day" not in data["mx2"]
    quotas = {
        name: hygiene_context(name, {**hygiene.DEFAULTS, **data[name]}).sender_limits
        for name in ("mx1", "mx2")
    }
    assert quotas["mx1"] == ((4, 60), (300, 86400))
    assert quotas["mx2"] == ((5, 60), (1000, 86400))  # the deploy's default (rate, 1000/day)
