"""SPF check (RFC 7208): one valid ``v=spf1`` record that authorises the host's IPs.

The parser is a set of small functions (record -> terms -> mechanism/modifier). The evaluator
walks the WHOLE record tree, so the DNS lookup count is the record's, not the one a lucky IP
that matches early would see: a record over the limit is broken for every sender.
Errors are a typed tree (:class:`SPFError`) turned into :class:`CheckResult` at the edge.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.result import CheckResult, Status, dns_unknown, worst
from mailmend.checks.spf_syntax import (  # the parser: re-exported, one import for callers
    ALL_MACRO_LETTERS,
    CHECK,
    DNS_MECHANISMS,
    DOMAIN_MACRO_LETTERS,
    MAX_LOOKUPS,
    MAX_MX_OR_PTR_NAMES,
    MAX_NAME,
    MAX_VOID_LOOKUPS,
    MECHANISMS,
    QUALIFIERS,
    IPAddress,
    Mechanism,
    SPFError,
    SPFMissingRecord,
    SPFMultipleRecords,
    SPFPermError,
    SPFRecord,
    SPFSyntaxError,
    SPFTempError,
    SPFTooManyLookups,
    SPFTooManyVoidLookups,
    check_domain_spec,
    check_macro_string,
    expand_macros,
    is_spf,
    parse_mechanism,
    parse_record,
    truncate_name,
    valid_domain,
)

# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """State of one walk over the record tree for one IP.

    ``sender`` and ``helo`` are the SMTP identities for ``%{s}``/``%{l}``/``%{o}`` and
    ``%{h}``; a checker has none, so they default to ``postmaster@DOMAIN`` and ``DOMAIN`` of the
    first record evaluated. An IPv4-mapped IPv6 address is evaluated as IPv4 (RFC 7208 5)."""

    resolver: Resolver
    ip: IPAddress
    sender: str = ""
    helo: str = ""
    lookups: int = 0
    voids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plus_all: list[str] = field(default_factory=list)
    assumed_identity: bool = False  # sender/HELO made up by the checker (no SMTP session)
    max_lookups: int = MAX_LOOKUPS  # raised only to ask what a record means, limit aside
    _validated: dict[str, bool] = field(default_factory=dict)
    _ptr_names: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.ip, ipaddress.IPv6Address) and self.ip.ipv4_mapped is not None:
            self.ip = self.ip.ipv4_mapped

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > self.max_lookups:
            raise SPFTooManyLookups

    async def query(self, name: str, rdtype: str, *, void_counts: bool = True) -> DnsAnswer:
        try:
            answer = await self.resolver.query(name, rdtype)
        except ValueError:
            raise SPFPermError(f"{name!r} is not a valid DNS name") from None
        if not answer.ok:
            raise SPFTempError(answer)
        if void_counts and not answer.exists:
            self.voids.append(f"{rdtype} {normalize_name(name)}")
            if len(self.voids) > MAX_VOID_LOOKUPS:
                raise SPFTooManyVoidLookups(self.voids)
        return answer

    async def validated_names(self, candidates: Callable[[str], bool]) -> list[str]:
        """RFC 7208 5.5: the PTR names of the IP (at most 10) that ``candidates`` keeps and
        whose addresses include the IP. A failed PTR lookup gives none; a name whose address
        lookup fails is skipped."""
        if self._ptr_names is None:
            try:
                answer = await self.resolver.query(reverse_name(str(self.ip)), "PTR")
            except ValueError:
                answer = DnsAnswer("", "PTR", Rcode.OTHER)
            names = [normalize_name(n) for n in answer.records] if answer.ok else []
            self._ptr_names = names[:MAX_MX_OR_PTR_NAMES]
        out: list[str] = []
        for name in self._ptr_names:
            if not candidates(name):
                continue
            if name not in self._validated:
                try:
                    back = await self.resolver.query(name + ".", _rdtype(self))
                except ValueError:
                    back = DnsAnswer(name, _rdtype(self), Rcode.OTHER)
                self._validated[name] = back.ok and any(_same(self.ip, r) for r in back.records)
            if self._validated[name]:
                out.append(name)
        return out

    async def expand(self, spec: str, domain: str) -> str:
        """Expand ``spec`` for ``domain`` (the current one); ``%{p}`` is looked up only when
        used. The result is cut to 253 characters on the left (RFC 7208 7.3)."""
        if self.assumed_identity and re.search(r"%\{[slh]", spec, re.IGNORECASE):
            note = (
                f"{spec} depends on the SMTP sender or HELO, which a checker does not have: "
                f"evaluated as sender {self.sender}, HELO {self.helo}; real mail from another "
                "sender or HELO may get a different result"
            )
            if note not in self.notes:
                self.notes.append(note)
        validated = "unknown"
        if re.search(r"%\{p", spec, re.IGNORECASE):
            validated = await self._p_macro(domain)
        return expand_macros(spec, self.ip, domain, self.sender, self.helo, validated)

    async def _p_macro(self, domain: str) -> str:
        """``%{p}`` (7.3): the domain itself if validated, else a subdomain, else any."""
        names = await self.validated_names(lambda _name: True)
        for wanted in (
            lambda n: n == domain,
            lambda n: n.endswith("." + domain),
            lambda n: True,
        ):
            for name in names:
                if wanted(name):
                    return name
        return "unknown"


@dataclass(frozen=True)
class Match:
    """The first term that matched the IP, and its result (pass, fail, softfail, neutral)."""

    result: str
    term: str
    domain: str


async def fetch_record(ev: Evaluation, domain: str) -> SPFRecord | None:
    """The one SPF record of ``domain`` (None if it has none); raises if it has several."""
    answer = await ev.query(domain + ".", "TXT")
    records = tuple(r for r in answer.records if is_spf(r))
    if len(records) > 1:
        raise SPFMultipleRecords(domain, records)
    return parse_record(records[0], domain) if records else None


async def evaluate(ev: Evaluation, domain: str, record: SPFRecord) -> Match | None:
    """Walk every term of ``record``; return the first term that matches ``ev.ip``."""
    if not ev.sender:
        ev.sender, ev.assumed_identity = f"postmaster@{domain}", True
    if not ev.helo:
        ev.helo, ev.assumed_identity = domain, True
    first: Match | None = None
    for mech in record.mechanisms:
        hit = await _matches(ev, domain, mech)
        if hit and first is None:
            first = Match(QUALIFIERS[mech.qualifier], mech.text, domain)
        if mech.kind == "all":
            if mech.qualifier == "+":
                ev.plus_all.append(domain)
            return first  # terms after all are never reached, and redirect is ignored
    if record.redirect is not None:
        ev.count_lookup()
        target = await _target(record.redirect, ev, domain)
        sub = await fetch_record(ev, target) if valid_domain(target) else None
        if sub is None:
            raise SPFMissingRecord(f"redirect={target} points at a domain with no SPF record")
        redirected = await evaluate(ev, target, sub)
        return first or redirected
    return first


async def _target(spec: str | None, ev: Evaluation, domain: str) -> str:
    if not spec:
        return domain
    return normalize_name(truncate_name(await ev.expand(spec, domain)))


async def _matches(ev: Evaluation, domain: str, mech: Mechanism) -> bool:
    if mech.kind == "all":
        return True
    if mech.kind in ("ip4", "ip6"):
        return mech.target is not None and ev.ip in _network(mech.target)
    ev.count_lookup()
    target = await _target(mech.target, ev, domain)
    if mech.kind == "include":
        return await _include(ev, target)
    if mech.kind == "exists":
        return (await ev.query(target + ".", "A")).exists
    if mech.kind == "a":
        return _in_addresses(ev, await ev.query(target + ".", _rdtype(ev)), mech)
    if mech.kind == "mx":
        return await _mx(ev, target, mech)
    return await _ptr(ev, target)


@functools.lru_cache(maxsize=4096)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


async def _include(ev: Evaluation, target: str) -> bool:
    sub = await fetch_record(ev, target)
    if sub is None:
        raise SPFMissingRecord(f"include:{target} points at a domain with no SPF record")
    found = await evaluate(ev, target, sub)
    return found is not None and found.result == "pass"


async def _mx(ev: Evaluation, target: str, mech: Mechanism) -> bool:
    answer = await ev.query(target + ".", "MX")
    hosts = [r.split()[-1] for r in answer.records if r.split()[-1] != "."]
    if len(hosts) > MAX_MX_OR_PTR_NAMES:
        raise SPFPermError(f"mx:{target} has more than {MAX_MX_OR_PTR_NAMES} MX hosts")
    found = await asyncio.gather(
        *(
            ev.query(h if h.endswith(".") else h + ".", _rdtype(ev), void_counts=False)
            for h in hosts
        )
    )
    return any(_in_addresses(ev, a, mech) for a in found)


async def _ptr(ev: Evaluation, target: str) -> bool:
    """RFC 7208 5.5: a validated PTR name equal to or under ``target`` matches; a failed PTR
    lookup is no match (not temperror), a failed address lookup skips that name."""
    ev.notes.append(f"the ptr mechanism is slow and discouraged (RFC 7208 5.5): in {target}")
    names = await ev.validated_names(lambda n: n == target or n.endswith("." + target))
    return bool(names)


def _rdtype(ev: Evaluation) -> str:
    return "A" if ev.ip.version == 4 else "AAAA"


def _same(ip: IPAddress, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == ip
    except ValueError:
        return False


def _in_addresses(ev: Evaluation, answer: DnsAnswer, mech: Mechanism) -> bool:
    prefix = mech.cidr4 if ev.ip.version == 4 else mech.cidr6
    for record in answer.records:
        try:
            net = ipaddress.ip_network(
                f"{record}/{prefix if prefix is not None else ev.ip.max_prefixlen}", strict=False
            )
        except ValueError:
            continue
        if ev.ip in net:
            return True
    return False


# --- the check -----------------------------------------------------------------------------------


def ip_term(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"ip{addr.version}:{addr}"


def suggest_record(ips: list[str], existing: str | None = None) -> str:
    """A record that authorises ``ips``: added to ``existing`` before its all/redirect, never
    replacing it (REFERENCE 5); a fresh ``v=spf1 ip4:... ~all`` when there is none (the same
    record ``mailmend records`` proposes: ``~all`` first, ``-all`` once every sender passes)."""
    new = [ip_term(ip) for ip in ips]
    if existing is None:
        return " ".join(["v=spf1", *new, "~all"])
    terms = existing.split()
    at = next(
        (
            i
            for i, t in enumerate(terms)
            if t.lstrip("+-~?").lower() == "all" or t.lower().startswith("redirect=")
        ),
        len(terms),
    )
    return " ".join(terms[:at] + new + terms[at:])


async def check_spf(
    resolver: Resolver, domain: str, ips: list[str] | tuple[str, ...]
) -> CheckResult:
    """Check ``domain``'s SPF record and that it authorises every one of ``ips``."""
    if not valid_domain(domain):
        shown = domain.encode("ascii", "backslashreplace").decode("ascii")
        return _result(
            Status.FAIL,
            shown,
            f"{shown!r} is not a valid domain name, so it cannot have an SPF record "
            "(RFC 7208 4.3: result none)",
            fix="correct the domain in the fleet file (labels of 1-63 characters, two or more)",
        )
    domain = normalize_name(domain)
    answer = await resolver.query(domain + ".", "TXT")
    if not answer.ok:
        return dns_unknown(CHECK, domain, answer)
    records = [r for r in answer.records if is_spf(r)]
    if not records:
        return _result(
            Status.FAIL,
            domain,
            f"{domain} has no SPF record",
            fix=(
                f'publish: {domain}. TXT "{suggest_record(list(ips))}" (for every sender of '
                "the fleet: mailmend records); move to -all once every sender passes"
            ),
        )
    if len(records) > 1:
        return _result(
            Status.FAIL,
            domain,
            str(SPFMultipleRecords(domain, tuple(records))),
            details=tuple(f"record: {r}" for r in records),
            fix="merge them into one v=spf1 record and delete the others (RFC 7208 3.2)",
        )
    try:
        record = parse_record(records[0], domain)
    except SPFSyntaxError as err:
        return _result(Status.FAIL, domain, str(err), (records[0],), _error_fix(err))
    outcomes = await asyncio.gather(*(_evaluate_ip(resolver, domain, record, ip) for ip in ips))
    return _combine(domain, records[0], list(ips), outcomes)


