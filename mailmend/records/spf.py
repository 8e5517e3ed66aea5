"""SPF: add the fleet's sending IPs to the published record, never replace it (REFERENCE 5).

The published record is read with :mod:`checks.spf`'s parser and evaluated with its evaluator:
an IP already authorised (an ``ip4`` network, an ``a``/``mx``/``include`` that passes it) is not
added again. New ``ip4:``/``ip6:`` terms go before ``all``/``redirect=``; every other term and
the ``all`` qualifier stay. A record that already needs more than 10 DNS lookups gets a
flattened proposal: includes (then a/mx, then redirect) resolved into ip4/ip6 terms.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from checks.dns import DnsAnswer, Resolver
from checks.ptr import normalize_name
from checks.spf import (
    MAX_LOOKUPS,
    Evaluation,
    Mechanism,
    SPFPermError,
    SPFRecord,
    SPFSyntaxError,
    SPFTempError,
    SPFTooManyLookups,
    evaluate,
    is_spf,
    parse_mechanism,
    parse_record,
    suggest_record,
)

__all__ = ["MAX_DEPTH", "SpfDnsError", "SpfProposal", "fresh_record", "propose_spf"]

MAX_DEPTH = 10


class SpfDnsError(Exception):
    """DNS did not answer a question the proposal depends on (temperror)."""


class _CannotFlatten(Exception):
    """A term whose addresses cannot be listed (exists, ptr, macros)."""


@dataclass(frozen=True)
class SpfProposal:
    """What the SPF record at ``name`` should be.

    ``value`` is None when nothing can be proposed (``problem`` says why). ``added`` lists
    the new terms, ``covered`` maps an IP already authorised to the term that covers it.
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
                "return permerror. Proposed a flattened record; flattened terms go stale when "
                "the providers change their addresses: run records again regularly"
            )
        covered = {
            ip: term for ip in ips if (term := await _covering_term(resolver, name, record, ip))
        }
    except SPFTempError as err:
        raise SpfDnsError(str(err)) from None
    except _CannotFlatten as err:
        problem = f"SPF record at {name} needs more than {MAX_LOOKUPS} DNS lookups and {err}"
        return _malformed(name, published, ips, problem, replace_malformed)
    except SPFPermError as err:
        problem = f"SPF record at {name} is broken: {err}"
        return _malformed(name, published, ips, problem, replace_malformed)
    missing = [ip for ip in ips if ip not in covered]
    added = tuple(_ip_term(ip) for ip in missing)
    value = suggest_record(missing, record.text) if missing else record.text
    if any(m.kind == "ptr" for m in record.mechanisms):
        notes.append("the ptr mechanism is slow and discouraged (RFC 7208 5.5)")
    notes += [f"{ip} already authorised by {term}" for ip, term in covered.items()]
    return SpfProposal(
        name, published, value, added, covered, lookups, flattened, notes=tuple(notes)
    )


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


async def _covering_term(resolver: Resolver, name: str, record: SPFRecord, ip: str) -> str | None:
    """The term that makes ``ip`` pass, or None."""
    ev = Evaluation(resolver, ipaddress.ip_address(ip))
    found = await evaluate(ev, name, record)
    if found is None or found.result != "pass" or ev.plus_all:
        return None
    return found.term if found.domain == name else f"{found.term} (in {found.domain})"


# --- flattening ------------------------------------------------------------------------------


async def _flatten(
    resolver: Resolver, name: str, record: SPFRecord, ips: list[str]
) -> tuple[SPFRecord, tuple[str, ...], int]:
    """Expand includes, then a/mx, then redirect into ip4/ip6 terms until under the limit."""
    terms = record.text.split()
    expanded: list[str] = []
    for kinds in (("include",), ("a", "mx"), ("redirect",)):
        terms, done = await _expand_kinds(resolver, name, terms, kinds)
        expanded += done
        candidate = parse_record(" ".join(terms), name)
        lookups = await _count_lookups(resolver, name, candidate, ips)
        if lookups <= MAX_LOOKUPS:
            return candidate, tuple(expanded), lookups
    raise _CannotFlatten("flattening includes, a, mx and redirect does not bring it under")


