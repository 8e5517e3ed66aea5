"""The fleet file: structure, precedence, and one test per validation rule.

Each rule test breaks one value of an otherwise valid fleet and asserts the exact field and a
key phrase of the message; its valid neighbour passes.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mailmend import fleet as fleet_mod
from mailmend.fleet import (
    DEFAULT_FLEET_FILE,
    FLEET_ENV,
    DomainSpec,
    Fleet,
    FleetError,
    HostSpec,
    Problem,
    fleet_path_from_env,
    load_fleet,
    parse_fleet,
)

UNSPECIFIED_V4 = str(ipaddress.IPv4Address(0))  # spelled out, it trips ruff S104

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fleet.example.toml"
DOC = ROOT / "docs" / "fleet.md"

# -- writing TOML (tomllib only reads) --------------------------------------------------------


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{toml_string(str(k))} = {toml_value(item)}" for k, item in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level keys as ``key = value`` lines, tables inline; tomllib reads it back as ``doc``."""
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in doc.items())


def test_toml_writer_roundtrips() -> None:
    doc = {"a": {"b": ['x\n"\\\x7f', 1, True, 1.5, {"c": {}}]}, "é": "ü"}
    assert tomllib.loads(to_toml(doc)) == doc


# -- a valid fleet and helpers ----------------------------------------------------------------

BASE: dict[str, Any] = {
    "fleet": {"dmarc_report_address": "dmarc@example.com"},
    "defaults": {"ssh_user": "root"},
    "groups": {"eu": {"rate_limit_per_minute": 4}},
    "hosts": {
        "mx1": {
            "ssh_host": "5.9.10.11",
            "hostname": "mx1.example.com",
            "public_ipv4": "5.9.10.11",
            "public_ipv6": "2a01:4f8::11",
            "groups": ["eu"],
            "domains": [{"name": "example.com", "selector": "mx1"}],
        },
        "mx2": {
            "ssh_host": "5.9.10.12",
            "hostname": "mx2.example.com",
            "public_ipv4": "5.9.10.12",
            "domains": [{"name": "example.com", "selector": "mx2"}],
        },
    },
}


def doc(**changes: Any) -> dict[str, Any]:
    """BASE with paths set (``hosts__mx1__hostname="x"``) or removed (value ``DEL``)."""
    result = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        table = result
        for part in parents:
            table = table.setdefault(part, {})
        if value is DEL:
            table.pop(last, None)
        else:
            table[last] = value
    return result


DEL = object()


def parse(d: dict[str, Any]) -> Fleet:
    return parse_fleet(to_toml(d))


def problems(d: dict[str, Any]) -> list[Problem]:
    with pytest.raises(FleetError) as info:
        parse(d)
    return info.value.problems


def assert_problem(d: dict[str, Any], host: str | None, field: str | None, phrase: str) -> None:
    found = problems(d)
    matching = [p for p in found if p.host == host and p.field == field and phrase in p.message]
    assert matching, f"no problem {host}/{field}/{phrase!r} in:\n" + "\n".join(map(str, found))


def assert_warning(fleet: Fleet, host: str | None, field: str | None, phrase: str) -> None:
    assert any(
        w.host == host and w.field == field and phrase in w.message for w in fleet.warnings
    ), "\n".join(map(str, fleet.warnings))


def host(fleet: Fleet, name: str) -> HostSpec:
    return next(h for h in fleet.hosts if h.name == name)


# -- the valid fleet --------------------------------------------------------------------------


def test_base_fleet_is_valid_and_quiet() -> None:
    fleet = parse(BASE)
    assert fleet.warnings == ()
    assert [h.name for h in fleet.hosts] == ["mx1", "mx2"]
    assert fleet.settings.dmarc_report_address == "dmarc@example.com"
    mx1 = host(fleet, "mx1")
    assert mx1.domains == (DomainSpec("example.com", "mx1"),)
    assert mx1.groups == ("eu",)
    assert mx1.ssh_port == 22 and mx1.ssh_user == "root"
    assert mx1.postfix_main_cf == {}