@dataclass(frozen=True)
class _Outcome:
    ip: str
    kind: str  # pass, unauthorised, plus_all, question_all, error
    status: Status
    message: str
    notes: tuple[str, ...] = ()
    error: SPFError | None = None


async def _evaluate_ip(resolver: Resolver, domain: str, record: SPFRecord, ip: str) -> _Outcome:
    ev = Evaluation(resolver, ipaddress.ip_address(ip))
    try:
        found = await evaluate(ev, domain, record)
    except SPFTempError as err:
        return _Outcome(ip, "error", Status.UNKNOWN, f"temperror: {err}", error=err)
    except SPFPermError as err:
        return _Outcome(ip, "error", Status.FAIL, f"permerror: {err}", error=err)
    notes = (*ev.notes, f"{ev.lookups} of {MAX_LOOKUPS} DNS lookups used")
    if ev.plus_all:
        where = ", ".join(ev.plus_all)
        message = f"+all in {where} authorises every IP on the internet"
        return _Outcome(ip, "plus_all", Status.FAIL, message, notes)
    if found is None or found.result != "pass":
        how = f"{found.result} by {found.term}" if found else "neutral: no term matched"
        return _Outcome(ip, "unauthorised", Status.FAIL, f"does not authorise {ip} ({how})", notes)
    if any(m.kind == "all" and m.qualifier == "?" for m in record.mechanisms):
        message = "?all leaves every other IP neutral, so forged mail is not rejected"
        return _Outcome(ip, "question_all", Status.WARN, message, notes)
    message = f"authorises {ip} ({found.term} in {found.domain})"
    return _Outcome(ip, "pass", Status.PASS, message, notes)


