"""The fleet file (``fleet.toml``): which hosts mailmend manages and how.

:func:`load_fleet` / :func:`parse_fleet` read it, merge ``[defaults]`` < ``[groups.*]`` (in the
order a host lists them) < ``[hosts.*]``, and validate every value. All problems are collected
and raised together as one :class:`FleetError`; acceptable oddities (a private address, a host
without domains) become :attr:`Fleet.warnings`. Nothing here connects anywhere.

    >>> fleet = parse_fleet('''
    ... [hosts.mx1]
    ... ssh_host = "mx1.example.com"
    ... hostname = "mx1.example.com"
    ... public_ipv4 = "198.51.100.7"
    ... domains = [{ name = "example.com", selector = "mx1" }]
    ... ''')
    >>> fleet.hosts[0].rate_limit_per_minute
    5
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mailmend import rules as v
from mailmend.keys import (
    HOST_CHECKERS,
    HOST_KEYS,
    SHARED_KEYS,
    At,
    DomainSpec,
    Problem,
    Report,
    boolean,
    check_host_domains,
    checked_keys,
    string,
    table_of,
    unknown_key,
    validated,
)

__all__ = ["DomainSpec", "Fleet", "FleetError", "FleetSettings", "HostSpec", "Problem"]

DEFAULT_FLEET_FILE = "fleet.toml"
FLEET_ENV = "MAILMEND_FLEET"
#: Group names pyinfra uses itself: every host is in "mailmend" (mailmend.inventory) and in
#: "inventory" (pyinfra names a group after the inventory file, inventory.py).
RESERVED_GROUP_NAMES = frozenset({"mailmend", "inventory"})


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class HostSpec:
    """One VPS, with every level of the fleet file merged in and validated."""

    name: str
    ssh_host: str
    ssh_port: int = 22
    ssh_user: str = "root"
    ssh_key: str | None = None
    ssh_known_hosts_file: str | None = None
    hostname: str = ""
    public_ipv4: str | None = None
    public_ipv6: str | None = None
    domains: tuple[DomainSpec, ...] = ()
    rate_limit_per_minute: int = 5
    sender_limit_per_day: int | None = None  # per-sender daily quota (policyd-rate-limit)
    recipient_limit: int | None = None
    relay_host: str | None = None
    relay_credentials: str | None = None
    receives_mail: bool = False
    listen_address: str | None = None
    bind_address: str | None = None
    postfix_main_cf: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    #: "merge" (default): change only mailmend's parameters in a main.cf mailmend did not
    #: write; "replace": mailmend's whole-file template (the old file backed up)
    postfix_config: str = "merge"
    #: another MTA (Exim, Sendmail, OpenSMTPD) on the host is replaced by Postfix only if true
    replace_mta: bool = False
    #: IPv6 sending: None checks the IPv6 PTR at each deploy (IPv4 only while it is wrong);
    #: False always IPv4; True both without checking
    send_ipv6: bool | None = None
    #: "opendkim": add OpenDKIM even where rspamd or amavis already signs (None: do not)
    dkim_signer: str | None = None
    groups: tuple[str, ...] = ()
    #: Where the VPS lives and how to reach its provider's API (``mailmend ptr``): the
    #: credentials are a reference (env:NAME / file:/path), never the token itself.
    vps_provider: str | None = None
    vps_credentials: str | None = None
    vps_endpoint: str | None = None


@dataclass(frozen=True)
class FleetSettings:
    """The ``[fleet]`` table."""

    sandbox: bool = False
    dmarc_report_address: str | None = None
    #: DNS resolvers the checks ask from the admin's machine, "IP" or "IP:PORT" (empty: the
    #: system's). ``mailmend check --fleet`` and ``deploys/check.py`` use them.
    nameservers: tuple[str, ...] = ()
    #: The host ``deploys/watch.py`` installs ``mailmend watch`` on (a [hosts.NAME] name).
    monitor_host: str | None = None


@dataclass(frozen=True)
class DnsSettings:
    """The ``[dns]`` table: the DNS provider ``records --apply --provider`` writes through.

    ``options`` are the provider's plain settings (dns-lexicon option names, e.g.
    ``pdns_server``); ``credentials`` maps option names to references (env:NAME, file:/path).
    """

    provider: str | None = None
    options: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    credentials: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)


@dataclass(frozen=True)
class Fleet:
    path: str
    settings: FleetSettings
    hosts: tuple[HostSpec, ...]
    warnings: tuple[Problem, ...]
    dns: DnsSettings = field(default_factory=DnsSettings)


class FleetError(Exception):
    """The fleet file cannot be used; ``str(err)`` lists one problem per line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