async def _expand_kinds(
    resolver: Resolver, name: str, terms: list[str], kinds: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    out: list[str] = []
    expanded: list[str] = []
    seen: set[str] = set()

    def keep(term: str) -> None:
        if term.lower() not in seen:
            seen.add(term.lower())
            out.append(term)

    for term in terms:
        low = term.lower()
        if "redirect" in kinds and low.startswith("redirect="):
            target = normalize_name(term.partition("=")[2])
            networks, tail = await _pass_networks(resolver, target, 0)
            for net in networks:
                keep(net)
            keep(tail or "?all")
            expanded.append(f"{term} -> {' '.join(networks) or '(nothing)'} {tail or '?all'}")
            continue
        if "=" in term or low == "v=spf1":
            keep(term)
            continue
        mech = parse_mechanism(term, name)
        if mech.kind not in kinds:
            keep(term)
            continue
        prefix = "" if mech.qualifier == "+" else mech.qualifier
        networks = await _mechanism_networks(resolver, name, mech, 0)
        for net in networks:
            keep(prefix + net)
        expanded.append(f"{term} -> {' '.join(networks) or '(nothing)'}")
    return out, expanded


async def _query(resolver: Resolver, name: str, rdtype: str) -> DnsAnswer:
    answer = await resolver.query(name + ".", rdtype)
    if not answer.ok:
        raise SPFTempError(answer)
    return answer


def _network_term(address: str, prefix: int | None) -> str:
    addr = ipaddress.ip_address(address)
    if prefix is None or prefix == addr.max_prefixlen:
        return f"ip{addr.version}:{addr.compressed}"
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return f"ip{addr.version}:{net}"


async def _mechanism_networks(
    resolver: Resolver, domain: str, mech: Mechanism, depth: int
) -> list[str]:
    """The ip4/ip6 terms (no qualifier) a passing ``mech`` stands for."""
    target = normalize_name(mech.target) if mech.target else domain
    if "%" in target:
        raise _CannotFlatten(f"{mech.text} uses macros")
    if mech.kind in ("ip4", "ip6"):
        net = ipaddress.ip_network(mech.target or "")
        return [_network_term(str(net.network_address), net.prefixlen)]
    if mech.kind == "include":
        return (await _pass_networks(resolver, target, depth + 1))[0]
    hosts = [target]
    if mech.kind == "mx":
        answer = await _query(resolver, target, "MX")
        hosts = [normalize_name(r.split()[-1]) for r in answer.records if r.split()[-1] != "."]
    if mech.kind in ("a", "mx"):
        out: list[str] = []
        for host in hosts:
            for rdtype, prefix in (("A", mech.cidr4), ("AAAA", mech.cidr6)):
                for address in (await _query(resolver, host, rdtype)).records:
                    out.append(_network_term(address, prefix))
        return out
    raise _CannotFlatten(f"{mech.text} cannot be listed as addresses")


async def _pass_networks(
    resolver: Resolver, domain: str, depth: int
) -> tuple[list[str], str | None]:
    """The networks that pass in ``domain``'s record, and its ``all`` term (if any)."""
    if depth > MAX_DEPTH:
        raise _CannotFlatten(f"includes nest deeper than {MAX_DEPTH} at {domain}")
    answer = await _query(resolver, domain, "TXT")
    records = [r for r in answer.records if is_spf(r)]
    if len(records) != 1:
        raise SPFPermError(f"{domain} has {len(records)} SPF records")
    record = parse_record(records[0], domain)
    out: list[str] = []
    for mech in record.mechanisms:
        if mech.kind == "all":
            return out, mech.text
        if mech.qualifier == "+":  # other qualifiers never make an include pass
            out += await _mechanism_networks(resolver, domain, mech, depth)
    if record.redirect is not None:
        more, tail = await _pass_networks(resolver, normalize_name(record.redirect), depth + 1)
        return out + more, tail
    return out, None
