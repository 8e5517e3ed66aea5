"""The blocklist data file (``checks/blocklists.toml``), loaded and validated into typed objects.

Example::

    >>> lists = load_blocklists()
    >>> zen = next(bl for bl in lists if bl.zone == "zen.spamhaus.org")
    >>> zen.codes["127.0.0.10"].policy
    True
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import dns.exception
import dns.name

__all__ = [
    "Blocklist",
    "BlocklistError",
    "Code",
    "Delisting",
    "ErrorCode",
    "Kind",
    "Target",
    "load_blocklists",
    "parse_blocklists",
]


class BlocklistError(ValueError):
    """The data file is wrong; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("invalid blocklist data:\n  " + "\n  ".join(reasons))
        self.reasons = tuple(reasons)


class Kind(StrEnum):
    BLOCK = "block"
    ALLOW = "allow"  # a hit is good news


class Target(StrEnum):
    IP = "ip"
    DOMAIN = "domain"


@dataclass(frozen=True)
class Code:
    """One return code of a list and what it means."""

    address: str
    meaning: str
    policy: bool = False  # a policy listing (Spamhaus PBL): warn, not spam
    good: bool = False  # a positive answer that is good news (HostKarma white)
    fix: str | None = None


@dataclass(frozen=True)
class ErrorCode:
    """A return code that says nothing about the address (refused, bad query)."""

    address: str
    reason: str
    fix: str


@dataclass(frozen=True)
class Delisting:
    url: str
    self_service: bool
    expiry: str
    paid_express: bool | str
    steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "self_service": self.self_service,
            "expiry": self.expiry,
            "paid_express": self.paid_express,
            "steps": list(self.steps),
        }


@dataclass(frozen=True)
class Blocklist:
    zone: str
    name: str
    operator: str
    kind: Kind
    target: Target
    test_unlisted: str
    test_listed: str | None  # None: no positive test point to rely on
    codes: Mapping[str, Code] = field(default_factory=lambda: MappingProxyType({}))
    errors: Mapping[str, ErrorCode] = field(default_factory=lambda: MappingProxyType({}))
    delisting: Delisting | None = None
    ipv6: bool = False
    bitmask: bool = False
    refuses_public_resolvers: bool = False
    supports_dqs: bool = False
    dqs_zone: str | None = None
    notes: str | None = None