def _combine(domain: str, record: str, ips: list[str], outcomes: list[_Outcome]) -> CheckResult:
    status = worst([o.status for o in outcomes])
    details = [f"record: {record}"]
    for o in outcomes:
        details.append(f"{o.ip}: {o.message}")
        details.extend(n for n in o.notes if n not in details)
    if status is Status.PASS:
        summary = f"SPF of {domain} authorises {', '.join(ips)}"
        return _result(status, domain, summary, tuple(details))
    bad = next(o for o in outcomes if o.status is status)
    if bad.error is not None:
        return _result(status, domain, bad.message, tuple(details), _error_fix(bad.error))
    summary = f"SPF of {domain} {bad.message}"
    if bad.kind == "plus_all":
        fix = f'replace +all with -all: {domain}. TXT "{record.replace("+all", "-all")}"'
    elif bad.kind == "question_all":
        fix = (
            f'end the record with -all (or ~all): {domain}. TXT "{record.replace("?all", "-all")}"'
        )
    else:
        missing = [o.ip for o in outcomes if o.kind == "unauthorised"]
        terms = " ".join(ip_term(ip) for ip in missing)
        fix = f'add {terms}: {domain}. TXT "{suggest_record(missing, record)}"'
    return _result(status, domain, summary, tuple(details), fix)