#: The keys of ``[fleet]``.
FLEET_KEYS: tuple[str, ...] = tuple(f.name for f in fields(FleetSettings))
#: The top-level tables.
TOP_LEVEL_KEYS: tuple[str, ...] = ("fleet", "defaults", "groups", "hosts", "dns")


@dataclass
class _Layer:
    """The validated values of one table; ``attempted`` also holds keys whose value was bad."""

    values: dict[str, object] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)


def _layer(raw: object, at: At, known: tuple[str, ...]) -> _Layer:
    layer = _Layer()
    table = table_of(raw, at)
    if table is None:
        return layer
    for key, value in table.items():
        if key == "groups" and "groups" not in known:
            at.sub(key).error("groups can only be listed in a [hosts.NAME] table")
        elif key not in known:
            unknown_key(at.sub(key), key, list(known))
        else:
            layer.attempted.add(key)
            checked = HOST_CHECKERS[key](value, at.sub(key))
            if checked is not None:
                layer.values[key] = checked
    return layer


# -- the file -----------------------------------------------------------------------------


def _settings(raw: object, report: Report) -> FleetSettings:
    at = At(report, None, "fleet")
    table = table_of(raw, at)
    if table is None:
        return FleetSettings()
    table = checked_keys(table, at, list(FLEET_KEYS))
    sandbox = boolean(table["sandbox"], at.sub("sandbox")) if "sandbox" in table else None
    address = None
    if "dmarc_report_address" in table:
        check = validated(v.email_problem, v.normalize_email)
        address = check(table["dmarc_report_address"], at.sub("dmarc_report_address"))
    servers = (
        _nameservers(table["nameservers"], at.sub("nameservers")) if "nameservers" in table else ()
    )
    if sandbox and "nameservers" not in table:
        # A sandbox fleet's zones and blocklist copies live on its own DNS server: asking this
        # machine's resolvers would send sandbox and blocklist queries off the machine.
        at.sub("nameservers").error(
            'a sandbox fleet must name its DNS server (nameservers = ["127.B.9.53"]); '
            "regenerate it with `python -m sandbox down` then `python -m sandbox up`"
        )
    monitor = None
    if "monitor_host" in table:
        monitor = validated(v.inventory_name_problem)(table["monitor_host"], at.sub("monitor_host"))
    return FleetSettings(
        sandbox=bool(sandbox),
        dmarc_report_address=_opt_str(address),
        nameservers=servers or (),
        monitor_host=_opt_str(monitor),
    )


def _dns(raw: object, report: Report) -> DnsSettings:
    at = At(report, None, "dns")
    table = table_of(raw, at)
    if table is None:
        return DnsSettings()
    table = checked_keys(table, at, ["provider", "options", "credentials"])
    provider = None
    if "provider" in table:
        provider = validated(v.option_name_problem)(table["provider"], at.sub("provider"))
    maps: dict[str, dict[str, str]] = {}
    for key, value_problem in (
        ("options", lambda s: None),
        ("credentials", v.secret_reference_problem),
    ):
        maps[key] = {}
        sub = table_of(table.get(key, {}), at.sub(key)) or {}
        for name, raw_value in sub.items():
            reason = v.option_name_problem(name)
            if reason:
                at.sub(key).error(reason)
                continue
            checked = _opt_str(validated(value_problem)(raw_value, at.sub(key).sub(name)))
            if checked is not None:
                maps[key][name] = checked
    if (maps["options"] or maps["credentials"]) and provider is None:
        at.sub("provider").error('missing: name the provider, like provider = "powerdns"')
    return DnsSettings(
        provider=_opt_str(provider),
        options=MappingProxyType(maps["options"]),
        credentials=MappingProxyType(maps["credentials"]),
    )