def test_values_are_normalised() -> None:
    fleet = parse(
        doc(
            hosts__mx1__hostname="MX1.Example.COM.",
            hosts__mx1__public_ipv6="2A01:04F8:0::11",
            hosts__mx1__domains=[{"name": "Example.COM.", "selector": "MX1"}],
            hosts__mx1__relay_host="[Smtp.Example.NET]:587",
        )
    )
    mx1 = host(fleet, "mx1")
    assert mx1.hostname == "mx1.example.com"
    assert mx1.public_ipv6 == "2a01:4f8::11"
    assert mx1.domains == (DomainSpec("example.com", "mx1"),)
    assert mx1.relay_host == "[smtp.example.net]:587"


def test_hostspec_is_hashable_and_its_main_cf_read_only() -> None:
    mx1 = host(parse(doc(hosts__mx1__postfix_main_cf={"smtpd_banner": "x"})), "mx1")
    hash(mx1)
    with pytest.raises(TypeError):
        mx1.postfix_main_cf["smtpd_banner"] = "y"  # type: ignore[index]


def test_every_hostspec_field_is_a_fleet_key() -> None:
    names = [f.name for f in dataclasses.fields(HostSpec)]
    assert list(fleet_mod.HOST_KEYS) == names[1:]
    assert "groups" not in fleet_mod.SHARED_KEYS


def test_problem_str() -> None:
    problem = Problem("fleet.toml", "mx1", "hostname", "bad")
    assert str(problem) == "fleet.toml: host 'mx1': hostname: bad"
    assert (
        str(Problem("f.toml", None, "defaults.ssh_port", "bad")) == "f.toml: defaults.ssh_port: bad"
    )
    assert str(Problem("f.toml", None, None, "bad")) == "f.toml: bad"


def test_problem_str_escapes_names_that_would_break_the_line() -> None:
    problem = Problem("my fleet.toml", "a\nb", "groups.e\nu", "bad")
    assert str(problem) == "my fleet.toml: host 'a\\nb': 'groups.e\\nu': bad"


def test_error_lists_one_problem_per_line() -> None:
    with pytest.raises(FleetError) as info:
        parse(doc(hosts__mx1__hostname="mx1..example.com", hosts__mx2__ssh_port=0))
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) == 2
    assert lines[0] == (
        "fleet.toml: host 'mx1': hostname: 'mx1..example.com' is not a valid FQDN "
        "(empty label); use a name like mx1.example.com"
    )


# -- precedence -------------------------------------------------------------------------------


def test_defaults_apply_to_every_host() -> None:
    fleet = parse(doc(defaults={"ssh_port": 2222, "recipient_limit": 50}))
    assert {h.ssh_port for h in fleet.hosts} == {2222}
    assert {h.recipient_limit for h in fleet.hosts} == {50}


def test_group_beats_defaults_and_applies_to_members_only() -> None:
    fleet = parse(doc(defaults={"rate_limit_per_minute": 6}))
    assert host(fleet, "mx1").rate_limit_per_minute == 4  # member of eu
    assert host(fleet, "mx2").rate_limit_per_minute == 6


def test_host_beats_group() -> None:
    fleet = parse(doc(hosts__mx1__rate_limit_per_minute=2))
    assert host(fleet, "mx1").rate_limit_per_minute == 2


def test_later_group_beats_earlier_group() -> None:
    groups = {"eu": {"rate_limit_per_minute": 4}, "slow": {"rate_limit_per_minute": 1}}
    assert (
        host(
            parse(doc(groups=groups, hosts__mx1__groups=["eu", "slow"])), "mx1"
        ).rate_limit_per_minute
        == 1
    )
    assert (
        host(
            parse(doc(groups=groups, hosts__mx1__groups=["slow", "eu"])), "mx1"
        ).rate_limit_per_minute
        == 4
    )


def test_postfix_main_cf_merges_key_by_key() -> None:
    fleet = parse(
        doc(
            defaults={
                "postfix_main_cf": {"smtpd_banner": "$myhostname", "message_size_limit": "1"}
            },
            groups__eu__postfix_main_cf={
                "message_size_limit": "2",
                "smtp_tls_loglevel": "1",
            },
            hosts__mx1__postfix_main_cf={"smtp_tls_loglevel": "2"},
        )
    )
    assert dict(host(fleet, "mx1").postfix_main_cf) == {
        "smtpd_banner": "$myhostname",
        "message_size_limit": "2",
        "smtp_tls_loglevel": "2",
    }
    assert dict(host(fleet, "mx2").postfix_main_cf) == {
        "smtpd_banner": "$myhostname",
        "message_size_limit": "1",
    }


