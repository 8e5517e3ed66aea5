"""DNS blocklist checks: is an IP or a domain listed, what the listing means, how to get off.

Each (subject, list) pair gives one :class:`CheckResult` with ``check="dnsbl"`` and
``extra = {"zone", "listed", "codes", "meaning", "delist", "list_kind"}``. The rules:

- NXDOMAIN: pass, not listed. A listing code: fail, with its meaning and delisting steps.
  A policy code (Spamhaus PBL): warn. An unknown 127.x code on a blocklist: fail, "unknown code".
- An error code (Spamhaus 127.255.255.254 "public resolver", ...): unknown, with reason and fix.
- An answer outside 127.0.0.0/8 (a resolver rewrote NXDOMAIN), TIMEOUT, SERVFAIL, REFUSED: unknown.
- An allowlist hit: pass, "listed on allowlist (good)"; allowlists never fail.
- A list that fails its test points (:func:`list_health`) is BROKEN: its answers do not count.
  :func:`check_ips` and :func:`check_domain` give no result on it (it is not the host's
  problem); :func:`list_problems` reports it once, for the run.

With a Spamhaus DQS key, lists that support it are asked under ``KEY.<dqs_zone>``; the key
never appears in any result.

Example::

    async with Engine(cfg) as eng:
        lists = load_blocklists()
        health = await list_health(eng, lists)
        results = await check_ip(eng, "203.0.113.7", lists, health=health)
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dns.exception
import dns.name
import dns.reversename

from mailmend.checks.blocklists import Blocklist, Code, Kind, Target
from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.result import CheckResult, ListProblem, Status

__all__ = [
    "Health",
    "ListHealth",
    "check_domain",
    "check_ip",
    "check_ips",
    "judge",
    "list_health",
    "list_problems",
    "query_name",
    "validate_dqs_key",
]

CHECK = "dnsbl"
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_DQS_KEY = re.compile(r"[A-Za-z0-9]{16,64}")
_REDACTED = "<DQS-KEY>"
_BROKEN_FIX = (
    "Nothing to fix on the host: the list answers for every address, so it says nothing "
    "about this one. If it stays broken, drop it from checks/blocklists.toml."
)
_BROKEN_LIST_FIX = (
    "Nothing to fix on the hosts: its answers are ignored for every host, which are checked "
    "on the other lists. If it stays broken, drop it from checks/blocklists.toml."
)


class Health(StrEnum):
    OK = "ok"
    BROKEN = "broken"  # answers for its negative test point, or not for its positive one
    REFUSED = "refused"  # answered with an error code (public resolver, rate limit)
    REWRITTEN = "rewritten"  # a resolver rewrote NXDOMAIN into an address
    UNREACHABLE = "unreachable"  # TIMEOUT, SERVFAIL, REFUSED


@dataclass(frozen=True)
class ListHealth:
    zone: str
    health: Health
    reason: str


# --- naming ------------------------------------------------------------------------------------


def validate_dqs_key(key: str) -> str:
    """A DQS key is one DNS label of letters and digits; the error never shows the key."""
    if not _DQS_KEY.fullmatch(key):
        raise ValueError("the Spamhaus DQS key must be 16-64 letters and digits")
    return key


def _query_zone(bl: Blocklist, dqs_key: str | None) -> str:
    if dqs_key and bl.supports_dqs and bl.dqs_zone:
        return f"{dqs_key}.{bl.dqs_zone}"
    return bl.zone


#: RFC 5782 3.5: the IPv6 test point a list must not list.
IPV6_TEST_UNLISTED = "::ffff:7f00:1"


def query_name(bl: Blocklist, subject: str, dqs_key: str | None = None) -> str:
    """The absolute name to ask: reversed octets or nibbles for IPs, the name for domains."""
    origin = dns.name.from_text(_query_zone(bl, dqs_key))
    if bl.target is Target.IP and ipaddress.ip_address(subject).version == 6:
        # Nibbles from the stdlib: dnspython turns an IPv4-mapped address (RFC 5782's IPv6
        # test points ::FFFF:7F00:1/2) into an IPv4 name.
        nibbles = ipaddress.IPv6Address(subject).reverse_pointer.removesuffix(".ip6.arpa")
        name = dns.name.from_text(nibbles, origin=origin)
    elif bl.target is Target.IP:
        name = dns.reversename.from_address(subject, v4_origin=origin, v6_origin=origin)
    else:
        name = dns.name.from_text(subject.rstrip("."), origin=origin)
    return str(name.to_text())


def _redact(text: str, dqs_key: str | None) -> str:
    return text.replace(dqs_key, _REDACTED) if dqs_key else text


def _normalize_domain(domain: str) -> str:
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a domain name: {domain!r} ({exc})") from None
    if len(name.labels) < 3:  # at least two labels plus the root
        raise ValueError(f"not a registered domain name: {domain!r}")
    return str(name.to_text(omit_final_dot=True)).lower()


# --- asking ------------------------------------------------------------------------------------


async def _ask(resolver: Resolver, names: Sequence[str]) -> list[DnsAnswer]:
    return await resolver.query_many([(name, "A") for name in names])


def _applies(bl: Blocklist, target: Target, version: int = 4) -> bool:
    return bl.target is target and (version == 4 or bl.ipv6)


async def check_ips(
    resolver: Resolver,
    ips: Iterable[str],
    lists: Sequence[Blocklist],
    dqs_key: str | None = None,
    health: Mapping[str, ListHealth] | None = None,
) -> dict[str, list[CheckResult]]:
    """Check many IPs in one batch (fleets). IPv4 and IPv6; IPv6 only on lists that take it."""
    if dqs_key is not None:
        validate_dqs_key(dqs_key)
    pairs: list[tuple[str, Blocklist]] = []
    for ip in ips:
        text = str(ipaddress.ip_address(ip))  # ValueError for a bad address
        version = ipaddress.ip_address(ip).version
        pairs += [
            (text, bl)
            for bl in lists
            if _applies(bl, Target.IP, version) and not _broken(health, bl)
        ]
    answers = await _ask(resolver, [query_name(bl, ip, dqs_key) for ip, bl in pairs])
    out: dict[str, list[CheckResult]] = {str(ipaddress.ip_address(ip)): [] for ip in ips}
    for (ip, bl), answer in zip(pairs, answers, strict=True):
        out[ip].append(judge(bl, ip, answer, _health(health, bl), dqs_key))
    return out


async def check_ip(
    resolver: Resolver,
    ip: str,
    lists: Sequence[Blocklist],
    dqs_key: str | None = None,
    health: Mapping[str, ListHealth] | None = None,
) -> list[CheckResult]:
    """Check one IP against every IP list that covers its address family."""
    results = await check_ips(resolver, [ip], lists, dqs_key, health)
    return results[str(ipaddress.ip_address(ip))]


async def check_domain(
    resolver: Resolver,
    domain: str,
    lists: Sequence[Blocklist],
    dqs_key: str | None = None,
    health: Mapping[str, ListHealth] | None = None,
) -> list[CheckResult]:
    """Check a domain against every domain list."""
    if dqs_key is not None:
        validate_dqs_key(dqs_key)
    subject = _normalize_domain(domain)
    chosen = [bl for bl in lists if _applies(bl, Target.DOMAIN) and not _broken(health, bl)]
    answers = await _ask(resolver, [query_name(bl, subject, dqs_key) for bl in chosen])
    return [
        judge(bl, subject, answer, _health(health, bl), dqs_key)
        for bl, answer in zip(chosen, answers, strict=True)
    ]


def _health(health: Mapping[str, ListHealth] | None, bl: Blocklist) -> ListHealth | None:
    return None if health is None else health.get(bl.zone)


def _broken(health: Mapping[str, ListHealth] | None, bl: Blocklist) -> bool:
    found = _health(health, bl)
    return found is not None and found.health is Health.BROKEN


def list_problems(
    lists: Sequence[Blocklist], health: Mapping[str, ListHealth]
) -> list[ListProblem]:
    """The broken lists of a run, for its fleet-level ``lists`` section."""
    return [
        ListProblem(bl.zone, bl.name, Health.BROKEN.value, found.reason, _BROKEN_LIST_FIX)
        for bl in lists
        if (found := _health(health, bl)) is not None and found.health is Health.BROKEN
    ]


# --- list health -------------------------------------------------------------------------------


async def list_health(
    resolver: Resolver, lists: Sequence[Blocklist], dqs_key: str | None = None
) -> dict[str, ListHealth]:
    """Probe every list's test points once: the negative one must not be listed, the
    positive one (when the list has one we trust) must be."""
    if dqs_key is not None:
        validate_dqs_key(dqs_key)
    probes: list[tuple[Blocklist, bool, str]] = []
    for bl in lists:
        probes.append((bl, False, bl.test_unlisted))
        if bl.test_listed is not None:
            probes.append((bl, True, bl.test_listed))
        if bl.ipv6 and bl.target is Target.IP:
            # RFC 5782 3.5: ::FFFF:7F00:1 must not be listed either; a list that wildcards
            # only its IPv6 names would otherwise pass its IPv4 test points.
            probes.append((bl, False, IPV6_TEST_UNLISTED))
    names = [query_name(bl, point, dqs_key) for bl, _positive, point in probes]
    answers = await _ask(resolver, names)
    by_zone: dict[str, list[tuple[bool, str, DnsAnswer]]] = {bl.zone: [] for bl in lists}
    for (bl, positive, point), answer in zip(probes, answers, strict=True):
        by_zone[bl.zone].append((positive, point, answer))
    return {bl.zone: _judge_health(bl, by_zone[bl.zone]) for bl in lists}


def _judge_health(bl: Blocklist, probes: list[tuple[bool, str, DnsAnswer]]) -> ListHealth:
    verdicts = [_probe_verdict(bl, positive, point, answer) for positive, point, answer in probes]
    order = (Health.REWRITTEN, Health.REFUSED, Health.BROKEN, Health.UNREACHABLE)
    for health in order:
        for verdict, reason in verdicts:
            if verdict is health:
                return ListHealth(bl.zone, health, reason)
    return ListHealth(bl.zone, Health.OK, "answers its test points as RFC 5782 says")


def _probe_verdict(
    bl: Blocklist, positive: bool, point: str, answer: DnsAnswer
) -> tuple[Health, str]:
    if not answer.ok:
        return Health.UNREACHABLE, f"no answer for test point {point} ({answer.rcode})"
    addresses = _addresses(answer.records)
    if addresses is None:
        return Health.REWRITTEN, "a resolver rewrote NXDOMAIN: test answers outside 127.0.0.0/8"
    if addresses and all(a in bl.errors for a in addresses):
        return Health.REFUSED, bl.errors[addresses[0]].reason
    if positive and not addresses:
        return Health.BROKEN, f"list is broken/wildcarding: test point {point} is not listed"
    if not positive and addresses:
        return Health.BROKEN, f"list is broken/wildcarding: it lists test point {point}"
    return Health.OK, ""


def _addresses(records: Sequence[str]) -> list[str] | None:
    """The answer's addresses, or None when one is not in 127.0.0.0/8."""
    out = []
    for record in records:
        try:
            address = ipaddress.ip_address(record)
        except ValueError:
            return None
        if address.version != 4 or address not in _LOOPBACK:
            return None
        out.append(str(address))
    return out