def _nameservers(raw: object, at: At) -> tuple[str, ...] | None:
    """``["IP", "IP:PORT", "[IPv6]:PORT"]``: resolvers the checks ask, IP literals only."""
    from mailmend.checks.nameservers import parse_nameserver

    if not isinstance(raw, list) or not raw:
        at.error(f'must be a non-empty array like ["127.0.0.1", "192.0.2.53:5353"], not {raw!r}')
        return None
    out = []
    for i, item in enumerate(raw):
        text = string(item, at.sub(f"[{i}]"))
        if text is None:
            return None
        try:
            out.append(str(parse_nameserver(text)))
        except ValueError as err:
            at.sub(f"[{i}]").error(str(err))
            return None
    return tuple(out)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _groups(raw: object, report: Report) -> dict[str, _Layer]:
    at = At(report, None, "groups")
    table = table_of(raw, at)
    if table is None:
        return {}
    layers = {}
    for name, body in table.items():
        reason = v.inventory_name_problem(name)
        if name in RESERVED_GROUP_NAMES:
            reason = f"{name!r} is reserved: every host is already in the group {name!r}"
        if reason:
            at.sub(name).error(reason)
            continue
        layers[name] = _layer(body, at.sub(name), SHARED_KEYS)
    return layers


def _merge(layers: list[_Layer]) -> tuple[dict[str, Any], set[str]]:
    merged: dict[str, Any] = {}
    attempted: set[str] = set()
    for layer in layers:
        attempted |= layer.attempted
        for key, value in layer.values.items():
            if key == "postfix_main_cf" and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged, attempted


def _host(
    name: str, raw: object, defaults: _Layer, groups: dict[str, _Layer], report: Report
) -> tuple[HostSpec | None, dict[str, Any]]:
    at = At(report, name, None)
    own = _layer(raw, at, HOST_KEYS)
    layers = [defaults]
    own_groups = own.values.get("groups", ())
    assert isinstance(own_groups, tuple)
    for group in own_groups:
        if group in groups:
            layers.append(groups[group])
        else:
            defined = ", ".join(groups) or "none"
            at.sub("groups").error(f"group {group!r} is not defined (defined groups: {defined})")
    merged, attempted = _merge([*layers, own])
    for key, example in (("ssh_host", "203.0.113.7"), ("hostname", "mx1.example.com")):
        if key not in attempted:
            at.sub(key).error(f'missing: every host needs {key}, like {key} = "{example}"')
    if not {"public_ipv4", "public_ipv6"} & attempted:
        at.sub("public_ipv4").error("missing: every host needs public_ipv4 or public_ipv6")
    if merged.get("domains") == () or "domains" not in attempted:
        at.sub("domains").warn("sends for no domain: no DKIM signing")
    if "relay_credentials" in merged and "relay_host" not in merged:
        at.sub("relay_credentials").warn("ignored: no relay_host is set")
    if "vps_credentials" in merged and "vps_provider" not in merged:
        at.sub("vps_credentials").warn("ignored: no vps_provider is set")
    check_host_domains(merged.get("domains", ()), at.sub("domains"))
    if not {"ssh_host", "hostname"} <= merged.keys():
        return None, merged
    frozen = dict(merged)
    if "postfix_main_cf" in frozen:
        frozen["postfix_main_cf"] = MappingProxyType(frozen["postfix_main_cf"])
    return HostSpec(name=name, **frozen), merged


_UNIQUE = {
    "ssh_host": "ssh_host and ssh_port",
    "hostname": "hostname",
    "public_ipv4": "public_ipv4",
    "public_ipv6": "public_ipv6",
}