def test_domains_list_is_replaced_not_merged() -> None:
    fleet = parse(doc(defaults={"domains": [{"name": "other.org", "selector": "x"}]}))
    assert host(fleet, "mx1").domains == (DomainSpec("example.com", "mx1"),)


def test_undefined_group_is_an_error() -> None:
    assert_problem(doc(hosts__mx1__groups=["us"]), "mx1", "groups", "'us' is not defined")


def test_groups_only_on_hosts() -> None:
    assert_problem(doc(defaults={"groups": ["eu"]}), None, "defaults.groups", "only be listed")
    assert_problem(doc(groups__eu__groups=["eu"]), None, "groups.eu.groups", "only be listed")


def test_group_listed_twice() -> None:
    assert_problem(doc(hosts__mx1__groups=["eu", "eu"]), "mx1", "groups", "more than once")


def test_group_named_like_a_host() -> None:
    assert_problem(doc(groups__mx2={}), None, "groups.mx2", "same name as host 'mx2'")


@pytest.mark.parametrize("name", ["mailmend", "inventory"])
def test_reserved_group_names(name: str) -> None:
    assert_problem(doc(**{f"groups__{name}": {}}), None, f"groups.{name}", "is reserved")


def test_settings_in_defaults_and_groups_are_validated_where_written() -> None:
    assert_problem(doc(defaults={"ssh_port": 0}), None, "defaults.ssh_port", "between 1 and 65535")
    assert_problem(doc(groups__eu__ssh_port=0), None, "groups.eu.ssh_port", "between 1 and 65535")


# -- FQDNs ------------------------------------------------------------------------------------


def test_hostname_must_be_fqdn() -> None:
    assert_problem(doc(hosts__mx1__hostname="mx1..example.com"), "mx1", "hostname", "(empty label)")
    assert_problem(doc(hosts__mx1__hostname="mx1"), "mx1", "hostname", "single label")
    assert_problem(doc(hosts__mx1__hostname="a" * 64 + ".com"), "mx1", "hostname", "limit is 63")
    assert_problem(doc(hosts__mx1__hostname="mx1.example.42"), "mx1", "hostname", "all digits")


def test_domain_name_must_be_fqdn() -> None:
    bad = [{"name": "example", "selector": "mx1"}]
    assert_problem(
        doc(hosts__mx1__domains=bad), "mx1", "domains[0].name", "use a name like example.com"
    )


def test_relay_host_name_must_be_fqdn() -> None:
    assert_problem(doc(hosts__mx1__relay_host="relay:587"), "mx1", "relay_host", "single label")
    parse(doc(hosts__mx1__relay_host="relay.example.net:587"))


# -- addresses --------------------------------------------------------------------------------


def test_public_ipv4_must_be_ipv4() -> None:
    assert_problem(
        doc(hosts__mx1__public_ipv4="2a01:4f8::11"), "mx1", "public_ipv4", "put it in public_ipv6"
    )


def test_public_ipv6_must_be_ipv6() -> None:
    assert_problem(
        doc(hosts__mx1__public_ipv6="5.9.10.11"), "mx1", "public_ipv6", "put it in public_ipv4"
    )


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("public_ipv4", "127.0.0.1", "loopback"),
        ("public_ipv4", UNSPECIFIED_V4, "unspecified"),
        ("public_ipv4", "239.1.1.1", "multicast"),
        ("public_ipv4", "169.254.0.9", "link-local"),
        ("public_ipv4", "250.1.1.1", "reserved"),
        ("public_ipv6", "::1", "loopback"),
        ("public_ipv6", "fe80::9", "link-local"),
    ],
)
def test_special_addresses_refused_outside_sandbox(key: str, value: str, kind: str) -> None:
    assert_problem(doc(**{f"hosts__mx1__{key}": value}), "mx1", key, f"is a {kind} address")
    fleet = parse(
        doc(
            **{
                "fleet__sandbox": True,
                "fleet__nameservers": ["127.0.9.53"],
                f"hosts__mx1__{key}": value,
            }
        )
    )
    assert fleet.warnings == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [("public_ipv4", "10.0.0.7"), ("public_ipv4", "203.0.113.7"), ("public_ipv6", "fd00::7")],
)
def test_private_addresses_are_warnings_except_in_sandbox(key: str, value: str) -> None:
    fleet = parse(doc(**{f"hosts__mx1__{key}": value}))
    assert_warning(fleet, "mx1", key, "not globally routable")
    assert (
        parse(
            doc(
                **{
                    "fleet__sandbox": True,
                    "fleet__nameservers": ["127.0.9.53"],
                    f"hosts__mx1__{key}": value,
                }
            )
        ).warnings
        == ()
    )


