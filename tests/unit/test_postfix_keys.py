"""``postfix_main_cf``: one list of managed keys, and nothing that routes mail around the pacing.

The fleet check (:mod:`mailmend.fleet`) and the deploy (:func:`deploys.contexts.extra_settings`)
must refuse exactly the same keys: every parameter name of the real Postfix is tried on both
(``tests/fixtures/postconf-d-names.txt``, captured with ``postconf -d`` on a sandbox host).
The deploy's refusal is one line that names the host and the key, with the fleet check's reason,
and it comes before pyinfra runs anything on the host (not even a fact is read).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailmend.deploys import contexts as deploy_contexts
from mailmend.fleet import FleetError, parse_fleet
from tests.unit.test_bad_input import HOST
from tests.unit.test_deploy_errors import one_error_line, run_pyinfra

ROOT = Path(__file__).resolve().parents[2]
NAMES = ROOT / "tests" / "fixtures" / "postconf-d-names.txt"


def fleet_with(key: str, value: str = "x") -> str:
    return f"{HOST}postfix_main_cf = {{ {key} = {value!r} }}\n".replace("'", '"')


def fleet_problem(key: str, value: str = "x") -> str | None:
    try:
        parse_fleet(fleet_with(key, value))
    except FleetError as err:
        return str(err)
    return None


def deploy_problem(key: str, value: str = "x") -> str | None:
    try:
        deploy_contexts.extra_settings("mx1", {key: value})
    except deploy_contexts.DeployValueError as err:
        return str(err)
    return None


def assert_deploy_refuses(key: str, value: str = "x") -> None:
    """The deploy refuses ``key`` in one line naming the host and the key, for the fleet
    check's reason (one rule set, one message)."""
    problem, fleet = deploy_problem(key, value), fleet_problem(key, value)
    assert problem is not None and fleet is not None
    head = f"host mx1: postfix_main_cf.{key}: "
    assert problem.startswith(head) and "\n" not in problem, problem
    assert fleet == f"fleet.toml: host 'mx1': postfix_main_cf.{key}: {problem[len(head) :]}"


def postfix_names() -> list[str]:
    names = [n for n in NAMES.read_text().splitlines() if n and not n.startswith("#")]
    assert len(names) > 900  # the whole of Postfix 3.7, not a sample
    return [n for n in names if re.fullmatch(r"[a-z][a-z0-9_]*", n)]


def test_the_fleet_check_and_the_deploy_refuse_exactly_the_same_keys() -> None:
    disagree = [
        (name, fleet_problem(name), deploy_problem(name))
        for name in postfix_names()
        if (fleet_problem(name) is None) != (deploy_problem(name) is None)
    ]
    assert disagree == []
    refused = [name for name in postfix_names() if deploy_problem(name) is not None]
    assert "mynetworks" in refused and "relay_transport" in refused
    for name in refused:
        assert_deploy_refuses(name)


@pytest.mark.parametrize(
    "key",
    ["mynetworks", "relay_domains", "transport_maps", "smtpd_recipient_restrictions",
     "smtp_tls_security_level", "mydestination", "inet_protocols", "maillog_file"],
)  # fmt: skip
def test_every_key_the_deploy_manages_is_refused_by_the_fleet_check(key: str) -> None:
    problem = fleet_problem(key)
    assert problem is not None and "\n" not in problem
    assert f"postfix_main_cf.{key}: {key} is managed by mailmend" in problem
    assert_deploy_refuses(key)


@pytest.mark.parametrize(
    "key",
    [
        # selects a delivery transport (the smtp transport alone is paced)
        "default_transport", "relay_transport", "local_transport", "virtual_transport",
        "mailbox_transport", "fallback_transport", "best_mx_transport",
        "sender_dependent_default_transport_maps", "mailbox_transport_maps",
        "fallback_transport_maps",
        # hands every message to another transport or server
        "content_filter", "smtpd_proxy_filter",
        # a second pacing knob
        "default_transport_rate_delay", "relay_transport_rate_delay",
        "smtp_destination_rate_delay", "default_destination_rate_delay",
        # renames a service: error_service_name = relay sends suppressed mail out
        "error_service_name",
    ],
)  # fmt: skip
def test_settings_that_route_mail_around_the_pacing_are_refused_in_one_line(key: str) -> None:
    problem = fleet_problem(key, "relay")
    assert problem is not None
    assert problem.count("\n") == 0
    assert problem.startswith(f"fleet.toml: host 'mx1': postfix_main_cf.{key}: {key} ")
    assert "exactly one knob" in problem and "mail would leave unpaced" in problem
    assert_deploy_refuses(key, "relay")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # measured on the sandbox with smtp_transport_rate_delay = 2s: still 2.0 s apart
        ("smtp_destination_concurrency_limit", "20"),
        ("smtp_initial_destination_concurrency", "20"),
        # still the smtp transport, so still paced; a provider that counts recipients
        ("sender_dependent_relayhost_maps", "hash:/etc/postfix/sender_relay"),
        ("smtp_destination_recipient_limit", "1"),
        ("smtpd_sender_restrictions", "check_sender_access hash:/etc/postfix/filter"),
        ("header_checks", "regexp:/etc/postfix/filter pcre:/etc/postfix/more"),
        ("message_size_limit", "20480000"),
    ],
)
def test_settings_that_stay_paced_are_accepted(key: str, value: str) -> None:
    assert fleet_problem(key, value) is None
    assert deploy_problem(key, value) is None


@pytest.mark.parametrize(
    "value",
    [
        "check_sender_access inline:{ {a@example.com = FILTER relay:[mx.example.net]} }",
        "check_client_access static:{filter smtp:[192.0.2.1]:25}",
    ],
)
def test_an_inline_filter_action_is_refused(value: str) -> None:
    problem = fleet_problem("smtpd_sender_restrictions", value)
    assert problem is not None and "FILTER action" in problem
    assert_deploy_refuses("smtpd_sender_restrictions", value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("relay_transport", "relay"), ("mynetworks", "0.0.0.0/0"), ("content_filter", "smtp:x")],
)
def test_the_deploy_stops_before_anything_reaches_the_host(
    tmp_path: Path, key: str, value: str
) -> None:
    """pyinfra for real against ``@local`` (``--dry -vv`` prints every command it runs on the
    host and every fact it reads): a refused key stops it before any of them."""
    (tmp_path / "inventory.py").write_text('hosts = ["@local"]\n')
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(
        'hostname = "mx1.example.com"\npublic_ipv4 = "192.0.2.1"\n'
        f"postfix_main_cf = {{{key!r}: {value!r}}}\n"
    )
    deploy = str(ROOT / "deploys" / "mail.py")
    proc = run_pyinfra([str(tmp_path / "inventory.py"), deploy, "-vv"], cwd=tmp_path)
    line = one_error_line(proc)
    assert f"host @local: postfix_main_cf.{key}: {key} " in line
    output = proc.stdout + proc.stderr
    assert "[@local] Connected" in output  # it got as far as the host, and no further
    assert ">>>" not in output and "Loaded fact" not in output, output