# --- judging one answer ------------------------------------------------------------------------


def judge(
    bl: Blocklist,
    subject: str,
    answer: DnsAnswer,
    health: ListHealth | None = None,
    dqs_key: str | None = None,
) -> CheckResult:
    """Turn one list's answer about ``subject`` into a result (see the module's rules)."""
    result = _Builder(bl, subject, dqs_key)
    if health is not None and health.health is Health.BROKEN:
        return result.unknown(f"{bl.name}: list is broken/wildcarding, its answer is ignored",
                              (health.reason,), _BROKEN_FIX)  # fmt: skip
    if answer.rcode is Rcode.NXDOMAIN or (answer.rcode is Rcode.NOERROR and not answer.records):
        return result.not_listed()
    if not answer.ok:
        return result.unknown(
            f"{bl.name} gave no usable answer for {subject} ({answer.rcode})",
            fix="Check that the resolver is reachable and recursive, or try again later.",
        )
    addresses = _addresses(answer.records)
    if addresses is None:
        return result.unknown(
            f"{bl.name}: a resolver rewrote NXDOMAIN (answer {', '.join(answer.records)} is "
            "outside 127.0.0.0/8)",
            fix="Use a resolver that does not rewrite NXDOMAIN, e.g. a local unbound.",
        )
    errors = [bl.errors[a] for a in addresses if a in bl.errors]
    if errors:
        return result.unknown(f"{bl.name} did not answer about {subject}: {errors[0].reason}",
                              fix=errors[0].fix, codes=addresses)  # fmt: skip
    return _judge_codes(result, addresses)