def test_warning_from_a_group_is_reported_once_where_written() -> None:
    fleet = parse(doc(groups__eu__public_ipv6="fd00::7", hosts__mx1__public_ipv6=DEL))
    assert [(w.host, w.field) for w in fleet.warnings] == [(None, "groups.eu.public_ipv6")]
    assert host(fleet, "mx1").public_ipv6 == "fd00::7"


def test_listen_and_bind_address_are_single_ips() -> None:
    fleet = parse(
        doc(hosts__mx1__listen_address="127.0.10.1", hosts__mx1__bind_address="5.9.10.11")
    )
    assert host(fleet, "mx1").listen_address == "127.0.10.1"
    assert_problem(doc(hosts__mx1__listen_address="127.0.0.1 ::1"), "mx1", "listen_address", "' '")
    assert_problem(doc(hosts__mx1__bind_address="all"), "mx1", "bind_address", "not an IP address")


def test_ssh_host_address_or_name() -> None:
    assert host(parse(doc(hosts__mx1__ssh_host="mx1")), "mx1").ssh_host == "mx1"
    assert_problem(doc(hosts__mx1__ssh_host="root@mx1"), "mx1", "ssh_host", "ssh_user")


# -- selectors --------------------------------------------------------------------------------


def test_selector_rules() -> None:
    bad = [{"name": "example.com", "selector": "mx_1"}]
    assert_problem(doc(hosts__mx1__domains=bad), "mx1", "domains[0].selector", "bad character '_'")
    long = [{"name": "example.com", "selector": "a" * 64}]
    assert_problem(doc(hosts__mx1__domains=long), "mx1", "domains[0].selector", "limit is 63")
    dotted = [{"name": "example.com", "selector": "2024.mx1"}]
    assert host(parse(doc(hosts__mx1__domains=dotted)), "mx1").domains[0].selector == "2024.mx1"


def test_domain_entry_shape() -> None:
    assert_problem(
        doc(hosts__mx1__domains=[{"name": "example.com"}]), "mx1", "domains[0].selector", "missing"
    )
    assert_problem(doc(hosts__mx1__domains=["example.com"]), "mx1", "domains[0]", "must be a table")
    assert_problem(doc(hosts__mx1__domains="example.com"), "mx1", "domains", "must be an array")
    extra = [{"name": "example.com", "selector": "mx1", "selectr": "x"}]
    assert_problem(
        doc(hosts__mx1__domains=extra), "mx1", "domains[0].selectr", "did you mean 'selector'?"
    )


# -- numbers and booleans ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("rate_limit_per_minute", 0, 1),
        ("rate_limit_per_minute", 3601, 3600),
        ("recipient_limit", 0, 1),
        ("ssh_port", 0, 1),
        ("ssh_port", 65536, 65535),
    ],
)
def test_integer_ranges(key: str, bad: int, good: int) -> None:
    assert_problem(doc(**{f"hosts__mx1__{key}": bad}), "mx1", key, "out of range")
    assert getattr(host(parse(doc(**{f"hosts__mx1__{key}": good})), "mx1"), key) == good


@pytest.mark.parametrize("key", ["rate_limit_per_minute", "recipient_limit", "ssh_port"])
def test_integers_refuse_booleans_and_strings(key: str) -> None:
    assert_problem(doc(**{f"hosts__mx1__{key}": True}), "mx1", key, "not the boolean true")
    assert_problem(doc(**{f"hosts__mx1__{key}": "5"}), "mx1", key, "without quotes")


def test_booleans_refuse_strings_and_integers() -> None:
    assert_problem(doc(hosts__mx1__receives_mail="yes"), "mx1", "receives_mail", "true or false")
    assert_problem(doc(hosts__mx1__receives_mail=1), "mx1", "receives_mail", "not the integer 1")
    assert_problem(doc(fleet__sandbox="true"), None, "fleet.sandbox", "true or false")
    assert host(parse(doc(hosts__mx1__receives_mail=True)), "mx1").receives_mail is True


