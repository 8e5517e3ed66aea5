"""SPF flattening that keeps what the record means.

A term is replaced by ``ip4:``/``ip6:`` terms that match exactly the addresses it matched, with
the same qualifier, at the same place (first match wins, RFC 7208 4.6.2):

- ``include:X`` matches the addresses X *passes*. They are computed by walking X's terms in
  order, so a ``-ip4:`` (or ``~``, ``?``) in X takes its addresses away from what X's later
  terms pass, at any depth; the result is written as disjoint CIDR blocks.
- ``a``/``mx`` match their hosts' addresses (with the CIDR lengths).
- ``redirect=X`` is replaced by X's own terms, each flattened, in order: X's result is the
  record's result when no ``all`` matched. A redirect after ``all`` is dropped (never used).

``exists``, ``ptr`` and macros depend on the sender's IP or identity: they cannot be listed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mailmend.checks.dns import DnsAnswer, Resolver
from mailmend.checks.names import normalize_name
from mailmend.checks.spf import (
    MAX_MX_OR_PTR_NAMES,
    Mechanism,
    SPFMissingRecord,
    SPFMultipleRecords,
    SPFPermError,
    SPFRecord,
    SPFTempError,
    is_spf,
    parse_mechanism,
    parse_record,
)

__all__ = ["MAX_DEPTH", "CannotFlatten", "Flattener", "network_term"]

MAX_DEPTH = 10

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EVERY_ADDRESS: tuple[Network, ...] = (
    ipaddress.IPv4Network("0.0.0.0/0"),
    ipaddress.IPv6Network("::/0"),
)


class CannotFlatten(Exception):
    """A term whose addresses cannot be listed (exists, ptr, macros, nesting too deep)."""


# --- sets of addresses as disjoint CIDR blocks ---------------------------------------------------


def union(*parts: Iterable[Network]) -> list[Network]:
    """The smallest list of CIDR blocks covering every block of ``parts``."""
    v4 = [n for part in parts for n in part if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for part in parts for n in part if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def minus(keep: Iterable[Network], drop: Iterable[Network]) -> list[Network]:
    """The addresses of ``keep`` that are in no block of ``drop`` (two CIDR blocks either
    nest or do not meet, so each cut is an ``address_exclude``)."""
    out: list[Network] = []
    drops = list(drop)
    for block in keep:
        pieces: list[Network] = [block]
        for cut in drops:
            if cut.version != block.version:
                continue
            next_pieces: list[Network] = []
            for piece in pieces:
                if piece.subnet_of(cut):  # type: ignore[arg-type]
                    continue
                if cut.subnet_of(piece):  # type: ignore[arg-type]
                    next_pieces.extend(piece.address_exclude(cut))  # type: ignore[arg-type]
                else:
                    next_pieces.append(piece)
            pieces = next_pieces
        out.extend(pieces)
    return union(out)


def network_term(net: Network) -> str:
    """``ip4:192.0.2.1`` for one address, ``ip4:192.0.2.0/24`` for a block."""
    if net.prefixlen == net.max_prefixlen:
        return f"ip{net.version}:{net.network_address.compressed}"
    return f"ip{net.version}:{net.compressed}"


def _address_block(address: str, prefix: int | None) -> Network | None:
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ipaddress.ip_network(
        f"{addr}/{addr.max_prefixlen if prefix is None else prefix}", strict=False
    )


# --- the flattener -------------------------------------------------------------------------------


class Flattener:
    """Reads SPF records and addresses through ``resolver`` and lists what terms match."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            answer = await self.resolver.query(name + ".", rdtype)
        except ValueError:
            raise SPFPermError(f"{name!r} is not a valid DNS name") from None
        if not answer.ok:
            raise SPFTempError(answer)
        return answer

    async def record(self, domain: str) -> SPFRecord:
        """The one SPF record at ``domain``: an include/redirect target must have one."""
        answer = await self._query(domain, "TXT")
        records = tuple(r for r in answer.records if is_spf(r))
        if len(records) > 1:
            raise SPFMultipleRecords(domain, records)
        if not records:
            raise SPFMissingRecord(f"{domain} (an include or redirect target) has no SPF record")
        return parse_record(records[0], domain)

    def _target(self, domain: str, mech: Mechanism | None, spec: str | None = None) -> str:
        spec = spec if mech is None else mech.target
        if spec and "%" in spec:
            raise CannotFlatten(f"{mech.text if mech else spec} uses macros")
        return normalize_name(spec) if spec else domain

    async def matches(self, domain: str, mech: Mechanism, depth: int = 0) -> list[Network]:
        """Exactly the addresses ``mech`` (in ``domain``'s record) matches."""
        if mech.kind == "all":
            return list(EVERY_ADDRESS)
        if mech.kind in ("ip4", "ip6"):
            return [ipaddress.ip_network(mech.target or "")]
        if mech.kind in ("exists", "ptr"):
            raise CannotFlatten(f"{mech.text} cannot be listed as addresses")
        target = self._target(domain, mech)
        if mech.kind == "include":
            return await self.passes(target, depth + 1)
        hosts = [target]
        if mech.kind == "mx":
            answer = await self._query(target, "MX")
            hosts = [normalize_name(r.split()[-1]) for r in answer.records if r.split()[-1] != "."]
            if len(hosts) > MAX_MX_OR_PTR_NAMES:
                raise SPFPermError(f"mx:{target} has more than {MAX_MX_OR_PTR_NAMES} MX hosts")
        blocks: list[Network] = []
        for host in hosts:
            for rdtype, prefix in (("A", mech.cidr4), ("AAAA", mech.cidr6)):
                for address in (await self._query(host, rdtype)).records:
                    block = _address_block(address, prefix)
                    if block is not None and block.version == (4 if rdtype == "A" else 6):
                        blocks.append(block)
        return union(blocks)

    async def passes(self, domain: str, depth: int = 0) -> list[Network]:
        """Exactly the addresses ``domain``'s record passes: each ``+`` term adds what no
        earlier term matched; every term, whatever its qualifier, decides what it matches."""
        if depth > MAX_DEPTH:
            raise CannotFlatten(f"includes nest deeper than {MAX_DEPTH} at {domain}")
        record = await self.record(domain)
        passed: list[Network] = []
        decided: list[Network] = []
        for mech in record.mechanisms:
            matched = await self.matches(domain, mech, depth)
            if mech.qualifier == "+":
                passed = union(passed, minus(matched, decided))
            decided = union(decided, matched)
            if mech.kind == "all":
                return passed
        if record.redirect is not None:
            target = self._target(domain, None, record.redirect)
            passed = union(passed, minus(await self.passes(target, depth + 1), decided))
        return passed

    async def inline(self, domain: str, record: SPFRecord, depth: int = 0) -> list[str]:
        """``record``'s terms, every one flattened, its redirect inlined: what a
        ``redirect=domain`` stands for."""
        if depth > MAX_DEPTH:
            raise CannotFlatten(f"redirects nest deeper than {MAX_DEPTH} at {domain}")
        out: list[str] = []
        for mech in record.mechanisms:
            if mech.kind in ("all", "ip4", "ip6"):
                out.append(mech.text)
            else:
                out += _qualified(mech, await self.matches(domain, mech, depth))
            if mech.kind == "all":
                return out
        if record.redirect is not None:
            target = self._target(domain, None, record.redirect)
            out += await self.inline(target, await self.record(target), depth + 1)
        return out

    async def expand(
        self, domain: str, terms: list[str], kinds: tuple[str, ...]
    ) -> tuple[list[str], list[str]]:
        """``terms`` (a record split on spaces) with every term of ``kinds`` flattened, and
        one ``"term -> ip4:... ip4:..."`` line per term expanded."""
        out: list[str] = []
        tail: list[str] = []  # a redirect is used after every mechanism, wherever it stands
        expanded: list[str] = []
        has_all = any(t.lstrip("+-~?").lower() == "all" for t in terms)
        for term in terms:
            low = term.lower()
            if low.startswith("redirect="):
                if "redirect" not in kinds:
                    out.append(term)
                elif has_all:
                    expanded.append(f"{term} -> (dropped: never used after all)")
                else:
                    target = self._target(domain, None, term.partition("=")[2])
                    more = await self.inline(target, await self.record(target), 1)
                    tail += more
                    expanded.append(f"{term} -> {' '.join(more) or '(nothing)'}")
                continue
            if "=" in term.split(":", 1)[0] or low == "v=spf1":
                out.append(term)
                continue
            mech = parse_mechanism(term, domain)
            if mech.kind not in kinds:
                out.append(term)
                continue
            more = _qualified(mech, await self.matches(domain, mech))
            out += more
            expanded.append(f"{term} -> {' '.join(more) or '(nothing: it never matches)'}")
        return _dedupe(out + tail), expanded


def _qualified(mech: Mechanism, blocks: list[Network]) -> list[str]:
    prefix = "" if mech.qualifier == "+" else mech.qualifier
    return [prefix + network_term(net) for net in blocks]


def _dedupe(terms: list[str]) -> list[str]:
    """Drop a term that repeats an earlier one exactly: it can never be the first match."""
    seen: set[str] = set()
    out: list[str] = []
    for term in terms:
        if term.lower() not in seen:
            seen.add(term.lower())
            out.append(term)
    return out
