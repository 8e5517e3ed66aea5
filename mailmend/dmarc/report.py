"""RFC 7489 appendix C aggregate reports: XML in, a typed :class:`Report` out.

Parsed with ``defusedxml``'s parser: entity declarations (the "billion laughs" bomb) and
external entities are refused, not expanded. No tree is built: expat hands each element to a
small collector that keeps one section's fields at a time, so a report costs its records.
Every value is checked: a report that lacks what the schema requires, or carries an IP, count
or result that is not one, raises :class:`ReportError` and is not kept.
Namespaces (RFC 9990's ``urn:ietf:params:xml:ns:dmarc-2.0``) are ignored.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

import defusedxml
import defusedxml.ElementTree

MAX_TEXT = 1024  # characters in one field (names, ids, addresses)
MAX_COUNT = 2**31 - 1
MAX_RECORDS = 1_000_000  # rows in one report
DISPOSITIONS = frozenset({"none", "quarantine", "reject"})
ALIGNED_RESULTS = frozenset({"pass", "fail"})


class ReportError(ValueError):
    """Not a usable aggregate report (one-line message)."""


@dataclass(frozen=True)
class PolicyPublished:
    domain: str
    p: str
    sp: str | None = None
    pct: int | None = None
    adkim: str | None = None
    aspf: str | None = None


@dataclass(frozen=True)
class Record:
    """One ``record``: ``count`` messages from ``source_ip`` with the same results.

    ``dkim_aligned`` / ``spf_aligned`` are ``policy_evaluated`` (the DMARC-aligned results);
    ``dkim_result`` / ``spf_result`` are the raw ``auth_results`` (best DKIM result, the SPF one).
    """

    source_ip: str
    count: int
    disposition: str
    dkim_aligned: bool
    spf_aligned: bool
    header_from: str
    envelope_from: str | None = None
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_result: str = "none"
    spf_domain: str | None = None
    spf_result: str = "none"

    @property
    def aligned(self) -> bool:
        """DMARC passes: DKIM or SPF passed aligned."""
        return self.dkim_aligned or self.spf_aligned


@dataclass(frozen=True)
class Report:
    org_name: str
    report_id: str
    email: str | None
    begin: int  # date_range, seconds since the epoch (UTC)
    end: int
    policy: PolicyPublished
    records: tuple[Record, ...]

    @property
    def messages(self) -> int:
        return sum(r.count for r in self.records)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


Values = dict[str, str]  # path below a section ("row/source_ip") -> text (the first one)


def _text(values: Values, path: str, *, required: bool = True) -> str | None:
    text = values.get(path, "")
    if not text:
        if required:
            raise ReportError(f"missing {path}")
        return None
    if len(text) > MAX_TEXT:
        raise ReportError(f"{path} is longer than {MAX_TEXT} characters")
    return text


def _required(values: Values, path: str) -> str:
    text = _text(values, path)
    assert text is not None
    return text


def _int(values: Values, path: str, low: int, high: int) -> int:
    text = _required(values, path)
    try:
        value = int(text)
    except ValueError:
        raise ReportError(f"{path} is not a whole number: {text!r:.40}") from None
    if not low <= value <= high:
        raise ReportError(f"{path} out of range: {value}")
    return value


def _ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ReportError(f"source_ip is not an IP address: {text!r:.60}") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return address.compressed


def _choice(values: Values, path: str, allowed: frozenset[str]) -> str:
    text = _required(values, path)
    value = text.lower()
    if value not in allowed:
        raise ReportError(f"{path} is {text!r:.40}, not one of {', '.join(sorted(allowed))}")
    return value


def _policy(values: Values) -> PolicyPublished:
    pct = _text(values, "pct", required=False)
    return PolicyPublished(
        domain=_required(values, "domain").lower().rstrip("."),
        p=_required(values, "p").lower(),
        sp=(_text(values, "sp", required=False) or "").lower() or None,
        pct=_int(values, "pct", 0, 100) if pct is not None else None,
        adkim=_text(values, "adkim", required=False),
        aspf=_text(values, "aspf", required=False),
    )


def _record(values: Values, dkims: list[Values]) -> Record:
    """One record; ``dkims`` are its ``auth_results/dkim`` entries (the best one is kept)."""
    best = next((d for d in dkims if d.get("result", "").lower() == "pass"), None)
    best = best if best is not None else (dkims[0] if dkims else {})
    return Record(
        source_ip=_ip(_required(values, "row/source_ip")),
        count=_int(values, "row/count", 0, MAX_COUNT),
        disposition=_choice(values, "row/policy_evaluated/disposition", DISPOSITIONS),
        dkim_aligned=_choice(values, "row/policy_evaluated/dkim", ALIGNED_RESULTS) == "pass",
        spf_aligned=_choice(values, "row/policy_evaluated/spf", ALIGNED_RESULTS) == "pass",
        header_from=_required(values, "identifiers/header_from").lower(),
        envelope_from=_text(values, "identifiers/envelope_from", required=False),
        dkim_domain=_text(best, "domain", required=False),
        dkim_selector=_text(best, "selector", required=False),
        dkim_result=(_text(best, "result", required=False) or "none").lower(),
        spf_domain=_text(values, "auth_results/spf/domain", required=False),
        spf_result=(_text(values, "auth_results/spf/result", required=False) or "none").lower(),
    )


_SECTIONS = frozenset({"report_metadata", "policy_published", "record"})


class _Collector:
    """Expat handlers: the text of each field of each section, one section at a time."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.chars: list[str] = []
        self.values: Values = {}
        self.dkims: list[Values] = []
        self.dkim: Values | None = None
        self.metadata: Values | None = None
        self.policy: PolicyPublished | None = None
        self.records: list[Record] = []

    def start(self, tag: str, _attributes: object) -> None:
        name = _local(tag)
        depth = len(self.stack)
        if depth == 0 and name != "feedback":
            raise ReportError(f"not a DMARC aggregate report (root <{name:.40}>)")
        self.stack.append(name)
        self.chars = []
        if depth == 1 and name in _SECTIONS:
            self.values, self.dkims = {}, []
        elif depth == 3 and name == "dkim" and self.stack[1:3] == ["record", "auth_results"]:
            self.dkim = {}

    def data(self, text: str) -> None:
        self.chars.append(text)

    def end(self, _tag: str) -> None:
        name = self.stack.pop()
        depth = len(self.stack)
        if depth >= 2:
            if self.dkim is not None and depth == 4:  # record/auth_results/dkim/FIELD
                self.dkim.setdefault(name, "".join(self.chars).strip())
            elif self.dkim is not None and depth == 3:
                self.dkims.append(self.dkim)
                self.dkim = None
            else:
                key = "/".join([*self.stack[2:], name])
                self.values.setdefault(key, "".join(self.chars).strip())
        elif depth == 1:
            self._section(name)
        self.chars = []

    def _section(self, name: str) -> None:
        if name == "report_metadata":
            self.metadata = self.values
        elif name == "policy_published":
            self.policy = _policy(self.values)
        elif name == "record":
            if len(self.records) >= MAX_RECORDS:
                raise ReportError(f"more than {MAX_RECORDS} records")
            self.records.append(_record(self.values, self.dkims))
        self.values = {}