def test_existing_server_keys() -> None:
    assert_problem(doc(hosts__mx1__postfix_config="repalce"), "mx1", "postfix_config", "'merge'")
    assert_problem(doc(hosts__mx1__postfix_config=1), "mx1", "postfix_config", "not 1")
    assert_problem(doc(hosts__mx1__replace_mta="yes"), "mx1", "replace_mta", "true or false")
    spec = host(parse(doc()), "mx1")
    assert (spec.postfix_config, spec.replace_mta) == ("merge", False)
    spec = host(
        parse(doc(hosts__mx1__postfix_config="replace", hosts__mx1__replace_mta=True)), "mx1"
    )
    assert (spec.postfix_config, spec.replace_mta) == ("replace", True)
    assert host(parse(doc()), "mx1").send_ipv6 is None
    assert host(parse(doc(hosts__mx1__send_ipv6=False)), "mx1").send_ipv6 is False
    assert_problem(doc(hosts__mx1__send_ipv6="no"), "mx1", "send_ipv6", "true or false")
    assert_problem(doc(hosts__mx1__dkim_signer="rspamd"), "mx1", "dkim_signer", "'opendkim'")


# -- unknown keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "host_name", "field", "suggestion"),
    [
        ({"hosts__mx1__hostnme": "x"}, "mx1", "hostnme", "'hostname'"),
        ({"defaults": {"ssh_usr": "root"}}, None, "defaults.ssh_usr", "'ssh_user'"),
        ({"groups__eu__rate_limit": 1}, None, "groups.eu.rate_limit", "'rate_limit_per_minute'"),
        ({"fleet__sandbx": True}, None, "fleet.sandbx", "'sandbox'"),
        ({"host": {}}, None, "host", "'hosts'"),
    ],
)
def test_unknown_keys_refused_with_suggestion(
    changes: dict[str, Any], host_name: str | None, field: str, suggestion: str
) -> None:
    assert_problem(doc(**changes), host_name, field, f"did you mean {suggestion}?")


def test_unknown_key_without_close_match_lists_keys() -> None:
    assert_problem(doc(hosts__mx1__zzzz=1), "mx1", "zzzz", "known keys: ssh_host")


# -- duplicates -------------------------------------------------------------------------------


def test_duplicate_ssh_endpoint() -> None:
    assert_problem(
        doc(hosts__mx2__ssh_host="5.9.10.11"),
        "mx2",
        "ssh_host",
        "same ssh_host and ssh_port as host 'mx1'",
    )
    parse(doc(hosts__mx2__ssh_host="5.9.10.11", hosts__mx2__ssh_port=2222))


def test_duplicate_hostname() -> None:
    assert_problem(doc(hosts__mx2__hostname="MX1.example.com."), "mx2", "hostname", "as host 'mx1'")


def test_duplicate_public_ipv4() -> None:
    assert_problem(doc(hosts__mx2__public_ipv4="5.9.10.11"), "mx2", "public_ipv4", "as host 'mx1'")


def test_duplicate_public_ipv6_in_another_spelling() -> None:
    assert_problem(
        doc(hosts__mx2__public_ipv6="2a01:04f8:0:0::11"), "mx2", "public_ipv6", "as host 'mx1'"
    )


def test_duplicates_found_even_when_a_host_has_other_errors() -> None:
    assert_problem(
        doc(hosts__mx1__hostname="bad", hosts__mx2__public_ipv4="5.9.10.11"),
        "mx2",
        "public_ipv4",
        "as host 'mx1'",
    )


def test_duplicate_toml_table_reports_line_and_column() -> None:
    text = '[hosts.mx1]\nssh_host = "a"\n[hosts.mx1]\n'
    with pytest.raises(FleetError) as info:
        parse_fleet(text)
    (problem,) = info.value.problems
    assert problem.host is None and problem.field is None
    assert "not valid TOML" in problem.message and "line 3" in problem.message


def test_same_domain_and_selector_on_two_hosts() -> None:
    same = [{"name": "example.com", "selector": "mx1"}]
    assert_problem(doc(hosts__mx2__domains=same), "mx2", "domains[0]", "conflicting DKIM keys")
    other = [{"name": "example.org", "selector": "mx1"}]
    parse(doc(hosts__mx2__domains=other))


