"""ssh for ``records --dkim-from-hosts`` and ``queue`` trusts host keys exactly as the deploy does.

With the fleet's ``ssh_known_hosts_file``: strict (``StrictHostKeyChecking=yes`` against that
file), in ``mailmend.ssh`` and in the pyinfra inventory alike. Without one: ``accept-new``
against the user's own known_hosts, pyinfra's default (a changed key is always refused).
The docs say the same.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra.connectors.ssh import connector_data_meta

from mailmend.fleet import HostSpec
from mailmend.inventory import host_data
from mailmend.ssh import ssh_argv

ROOT = Path(__file__).resolve().parents[2]


def spec(known_hosts: str | None) -> HostSpec:
    return HostSpec(name="mx1", ssh_host="192.0.2.1", hostname="mx1.example.com",
                    public_ipv4="192.0.2.1", ssh_known_hosts_file=known_hosts)  # fmt: skip


def option(argv: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{name}=")]
    assert len(values) <= 1
    return values[0] if values else None


def test_strict_with_the_fleet_known_hosts_like_the_deploy() -> None:
    argv = ssh_argv(spec("/keys/known_hosts"), ["postqueue", "-j"])
    assert option(argv, "StrictHostKeyChecking") == "yes"
    assert option(argv, "UserKnownHostsFile") == "/keys/known_hosts"
    data = host_data(spec("/keys/known_hosts"))
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["ssh_known_hosts_file"] == "/keys/known_hosts"


def test_accept_new_without_one_like_pyinfra_s_default() -> None:
    argv = ssh_argv(spec(None), ["postqueue", "-j"])
    assert option(argv, "StrictHostKeyChecking") == "accept-new"
    assert option(argv, "UserKnownHostsFile") is None  # the user's ~/.ssh/known_hosts
    assert "ssh_strict_host_key_checking" not in host_data(spec(None))
    assert connector_data_meta["ssh_strict_host_key_checking"].default == "accept-new"


def test_the_docs_say_which() -> None:
    for doc in ("records.md", "hygiene.md", "fleet.md"):
        text = (ROOT / "docs" / doc).read_text()
        assert "StrictHostKeyChecking=yes" in text, doc
        assert "StrictHostKeyChecking=accept-new" in text, doc
