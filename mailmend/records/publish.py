"""Publish a plan's changes: one RFC 2136 update per zone, TSIG-signed, guarded, verified.

For every (name, type) an update touches, the rrset read when the plan was built must still
be there: :func:`prepare` reads it again from the server (refusing if it changed since the
plan was read) and makes it a prerequisite of the update, so a change made after that read
is refused by the server itself (YXRRSET/NXRRSET). An rrset that was empty must still be
absent (``absent(name, type)``); otherwise it must be exactly what was read
(``present(name, rdataset)``). Only the specific rdata we replace is deleted: the apex TXT
rrset also holds other records (site verifications) that stay.

Example::

    updates = prepare(plan, server, key)      # reads, checks, builds
    send(updates, server)                     # one message per zone
    failures = await verify(resolver, plan.changes())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import dns.tsig
import dns.update

from mailmend.checks.dns import Resolver
from mailmend.checks.names import normalize_name
from mailmend.checks.nameservers import Nameserver
from mailmend.checks.txt import split_txt
from mailmend.records.plan import Plan, RecordChange
from mailmend.records.tsig import TsigKey

__all__ = [
    "APPLIED",
    "NOT_APPLIED",
    "NOT_SENT",
    "UNKNOWN",
    "Interrupted",
    "NoAnswer",
    "PublishError",
    "StaleRecord",
    "TsigRefused",
    "UpdateRefused",
    "ZoneResult",
    "ZoneUpdate",
    "find_zone",
    "prepare",
    "publish",
    "published_ttls",
    "read_rrset",
    "send",
    "settle",
    "verify",
]

STALE = "record changed since it was read: run records again"
_STALE_RCODES = {dns.rcode.YXRRSET, dns.rcode.NXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN}


APPLIED, NOT_APPLIED, UNKNOWN, NOT_SENT = "updated", "not updated", "unknown", "not sent"


@dataclass(frozen=True)
class ZoneResult:
    """Where one zone stands after :func:`send`: ``state`` is one of APPLIED, NOT_APPLIED,
    UNKNOWN (sent, no clear answer, and the re-read could not tell) or NOT_SENT."""

    zone: str
    state: str
    detail: str = ""


class PublishError(Exception):
    """An update was not applied, or not clearly (exit 1). ``results`` says where every zone
    of the run stands (those updated before it, this one, those not sent)."""

    results: tuple[ZoneResult, ...] = ()

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(r.zone for r in self.results if r.state == APPLIED)


class Interrupted(PublishError):
    """SIGINT (Ctrl-C) while updates were being sent; ``results`` says where each zone stands."""

    def __init__(self) -> None:
        super().__init__("interrupted")


class TsigRefused(PublishError):
    def __init__(self, key_name: str, detail: str) -> None:
        super().__init__(
            f"the server refused the TSIG key {key_name}: check the key file ({detail})"
        )


class StaleRecord(PublishError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"{STALE} ({detail})")


class UpdateRefused(PublishError):
    """Any other refusal (REFUSED, NOTZONE, SERVFAIL)."""


class NoAnswer(PublishError):
    """No usable answer to an update (timeout, connection lost, unverifiable reply): the
    server may or may not have applied it; :func:`send` re-reads to find out."""


@dataclass(frozen=True)
class ZoneUpdate:
    zone: str
    message: dns.update.UpdateMessage
    records: tuple[RecordChange, ...]


def _ask(server: Nameserver, name: str, rdtype: str, timeout: float) -> dns.message.Message:
    query = dns.message.make_query(dns.name.from_text(name + "."), rdtype)
    query.flags &= ~dns.flags.RD
    try:
        return dns.query.tcp(query, server.host, timeout=timeout, port=server.port)
    except (OSError, EOFError, dns.exception.DNSException) as err:
        raise UpdateRefused(f"cannot ask {server} for {rdtype} {name}: {err}") from None


def find_zone(name: str, server: Nameserver, timeout: float = 5.0) -> str:
    """The zone ``server`` serves that holds ``name`` (SOA lookups walking up the labels)."""
    labels = normalize_name(name).split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        response = _ask(server, candidate, "SOA", timeout)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            continue  # REFUSED: not this server's zone; try the parent
        for section in (response.answer, response.authority):
            for rrset in section:
                if rrset.rdtype == dns.rdatatype.SOA:
                    return normalize_name(rrset.name.to_text())
    raise UpdateRefused(f"{server} serves no zone that holds {name}: give --zone")


def read_rrset(
    name: str, rdtype: str, server: Nameserver, timeout: float = 5.0
) -> dns.rrset.RRset | None:
    """The rrset at ``name`` as the server holds it now (None if there is none)."""
    response = _ask(server, name, rdtype, timeout)
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise UpdateRefused(f"{server} answered {dns.rcode.to_text(response.rcode())} for {name}")
    wanted = dns.rdatatype.from_text(rdtype)
    owner = dns.name.from_text(name + ".")
    for rrset in response.answer:
        if rrset.rdtype == wanted and rrset.name == owner:
            return rrset
    return None


def published_ttls(
    records: Sequence[RecordChange], server: Nameserver, timeout: float = 5.0
) -> dict[tuple[str, str], int]:
    """The TTL ``server`` gives each (name, type) of ``records`` that has a published rrset
    (for the zone snippet). A name it cannot answer for is left out (``--ttl`` applies)."""
    out: dict[tuple[str, str], int] = {}
    asked: set[tuple[str, str]] = set()  # once per rrset, answered or not (a silent server
    for record in records:  # would otherwise cost a full timeout per record of the rrset)
        key = (record.name, record.rdtype)
        if not record.rrset or key in asked or record.rdtype == "PTR":
            continue
        asked.add(key)
        try:
            rrset = read_rrset(record.name, record.rdtype, server, timeout)
        except PublishError:
            continue
        if rrset is not None:
            out[key] = int(rrset.ttl)
    return out


def _text(rd: dns.rdata.Rdata) -> str:
    if isinstance(rd, dns.rdtypes.ANY.TXT.TXT):
        return b"".join(rd.strings).decode("utf-8", errors="replace")
    return str(rd.to_text())


def _new_rdata(record: RecordChange) -> dns.rdata.Rdata:
    rdclass, rdtype = dns.rdataclass.IN, dns.rdatatype.from_text(record.rdtype)
    if record.rdtype == "TXT":
        strings = [s.encode("utf-8") for s in split_txt(record.value or "")]
        return dns.rdtypes.ANY.TXT.TXT(rdclass, rdtype, strings)
    return dns.rdata.from_text(rdclass, rdtype, record.value or "")


def prepare(
    plan: Plan,
    server: Nameserver,
    key: TsigKey,
    *,
    zone: str | None = None,
    timeout: float = 5.0,
) -> list[ZoneUpdate]:
    """One signed update per zone for ``plan.changes()``; raises :class:`StaleRecord` when a
    published rrset is no longer what the plan read."""
    groups: dict[str, dict[tuple[str, str], list[RecordChange]]] = {}
    zones: dict[str, str] = {}
    for record in plan.changes():
        if record.name not in zones:
            zones[record.name] = (
                normalize_name(zone) if zone else find_zone(record.name, server, timeout)
            )
        by_name = groups.setdefault(zones[record.name], {})
        by_name.setdefault((record.name, record.rdtype), []).append(record)
    updates = []
    for zone_name, by_name in groups.items():
        message = dns.update.UpdateMessage(
            zone_name + ".", keyring=key.key(), keyname=key.key().name
        )
        records: list[RecordChange] = []
        for (name, rdtype), changes in by_name.items():
            current = read_rrset(name, rdtype, server, timeout)
            _add_changes(message, name, rdtype, changes, current, plan.ttl)
            records += changes
        updates.append(ZoneUpdate(zone_name, message, tuple(records)))
    return updates


def _add_changes(
    message: dns.update.UpdateMessage,
    name: str,
    rdtype: str,
    changes: list[RecordChange],
    current: dns.rrset.RRset | None,
    default_ttl: int,
) -> None:
    owner = dns.name.from_text(name + ".")
    now = sorted(_text(rd) for rd in current) if current is not None else []
    read = sorted(changes[0].rrset)
    if now != read:
        raise StaleRecord(f"{rdtype} {name}: read {read}, now {now}")
    if current is None:
        message.absent(owner, rdtype)
        ttl = default_ttl
    else:
        message.present(owner, dns.rdataset.from_rdata_list(0, list(current)))
        ttl = current.ttl
    for record in changes:
        for old in record.remove:
            for rd in current or ():
                if _text(rd) == old:
                    message.delete(owner, rd)
        message.add(owner, ttl, _new_rdata(record))


def send(
    updates: Sequence[ZoneUpdate], server: Nameserver, timeout: float = 10.0
) -> list[ZoneResult]:
    """Send each zone's update in turn; return every zone's :class:`ZoneResult` (all APPLIED).

    An update without a clear answer is settled by reading its records back: published as
    sent counts as applied (the reply was lost), unchanged as not applied. Raises on the first
    zone not applied (or not known to be), with ``results`` for every zone; raises
    :class:`Interrupted` on SIGINT, after reading back the zone that was in flight.
    """
    results: list[ZoneResult] = []
    for i, update in enumerate(updates):
        unsent = [ZoneResult(u.zone, NOT_SENT) for u in updates[i + 1 :]]
        try:
            try:
                _send_one(update, server, timeout)
                results.append(ZoneResult(update.zone, APPLIED))
                continue
            except NoAnswer as err:
                state, seen = settle(update, server, timeout)
                detail = f"{err}; read back: {seen}"
                if state == APPLIED:
                    results.append(ZoneResult(update.zone, APPLIED, detail))
                    continue
                err.args = (f"zone {update.zone}: {detail}",)
                err.results = (*results, ZoneResult(update.zone, state, detail), *unsent)
                raise
            except PublishError as err:
                err.results = (*results, ZoneResult(update.zone, NOT_APPLIED, str(err)), *unsent)
                raise
        except KeyboardInterrupt:
            state, seen = settle(update, server, min(timeout, 3.0))
            interrupted = Interrupted()
            interrupted.results = (
                *results, ZoneResult(update.zone, state, f"interrupted; read back: {seen}"),
                *unsent,
            )  # fmt: skip
            raise interrupted from None
    return results


def settle(update: ZoneUpdate, server: Nameserver, timeout: float) -> tuple[str, str]:
    """Read ``update``'s records back from ``server``: (APPLIED, NOT_APPLIED or UNKNOWN, what
    was seen). An update is atomic, so it shows either every change or none."""
    applied = unchanged = 0
    for record in update.records:
        try:
            current = read_rrset(record.name, record.rdtype, server, timeout)
        except PublishError as err:
            return UNKNOWN, f"cannot read it back ({err}): run records again to see"
        now = sorted(_text(rd) for rd in current) if current is not None else []
        gone = [old for old in record.remove if old != record.value]
        if record.value in now and not any(old in now for old in gone):
            applied += 1
        elif now == sorted(record.rrset):
            unchanged += 1
    if applied == len(update.records):
        return APPLIED, "every change is published"
    if unchanged == len(update.records):
        return NOT_APPLIED, "as it was, nothing changed"
    return UNKNOWN, "changed otherwise: run records again to see"


def _send_one(update: ZoneUpdate, server: Nameserver, timeout: float) -> None:
    key_name = normalize_name(update.message.keyname.to_text()) if update.message.keyname else "?"
    try:
        response = dns.query.tcp(update.message, server.host, timeout=timeout, port=server.port)
    except dns.tsig.PeerError as err:
        raise TsigRefused(key_name, f"{type(err).__name__} for zone {update.zone}") from None
    except (OSError, EOFError, dns.exception.DNSException) as err:
        why = str(err) or type(err).__name__
        raise NoAnswer(f"no clear answer from {server} ({why})") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NOERROR:
        return
    text = dns.rcode.to_text(rcode)
    if rcode in _STALE_RCODES:
        raise StaleRecord(f"zone {update.zone}: the server answered {text}")
    if rcode == dns.rcode.NOTAUTH:
        raise TsigRefused(key_name, f"NOTAUTH for zone {update.zone}")
    raise UpdateRefused(f"zone {update.zone}: the server refused the update ({text})")


def publish(
    plan: Plan,
    server: Nameserver,
    key: TsigKey,
    *,
    zone: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """:func:`prepare` then :func:`send`; returns the zones updated."""
    results = send(prepare(plan, server, key, zone=zone, timeout=timeout), server, timeout)
    return [r.zone for r in results]


async def verify(resolver: Resolver, records: Sequence[RecordChange]) -> list[str]:
    """What the DNS does not show after an update (empty when every change is visible).

    ``resolver`` must not have cached the answers from before the update.
    """
    failures = []
    for record in records:
        answer = await resolver.query(record.name + ".", record.rdtype)
        have = set(answer.records)
        if not answer.ok:
            failures.append(f"{record.rdtype} {record.name}: {answer.rcode}")
        elif record.value not in have:
            failures.append(f"{record.rdtype} {record.name}: the new record is not published")
        elif any(old in have for old in record.remove if old != record.value):
            failures.append(f"{record.rdtype} {record.name}: the old record is still published")
    return failures
