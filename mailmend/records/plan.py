"""Desired vs published, for a whole fleet: add / change / keep, and the three renderings.

:func:`build_plan` reads what is published through a :class:`checks.dns.Resolver` (the
Engine, or a fake in tests) and returns a :class:`Plan`: per domain its SPF, DKIM, DMARC and
report-authorisation records, per host its A/AAAA record and the PTR to ask the provider for.
Each entry knows the published records it replaces (``remove``) and the whole rrset it read
(``rrset``) so that :mod:`mailmend.records.publish` can refuse to clobber a later change.

Renderings: :func:`render_plan` (only what changes stands out), :func:`render_zone` (a BIND
snippet, absolute names, TXT split in 255-byte strings), :func:`plan_json` (docs/records.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mailmend.checks.dkim_key import DkimPublicKey, DkimRecordError, key_name, parse_record
from mailmend.checks.dmarc import dmarc_name, is_dmarc
from mailmend.checks.dns import DnsAnswer, Resolver
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.txt import split_txt
from mailmend.fleet import Fleet
from mailmend.records.dmarc import StageChoice, authorisations, propose_dmarc
from mailmend.records.escape import visible, zone_name
from mailmend.records.spf import SpfDnsError, SpfProposal, propose_spf

DEFAULT_TTL = 3600
JSON_VERSION = 1


class Action(StrEnum):
    ADD = "add"  # nothing of ours is published: publish it
    CHANGE = "change"  # replace ``remove`` by ``value``
    KEEP = "keep"  # published as wanted
    ASK = "ask"  # someone else publishes it (the provider's PTR, another domain's consent)
    SKIP = "skip"  # not enough input (the DKIM public key was not given)
    BLOCKED = "blocked"  # the published record must be fixed first (or --replace-malformed)
    HELD = "held"  # would be added or changed, but its domain is blocked: published nowhere


@dataclass(frozen=True)
class RecordChange:
    """One record the fleet needs, and what to do about it.

    ``name`` has no trailing dot; TXT ``value``/``remove``/``rrset`` entries are the record's
    strings joined (as :class:`checks.dns.DnsAnswer` gives them).
    """

    kind: str  # spf, dkim, dmarc, dmarc-auth, a, aaaa, ptr
    name: str
    rdtype: str
    action: Action
    value: str | None = None
    remove: tuple[str, ...] = ()
    rrset: tuple[str, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()
    ttl: int | None = None  # the published rrset's TTL, when read (see Plan.with_ttls)
    stage: StageChoice | None = None  # dmarc: the --dmarc-stage auto decision
    origin: str = ""  # dkim: where the selector came from, when not the fleet file

    @property
    def publishable(self) -> bool:
        return self.action in (Action.ADD, Action.CHANGE)

    def strings(self) -> tuple[str, ...]:
        """The TXT character-strings of ``value`` (at most 255 bytes each)."""
        return split_txt(self.value or "") if self.rdtype == "TXT" else ()

    def rdata_text(self, value: str | None = None) -> str:
        """``value`` (default: the desired one) in zone-file syntax."""
        text = self.value if value is None else value
        if self.rdtype == "TXT":
            return " ".join(quote_txt(s) for s in split_txt(text or ""))
        if self.rdtype == "PTR":
            return f"{text}."
        return text or ""


@dataclass(frozen=True)
class DomainPlan:
    domain: str
    records: tuple[RecordChange, ...]
    problems: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True)
class HostPlan:
    host: str
    fqdn: str
    records: tuple[RecordChange, ...]


@dataclass(frozen=True)
class Plan:
    domains: tuple[DomainPlan, ...]
    hosts: tuple[HostPlan, ...]
    ttl: int = DEFAULT_TTL

    def entries(self) -> list[RecordChange]:
        return [r for d in self.domains for r in d.records] + [
            r for h in self.hosts for r in h.records
        ]

    def changes(self) -> list[RecordChange]:
        """What an update would send: adds and changes of domains that are not blocked."""
        out = [r for d in self.domains if not d.blocked for r in d.records if r.publishable]
        return out + [r for h in self.hosts for r in h.records if r.publishable]

    def counts(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for record in self.entries():
            counts[record.action.value] += 1
        return counts

    @property
    def blocked(self) -> list[DomainPlan]:
        return [d for d in self.domains if d.blocked]

    def with_ttls(self, ttls: Mapping[tuple[str, str], int]) -> Plan:
        """This plan with the published TTL of each (name, type) in ``ttls`` on its records
        (the zone snippet writes a record into an existing rrset with that rrset's TTL)."""

        def fill(records: tuple[RecordChange, ...]) -> tuple[RecordChange, ...]:
            return tuple(
                dataclasses.replace(r, ttl=ttls[(r.name, r.rdtype)])
                if (r.name, r.rdtype) in ttls
                else r
                for r in records
            )

        return Plan(
            tuple(dataclasses.replace(d, records=fill(d.records)) for d in self.domains),
            tuple(dataclasses.replace(h, records=fill(h.records)) for h in self.hosts),
            self.ttl,
        )


@dataclass(frozen=True)
class Sender:
    """A host that sends mail: its FQDN, public IPs and (domain, selector) pairs."""

    name: str
    fqdn: str
    ipv4: str | None = None
    ipv6: str | None = None
    domains: tuple[tuple[str, str], ...] = ()
    vps_provider: str | None = None  # where `mailmend ptr` sets its PTR (fleet key)

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(ip for ip in (self.ipv4, self.ipv6) if ip)


def senders_from_fleet(fleet: Fleet) -> list[Sender]:
    return [
        Sender(
            h.name,
            normalize_name(h.hostname or h.ssh_host),
            h.public_ipv4,
            h.public_ipv6,
            tuple((normalize_name(d.name), d.selector) for d in h.domains),
            h.vps_provider,
        )
        for h in fleet.hosts
    ]


@dataclass
class _Reader:
    """Reads each (name, type) once; an answer DNS could not give becomes a problem."""

    resolver: Resolver
    answers: dict[tuple[str, str], DnsAnswer] = field(default_factory=dict)

    async def get(self, name: str, rdtype: str) -> DnsAnswer:
        key = (normalize_name(name), rdtype)
        if key not in self.answers:
            self.answers[key] = await self.resolver.query(key[0] + ".", rdtype)
        return self.answers[key]


def _unanswered(answer: DnsAnswer) -> str:
    return (
        f"DNS could not answer {answer.rdtype} {normalize_name(answer.name)} "
        f"({answer.rcode}): nothing can be planned for it; retry or use another --nameserver"
    )


# --- building --------------------------------------------------------------------------------


async def build_plan(
    resolver: Resolver,
    senders: Sequence[Sender],
    *,
    dkim_keys: Iterable[DkimPublicKey] = (),
    report_address: str | None = None,
    dmarc_stage: str | Mapping[str, StageChoice] | None = None,
    replace_malformed: bool = False,
    ttl: int = DEFAULT_TTL,
    dkim_origins: Mapping[tuple[str, str], str] | None = None,
    dkim_skipped: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """What every domain and host of ``senders`` must publish, against what is published now.

    ``dkim_keys`` are the hosts' public keys (a (domain, selector) without one is skipped,
    with the reason in ``dkim_skipped`` when there is one); ``dkim_origins`` says where a
    (domain, selector) came from when it is not the fleet file's (the host signs with it).
    ``dmarc_stage`` is one stage for every domain, or a choice per domain (``auto``).
    """
    reader = _Reader(resolver)
    keys = {(k.domain, k.selector): k for k in dkim_keys}
    dkim = _DkimInput(keys, dkim_origins or {}, dkim_skipped or {})
    fleet_domains = sorted({d for s in senders for d, _ in s.domains})
    domain_plans = await asyncio.gather(
        *(
            _domain_plan(
                reader,
                domain,
                senders,
                dkim,
                fleet_domains,
                report_address,
                dmarc_stage,
                replace_malformed,
            )
            for domain in fleet_domains
        )
    )
    host_plans = await asyncio.gather(*(_host_plan(reader, s) for s in senders))
    return Plan(tuple(domain_plans), tuple(host_plans), ttl)


async def _domain_plan(
    reader: _Reader,
    domain: str,
    senders: Sequence[Sender],
    dkim: _DkimInput,
    fleet_domains: list[str],
    report_address: str | None,
    dmarc_stage: str | Mapping[str, StageChoice] | None,
    replace_malformed: bool,
) -> DomainPlan:
    mine = [s for s in senders if any(d == domain for d, _ in s.domains)]
    ips = list(dict.fromkeys(ip for s in mine for ip in s.ips))
    selectors = list(dict.fromkeys(sel for s in mine for d, sel in s.domains if d == domain))
    records: list[RecordChange] = []
    problems: list[str] = []
    records.append(await _spf(reader, domain, ips, replace_malformed, problems))
    for selector in selectors:
        records.append(await _dkim(reader, domain, selector, dkim))
    stage = dmarc_stage.get(domain) if isinstance(dmarc_stage, Mapping) else dmarc_stage
    dmarc = await _dmarc(reader, domain, report_address, stage, replace_malformed)
    records.append(dmarc)
    if dmarc.action is Action.BLOCKED:
        problems.append(dmarc.reason)
    for auth in authorisations(domain, dmarc.value):
        records.append(await _authorisation(reader, auth.name, auth.report_domain, fleet_domains))
    for record in records:
        if record.action is Action.BLOCKED and record.reason not in problems:
            problems.append(record.reason)
    if problems:  # nothing of a blocked domain is published: not even its sound records
        held = f"held back: {domain} is blocked (see its problems)"
        records = [
            dataclasses.replace(r, action=Action.HELD, reason=held) if r.publishable else r
            for r in records
        ]
    return DomainPlan(domain, tuple(records), tuple(problems))


def _compare(
    kind: str, name: str, answer: DnsAnswer, ours: tuple[str, ...], value: str, notes: Iterable[str]
) -> RecordChange:
    """ADD / CHANGE / KEEP for a TXT ``value`` where ``ours`` are the published records of our
    kind among the rrset."""
    rrset = answer.records
    if len(ours) == 1 and ours[0] == value:
        return RecordChange(kind, name, "TXT", Action.KEEP, value, (), rrset, "", tuple(notes))
    action = Action.CHANGE if ours else Action.ADD
    return RecordChange(kind, name, "TXT", action, value, ours, rrset, "", tuple(notes))


async def _spf(
    reader: _Reader, domain: str, ips: list[str], replace: bool, problems: list[str]
) -> RecordChange:
    answer = await reader.get(domain, "TXT")
    if not answer.ok:
        return RecordChange("spf", domain, "TXT", Action.BLOCKED, reason=_unanswered(answer))
    try:
        proposal: SpfProposal = await propose_spf(reader.resolver, domain, ips, answer, replace)
    except SpfDnsError as err:
        reason = f"SPF of {domain}: {err}: retry or use another --nameserver"
        return RecordChange(
            "spf", domain, "TXT", Action.BLOCKED, rrset=answer.records, reason=reason
        )
    if proposal.value is None:
        return RecordChange(
            "spf", domain, "TXT", Action.BLOCKED, None, proposal.published, answer.records,
            proposal.problem or "", proposal.notes,
        )  # fmt: skip
    notes = list(proposal.notes)
    if proposal.flattened:
        notes += [f"flattened {f}" for f in proposal.flattened]
    if proposal.added and proposal.published:
        notes.append("adds " + " ".join(proposal.added))
    return _compare("spf", domain, answer, proposal.published, proposal.value, notes)


def _published_is(value: str, key: DkimPublicKey) -> bool:
    """The published record ``value`` carries ``key`` (same type and key, not revoked)."""
    try:
        published = parse_record(value, key.domain, key.selector)
    except DkimRecordError:
        return False
    return published.same_key(key)


@dataclass(frozen=True)
class _DkimInput:
    keys: Mapping[tuple[str, str], DkimPublicKey]
    origins: Mapping[tuple[str, str], str]
    skipped: Mapping[tuple[str, str], str]


async def _dkim(reader: _Reader, domain: str, selector: str, dkim: _DkimInput) -> RecordChange:
    record = await _dkim_record(reader, domain, selector, dkim)
    origin = dkim.origins.get((domain, selector), "")
    return dataclasses.replace(record, origin=origin) if origin else record


async def _dkim_record(
    reader: _Reader, domain: str, selector: str, dkim: _DkimInput
) -> RecordChange:
    name = key_name(domain, selector)
    key = dkim.keys.get((domain, selector))
    if key is None:
        reason = dkim.skipped.get((domain, selector)) or (
            "the host's public key was not read: pass --dkim-from-hosts (or the keys)"
        )
        return RecordChange("dkim", name, "TXT", Action.SKIP, reason=reason)
    answer = await reader.get(name, "TXT")
    if not answer.ok:
        return RecordChange("dkim", name, "TXT", Action.BLOCKED, reason=_unanswered(answer))
    ours = tuple(r for r in answer.records if "p=" in r or r.startswith("v=DKIM1"))
    if len(ours) == 1 and _published_is(ours[0], key):
        return RecordChange("dkim", name, "TXT", Action.KEEP, ours[0], (), answer.records)
    notes = (
        ("the published key is not the host's key: signatures fail until replaced",) if ours else ()
    )
    return _compare("dkim", name, answer, ours, key.value(), notes)


async def _dmarc(
    reader: _Reader,
    domain: str,
    report_address: str | None,
    stage: str | StageChoice | None,
    replace: bool,
) -> RecordChange:
    name = dmarc_name(domain)
    answer = await reader.get(name, "TXT")
    if not answer.ok:
        return RecordChange("dmarc", name, "TXT", Action.BLOCKED, reason=_unanswered(answer))
    choice = stage if isinstance(stage, StageChoice) else None
    policy, pct = (choice.stage, choice.pct) if choice else (stage, None)
    assert not isinstance(policy, StageChoice)
    back = isinstance(stage, str)  # an explicit stage may move back; one from reports never
    proposal = propose_dmarc(domain, answer.records, report_address, policy, replace, pct, back)
    if proposal.value is None:
        return RecordChange(
            "dmarc", name, "TXT", Action.BLOCKED, None, proposal.published, answer.records,
            proposal.problem or "", proposal.notes, stage=choice,
        )  # fmt: skip
    change = _compare("dmarc", name, answer, proposal.published, proposal.value, proposal.notes)
    return dataclasses.replace(change, stage=choice)


async def _authorisation(
    reader: _Reader, name: str, report_domain: str, fleet_domains: list[str]
) -> RecordChange:
    if zone_name(name) is None:  # a hostile or broken rua=/ruf= in the published record
        reason = (
            f"a DMARC report address of {name.split('._report._dmarc.')[0]} is at "
            f"{report_domain!r}, not a domain name: fix rua=/ruf= in its DMARC record"
        )
        return RecordChange("dmarc-auth", name, "TXT", Action.BLOCKED, reason=reason)
    answer = await reader.get(name, "TXT")
    ours = tuple(r for r in answer.records if is_dmarc(r))
    if answer.ok and ours:
        return RecordChange("dmarc-auth", name, "TXT", Action.KEEP, ours[0], (), answer.records)
    in_fleet = any(report_domain == d or report_domain.endswith("." + d) for d in fleet_domains)
    if in_fleet and answer.ok:
        note = f"{report_domain} agrees to receive the reports (RFC 7489 7.1)"
        return RecordChange(
            "dmarc-auth", name, "TXT", Action.ADD, "v=DMARC1", (), answer.records, "", (note,)
        )
    reason = f'ask {report_domain} to publish: {name}. TXT "v=DMARC1"'
    return RecordChange("dmarc-auth", name, "TXT", Action.ASK, "v=DMARC1", reason=reason)


async def _host_plan(reader: _Reader, sender: Sender) -> HostPlan:
    records: list[RecordChange] = []
    for ip, rdtype in ((sender.ipv4, "A"), (sender.ipv6, "AAAA")):
        if ip is None:
            continue
        records.append(await _address(reader, sender.fqdn, rdtype, ip))
        records.append(await _ptr(reader, sender, ip))
    return HostPlan(sender.name, sender.fqdn, tuple(records))


async def _address(reader: _Reader, fqdn: str, rdtype: str, ip: str) -> RecordChange:
    kind = rdtype.lower()
    answer = await reader.get(fqdn, rdtype)
    if not answer.ok:
        return RecordChange(kind, fqdn, rdtype, Action.BLOCKED, ip, reason=_unanswered(answer))
    want = ipaddress.ip_address(ip).compressed
    have = answer.records
    if have == (want,):
        return RecordChange(kind, fqdn, rdtype, Action.KEEP, want, (), have)
    action = Action.CHANGE if have else Action.ADD
    notes = (f"{fqdn} points elsewhere: its HELO name would not resolve to {want}",) if have else ()
    return RecordChange(kind, fqdn, rdtype, action, want, have, have, "", notes)


async def _ptr(reader: _Reader, sender: Sender, ip: str) -> RecordChange:
    fqdn = sender.fqdn
    name = normalize_name(reverse_name(ip))
    answer = await reader.get(name, "PTR")
    have = tuple(normalize_name(r) for r in answer.records)
    if answer.ok and have == (fqdn,):
        return RecordChange("ptr", name, "PTR", Action.KEEP, fqdn, (), have)
    now = f" (now: {', '.join(have)})" if have else " (now: none)" if answer.ok else ""
    reason = f"ask the VPS provider: set PTR of {ip} to {fqdn}{now}"
    if sender.vps_provider:
        reason = (
            f"run mailmend ptr --host {sender.name} --apply: sets PTR of {ip} to {fqdn} "
            f"through {sender.vps_provider}{now}"
        )
    return RecordChange("ptr", name, "PTR", Action.ASK, fqdn, have, have, reason)


# --- rendering -------------------------------------------------------------------------------


def quote_txt(text: str) -> str:
    """One TXT character-string in zone-file syntax: quoted, ``"`` and ``\\`` escaped,
    bytes outside printable ASCII as ``\\DDD``."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def render_zone(plan: Plan) -> str:
    """Every record the fleet needs, as a BIND zone snippet (absolute names)."""
    lines = ["; mailmend records: paste into the zones (absolute names, BIND syntax)"]
    for domain in plan.domains:
        lines += ["", f"; {domain.domain}"]
        lines += [f"; BLOCKED: {visible(p)}" for p in domain.problems]
        for record in domain.records:
            if record.origin:
                lines.append(f"; from the host: {visible(record.origin)}")
            lines.append(_zone_line(record, plan.ttl))
    for host in plan.hosts:
        lines += ["", f"; host {host.host} ({host.fqdn})"]
        lines += [_zone_line(r, plan.ttl) for r in host.records]
    return "\n".join(lines) + "\n"


def _zone_line(record: RecordChange, ttl: int) -> str:
    """One live line, or a comment: everything from DNS is escaped (no new line can start)."""
    name = visible(record.name)
    if record.action in (Action.ASK, Action.SKIP, Action.BLOCKED):
        return f"; {record.action.value}: {record.kind} {name}: {visible(record.reason)}"
    if record.action is Action.HELD:
        return f"; held: {record.kind} {name}. {record.rdtype} {_rdata(record)}"
    if record.rdtype == "PTR":  # the provider's reverse zone: never ours to publish
        return f"; ptr {name}. is already {_rdata(record)} (the provider's zone)"
    owner = zone_name(record.name)
    if owner is None:
        return f"; not a host name, not written: {record.kind} {name}"
    return f"{owner} {record.ttl or ttl} IN {record.rdtype} {_rdata(record)}"


def _rdata(record: RecordChange, value: str | None = None) -> str:
    """The rdata in zone-file syntax, escaped (TXT is already quoted with \\DDD escapes)."""
    text = record.rdata_text(value)
    return text if record.rdtype == "TXT" else visible(text)


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}...{text[-20:]}"


def render_plan(plan: Plan) -> str:
    """The plan for a human: one line per record, what changes spelled out."""
    lines: list[str] = []
    for domain in plan.domains:
        lines.append(
            visible(domain.domain)
            + (" (BLOCKED: nothing is published for it)" if domain.blocked else "")
        )
        for record in domain.records:
            lines += _plan_lines(record)
    for host in plan.hosts:
        lines.append(f"host {visible(host.host)} ({visible(host.fqdn)})")
        for record in host.records:
            lines += _plan_lines(record)
    counts = plan.counts()
    lines.append(
        f"{counts['add']} to add, {counts['change']} to change, {counts['keep']} unchanged; "
        f"{counts['ask']} to ask others for, {counts['skip']} skipped, "
        f"{len(plan.blocked)} domain(s) blocked ({counts['held']} record(s) held back)"
    )
    return "\n".join(lines) + "\n"


def _plan_lines(record: RecordChange) -> list[str]:
    """A record's lines for the terminal: what came from DNS is escaped (no ESC, BEL, CR)."""
    head = f"  {record.action.value:<7} {record.kind:<10} {visible(record.name)}. {record.rdtype}"
    lines: list[str]
    if record.action is Action.CHANGE:
        lines = [head]
        lines += [f"            - {_short(_rdata(record, old))}" for old in record.remove]
        lines.append(f"            + {_short(_rdata(record))}")
    elif record.action in (Action.ADD, Action.KEEP):
        lines = [f"{head} {_short(_rdata(record))}"]
    elif record.action is Action.HELD:
        lines = [f"{head} {_short(_rdata(record))}: {visible(record.reason)}"]
    else:
        lines = [f"{head}: {visible(record.reason)}"]
    if record.origin:
        lines.append(f"            from the host: {visible(record.origin)}")
    if record.action is not Action.KEEP:
        lines += [f"            note: {visible(n)}" for n in record.notes]
    if record.stage is not None:
        lines.append(f"            stage (from the reports): {visible(record.stage.headline)}")
        lines += [f"              - {visible(r)}" for r in record.stage.reasons]
    return lines


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (schema in docs/records.md)."""

    def record(r: RecordChange) -> dict[str, Any]:
        return {
            "kind": r.kind,
            "name": r.name + ".",
            "type": r.rdtype,
            "action": r.action.value,
            "value": r.value,
            "strings": list(r.strings()) if r.value is not None else [],
            "remove": list(r.remove),
            "published": list(r.rrset),
            "reason": r.reason or None,
            "notes": list(r.notes),
            **({"origin": r.origin} if r.origin else {}),
            **({"stage": dict(r.stage.detail)} if r.stage is not None else {}),
        }

    return {
        "version": JSON_VERSION,
        "ttl": plan.ttl,
        "domains": [
            {
                "domain": d.domain,
                "blocked": d.blocked,
                "problems": list(d.problems),
                "records": [record(r) for r in d.records],
            }
            for d in plan.domains
        ],
        "hosts": [
            {"host": h.host, "fqdn": h.fqdn, "records": [record(r) for r in h.records]}
            for h in plan.hosts
        ],
        "counts": plan.counts(),
    }
