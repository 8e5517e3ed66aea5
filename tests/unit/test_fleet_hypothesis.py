"""Property tests: whatever the input, the fleet parser returns safe values or a FleetError.

Never any other exception, and never a string that could break out of a config line or a
shell word.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailmend import fleet as fleet_mod
from mailmend.fleet import Fleet, FleetError, HostSpec, parse_fleet, validate_fleet_data
from tests.unit.test_fleet import BASE, to_toml

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- an independent definition of "safe" ------------------------------------------------------


def safe(text: str, *, allow_space: bool = False) -> bool:
    for ch in text:
        if ch == " " and allow_space:
            continue
        if ch in "'\"\\" or ch.isspace() or unicodedata.category(ch)[0] in "CZ":
            return False
    return True


def assert_fleet_is_safe(fleet: Fleet) -> None:
    assert fleet.hosts, "a fleet always has hosts"
    for host in fleet.hosts:
        assert isinstance(host, HostSpec)
        for f in dataclasses.fields(HostSpec):
            value = getattr(host, f.name)
            if f.name == "postfix_main_cf":
                for key, item in value.items():
                    assert safe(key) and safe(item, allow_space=True), (key, item)
            elif f.name == "domains":
                for domain in value:
                    assert safe(domain.name) and safe(domain.selector)
                    assert domain.name == domain.name.lower()
            elif f.name == "groups":
                assert all(safe(g) for g in value)
            elif isinstance(value, str):
                assert value and safe(value), (f.name, value)
            elif isinstance(value, bool):
                assert f.name in ("receives_mail", "replace_mta", "send_ipv6")
            elif isinstance(value, int):
                assert value >= 1
            else:
                assert value is None, (f.name, value)
        assert host.hostname == host.hostname.lower() and "." in host.hostname
        assert host.public_ipv4 or host.public_ipv6
    address = fleet.settings.dmarc_report_address
    assert address is None or safe(address)
    assert isinstance(fleet.settings.sandbox, bool)


def check(data: dict[str, Any]) -> None:
    """Both entry points: the text parser and the dict-level validator."""
    for run in (lambda: parse_fleet(to_toml(data)), lambda: validate_fleet_data(data)):
        try:
            fleet = run()
        except FleetError as err:
            assert err.problems
            assert str(err).count("\n") == len(err.problems) - 1
        else:
            assert_fleet_is_safe(fleet)


# -- strategies ---------------------------------------------------------------------------------

NASTY_CHARS = st.sampled_from(list("\n\r\t \x00\x1b\x7f'\"\\.-_@:[]%~/é\u200b\u2028"))
# Mostly near-valid strings: a valid-looking value with a character inserted or replaced.
SEEDS = st.sampled_from(
    [
        "mx1.example.com",
        "example.com",
        "mx1",
        "203.0.113.7",
        "2001:db8::7",
        "127.0.0.1",
        "env:RELAY",
        "file:/etc/relay",
        "[smtp.example.net]:587",
        "dmarc@example.com",
        "~/.ssh/id",
        "permit_mynetworks, reject",
        "eu",
        "root",
        "",
    ]
)


@st.composite
def near_valid_text(draw: st.DrawFn) -> str:
    seed = draw(SEEDS)
    if draw(st.booleans()):
        return seed
    at = draw(st.integers(0, len(seed)))
    return seed[:at] + draw(NASTY_CHARS) + seed[at + draw(st.integers(0, 1)) :]


TEXT = st.one_of(near_valid_text(), st.text(max_size=20))
SCALARS = st.one_of(
    TEXT,
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.sampled_from([0, 1, 5, 22, 3600, 3601, 65535, 65536]),
)
HOST_KEYS = st.sampled_from([*fleet_mod.HOST_KEYS, "hostnme", "name", "selector"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(TEXT, HOST_KEYS), inner, max_size=3),
    ),
    max_leaves=8,
)
DOMAIN = st.fixed_dictionaries({"name": TEXT, "selector": TEXT})
HOST_VALUES = st.one_of(
    VALUES,
    st.lists(DOMAIN, max_size=3),
    st.dictionaries(TEXT, TEXT, max_size=3),
    st.lists(TEXT, max_size=3),
)


def tables(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys, HOST_VALUES, max_size=4)


@st.composite
def mutated_base(draw: st.DrawFn) -> dict[str, Any]:
    """The valid BASE fleet with a few values replaced, added or removed."""
    data: dict[str, Any] = {
        "fleet": dict(BASE["fleet"]),
        "defaults": dict(BASE["defaults"]),
        "groups": {name: dict(body) for name, body in BASE["groups"].items()},
        "hosts": {name: dict(body) for name, body in BASE["hosts"].items()},
    }
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["fleet", "defaults", "groups.eu", "hosts.mx1", "hosts.mx2"]))
        table = data
        for part in where.split("."):
            table = table[part]
        key = draw(st.one_of(HOST_KEYS, st.sampled_from(["sandbox", "dmarc_report_address"])))
        if draw(st.integers(0, 4)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(HOST_VALUES)
    return data


ARBITRARY = st.fixed_dictionaries(
    {},
    optional={
        "fleet": tables(st.sampled_from(["sandbox", "dmarc_report_address", "x"])),
        "defaults": tables(HOST_KEYS),
        "groups": st.dictionaries(TEXT, tables(HOST_KEYS), max_size=2),
        "hosts": st.one_of(st.dictionaries(TEXT, tables(HOST_KEYS), max_size=3), VALUES),
        "extra": VALUES,
    },
)

# -- properties -------------------------------------------------------------------------------


@SETTINGS
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    try:
        parse_fleet(text)
    except FleetError as err:
        assert err.problems


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("[].\"=\n{},# abcxyz_-0123456789'\\")), max_size=80))
def test_toml_shaped_text(text: str) -> None:
    try:
        fleet = parse_fleet(text)
    except FleetError as err:
        assert err.problems
    else:
        assert_fleet_is_safe(fleet)


@SETTINGS
@given(ARBITRARY)
def test_arbitrary_documents(data: dict[str, Any]) -> None:
    check(data)


@SETTINGS
@given(mutated_base())
def test_mutated_valid_fleets(data: dict[str, Any]) -> None:
    check(data)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["hosts.mx1", "groups.eu"]), near_valid_text())))
def test_strings_in_every_host_field(edits: list[tuple[str, str]]) -> None:
    """Every host key given a near-valid string: any value that passes is safe."""
    for key in fleet_mod.HOST_KEYS:
        data = {"hosts": {name: dict(body) for name, body in BASE["hosts"].items()}}
        for _, text in edits:
            data["hosts"]["mx1"][key] = text
        check(data)


def test_arbitrary_python_objects_are_problems_not_crashes() -> None:
    """The dict-level validator is also safe with values TOML cannot produce."""
    for junk in [None, object(), b"bytes", (1, 2), {1: 2}, {"x": None}, [None]]:
        data: dict[str, Any] = {"hosts": {"mx1": dict(BASE["hosts"]["mx2"])}}
        data["hosts"]["mx1"]["domains"] = junk
        data["hosts"]["mx1"]["postfix_main_cf"] = junk
        data["fleet"] = junk
        data["groups"] = {"eu": junk}
        try:
            fleet = validate_fleet_data(data)
        except FleetError as err:
            assert err.problems
        else:
            assert_fleet_is_safe(fleet)
