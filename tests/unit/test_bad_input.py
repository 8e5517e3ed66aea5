"""Bad input stops pyinfra before any host is contacted: one line each, exit 2, no traceback.

(Every ``postfix_main_cf`` key: tests/unit/test_postfix_keys.py; ``queue --timeout``:
tests/unit/test_queue.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailmend import inventory
from mailmend.deploys import contexts as deploy_contexts
from mailmend.fleet import FleetError, parse_fleet

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")

HOST = """
[hosts.mx1]
ssh_host = "vps1.example.net"
hostname = "mx1.example.com"
public_ipv4 = "8.8.4.4"
domains = [{ name = "example.com", selector = "mx1" }]
"""


def pyinfra_inventory(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(text)
    return subprocess.run(
        [str(PYINFRA), "inventory.py", "debug-inventory"],
        cwd=ROOT,
        env={"MAILMEND_FLEET": str(fleet), "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "no host was contacted" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mailmend: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_a_setting_that_bypasses_the_pacing_stops_the_deploy(tmp_path: Path) -> None:
    text = f'{HOST}postfix_main_cf = {{ default_transport = "relay" }}\n'
    error = one_error(pyinfra_inventory(tmp_path, text))
    assert "host 'mx1': postfix_main_cf.default_transport:" in error
    assert "mail would leave unpaced" in error


# -- IPv6 zone indexes never reach master.cf ------------------------------------------------


@pytest.mark.parametrize("field", ["listen_address", "bind_address"])
@pytest.mark.parametrize("value", ["fe80::1%x;$(reboot)", "fe80::1%eth0"])
def test_a_zone_index_is_refused(field: str, value: str, tmp_path: Path) -> None:
    text = f'{HOST}{field} = "{value}"\n'
    with pytest.raises(FleetError, match="zone index"):
        parse_fleet(text)
    with pytest.raises(deploy_contexts.DeployValueError, match="zone index"):
        deploy_contexts.ip_address("mx1", field, value)
    error = one_error(pyinfra_inventory(tmp_path, text))
    assert f"host 'mx1': {field}:" in error and "zone index" in error


def test_a_plain_ipv6_address_is_still_accepted() -> None:
    host = parse_fleet(f'{HOST}listen_address = "2001:DB8::1"\n').hosts[0]
    assert host.listen_address == "2001:db8::1"


# -- the relay secret, resolved on this machine before connecting ---------------------------

RELAY = f'{HOST}relay_host = "[smtp.example.net]:587"\nrelay_credentials = "env:RELAY_SECRET"\n'


@pytest.mark.parametrize(
    ("env", "phrase"),
    [
        ({}, "environment variable RELAY_SECRET is not set"),
        ({"RELAY_SECRET": "no-colon-here"}, "is not user:password"),
        ({"RELAY_SECRET": "user:pa\x01ss"}, "control characters"),
    ],
)
def test_an_unusable_relay_secret_stops_the_deploy(
    tmp_path: Path, env: dict[str, str], phrase: str
) -> None:
    error = one_error(pyinfra_inventory(tmp_path, RELAY, env))
    assert "host mx1: relay_credentials:" in error and phrase in error
    assert "no-colon-here" not in error and "pa\x01ss" not in error  # never the secret


def test_a_usable_relay_secret_passes(tmp_path: Path) -> None:
    proc = pyinfra_inventory(tmp_path, RELAY, {"RELAY_SECRET": "mailer:s3cret"})
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr


def test_a_secret_without_a_relay_host_is_not_read(tmp_path: Path) -> None:
    text = f'{HOST}relay_credentials = "env:RELAY_SECRET"\n'
    assert pyinfra_inventory(tmp_path, text).returncode == 0


# -- the suppression lists ----------------------------------------------------------------


def test_an_address_on_both_lists_stops_the_deploy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "allow.txt").write_text("ceo@example.com  # migrated\nvip@example.com\n")
    (tmp_path / "deny.txt").write_text("# traps\nCEO@example.com\n")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(HOST)
    monkeypatch.setattr(deploy_contexts, "SUPPRESSION_DIR", tmp_path)
    monkeypatch.setenv("MAILMEND_FLEET", str(fleet))
    with pytest.raises(SystemExit) as exit_:
        inventory.pyinfra_groups()
    assert exit_.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mailmend: err")]
    assert errors == [
        "mailmend: error: on both suppression/allow.txt and suppression/deny.txt: ceo@example.com"
    ]


def test_the_repository_lists_pass(tmp_path: Path) -> None:
    assert inventory.deploy_input_problems(parse_fleet(HOST)) == []
