"""One checker per host key of the fleet file, and the problems they report.

The fleet loader (:mod:`mailmend.fleet`) runs these on every ``[defaults]``, ``[groups.*]``
and ``[hosts.*]`` table; the deploy (:mod:`mailmend.deploys.contexts`) runs the same
checkers on ``host.data`` (``group_data/`` and ``--data`` are a second way in), through
:func:`check_value`, and adds only its tuning keys. The per-value rules themselves (reasons,
never exceptions) are in :mod:`mailmend.rules`.

    >>> check_value("rate_limit_per_minute", 0)
    (None, [('rate_limit_per_minute', '0 is out of range: must be between 1 and 3600')])
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailmend import rules as v


@dataclass(frozen=True)
class DomainSpec:
    """A domain a host sends for, and the DKIM selector of that host's key for it."""

    name: str
    selector: str


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a fleet file."""

    file: str
    host: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [printable(self.file)]
        if self.host is not None:
            where.append(f"host {self.host!r}")
        if self.field is not None:
            where.append(printable(self.field))
        return ": ".join([*where, self.message])


def printable(text: str) -> str:
    """``text`` itself, or its repr if it holds a character that would break the line."""
    return text if v.is_safe_string(text, allow_space=True) else repr(text)


# -- collecting problems ------------------------------------------------------------------


@dataclass
class Report:
    file: str
    sandbox: bool = False
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class At:
    """Where a value sits: a host (or None for [fleet]/[defaults]/[groups]) and a field path."""

    report: Report
    host: str | None
    field: str | None

    def error(self, message: str) -> None:
        self.report.errors.append(Problem(self.report.file, self.host, self.field, message))

    def warn(self, message: str) -> None:
        self.report.warnings.append(Problem(self.report.file, self.host, self.field, message))

    def sub(self, name: str) -> At:
        joined = name if self.field is None or name.startswith("[") else f".{name}"
        return At(self.report, self.host, f"{self.field or ''}{joined}")


def unknown_key(at: At, key: str, known: list[str]) -> None:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    at.error(f"unknown key {key!r}; {hint}")


def table_of(raw: object, at: At) -> dict[str, object] | None:
    """A table with string keys, or None after reporting why not."""
    if not isinstance(raw, dict):
        at.error(f"must be a table, not a {v.type_name(raw)}")
        return None
    table: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(key, str):
            table[key] = value
        else:
            at.error(f"key {key!r} must be a string")
    return table


def checked_keys(table: Mapping[str, object], at: At, known: list[str]) -> dict[str, object]:
    """The entries of ``table`` whose key is known; every other key is reported."""
    kept = {}
    for key, value in table.items():
        if key in known:
            kept[key] = value
        else:
            unknown_key(at.sub(key), key, known)
    return kept


# -- value checkers: return the validated (normalised) value, or None after an error -------

Checker = Callable[[object, At], object]


def string(raw: object, at: At, *, allow_space: bool = False) -> str | None:
    if not isinstance(raw, str):
        at.error(f"must be a string, not a {v.type_name(raw)}")
        return None
    reason = v.unsafe_char_problem(raw, allow_space=allow_space)
    if reason:
        at.error(reason)
        return None
    return raw


def validated(
    problem: Callable[[str], str | None], normalize: Callable[[str], str] = str
) -> Checker:
    def check(raw: object, at: At) -> str | None:
        text = string(raw, at)
        if text is None:
            return None
        reason = problem(text)
        if reason:
            at.error(reason)
            return None
        return normalize(text)

    return check


def _integer(low: int, high: int | None = None) -> Checker:
    def check(raw: object, at: At) -> int | None:
        reason = v.int_problem(raw, low, high)
        if reason:
            at.error(reason)
            return None
        assert isinstance(raw, int)
        return raw

    return check


def boolean(raw: object, at: At) -> bool | None:
    reason = v.bool_problem(raw)
    if reason:
        at.error(reason)
        return None
    assert isinstance(raw, bool)
    return raw


def _one_of(*choices: str) -> Checker:
    def check(raw: object, at: At) -> str | None:
        if raw not in choices:
            at.error(f"must be one of {', '.join(repr(c) for c in choices)}, not {raw!r}")
            return None
        assert isinstance(raw, str)
        return raw

    return check


def _path(raw: object, at: At) -> str | None:
    text = string(raw, at)
    if text is None:
        return None
    if not text:
        at.error("must not be empty")
        return None
    expanded = os.path.expanduser(text)
    reason = v.unsafe_char_problem(expanded)
    if reason:
        at.error(f"after expanding '~': {reason}")
        return None
    return expanded


def _public_ip(version: int) -> Checker:
    def check(raw: object, at: At) -> str | None:
        text = string(raw, at)
        if text is None:
            return None
        reason = v.public_ip_problem(text, version, sandbox=at.report.sandbox)
        if reason:
            at.error(reason)
            return None
        warning = v.public_ip_warning(text, sandbox=at.report.sandbox)
        if warning:
            at.warn(warning)
        return v.canonical_ip(text)

    return check


def _domains(raw: object, at: At) -> tuple[DomainSpec, ...] | None:
    if not isinstance(raw, list):
        at.error(
            f'must be an array like [{{ name = "example.com", selector = "mx1" }}], '
            f"not a {v.type_name(raw)}"
        )
        return None
    specs = [_domain(item, at.sub(f"[{i}]")) for i, item in enumerate(raw)]
    if any(spec is None for spec in specs):
        return None
    return tuple(spec for spec in specs if spec is not None)


_DOMAIN_NAME = validated(lambda s: v.fqdn_problem(s, "example.com"), v.normalize_fqdn)
_SELECTOR = validated(v.selector_problem, str.lower)


def _domain(raw: object, at: At) -> DomainSpec | None:
    table = table_of(raw, at)
    if table is None:
        return None
    table = checked_keys(table, at, ["name", "selector"])
    for key in ("name", "selector"):
        if key not in table:
            at.sub(key).error(
                "missing: each domain needs name and selector, "
                'like { name = "example.com", selector = "mx1" }'
            )
    name = _DOMAIN_NAME(table["name"], at.sub("name")) if "name" in table else None
    selector = _SELECTOR(table["selector"], at.sub("selector")) if "selector" in table else None
    if not isinstance(name, str) or not isinstance(selector, str):
        return None
    reason = v.dkim_record_problem(selector, name)
    if reason:
        at.error(reason)
        return None
    return DomainSpec(name, selector)


def _postfix_main_cf(raw: object, at: At) -> dict[str, str] | None:
    table = table_of(raw, at)
    if table is None:
        return None
    settings: dict[str, str] = {}
    ok = True
    for key, value in table.items():
        reason = v.unsafe_char_problem(key) or v.postfix_key_problem(key)
        if reason:
            at.sub(key).error(reason)
            ok = False
            continue
        if not isinstance(value, str):
            at.sub(key).error(
                f"must be a string (main.cf values are text), not a {v.type_name(value)}"
            )
            ok = False
            continue
        reason = v.postfix_value_problem(value)
        if reason:
            at.sub(key).error(reason)
            ok = False
        else:
            settings[key] = value
    return settings if ok else None


def _group_list(raw: object, at: At) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        at.error(f'must be an array of group names like ["eu"], not a {v.type_name(raw)}')
        return None
    names = [
        validated(v.inventory_name_problem)(item, at.sub(f"[{i}]")) for i, item in enumerate(raw)
    ]
    result = tuple(n for n in names if isinstance(n, str))
    if len(result) != len(names):
        return None
    repeated = sorted({n for n in result if result.count(n) > 1})
    for name in repeated:
        at.error(f"group {name!r} is listed more than once")
    return None if repeated else result


HOST_CHECKERS: dict[str, Checker] = {
    "ssh_host": validated(v.ssh_host_problem, v.normalize_host_or_ip),
    "ssh_port": _integer(1, v.MAX_PORT),
    "ssh_user": validated(v.user_problem),
    "ssh_key": _path,
    "ssh_known_hosts_file": _path,
    "hostname": validated(v.fqdn_problem, v.normalize_fqdn),
    "public_ipv4": _public_ip(4),
    "public_ipv6": _public_ip(6),
    "domains": _domains,
    "rate_limit_per_minute": _integer(1, 3600),
    "sender_limit_per_day": _integer(1, 10_000_000),
    "recipient_limit": _integer(1),
    "relay_host": validated(v.relay_host_problem, v.normalize_relay_host),
    "relay_credentials": validated(v.relay_credentials_problem),
    "receives_mail": boolean,
    "listen_address": validated(v.ip_problem, v.canonical_ip),
    "bind_address": validated(v.ip_problem, v.canonical_ip),
    "postfix_main_cf": _postfix_main_cf,
    "postfix_config": _one_of("merge", "replace"),
    "replace_mta": boolean,
    "send_ipv6": boolean,
    "dkim_signer": _one_of("opendkim"),
    "groups": _group_list,
    "vps_provider": validated(v.vps_provider_problem),
    "vps_credentials": validated(v.secret_reference_problem),
    "vps_endpoint": validated(v.api_endpoint_problem),
}

#: The keys a ``[hosts.NAME]`` table accepts.
HOST_KEYS: tuple[str, ...] = tuple(HOST_CHECKERS)
#: The keys ``[defaults]`` and ``[groups.NAME]`` accept: those of a host except ``groups``.
SHARED_KEYS: tuple[str, ...] = tuple(k for k in HOST_KEYS if k != "groups")


def check_host_domains(domains: tuple[DomainSpec, ...], at: At) -> None:
    """One selector per domain per host: OpenDKIM's SigningTable signs a domain with one key.

    (To rotate a key, change the selector: the deploy makes a new key, the old one stays.)
    """
    seen: dict[str, str] = {}
    for i, domain in enumerate(domains):
        if domain.name in seen:
            earlier = seen[domain.name]
            what = (
                f"with selector {domain.selector!r} is listed twice"
                if earlier == domain.selector
                else f"is listed twice (selectors {earlier!r} and {domain.selector!r}); a host "
                "signs a domain with one DKIM key: keep one selector (to rotate a key, change it)"
            )
            at.sub(f"[{i}]").error(f"{domain.name} {what}")
        seen.setdefault(domain.name, domain.selector)


def check_value(
    key: str, raw: object, *, sandbox: bool = False
) -> tuple[Any, list[tuple[str, str]]]:
    """Run the fleet's checker of ``key`` on one value: (the normalised value, problems).

    Each problem is ``(field, reason)``, the field named as in the fleet file (``"hostname"``,
    ``"domains[0].name"``, ``"postfix_main_cf.smtpd_banner"``). Warnings are the fleet check's
    business and are not returned.
    """
    report = Report("", sandbox=sandbox)
    at = At(report, None, key)
    value = HOST_CHECKERS[key](raw, at)
    if key == "domains" and isinstance(value, tuple):
        check_host_domains(value, at)
    problems = [(printable(p.field or key), p.message) for p in report.errors]
    return (None if problems else value), problems
