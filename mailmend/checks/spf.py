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
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmend.checks.dns import DnsAnswer, Rcode, Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.result import CheckResult, Status, dns_unknown, worst

CHECK = "spf"
MAX_LOOKUPS = 10  # RFC 7208 4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 4.6.4
MAX_MX_OR_PTR_NAMES = 10

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
MECHANISMS = DNS_MECHANISMS | {"all", "ip4", "ip6"}
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.-]*)(.*)$")
# RFC 7208 5.6: a CIDR length has no leading zero (ASCII digits only: \d would take any script's)
_CIDR = re.compile(r"^(?:/(0|[1-9][0-9]?))?(?://(0|[1-9][0-9]{0,2}))?$")
# 7.1: macro-letter, transformers (*DIGIT ["r"]), delimiters; c r t are for exp= text only (7.2)
_MACRO = re.compile(r"%\{([a-z])([0-9]*)(r?)([.\-+,/_=]*)\}|%%|%_|%-|%", re.IGNORECASE)
DOMAIN_MACRO_LETTERS = frozenset("slodiphv")
ALL_MACRO_LETTERS = DOMAIN_MACRO_LETTERS | frozenset("crt")
# 7.1 toplabel: alphanumerics with at least one letter, or with an inner hyphen (never all digits)
_TOPLABEL = re.compile(
    r"^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$"
)
_VISIBLE = re.compile(r"^[\x21-\x7e]*$")
MAX_NAME = 253  # RFC 7208 7.3: longer expanded names lose labels on the left


# --- errors --------------------------------------------------------------------------------------


class SPFError(Exception):
    """Anything that makes SPF evaluation end in an error."""


class SPFPermError(SPFError):
    """RFC 7208 permerror: the published records are wrong."""


class SPFSyntaxError(SPFPermError):
    def __init__(self, domain: str, position: int, term: str, reason: str) -> None:
        self.domain, self.position, self.term, self.reason = domain, position, term, reason
        super().__init__(f"SPF syntax error in {domain}, term {position} {term!r}: {reason}")


class SPFTooManyLookups(SPFPermError):
    def __init__(self) -> None:
        super().__init__(
            f"the SPF record needs more than {MAX_LOOKUPS} DNS lookups "
            "(include, a, mx, ptr, exists, redirect), counted over the whole record: a receiver "
            "stops at the first match, so a sender matched early may still pass, but every "
            "sender matched later (or not at all) gets permerror"
        )


class SPFTooManyVoidLookups(SPFPermError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(
            f"{len(names)} SPF lookups find nothing (limit {MAX_VOID_LOOKUPS}): " + ", ".join(names)
        )


class SPFMultipleRecords(SPFPermError):
    def __init__(self, domain: str, records: tuple[str, ...]) -> None:
        self.domain, self.records = domain, records
        super().__init__(f"{domain} has {len(records)} SPF records; receivers return permerror")


class SPFMissingRecord(SPFPermError):
    """An include or redirect target without an SPF record."""


class SPFTempError(SPFError):
    """RFC 7208 temperror: DNS did not answer."""

    def __init__(self, answer: DnsAnswer) -> None:
        self.answer = answer
        super().__init__(f"DNS could not answer {answer.rdtype} {answer.name}: {answer.rcode}")


# --- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mechanism:
    qualifier: str  # one of + - ~ ?
    kind: str  # all include a mx ptr ip4 ip6 exists
    target: str | None = None  # domain-spec (unexpanded) or the ip4/ip6 network
    cidr4: int | None = None
    cidr6: int | None = None
    text: str = ""


@dataclass(frozen=True)
class SPFRecord:
    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None


def is_spf(txt: str) -> bool:
    """A TXT record that claims to be SPF (RFC 7208 4.5: ``v=spf1`` then a space or the end)."""
    low = txt.lower()
    return low == "v=spf1" or low.startswith("v=spf1 ")


@functools.lru_cache(maxsize=1024)  # a record is read once per IP checked: parse it once
def parse_record(text: str, domain: str = "") -> SPFRecord:
    """Parse a whole ``v=spf1`` record; raises :class:`SPFSyntaxError` naming the term.

    Terms are separated by spaces only (RFC 7208 4.6.1): a tab, CR or other control character
    is a syntax error, not a separator. Unknown modifiers (``ra=``, ``default=``) are ignored
    after a syntax check of their value (section 6)."""
    terms = [t for t in text.split(" ") if t]
    if not terms or terms[0].lower() != "v=spf1":
        raise SPFSyntaxError(domain, 0, terms[0] if terms else "", "the record must start v=spf1")
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, str] = {}
    for position, term in enumerate(terms[1:], start=1):
        if not _VISIBLE.match(term):
            raise SPFSyntaxError(
                domain, position, term, "only visible ASCII; terms are separated by spaces only"
            )
        modifier = _MODIFIER.match(term)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if name in modifiers:
                    raise SPFSyntaxError(domain, position, term, f"{name}= appears twice")
                check_domain_spec(value, domain, position, term)
                modifiers[name] = value
            else:
                check_macro_string(value, ALL_MACRO_LETTERS, domain, position, term)
        else:
            mechanisms.append(parse_mechanism(term, domain, position))
    return SPFRecord(text, tuple(mechanisms), modifiers.get("redirect"))