def _judge_codes(result: _Builder, addresses: list[str]) -> CheckResult:
    bl = result.bl
    codes = _decode(bl, addresses)
    if bl.kind is Kind.ALLOW:
        return result.allowlisted(addresses, codes)
    known = [c for _, c in codes if c is not None]
    bad = [c for c in known if not c.policy and not c.good]
    policy = [c for c in known if c.policy]
    if bad or len(known) < len(codes):
        return result.listed(addresses, codes)
    if policy:
        return result.policy(addresses, policy)
    return result.good(addresses, known)


def _decode(bl: Blocklist, addresses: list[str]) -> list[tuple[str, Code | None]]:
    """Each answer's code (None when unknown); a bitmask list's answers split into bits."""
    if not bl.bitmask:
        return [(a, bl.codes.get(a)) for a in addresses]
    out: list[tuple[str, Code | None]] = []
    for address in addresses:
        last = int(address.rsplit(".", 1)[1])
        bits = [f"127.0.0.{1 << i}" for i in range(8) if last & (1 << i)] or [address]
        out += [(bit, bl.codes.get(bit)) for bit in bits]
    return out


class _Builder:
    """Makes the CheckResults of one (subject, list) pair with the common fields."""

    def __init__(self, bl: Blocklist, subject: str, dqs_key: str | None) -> None:
        self.bl = bl
        self.subject = subject
        self.dqs_key = dqs_key

    def _make(
        self, status: Status, summary: str, *, listed: bool = False, codes: Sequence[str] = (),
        meaning: str | None = None, details: Sequence[str] = (), fix: str | None = None,
        delist: bool = False,
    ) -> CheckResult:  # fmt: skip
        redact = self.dqs_key
        extra: dict[str, Any] = {
            "zone": self.bl.zone,
            "listed": listed,
            "codes": list(codes),
            "meaning": meaning,
            "delist": self.bl.delisting.to_json() if delist and self.bl.delisting else None,
            "list_kind": self.bl.kind.value,
        }
        return CheckResult(
            check=CHECK, status=status, subject=self.subject, summary=_redact(summary, redact),
            details=tuple(_redact(d, redact) for d in details),
            fix=_redact(fix, redact) if fix else None, extra=extra,
        )  # fmt: skip

    def unknown(
        self, summary: str, details: Sequence[str] = (), fix: str | None = None,
        codes: Sequence[str] = (),
    ) -> CheckResult:  # fmt: skip
        return self._make(Status.UNKNOWN, summary, details=details, fix=fix, codes=codes)

    def not_listed(self) -> CheckResult:
        where = "allowlist " if self.bl.kind is Kind.ALLOW else ""
        return self._make(Status.PASS, f"{self.subject} is not listed on {where}{self.bl.name}")

    def allowlisted(
        self, addresses: list[str], codes: list[tuple[str, Code | None]]
    ) -> CheckResult:
        meaning = "; ".join(c.meaning for _, c in codes if c is not None) or None
        summary = f"{self.subject} is listed on allowlist {self.bl.name} (good)"
        return self._make(Status.PASS, summary, listed=True, codes=addresses, meaning=meaning)

    def listed(self, addresses: list[str], codes: list[tuple[str, Code | None]]) -> CheckResult:
        meaning = "; ".join(c.meaning if c else f"unknown code {a}" for a, c in codes)
        return self._make(
            Status.FAIL, f"{self.subject} is listed on {self.bl.name}: {meaning}", listed=True,
            codes=addresses, meaning=meaning, fix=self._delist_fix(), delist=True,
        )  # fmt: skip

    def policy(self, addresses: list[str], codes: list[Code]) -> CheckResult:
        meaning = "; ".join(c.meaning for c in codes)
        fix = " ".join(c.fix for c in codes if c.fix) or self._delist_fix()
        return self._make(
            Status.WARN, f"{self.subject} has a policy listing on {self.bl.name}: {meaning}",
            listed=True, codes=addresses, meaning=meaning, fix=fix, delist=True,
        )  # fmt: skip

    def good(self, addresses: list[str], codes: list[Code]) -> CheckResult:
        meaning = "; ".join(c.meaning for c in codes)
        summary = f"{self.subject} is not on {self.bl.name}'s blocklist ({meaning})"
        return self._make(Status.PASS, summary, codes=addresses, meaning=meaning)

    def _delist_fix(self) -> str | None:
        delisting = self.bl.delisting
        if delisting is None:
            return None
        steps = " ".join(delisting.steps)
        return steps if delisting.url in steps else f"{steps} ({delisting.url})"
