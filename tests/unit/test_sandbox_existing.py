"""The sandbox's existing-server hosts and Debian suites (scenario and DNS data only)."""

from __future__ import annotations

import pytest

from sandbox import existing, image
from sandbox.dns import SINK_ZONE, scenario_zones
from sandbox.scenario import Net, default_scenario


def test_existing_hosts_follow_the_plain_ones_with_their_own_names() -> None:
    scn = default_scenario(2, Net(7), existing=("mailserver", "relay"))
    assert [(h.name, h.ssh_addr, h.setup) for h in scn.hosts] == [
        ("mx1", "127.7.10.1", ""),
        ("mx2", "127.7.10.2", ""),
        ("mailserver", "127.7.10.3", "mailserver"),
        ("relay", "127.7.10.4", "relay"),
    ]
    assert scn.hosts[2].fqdn == "mail.oldco.example" and scn.hosts[2].domain == "oldco.example"


def test_the_smarthost_name_points_at_the_mailserver_host() -> None:
    zones = scenario_zones(default_scenario(1, Net(7), existing=("relay", "mailserver")))
    assert ("smarthost", "A", "127.7.10.3") in zones[SINK_ZONE]
    assert "oldco.example" in zones and "webshop.example" in zones
    plain = scenario_zones(default_scenario(1, Net(7)))
    assert not [r for r in plain[SINK_ZONE] if r[0] == "smarthost"]


def test_suite_per_scenario_and_unknown_names_refused() -> None:
    assert {h.suite for h in default_scenario(2, suite="trixie").hosts} == {"trixie"}
    assert image.check_suite("trixie") == "trixie"
    with pytest.raises(ValueError, match="unknown Debian suite"):
        image.check_suite("sid")
    with pytest.raises(ValueError, match="unknown setup"):
        existing.setup("qmail")
    with pytest.raises(ValueError, match="built for bookworm"):
        existing.setup_root("mailserver", "trixie")


def test_boot_env_quotes_every_value() -> None:
    env = existing.boot_env("127.0.10.3", {"RELAY_PASSWORD": "a'b $c"})
    assert env == "ADDR=127.0.10.3\nRELAY_PASSWORD='a'\"'\"'b $c'\n"
