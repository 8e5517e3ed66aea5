"""One rule set: the fleet check and the deploy's check of host data accept and refuse the
same values, with the same reason.

Every row goes through both real paths: :func:`mailmend.fleet.validate_fleet_data` (a host
table of a fleet file) and the deploy's contexts (``hostname``, ``postfix``, ``opendkim`` and
``hygiene``), which is where ``group_data/`` and ``--data`` values arrive.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailmend.deploys import contexts, hygiene
from mailmend.fleet import FleetError, validate_fleet_data
from tests.unit.test_templates import BASE

DATA: dict[str, Any] = {**hygiene.DEFAULTS, **BASE}
FLEET_HOST: dict[str, Any] = {
    "ssh_host": "vps1.example.net",
    "hostname": "mx1.example.com",
    "public_ipv4": "192.0.2.10",
    "domains": [{"name": "example.com", "selector": "mx1"}],
}
ENVIRON = {"RELAY": "mailer:s3cret"}
RELAY = {"relay_host": "[smtp.example.net]:587"}

ROWS: list[tuple[str, object]] = [
    ("hostname", "mx1.example.com"),
    ("hostname", "MX1.Example.com."),
    ("hostname", "bad name"),
    ("hostname", "mx1"),
    ("hostname", "mx1..example.com"),
    ("hostname", "mx1.example.com\nrelayhost = evil"),
    ("public_ipv4", "8.8.4.4"),
    ("public_ipv4", "2001:db8::1"),
    ("public_ipv4", "127.0.0.1"),
    ("public_ipv4", "mx1"),
    ("public_ipv4", 7),
    ("public_ipv6", "2001:db8::10"),
    ("public_ipv6", "::ffff:192.0.2.1"),
    ("public_ipv6", "fe80::1%eth0"),
    ("rate_limit_per_minute", 30),
    ("rate_limit_per_minute", 0),
    ("rate_limit_per_minute", 3601),
    ("rate_limit_per_minute", True),
    ("rate_limit_per_minute", "5"),
    ("recipient_limit", 50),
    ("recipient_limit", 0),
    ("sender_limit_per_day", 300),
    ("sender_limit_per_day", 0),
    ("sender_limit_per_day", 10_000_001),
    ("relay_host", "[smtp.example.net]:587"),
    ("relay_host", "smtp.example.net:99999"),
    ("relay_host", "192.0.2.1"),
    ("relay_host", "[smtp.example.net"),
    ("relay_credentials", "env:RELAY"),
    ("relay_credentials", "env:relay_password"),
    ("relay_credentials", "file:relay.txt"),
    ("relay_credentials", "file:~/relay"),
    ("receives_mail", True),
    ("receives_mail", "yes"),
    ("listen_address", "127.0.10.3"),
    ("listen_address", "0.0.0.0"),  # noqa: S104 - refused, that is the point
    ("listen_address", "all"),
    ("bind_address", "2001:db8::1"),
    ("bind_address", "::"),
    ("bind_address", "fe80::1%eth0"),
    ("postfix_main_cf", {"smtpd_banner": "$myhostname ESMTP"}),
    ("postfix_main_cf", {"transport_maps": "hash:/etc/postfix/transport"}),
    ("postfix_main_cf", {"default_transport": "relay"}),
    ("postfix_main_cf", {"Bad": "1"}),
    ("postfix_main_cf", {"smtpd_banner": "tab\there"}),
    ("postfix_main_cf", {"smtpd_client_restrictions": "check_client_access inline:{x=FILTER a:b}"}),
    ("domains", [{"name": "Example.ORG", "selector": "S2026"}]),
    ("domains", [{"name": "example.com", "selector": "mx1"}] * 2),
    ("domains", [{"name": "example.com", "selector": s} for s in ("a", "b")]),
    ("domains", [{"name": "example.com"}]),
    ("domains", [{"name": "example.com", "selector": "mx1; rm -rf /"}]),
    ("domains", [{"name": "example.com", "selector": "x" * 63 + "." + "y" * 63 + "." + "z" * 63}]),
    ("domains", "example.com"),
    ("postfix_config", "replace"),
    ("postfix_config", "overwrite"),
    ("replace_mta", True),
    ("replace_mta", "yes"),
    ("send_ipv6", False),
    ("send_ipv6", 1),
    ("dkim_signer", "opendkim"),
    ("dkim_signer", "rspamd"),
]  # fmt: skip


def fleet_problem(key: str, value: object) -> str | None:
    extra = RELAY if key == "relay_credentials" else {}
    try:
        validate_fleet_data({"hosts": {"mx1": {**FLEET_HOST, **extra, key: value}}})
    except FleetError as err:
        problems = [p for p in err.problems if p.field and p.field.startswith(key)]
        assert problems, err
        return problems[0].message
    return None


def deploy_problem(key: str, value: object) -> str | None:
    extra = RELAY if key == "relay_credentials" else {}
    data = {**DATA, **extra, key: value}
    try:
        contexts.check_fleet_keys("mx1", data)  # what the mail deploy runs first
        contexts.hostname_context("mx1", data)
        contexts.postfix_context("mx1", data, environ=ENVIRON)
        contexts.opendkim_context("mx1", data)
        contexts.hygiene_context("mx1", data)
    except contexts.DeployValueError as err:
        assert err.host == "mx1" and err.field.startswith(key), err
        return err.reason
    return None


@pytest.mark.parametrize(("key", "value"), ROWS, ids=[f"{k}={v!r}"[:60] for k, v in ROWS])
def test_the_fleet_check_and_the_deploy_agree(key: str, value: object) -> None:
    assert deploy_problem(key, value) == fleet_problem(key, value)


def test_the_table_has_good_and_bad_values_for_every_host_key() -> None:
    from mailmend.keys import SHARED_KEYS

    # The keys the mail deploy reads (ssh_* are pyinfra's connection, vps_* mailmend ptr's).
    deploy_keys = {k for k in SHARED_KEYS if not k.startswith(("ssh_", "vps_"))}
    good = {k for k, v in ROWS if fleet_problem(k, v) is None}
    bad = {k for k, v in ROWS if fleet_problem(k, v) is not None}
    assert good == bad == deploy_keys


def test_host_data_from_python_is_read_as_the_fleet_file_spells_it() -> None:
    # group_data/ is Python: a True or an int in postfix_main_cf is main.cf text.
    settings = {"disable_vrfy_command": True, "smtp_destination_recipient_limit": 1}
    ctx = contexts.postfix_context("mx1", {**DATA, "postfix_main_cf": settings})
    assert ctx.extra_settings == (
        ("disable_vrfy_command", "yes"),
        ("smtp_destination_recipient_limit", "1"),
    )
    # The fleet file is TOML: there a main.cf value is a string.
    assert fleet_problem("postfix_main_cf", settings) == (
        "must be a string (main.cf values are text), not a boolean"
    )
