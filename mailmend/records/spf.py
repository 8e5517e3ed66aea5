"""SPF: add the fleet's sending IPs to the published record, never replace it (REFERENCE 5).

The published record is read with :mod:`checks.spf`'s parser and evaluated with its evaluator:
an IP already authorised (an ``ip4`` network, an ``a``/``mx``/``include`` that passes it) is not
added again, and an IP the record refuses with its own term (``-ip4:IP``, ``~include:...``) is
not added either: a term after it could never work (first match wins), and the refusal may be on
purpose, so the plan says so and leaves it to the admin. New ``ip4:``/``ip6:`` terms go before
``all``/``redirect=``; every other term and the ``all`` qualifier stay. A record that needs more
than 10 DNS lookups gets a flattened proposal (:mod:`mailmend.records.spf_flatten`) that means
the same. Every proposal is evaluated before it is returned: each host passes, or is refused on
purpose.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from mailmend.checks.dns import DnsAnswer, Resolver
from mailmend.checks.names import normalize_name
from mailmend.checks.spf import (
    MAX_LOOKUPS,
    Evaluation,
    Match,
    SPFPermError,
    SPFRecord,
    SPFSyntaxError,
    SPFTempError,
    SPFTooManyLookups,
    evaluate,
    is_spf,
    parse_record,
    suggest_record,
)
from mailmend.records.spf_flatten import CannotFlatten, Flattener

__all__ = ["SpfDnsError", "SpfProposal", "fresh_record", "propose_spf"]

MAX_UDP_RECORD = 450  # RFC 7208 3.4


class SpfDnsError(Exception):
    """DNS did not answer a question the proposal depends on (temperror)."""


@dataclass(frozen=True)
class SpfProposal:
    """What the SPF record at ``name`` should be.

    ``value`` is None when nothing can be proposed (``problem`` says why). ``added`` lists
    the new terms, ``covered`` maps an IP already authorised to the term that covers it,
    ``denied`` an IP the record refuses with one of its own terms to that term (not added:
    the admin decides).
    """

    name: str
    published: tuple[str, ...]
    value: str | None
    added: tuple[str, ...] = ()
    covered: dict[str, str] = field(default_factory=dict)
    lookups: int | None = None
    flattened: tuple[str, ...] = ()  # "include:x -> ip4:a ip4:b", one per expanded term
    problem: str | None = None
    notes: tuple[str, ...] = ()
    denied: dict[str, str] = field(default_factory=dict)


def _ip_term(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"ip{addr.version}:{addr.compressed}"


def fresh_record(ips: list[str]) -> str:
    """A new record for the fleet's IPs, ending in ``~all`` (move to ``-all`` once verified)."""
    return " ".join(["v=spf1", *(_ip_term(ip) for ip in ips), "~all"])


async def propose_spf(
    resolver: Resolver,
    domain: str,
    ips: list[str],
    answer: DnsAnswer,
    replace_malformed: bool = False,
) -> SpfProposal:
    """The SPF record ``domain`` needs so that every one of ``ips`` passes.

    ``answer`` is the TXT answer at ``domain`` (read once by the caller). Raises
    :class:`SpfDnsError` when DNS cannot answer a lookup the evaluation needs.
    """
    name = normalize_name(domain)
    ips = list(dict.fromkeys(ipaddress.ip_address(ip).compressed for ip in ips))
    published = tuple(r for r in answer.records if is_spf(r))
    if not published:
        notes = ("new record ends in ~all: once every sender passes, move to -all",)
        return SpfProposal(
            name, published, fresh_record(ips), tuple(map(_ip_term, ips)), notes=notes
        )
    if len(published) > 1:
        problem = (
            f"{len(published)} SPF records at {name}: receivers return permerror for every "
            "message (RFC 7208 3.2); they must be merged into one"
        )
        merged = _merge_records(published, name)
        if not replace_malformed:
            return SpfProposal(name, published, None, problem=f"{problem}; proposed: {merged}")
        return _with_note(
            await _extend(resolver, name, ips, published, merged, replace_malformed),
            f"merged {len(published)} records into one",
        )
    return await _extend(resolver, name, ips, published, published[0], replace_malformed)


def _with_note(proposal: SpfProposal, note: str) -> SpfProposal:
    return SpfProposal(
        proposal.name, proposal.published, proposal.value, proposal.added, proposal.covered,
        proposal.lookups, proposal.flattened, proposal.problem, (note, *proposal.notes),
        proposal.denied,
    )  # fmt: skip


def _merge_records(records: tuple[str, ...], name: str) -> str:
    """One record with the terms of all: the first record's order, the others' extra terms
    before its ``all``/``redirect=``."""
    first = records[0].split()
    seen = {t.lower() for t in first}
    extra: list[str] = []
    for record in records[1:]:
        for term in record.split()[1:]:
            low = term.lower()
            if low in seen or low.lstrip("+-~?") == "all" or low.startswith("redirect="):
                continue
            seen.add(low)
            extra.append(term)
    at = _insert_at(first)
    return " ".join(first[:at] + extra + first[at:])


def _insert_at(terms: list[str]) -> int:
    for i, term in enumerate(terms):
        low = term.lower()
        if low.lstrip("+-~?") == "all" or low.startswith("redirect="):
            return i
    return len(terms)