_LIST_KEYS = {
    "zone", "name", "operator", "kind", "target", "ipv6", "bitmask", "refuses_public_resolvers",
    "supports_dqs", "dqs_zone", "test_listed", "test_unlisted", "probe_listed", "codes", "errors",
    "delisting", "notes",
}  # fmt: skip
_REQUIRED = {"zone", "name", "operator", "kind", "target"}
_CODE_KEYS = {"meaning", "policy", "good", "fix"}
_ERROR_KEYS = {"reason", "fix"}
_DELIST_KEYS = {"url", "self_service", "expiry", "paid_express", "steps"}
_E = TypeVar("_E", bound=StrEnum)
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def load_blocklists(path: str | Path | None = None) -> tuple[Blocklist, ...]:
    """Load and validate the data file (default: the one shipped in the package)."""
    if path is None:
        text = resources.files("mailmend.checks").joinpath("blocklists.toml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BlocklistError([f"not valid TOML: {exc}"]) from None
    return parse_blocklists(data)


def parse_blocklists(data: Mapping[str, Any]) -> tuple[Blocklist, ...]:
    """Validate parsed TOML; raises BlocklistError with every reason found."""
    reasons: list[str] = []
    if set(data) - {"list"}:
        reasons.append(f"unknown top-level keys: {sorted(set(data) - {'list'})}")
    entries = data.get("list", [])
    if not isinstance(entries, list) or not entries:
        raise BlocklistError([*reasons, "expected one or more [[list]] tables"])
    lists = [_parse_list(i, entry, reasons) for i, entry in enumerate(entries)]
    zones = [bl.zone for bl in lists if bl is not None]
    reasons += [f"zone {z} appears twice" for z in sorted({z for z in zones if zones.count(z) > 1})]
    if reasons:
        raise BlocklistError(reasons)
    return tuple(bl for bl in lists if bl is not None)


def _parse_list(index: int, entry: Any, reasons: list[str]) -> Blocklist | None:
    where = f"list #{index + 1}"
    if not isinstance(entry, dict):
        reasons.append(f"{where}: not a table")
        return None
    where = f"list {entry.get('zone', '#' + str(index + 1))}"
    before = len(reasons)
    _check_keys(where, entry, _LIST_KEYS, _REQUIRED, reasons)
    if len(reasons) > before:
        return None
    zone = _zone(where, entry["zone"], reasons)
    kind = _enum(where, "kind", entry["kind"], Kind, reasons)
    target = _enum(where, "target", entry["target"], Target, reasons)
    flags = {k: _bool(where, k, entry.get(k, False), reasons) for k in _FLAGS}
    codes = _codes(where, entry.get("codes", {}), flags["bitmask"], reasons)
    errors = _errors(where, entry.get("errors", {}), reasons)
    delisting = _delisting(where, entry.get("delisting"), reasons)
    dqs_zone = _dqs_zone(where, entry, flags["supports_dqs"], reasons)
    if kind is Kind.BLOCK and delisting is None:
        reasons.append(f"{where}: a blocklist needs a [list.delisting] table")
    if kind is None or target is None or len(reasons) > before:
        return None
    unlisted, listed = _test_points(where, entry, target, reasons)
    return Blocklist(
        zone=zone, name=_text(where, "name", entry["name"], reasons),
        operator=_text(where, "operator", entry["operator"], reasons), kind=kind, target=target,
        test_unlisted=unlisted, test_listed=listed, codes=MappingProxyType(codes),
        errors=MappingProxyType(errors), delisting=delisting, dqs_zone=dqs_zone,
        notes=entry.get("notes"), **flags,
    )  # fmt: skip


_FLAGS = ("ipv6", "bitmask", "refuses_public_resolvers", "supports_dqs")


def _check_keys(
    where: str, table: Mapping[str, Any], allowed: set[str], required: set[str], reasons: list[str]
) -> None:
    if unknown := sorted(set(table) - allowed):
        reasons.append(f"{where}: unknown keys {unknown}")
    if missing := sorted(required - set(table)):
        reasons.append(f"{where}: missing keys {missing}")


def _text(where: str, key: str, value: Any, reasons: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        reasons.append(f"{where}: {key} must be a non-empty string")
        return ""
    return value


def _bool(where: str, key: str, value: Any, reasons: list[str]) -> bool:
    if not isinstance(value, bool):
        reasons.append(f"{where}: {key} must be true or false")
        return False
    return value


def _enum(where: str, key: str, value: Any, enum: type[_E], reasons: list[str]) -> _E | None:
    try:
        return enum(value)
    except ValueError:
        reasons.append(f"{where}: {key} must be one of {[e.value for e in enum]}, not {value!r}")
        return None


def _zone(where: str, value: Any, reasons: list[str]) -> str:
    text = _text(where, "zone", value, reasons)
    if text and not _is_hostname(text):
        reasons.append(f"{where}: zone {text!r} is not a DNS name")
    return text.lower().rstrip(".")


def _is_hostname(text: str) -> bool:
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException:
        return False
    return len(name.labels) > 2 and all(
        label.replace(b"-", b"").replace(b"_", b"").isalnum() for label in name.labels[:-1]
    )


def _code_address(where: str, address: str, reasons: list[str]) -> bool:
    try:
        ok = ipaddress.IPv4Address(address) in _LOOPBACK
    except ValueError:
        ok = False
    if not ok:
        reasons.append(f"{where}: code {address!r} is not an IPv4 address in 127.0.0.0/8")
    return ok


def _codes(where: str, table: Any, bitmask: bool, reasons: list[str]) -> dict[str, Code]:
    out: dict[str, Code] = {}
    if not isinstance(table, dict):
        reasons.append(f"{where}: codes must be a table")
        return out
    for address, spec in table.items():
        here = f"{where} code {address}"
        if not _code_address(where, address, reasons) or not isinstance(spec, dict):
            continue
        _check_keys(here, spec, _CODE_KEYS, {"meaning"}, reasons)
        code = Code(
            address, _text(here, "meaning", spec.get("meaning"), reasons),
            _bool(here, "policy", spec.get("policy", False), reasons),
            _bool(here, "good", spec.get("good", False), reasons), spec.get("fix"),
        )  # fmt: skip
        if code.policy and code.good:
            reasons.append(f"{here}: policy and good cannot both be true")
        if code.policy and not code.fix:
            reasons.append(f"{here}: a policy code needs a fix")
        last = int(address.rsplit(".", 1)[1])
        if bitmask and (last == 0 or last & (last - 1)):
            reasons.append(f"{here}: a bitmask list's codes must be single bits")
        out[address] = code
    return out


def _errors(where: str, table: Any, reasons: list[str]) -> dict[str, ErrorCode]:
    out: dict[str, ErrorCode] = {}
    if not isinstance(table, dict):
        reasons.append(f"{where}: errors must be a table")
        return out
    for address, spec in table.items():
        here = f"{where} error {address}"
        if not _code_address(where, address, reasons) or not isinstance(spec, dict):
            continue
        _check_keys(here, spec, _ERROR_KEYS, _ERROR_KEYS, reasons)
        out[address] = ErrorCode(
            address,
            _text(here, "reason", spec.get("reason"), reasons),
            _text(here, "fix", spec.get("fix"), reasons),
        )
    return out


def _delisting(where: str, table: Any, reasons: list[str]) -> Delisting | None:
    if table is None:
        return None
    here = f"{where} delisting"
    if not isinstance(table, dict):
        reasons.append(f"{here}: must be a table")
        return None
    _check_keys(here, table, _DELIST_KEYS, _DELIST_KEYS, reasons)
    url = _text(here, "url", table.get("url"), reasons)
    if url and not url.startswith("https://"):
        reasons.append(f"{here}: url must start with https://")
    express = table.get("paid_express", False)
    if not isinstance(express, bool | str):
        reasons.append(f"{here}: paid_express must be true, false or a text")
    steps = table.get("steps", [])
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        reasons.append(f"{here}: steps must be a non-empty list of texts")
        steps = []
    return Delisting(
        url, _bool(here, "self_service", table.get("self_service"), reasons),
        _text(here, "expiry", table.get("expiry"), reasons), express, tuple(steps),
    )  # fmt: skip


def _dqs_zone(
    where: str, entry: Mapping[str, Any], supports: bool, reasons: list[str]
) -> str | None:
    value = entry.get("dqs_zone")
    if supports and value is None:
        reasons.append(f"{where}: supports_dqs needs dqs_zone")
    if value is None:
        return None
    if not supports:
        reasons.append(f"{where}: dqs_zone without supports_dqs = true")
    return _zone(where, value, reasons)


def _test_points(
    where: str, entry: Mapping[str, Any], target: Target, reasons: list[str]
) -> tuple[str, str | None]:
    default = ("127.0.0.1", "127.0.0.2") if target is Target.IP else ("invalid", "test")
    unlisted = entry.get("test_unlisted", default[0])
    listed = entry.get("test_listed", default[1])
    probe = _bool(where, "probe_listed", entry.get("probe_listed", True), reasons)
    for point in (unlisted, listed):
        if not isinstance(point, str) or not _valid_point(point, target):
            reasons.append(f"{where}: test point {point!r} is not a valid {target.value}")
    return unlisted, listed if probe else None


def _valid_point(point: str, target: Target) -> bool:
    if target is Target.IP:
        try:
            ipaddress.ip_address(point)
        except ValueError:
            return False
        return True
    try:
        dns.name.from_text(point)
    except dns.exception.DNSException:
        return False
    return True