def test_same_domain_twice_on_one_host() -> None:
    twice = [{"name": "example.com", "selector": "mx1"}, {"name": "Example.com", "selector": "MX1"}]
    assert_problem(doc(hosts__mx1__domains=twice), "mx1", "domains[1]", "listed twice")
    two_keys = [
        {"name": "example.com", "selector": "mx1"},
        {"name": "example.com", "selector": "b"},
    ]
    # The deploy signs a domain with one key per host (deploys.contexts refuses it too).
    assert_problem(doc(hosts__mx1__domains=two_keys), "mx1", "domains[1]", "one DKIM key")
    two_domains = [
        {"name": "example.com", "selector": "mx1"},
        {"name": "example.org", "selector": "mx1"},
    ]
    parse(doc(hosts__mx1__domains=two_domains))


# -- unsafe strings ---------------------------------------------------------------------------

UNSAFE = ["\n", "\t", " ", "'", '"', "\\", "\x00", "\x1b", "\u200b"]


@pytest.mark.parametrize("ch", UNSAFE)
@pytest.mark.parametrize(
    ("changes", "host_name", "field"),
    [
        ({"hosts__mx1__ssh_user": "ro{}ot"}, "mx1", "ssh_user"),
        ({"hosts__mx1__ssh_key": "/k/id{}"}, "mx1", "ssh_key"),
        ({"hosts__mx1__ssh_known_hosts_file": "/k/{}"}, "mx1", "ssh_known_hosts_file"),
        ({"hosts__mx1__hostname": "mx1.exa{}mple.com"}, "mx1", "hostname"),
        ({"hosts__mx1__relay_credentials": "env:A{}"}, "mx1", "relay_credentials"),
        ({"hosts__mx1__groups": ["e{}u"]}, "mx1", "groups[0]"),
        (
            {"hosts__mx1__domains": [{"name": "example.com", "selector": "m{}x"}]},
            "mx1",
            "domains[0].selector",
        ),
        (
            {"hosts__mx1__postfix_main_cf": {"smtpd_{}banner": "x"}},
            "mx1",
            "postfix_main_cf.smtpd_{}banner",
        ),
        (
            {"fleet__dmarc_report_address": "dm{}arc@example.com"},
            None,
            "fleet.dmarc_report_address",
        ),
    ],
)
def test_unsafe_characters_refused_and_shown_escaped(
    ch: str, changes: dict[str, Any], host_name: str | None, field: str
) -> None:
    filled = {k: _fill(value, ch) for k, value in changes.items()}
    assert_problem(doc(**filled), host_name, field.replace("{}", ch), repr(ch))


def _fill(value: Any, ch: str) -> Any:
    if isinstance(value, str):
        return value.replace("{}", ch)
    if isinstance(value, list):
        return [_fill(item, ch) for item in value]
    return {_fill(k, ch): _fill(item, ch) for k, item in value.items()}


@pytest.mark.parametrize("ch", ["\n", "\t", "'", '"', "\\", "\x00"])
def test_postfix_values_refuse_control_characters_and_quotes(ch: str) -> None:
    main_cf = {"smtpd_banner": f"$myhostname{ch}ESMTP"}
    assert_problem(
        doc(hosts__mx1__postfix_main_cf=main_cf), "mx1", "postfix_main_cf.smtpd_banner", repr(ch)
    )


def test_postfix_values_may_contain_plain_spaces() -> None:
    main_cf = {"smtpd_helo_restrictions": "permit_mynetworks, reject_invalid_helo_hostname"}
    fleet = parse(doc(hosts__mx1__postfix_main_cf=main_cf))
    assert host(fleet, "mx1").postfix_main_cf == main_cf


def test_host_and_group_names_are_checked() -> None:
    assert_problem(doc(hosts__mx1__groups=["e u"]), "mx1", "groups[0]", "' '")
    assert_problem(doc(**{"hosts__m x": {}}), None, "hosts.m x", "not a usable name")
    assert_problem(doc(**{"groups__e\nu": {}}), None, "groups.e\nu", "not a usable name")


def test_ssh_key_tilde_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    fleet = parse(doc(defaults={"ssh_key": "~/.ssh/id_ed25519"}))
    assert host(fleet, "mx1").ssh_key == "/home/ops/.ssh/id_ed25519"
    assert_problem(doc(hosts__mx1__ssh_key=""), "mx1", "ssh_key", "must not be empty")


