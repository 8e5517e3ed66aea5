"""SPF record syntax (RFC 7208 sections 4.6, 5, 6, 7): the typed error tree, the parser
(record -> terms -> mechanism/modifier) and macro expansion. :mod:`mailmend.checks.spf`
evaluates what this module parses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from mailmend.checks.dns import DnsAnswer

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