def parse_report(xml: bytes) -> Report:
    """Parse one aggregate report; raises :class:`ReportError` with what is wrong."""
    collector = _Collector()
    # defusedxml installs its refusals (entity declarations, external references) on the expat
    # parser; the collector reads the elements straight from expat (no tree is built).
    defused = defusedxml.ElementTree.XMLParser(forbid_dtd=False)
    expat = defused.parser
    expat.StartElementHandler = collector.start
    expat.EndElementHandler = collector.end
    expat.CharacterDataHandler = collector.data
    try:
        expat.Parse(xml, True)
    except defusedxml.EntitiesForbidden as err:
        if err.sysid or err.pubid:
            raise ReportError(f"XML external entity {err.name!r} refused") from None
        problem = f"XML entity declaration {err.name!r} refused (entity expansion)"
        raise ReportError(problem) from None
    except defusedxml.ExternalReferenceForbidden:
        raise ReportError("XML external entities and references are refused") from None
    except defusedxml.DTDForbidden:
        raise ReportError("an XML DTD is refused") from None
    except ExpatError as err:
        raise ReportError(f"not well-formed XML ({err})") from None
    metadata, policy = collector.metadata, collector.policy
    if metadata is None:
        raise ReportError("missing report_metadata")
    if policy is None:
        raise ReportError("missing policy_published")
    begin = _int(metadata, "date_range/begin", 0, 2**40)
    end = _int(metadata, "date_range/end", 0, 2**40)
    if end < begin:
        raise ReportError(f"date_range ends ({end}) before it begins ({begin})")
    return Report(
        org_name=_required(metadata, "org_name"),
        report_id=_required(metadata, "report_id"),
        email=_text(metadata, "email", required=False),
        begin=begin,
        end=end,
        policy=policy,
        records=tuple(collector.records),
    )