def test_ssh_key_expanded_to_an_unsafe_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/o ps")
    assert_problem(doc(hosts__mx1__ssh_key="~/id"), "mx1", "ssh_key", "after expanding '~'")


# -- Postfix keys -----------------------------------------------------------------------------


def test_postfix_key_pattern() -> None:
    main_cf = {"Smtpd_banner": "x"}
    assert_problem(
        doc(hosts__mx1__postfix_main_cf=main_cf),
        "mx1",
        "postfix_main_cf.Smtpd_banner",
        "^[a-z][a-z0-9_]*$",
    )


@pytest.mark.parametrize(
    ("key", "phrase"),
    [
        ("myhostname", "set through the fleet key hostname instead"),
        ("relayhost", "set through the fleet key relay_host instead"),
        ("smtp_sasl_password_maps", "set through the fleet key relay_credentials instead"),
        ("inet_interfaces", "set through the fleet key receives_mail instead"),
        ("default_destination_rate_delay", "exactly one knob from rate_limit_per_minute"),
        ("smtpd_milters", "managed by mailmend"),
    ],
)
def test_postfix_managed_keys_refused(key: str, phrase: str) -> None:
    main_cf = {key: "x"}
    assert_problem(
        doc(groups__eu__postfix_main_cf=main_cf), None, f"groups.eu.postfix_main_cf.{key}", phrase
    )


def test_postfix_values_must_be_strings() -> None:
    main_cf = {"message_size_limit": 10240000}
    assert_problem(
        doc(hosts__mx1__postfix_main_cf=main_cf),
        "mx1",
        "postfix_main_cf.message_size_limit",
        "must be a string",
    )


# -- references and addresses -----------------------------------------------------------------


def test_relay_credentials_are_references() -> None:
    assert_problem(
        doc(hosts__mx1__relay_credentials="s3cretpassw0rd"),
        "mx1",
        "relay_credentials",
        "secrets never go in the fleet file",
    )
    fleet = parse(
        doc(
            hosts__mx1__relay_host="[smtp.example.net]:587",
            hosts__mx1__relay_credentials="env:RELAY_AUTH",
        )
    )
    assert host(fleet, "mx1").relay_credentials == "env:RELAY_AUTH"
    assert fleet.warnings == ()


def test_relay_credentials_without_relay_host_warns() -> None:
    fleet = parse(doc(hosts__mx1__relay_credentials="file:/etc/mailmend/relay"))
    assert_warning(fleet, "mx1", "relay_credentials", "no relay_host")


def test_dmarc_report_address() -> None:
    assert_problem(
        doc(fleet__dmarc_report_address="dmarc"),
        None,
        "fleet.dmarc_report_address",
        "plausible email address",
    )
    assert parse(doc(fleet__dmarc_report_address=DEL)).settings.dmarc_report_address is None


# -- required keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["hostname", "ssh_host"])
def test_required_keys(key: str) -> None:
    assert_problem(doc(**{f"hosts__mx2__{key}": DEL}), "mx2", key, "missing")


def test_a_public_address_is_required() -> None:
    assert_problem(
        doc(hosts__mx2__public_ipv4=DEL), "mx2", "public_ipv4", "public_ipv4 or public_ipv6"
    )
    fleet = parse(doc(hosts__mx2__public_ipv4=DEL, hosts__mx2__public_ipv6="2a01:4f8::12"))
    assert host(fleet, "mx2").public_ipv4 is None


def test_missing_required_key_not_reported_when_its_value_was_refused() -> None:
    found = problems(doc(hosts__mx2__hostname="bad"))
    assert [(p.host, p.field) for p in found] == [("mx2", "hostname")]


def test_host_without_domains_warns() -> None:
    assert_warning(parse(doc(hosts__mx2__domains=DEL)), "mx2", "domains", "no DKIM signing")
    assert_warning(parse(doc(hosts__mx2__domains=[])), "mx2", "domains", "no DKIM signing")


def test_empty_hosts() -> None:
    assert_problem(doc(hosts={}), None, "hosts", "at least one [hosts.NAME]")
    assert_problem(doc(hosts=DEL), None, "hosts", "at least one [hosts.NAME]")
    assert_problem(doc(hosts={"mx1": "x"}), "mx1", None, "must be a table")


# -- reading the file -------------------------------------------------------------------------


def test_load_fleet_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="cannot read: No such file"):
        load_fleet(tmp_path / "nope.toml")