def parse_mechanism(term: str, domain: str = "", position: int = 0) -> Mechanism:
    """Parse one mechanism such as ``-all``, ``a:mail.example.com/24`` or ``ip6:2001:db8::/32``."""
    match = _MECHANISM.match(term)
    if not match:
        raise SPFSyntaxError(domain, position, term, "not a mechanism or modifier")
    qualifier, kind, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
    if kind not in MECHANISMS:
        raise SPFSyntaxError(domain, position, term, f"unknown mechanism {kind!r}")
    if kind == "all":
        if rest:
            raise SPFSyntaxError(domain, position, term, "all takes no argument")
        return Mechanism(qualifier, kind, text=term)
    if kind in ("ip4", "ip6"):
        return Mechanism(
            qualifier, kind, _parse_network(kind, rest, domain, position, term), text=term
        )
    target, cidr4, cidr6 = _split_target(rest, domain, position, term)
    if kind in ("include", "exists") and target is None:
        raise SPFSyntaxError(domain, position, term, f"{kind} needs a domain ({kind}:DOMAIN)")
    if kind in ("include", "exists", "ptr") and (cidr4 is not None or cidr6 is not None):
        raise SPFSyntaxError(domain, position, term, f"{kind} takes no CIDR length")
    return Mechanism(qualifier, kind, target, cidr4, cidr6, term)


def _parse_network(kind: str, rest: str, domain: str, position: int, term: str) -> str:
    if not rest.startswith(":"):
        raise SPFSyntaxError(domain, position, term, f"{kind} needs an address ({kind}:ADDRESS)")
    address, slash, length = rest[1:].partition("/")
    limit = 32 if kind == "ip4" else 128
    if slash and not (re.fullmatch(r"0|[1-9][0-9]{0,2}", length) and int(length) <= limit):
        raise SPFSyntaxError(domain, position, term, f"invalid CIDR length (0-{limit}, no 0N)")
    try:
        net = ipaddress.ip_network(address + slash + length, strict=False)
    except ValueError:
        raise SPFSyntaxError(domain, position, term, f"invalid {kind} network") from None
    if (net.version == 4) != (kind == "ip4"):
        raise SPFSyntaxError(domain, position, term, f"{kind} with an IPv{net.version} address")
    return str(net)


def _split_target(
    rest: str, domain: str, position: int, term: str
) -> tuple[str | None, int | None, int | None]:
    """Split ``:domain-spec/cidr4//cidr6`` (each part optional) of a/mx/ptr/include/exists.

    A domain-spec may hold any visible character but ``%`` (``a:foo:bar/baz.example.com``):
    the CIDR suffix is only what ends the term (RFC 7208 7.1)."""
    suffix = re.search(r"(?:/[0-9]*)?(?://[0-9]*)?$", rest)
    at = suffix.start() if suffix else len(rest)
    spec, cidr = rest[:at], rest[at:]
    target: str | None = None
    if spec:
        if not spec.startswith(":") or len(spec) == 1:
            raise SPFSyntaxError(domain, position, term, "expected :DOMAIN after the mechanism")
        target = spec[1:]
        check_domain_spec(target, domain, position, term)
    match = _CIDR.match(cidr)
    if not match:
        raise SPFSyntaxError(domain, position, term, "invalid CIDR length (use /N or //N)")
    cidr4 = int(match.group(1)) if match.group(1) else None
    cidr6 = int(match.group(2)) if match.group(2) else None
    if (cidr4 is not None and cidr4 > 32) or (cidr6 is not None and cidr6 > 128):
        raise SPFSyntaxError(domain, position, term, "CIDR length out of range")
    return target, cidr4, cidr6


