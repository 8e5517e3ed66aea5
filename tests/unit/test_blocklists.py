"""The blocklist data file and its validating loader."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from mailmend.checks.blocklists import (
    BlocklistError,
    Kind,
    Target,
    load_blocklists,
    parse_blocklists,
)


def _raw() -> dict[str, Any]:
    text = resources.files("mailmend.checks").joinpath("blocklists.toml").read_text("utf-8")
    return tomllib.loads(text)


def test_shipped_data_loads() -> None:
    lists = load_blocklists()
    assert len([bl for bl in lists if bl.kind is Kind.BLOCK]) >= 15
    assert len(lists) >= 20
    zones = {bl.zone for bl in lists}
    assert {"zen.spamhaus.org", "dbl.spamhaus.org", "list.dnswl.org", "b.barracudacentral.org",
            "bl.spamcop.net", "dnsbl-3.uceprotect.net", "noptr.spamrats.com"} <= zones  # fmt: skip


def test_dead_lists_are_left_out_and_explained() -> None:
    zones = {bl.zone for bl in load_blocklists()}
    assert not any("sorbs" in z or "manitu" in z for z in zones)
    text = resources.files("mailmend.checks").joinpath("blocklists.toml").read_text("utf-8")
    header = text.split("[[list]]")[0]
    assert "SORBS" in header and "June 2024" in header
    assert "NiXSpam" in header and "January 2025" in header


def test_spamhaus_facts() -> None:
    zen = next(bl for bl in load_blocklists() if bl.zone == "zen.spamhaus.org")
    assert zen.codes["127.0.0.10"].policy and zen.codes["127.0.0.11"].policy
    assert not zen.codes["127.0.0.2"].policy
    assert set(zen.errors) == {"127.255.255.252", "127.255.255.254", "127.255.255.255"}
    assert "DQS" in zen.errors["127.255.255.254"].fix
    assert zen.supports_dqs and zen.dqs_zone == "zen.dq.spamhaus.net"
    assert zen.refuses_public_resolvers and zen.ipv6
    assert zen.test_listed == "127.0.0.2" and zen.test_unlisted == "127.0.0.1"


def test_every_blocklist_has_delisting_and_allowlists_are_allow() -> None:
    for bl in load_blocklists():
        if bl.kind is Kind.BLOCK:
            assert bl.delisting is not None and bl.delisting.steps, bl.zone
            assert bl.delisting.url.startswith("https://")
    allow = {bl.zone for bl in load_blocklists() if bl.kind is Kind.ALLOW}
    assert {"list.dnswl.org", "swl.spamhaus.org", "wl.mailspike.net"} <= allow


def test_domain_lists_use_domain_test_points() -> None:
    for bl in load_blocklists():
        if bl.target is Target.DOMAIN:
            assert bl.test_unlisted == "invalid"
            assert bl.test_listed and "." in bl.test_listed


def test_load_from_path(tmp_path: Path) -> None:
    path = tmp_path / "lists.toml"
    path.write_text(
        resources.files("mailmend.checks").joinpath("blocklists.toml").read_text("utf-8")
    )
    assert load_blocklists(path) == load_blocklists()


def _broken(change: Any) -> BlocklistError:
    data = copy.deepcopy(_raw())
    change(data["list"][0])
    with pytest.raises(BlocklistError) as info:
        parse_blocklists(data)
    return info.value


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda bl: bl.update(colour="red"), "unknown keys ['colour']"),
        (lambda bl: bl.pop("operator"), "missing keys ['operator']"),
        (lambda bl: bl.update(kind="maybe"), "kind must be one of"),
        (lambda bl: bl.update(target="asn"), "target must be one of"),
        (
            lambda bl: bl["codes"].update({"10.0.0.2": {"meaning": "x"}}),
            "not an IPv4 address in 127",
        ),
        (lambda bl: bl["codes"].update({"127.0.0.300": {"meaning": "x"}}), "not an IPv4 address"),
        (lambda bl: bl["errors"].update({"banana": {"reason": "r", "fix": "f"}}), "not an IPv4"),
        (lambda bl: bl["codes"]["127.0.0.2"].update(colour=1), "unknown keys ['colour']"),
        (lambda bl: bl["codes"]["127.0.0.10"].pop("fix"), "a policy code needs a fix"),
        (lambda bl: bl["delisting"].update(url="http://x.test/"), "https://"),
        (lambda bl: bl["delisting"].update(steps=[]), "steps must be a non-empty list"),
        (lambda bl: bl.pop("delisting"), "a blocklist needs a [list.delisting] table"),
        (lambda bl: bl.pop("dqs_zone"), "supports_dqs needs dqs_zone"),
        (lambda bl: bl.update(ipv6="yes"), "ipv6 must be true or false"),
        (lambda bl: bl.update(zone="not a zone"), "is not a DNS name"),
        (lambda bl: bl.update(test_listed="300.1.1.1"), "test point '300.1.1.1'"),
    ],
)
def test_validation_reasons(change: Any, reason: str) -> None:
    error = _broken(change)
    assert any(reason in r for r in error.reasons), error.reasons
    assert isinstance(error, ValueError)


def test_duplicate_zone_and_unknown_top_level() -> None:
    data = copy.deepcopy(_raw())
    data["list"].append(copy.deepcopy(data["list"][0]))
    data["extra"] = 1
    with pytest.raises(BlocklistError) as info:
        parse_blocklists(data)
    assert any("appears twice" in r for r in info.value.reasons)
    assert any("unknown top-level" in r for r in info.value.reasons)


def test_bitmask_codes_must_be_single_bits() -> None:
    data = copy.deepcopy(_raw())
    surbl = next(bl for bl in data["list"] if bl["zone"] == "multi.surbl.org")
    surbl["codes"]["127.0.0.24"] = {"meaning": "two bits"}
    with pytest.raises(BlocklistError, match="single bits"):
        parse_blocklists(data)


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[list]\n")
    with pytest.raises(BlocklistError, match="not valid TOML"):
        load_blocklists(path)