def test_load_fleet_bad_utf8(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_bytes(b'[hosts.mx1]\nhostname = "\xff"\n')
    with pytest.raises(FleetError, match="not valid UTF-8"):
        load_fleet(path)


def test_load_fleet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prod.toml"
    path.write_text(to_toml(doc(hosts__mx1__ssh_port=0)))
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    assert info.value.problems[0].file == str(path)
    path.write_text(to_toml(BASE))
    assert load_fleet(path).path == str(path)


def test_fleet_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(FLEET_ENV, raising=False)
    assert fleet_path_from_env() is None
    (tmp_path / DEFAULT_FLEET_FILE).write_text("")
    assert fleet_path_from_env() == Path(DEFAULT_FLEET_FILE)
    other = tmp_path / "other.toml"
    monkeypatch.setenv(FLEET_ENV, str(other))
    with pytest.raises(FleetError, match="does not exist"):
        fleet_path_from_env()
    other.write_text("")
    assert fleet_path_from_env() == other


# -- the example and the documentation --------------------------------------------------------


def test_example_parses_without_errors() -> None:
    fleet = load_fleet(EXAMPLE)
    assert len(fleet.hosts) >= 2
    assert all("not globally routable" in w.message for w in fleet.warnings)


def _keys(node: object) -> set[str]:
    """Every key in a decoded TOML document, except free-form names (hosts, groups, main.cf)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key in ("hosts", "groups") and isinstance(value, dict):
                for body in value.values():
                    found |= _keys(body)
            elif key != "postfix_main_cf":
                found |= _keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= _keys(item)
    return found


def test_every_key_in_the_example_is_documented() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    doc_text = DOC.read_text()
    keys = _keys(data)
    assert {"hosts", "ssh_host", "selector", "postfix_main_cf"} <= keys
    for key in keys:
        assert f"`{key}`" in doc_text, f"{key} is not documented in docs/fleet.md"


def test_every_fleet_key_is_explained_in_the_example_and_the_doc() -> None:
    example = EXAMPLE.read_text()
    doc_text = DOC.read_text()
    every = {
        *fleet_mod.HOST_KEYS,
        *fleet_mod.FLEET_KEYS,
        *fleet_mod.TOP_LEVEL_KEYS,
        "name",
        "selector",
    }
    for key in every:
        assert re.search(rf"\b{key}\b", example), f"{key} is not in fleet.example.toml"
        assert f"`{key}`" in doc_text, f"{key} is not documented in docs/fleet.md"


def test_nameservers_are_normalised_ip_and_port() -> None:
    assert parse(doc()).settings.nameservers == ()
    fleet = parse(doc(fleet__nameservers=["127.0.9.53", "192.0.2.53:5353", "[::1]:53"]))
    assert fleet.settings.nameservers == ("127.0.9.53:53", "192.0.2.53:5353", "[::1]:53")


@pytest.mark.parametrize(
    ("value", "field", "phrase"),
    [
        ("127.0.0.1", "fleet.nameservers", "must be a non-empty array"),
        ([], "fleet.nameservers", "must be a non-empty array"),
        (["ns1.example.com"], "fleet.nameservers[0]", "is not an IP address"),
        (["127.0.0.1:99999"], "fleet.nameservers[0]", "port must be 1-65535"),
        ([53], "fleet.nameservers[0]", "must be a string"),
        (["127.0.0.1\n"], "fleet.nameservers[0]", ""),
    ],
)
def test_bad_nameservers(value: object, field: str, phrase: str) -> None:
    assert_problem(doc(fleet__nameservers=value), None, field, phrase)


def test_a_sandbox_fleet_must_name_its_dns_server() -> None:
    """Without it the checks would ask this machine's resolvers about blocklists."""
    host = '[hosts.mx1]\nssh_host = "127.0.10.1"\nhostname = "mx1.alpha.example"\n'
    host += 'public_ipv4 = "192.0.2.11"\n'
    with pytest.raises(FleetError) as err:
        parse_fleet("[fleet]\nsandbox = true\n" + host)
    assert [(p.field, "its DNS server" in p.message) for p in err.value.problems] == [
        ("fleet.nameservers", True)
    ]
    fleet = parse_fleet('[fleet]\nsandbox = true\nnameservers = ["127.0.9.53"]\n' + host)
    assert fleet.settings.nameservers == ("127.0.9.53:53",)