def _check_fleet(hosts: dict[str, dict[str, Any]], report: Report) -> None:
    """Values that must be unique across hosts (checked on whatever parts of a host are valid)."""
    owners: dict[tuple[str, object], str] = {}
    for name, merged in hosts.items():
        at = At(report, name, None)
        keys: list[tuple[str, object]] = [
            ("ssh_host", (merged.get("ssh_host"), merged.get("ssh_port", 22))),
            ("hostname", merged.get("hostname")),
            ("public_ipv4", merged.get("public_ipv4")),
            ("public_ipv6", merged.get("public_ipv6")),
        ]
        for key, value in keys:
            if value is None or value == (None, merged.get("ssh_port", 22)):
                continue
            other = owners.setdefault((key, value), name)
            if other != name:
                at.sub(key).error(f"same {_UNIQUE[key]} as host {other!r}")
        for i, domain in enumerate(merged.get("domains", ())):
            other = owners.setdefault(("dkim", domain), name)
            if other != name:
                at.sub(f"domains[{i}]").error(
                    f"host {other!r} also sends for {domain.name} with selector "
                    f"{domain.selector!r}: they would publish conflicting DKIM keys; "
                    "give each host its own selector"
                )


def _check_group_names(
    groups: dict[str, _Layer], hosts: Mapping[str, object], report: Report
) -> None:
    for group in groups:
        if group in hosts:
            At(report, None, f"groups.{group}").error(
                f"a group cannot have the same name as host {group!r} (pyinfra --limit)"
            )


def _check_monitor_host(name: str | None, hosts: Mapping[str, object], report: Report) -> None:
    if name is None or name in hosts:
        return
    close = difflib.get_close_matches(name, list(hosts), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"hosts: {', '.join(hosts) or 'none'}"
    At(report, None, "fleet.monitor_host").error(f"{name!r} is not a host of this fleet; {hint}")


def validate_fleet_data(data: Mapping[str, Any], path: str = DEFAULT_FLEET_FILE) -> Fleet:
    """Validate an already-decoded fleet file (the dict ``tomllib`` returns)."""
    report = Report(path)
    top = At(report, None, None)
    table = checked_keys(dict(data), top, list(TOP_LEVEL_KEYS))
    settings = _settings(table.get("fleet", {}), report)
    report.sandbox = settings.sandbox
    dns_settings = _dns(table.get("dns", {}), report)
    defaults = _layer(table.get("defaults", {}), top.sub("defaults"), SHARED_KEYS)
    groups = _groups(table.get("groups", {}), report)
    hosts_at = top.sub("hosts")
    host_tables = table_of(table.get("hosts", {}), hosts_at) or {}
    if not host_tables and "hosts" in table and isinstance(table["hosts"], dict):
        hosts_at.error("is empty: add at least one [hosts.NAME] table")
    elif "hosts" not in table:
        hosts_at.error("missing: add at least one [hosts.NAME] table")
    hosts = []
    merged_hosts = {}
    for name, raw in host_tables.items():
        reason = v.inventory_name_problem(name)
        if reason:
            hosts_at.sub(name).error(reason)
            continue
        host, merged_hosts[name] = _host(name, raw, defaults, groups, report)
        if host is not None:
            hosts.append(host)
    _check_fleet(merged_hosts, report)
    _check_group_names(groups, merged_hosts, report)
    _check_monitor_host(settings.monitor_host, merged_hosts, report)
    if report.errors:
        raise FleetError(report.errors)
    return Fleet(path, settings, tuple(hosts), tuple(report.warnings), dns_settings)


def parse_fleet(text: str, path: str = DEFAULT_FLEET_FILE) -> Fleet:
    """Parse and validate the text of a fleet file; raises :class:`FleetError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FleetError([Problem(path, None, None, f"not valid TOML: {err}")]) from None
    return validate_fleet_data(data, path)


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read, parse and validate a fleet file; an unreadable file is a :class:`FleetError`."""
    name = os.fspath(path)
    try:
        text = Path(name).read_bytes().decode("utf-8")
    except OSError as err:
        raise FleetError([Problem(name, None, None, f"cannot read: {err.strerror}")]) from None
    except UnicodeDecodeError as err:
        message = f"not valid UTF-8 (byte {err.start})"
        raise FleetError([Problem(name, None, None, message)]) from None
    return parse_fleet(text, name)


def fleet_path_from_env() -> Path | None:
    """``$MAILMEND_FLEET`` (which must exist), else ``./fleet.toml`` if present, else None."""
    configured = os.environ.get(FLEET_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            message = f"${FLEET_ENV} names a fleet file that does not exist"
            raise FleetError([Problem(configured, None, None, message)])
        return path
    default = Path(DEFAULT_FLEET_FILE)
    return default if default.is_file() else None