async def _extend(
    resolver: Resolver,
    name: str,
    ips: list[str],
    published: tuple[str, ...],
    text: str,
    replace_malformed: bool,
) -> SpfProposal:
    try:
        record = parse_record(text, name)
    except SPFSyntaxError as err:
        problem = f"malformed SPF record at {name}: term {err.position} {err.term!r}: {err.reason}"
        return _malformed(name, published, ips, problem, replace_malformed)
    notes: list[str] = []
    flattened: tuple[str, ...] = ()
    try:
        lookups = await _count_lookups(resolver, name, record, ips)
        if lookups > MAX_LOOKUPS:
            record, flattened, lookups = await _flatten(resolver, name, record, ips)
            notes.append(
                f"the published record needs more than {MAX_LOOKUPS} DNS lookups: receivers "
                "return permerror. Proposed a flattened record that passes and refuses the same "
                "addresses; flattened terms go stale when the providers change their addresses: "
                "run records again regularly"
            )
        firsts = {ip: await _first_match(resolver, name, record, ip) for ip in ips}
        covered = {
            ip: _where(m, name)
            for ip, (m, plus_all) in firsts.items()
            if m and m.result == "pass" and not plus_all
        }
        denied = {ip: _where(m, name) for ip, (m, _) in firsts.items() if m and _refuses(m)}
        missing = [ip for ip in ips if ip not in covered and ip not in denied]
        value = suggest_record(missing, record.text) if missing else record.text
        wrong = await _not_passing(resolver, name, value, [ip for ip in ips if ip not in denied])
    except SPFTempError as err:
        raise SpfDnsError(str(err)) from None
    except CannotFlatten as err:
        problem = f"SPF record at {name} needs more than {MAX_LOOKUPS} DNS lookups and {err}"
        return _malformed(name, published, ips, problem, replace_malformed)
    except SPFPermError as err:
        problem = f"SPF record at {name} is broken: {err}"
        return _malformed(name, published, ips, problem, replace_malformed)
    if wrong:
        problem = f"the proposed SPF record for {name} would not pass {', '.join(wrong)}: {value}"
        return SpfProposal(name, published, None, problem=problem)
    added = tuple(_ip_term(ip) for ip in missing)
    size = len(value.encode("utf-8"))
    if flattened and size > MAX_UDP_RECORD:
        notes.append(
            f"the flattened record is {size} bytes: RFC 7208 3.4 advises at most "
            f"{MAX_UDP_RECORD} so the answer fits one UDP packet; if the provider's ranges "
            "allow it, keep some includes (drop unused ones) instead"
        )
    if any(m.kind == "ptr" for m in record.mechanisms):
        notes.append("the ptr mechanism is slow and discouraged (RFC 7208 5.5)")
    denials = [
        f"the record refuses {ip} with its own term {term}: not added, since a term after it "
        f"could never match (first match wins). If {ip} should send as {name}, remove that term; "
        "if it should not, stop it sending as this domain"
        for ip, term in denied.items()
    ]
    notes += [f"{ip} already authorised by {term}" for ip, term in covered.items()]
    return SpfProposal(
        name, published, value, added, covered, lookups, flattened, None,
        (*denials, *notes), denied,
    )  # fmt: skip


def _malformed(
    name: str, published: tuple[str, ...], ips: list[str], problem: str, replace: bool
) -> SpfProposal:
    if not replace:
        return SpfProposal(name, published, None, problem=problem)
    note = f"replacing ({problem}) with a new record for the fleet's hosts"
    return SpfProposal(name, published, fresh_record(ips), tuple(map(_ip_term, ips)), notes=(note,))


async def _count_lookups(resolver: Resolver, name: str, record: SPFRecord, ips: list[str]) -> int:
    """The DNS lookups of the whole record tree; MAX_LOOKUPS + 1 when it is over."""
    ev = Evaluation(resolver, ipaddress.ip_address(ips[0] if ips else "192.0.2.1"))
    try:
        await evaluate(ev, name, record)
    except SPFTooManyLookups:
        return MAX_LOOKUPS + 1
    return ev.lookups


async def _first_match(
    resolver: Resolver, name: str, record: SPFRecord, ip: str
) -> tuple[Match | None, bool]:
    """The term that decides ``ip`` (None: nothing matched), and whether a ``+all`` is
    reached (a pass then proves nothing: that record authorises everyone)."""
    ev = Evaluation(resolver, ipaddress.ip_address(ip))
    found = await evaluate(ev, name, record)
    return found, bool(ev.plus_all)


def _refuses(match: Match) -> bool:
    """The record's own term (not its ``all``) gives the IP fail, softfail or neutral."""
    return match.result != "pass" and match.term.lstrip("+-~?").lower() != "all"


def _where(match: Match, name: str) -> str:
    return match.term if match.domain == name else f"{match.term} (in {match.domain})"


async def _not_passing(resolver: Resolver, name: str, value: str, ips: list[str]) -> list[str]:
    """The IPs the proposed record ``value`` does not pass: the check before it is shown."""
    record = parse_record(value, name)
    wrong: list[str] = []
    for ip in ips:
        found, _ = await _first_match(resolver, name, record, ip)
        if found is None or found.result != "pass":
            wrong.append(ip)
    return wrong


# --- flattening ------------------------------------------------------------------------------


async def _flatten(
    resolver: Resolver, name: str, record: SPFRecord, ips: list[str]
) -> tuple[SPFRecord, tuple[str, ...], int]:
    """Expand includes, then a/mx, then redirect into ip4/ip6 terms until under the limit;
    each expansion keeps the record's meaning (see :mod:`mailmend.records.spf_flatten`)."""
    flattener = Flattener(resolver)
    terms = record.text.split()
    expanded: list[str] = []
    for kinds in (("include",), ("a", "mx"), ("redirect",)):
        terms, done = await flattener.expand(name, terms, kinds)
        expanded += done
        candidate = parse_record(" ".join(terms), name)
        lookups = await _count_lookups(resolver, name, candidate, ips)
        if lookups <= MAX_LOOKUPS:
            return candidate, tuple(expanded), lookups
    raise CannotFlatten("flattening includes, a, mx and redirect does not bring it under")