def _error_fix(error: SPFError) -> str | None:
    if isinstance(error, SPFTooManyLookups):
        return "replace includes by ip4:/ip6: terms or drop unused ones: at most 10 lookups"
    if isinstance(error, SPFTooManyVoidLookups):
        return "remove the terms that point at names with no records"
    if isinstance(error, SPFSyntaxError):
        return f"correct term {error.position} {error.term!r} in {error.domain}: {error.reason}"
    if isinstance(error, SPFPermError):
        return "correct the record named above"
    return "retry later, or ask another resolver (--nameserver)"


def _result(
    status: Status,
    domain: str,
    summary: str,
    details: tuple[str, ...] = (),
    fix: str | None = None,
) -> CheckResult:
    return CheckResult(CHECK, status, domain, summary, details, fix)


__all__ = [
    "ALL_MACRO_LETTERS",
    "CHECK",
    "DNS_MECHANISMS",
    "DOMAIN_MACRO_LETTERS",
    "MAX_LOOKUPS",
    "MAX_MX_OR_PTR_NAMES",
    "MAX_NAME",
    "MAX_VOID_LOOKUPS",
    "MECHANISMS",
    "QUALIFIERS",
    "Evaluation",
    "IPAddress",
    "Mechanism",
    "SPFError",
    "SPFMissingRecord",
    "SPFMultipleRecords",
    "SPFPermError",
    "SPFRecord",
    "SPFSyntaxError",
    "SPFTempError",
    "SPFTooManyLookups",
    "SPFTooManyVoidLookups",
    "check_domain_spec",
    "check_macro_string",
    "check_spf",
    "evaluate",
    "expand_macros",
    "is_spf",
    "parse_mechanism",
    "parse_record",
    "suggest_record",
    "truncate_name",
    "valid_domain",
]