def check_macro_string(
    spec: str, letters: frozenset[str], domain: str, position: int, term: str
) -> str:
    """Check the macros of ``spec`` (RFC 7208 7.1); returns it with each macro replaced by
    ``x``. A ``%`` outside a macro, an unknown letter or a zero digit transformer is refused."""

    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "%":
            raise SPFSyntaxError(domain, position, term, "malformed macro (a lone %)")
        if whole in ("%%", "%_", "%-"):
            return "x"
        if match.group(1).lower() not in letters:
            raise SPFSyntaxError(domain, position, term, f"macro letter not allowed: {whole}")
        if match.group(2) and int(match.group(2)) == 0:
            raise SPFSyntaxError(domain, position, term, f"a macro keeps 1 or more parts: {whole}")
        return "x"

    return _MACRO.sub(one, spec)


def check_domain_spec(spec: str, domain: str, position: int, term: str) -> None:
    """A domain-spec: macro-string ending in ``.TOPLABEL`` (optionally a dot) or in a macro.

    A top label may not be all digits: ``a:192.0.2.1`` is refused (use ``ip4:``)."""
    literal = check_macro_string(spec, DOMAIN_MACRO_LETTERS, domain, position, term)
    if _ends_in_macro(spec):
        return
    labels = literal[:-1].split(".") if literal.endswith(".") else literal.split(".")
    if len(labels) < 2 or not _TOPLABEL.match(labels[-1]):
        reason = f"invalid domain {spec!r}"
        if labels and labels[-1].isdigit():
            reason += " (the last label is all digits: an address belongs in ip4:/ip6:)"
        raise SPFSyntaxError(domain, position, term, reason)
    if literal == spec and not valid_domain(spec):  # no macro: it must be a name DNS can carry
        raise SPFSyntaxError(
            domain, position, term, f"invalid domain {spec!r} (empty or long label)"
        )


def _ends_in_macro(spec: str) -> bool:
    ends = [m for m in _MACRO.finditer(spec) if m.end() == len(spec)]
    return bool(ends) and ends[0].group(0) != "%"


def valid_domain(name: str) -> bool:
    """A name DNS can carry and that has at least two labels (RFC 7208 4.3): otherwise the
    SPF result is ``none`` without any lookup."""
    text = name[:-1] if name.endswith(".") else name
    labels = text.split(".")
    try:
        sizes = [len(label if label.isascii() else label.encode("idna")) for label in labels]
    except UnicodeError:
        return False
    return len(labels) >= 2 and all(0 < n < 64 for n in sizes) and len(text) <= MAX_NAME


def expand_macros(
    spec: str,
    ip: IPAddress,
    domain: str,
    sender: str | None = None,
    helo: str | None = None,
    validated: str = "unknown",
) -> str:
    """Expand RFC 7208 section 7 macros. ``domain`` is the current domain (``%{d}``, which
    an include or redirect changes); ``sender`` (``%{s}``, ``%{l}``, ``%{o}``) stays the one of
    the check, ``postmaster@domain`` when not given; ``helo`` (``%{h}``) defaults to the
    sender's domain; ``validated`` is ``%{p}``. Uppercase letters are URL-escaped (7.3)."""
    sender = sender or f"postmaster@{domain}"
    local, _, sender_domain = sender.rpartition("@")
    values = {
        "s": sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": domain,
        "i": _dotted(ip),
        "p": validated,
        "v": "in-addr" if ip.version == 4 else "ip6",
        "h": helo or sender_domain,
        "c": str(ip),
        "r": "unknown",
        "t": "0",
    }

    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole in ("%%", "%_", "%-", "%"):
            return {"%%": "%", "%_": " ", "%-": "%20", "%": "%"}[whole]
        letter = match.group(1)
        parts = re.split("[" + re.escape(match.group(4) or ".") + "]", values[letter.lower()])
        if match.group(3):
            parts.reverse()
        if match.group(2):
            parts = parts[-int(match.group(2)) :]  # nonzero: checked when the record is parsed
        value = ".".join(parts)
        return urllib.parse.quote(value, safe="") if letter.isupper() else value

    return _MACRO.sub(one, spec)


def truncate_name(name: str) -> str:
    """RFC 7208 7.3: an expanded name over 253 characters loses labels on the left."""
    while len(name.rstrip(".")) > MAX_NAME and "." in name:
        name = name.split(".", 1)[1]
    return name


def _dotted(ip: IPAddress) -> str:
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))


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
    "Evaluation",
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
    "check_spf",
    "evaluate",
    "expand_macros",
    "is_spf",
    "parse_mechanism",
    "parse_record",
    "suggest_record",
]
