"""DMARC check (RFC 7489, RFC 9989): one valid ``v=DMARC1`` record at ``_dmarc.DOMAIN``,
a policy on its way to reject, and report addresses that are allowed to receive reports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mailmend.checks.dns import Resolver
from mailmend.checks.names import normalize_name
from mailmend.checks.result import SEVERITY, CheckResult, Status, dns_unknown
from mailmend.checks.tag_list import TagListError, parse_tag_list

CHECK = "dmarc"
POLICIES = ("none", "quarantine", "reject")
NEXT_STAGE = {"none": "quarantine", "quarantine": "reject"}


class DmarcRecordError(ValueError):
    """The record is not a valid DMARC record."""


@dataclass(frozen=True)
class DmarcRecord:
    tags: dict[str, str]

    @property
    def policy(self) -> str:
        return self.tags["p"].lower()

    def addresses(self, tag: str) -> list[str]:
        """The ``mailto:`` addresses of ``rua`` or ``ruf`` (size limits ``!10m`` removed)."""
        out = []
        for uri in self.tags.get(tag, "").split(","):
            uri = uri.strip()
            if uri:
                out.append(uri[len("mailto:") :].split("!")[0])
        return out


def dmarc_name(domain: str) -> str:
    return f"_dmarc.{normalize_name(domain)}"


def is_dmarc(txt: str) -> bool:
    first = txt.split(";", 1)[0].replace(" ", "").replace("\t", "")
    return first == "v=DMARC1"


def parse_record(text: str) -> DmarcRecord:
    """Parse and validate a DMARC record; raises :class:`DmarcRecordError`."""
    try:
        tags = parse_tag_list(text, fold_case=True)
    except TagListError as err:
        raise DmarcRecordError(str(err)) from None
    if "p" not in tags:
        raise DmarcRecordError("no p= tag: the policy is required")
    for tag in ("p", "sp"):
        if tag in tags and tags[tag].lower() not in POLICIES:
            raise DmarcRecordError(f"{tag}={tags[tag]} is not none, quarantine or reject")
    for tag in ("adkim", "aspf"):
        if tag in tags and tags[tag].lower() not in ("r", "s"):
            raise DmarcRecordError(f"{tag}={tags[tag]} is not r or s")
    for tag in ("rua", "ruf"):
        for uri in tags.get(tag, "").split(","):
            uri = uri.strip()
            if uri and (not uri.lower().startswith("mailto:") or "@" not in uri):
                raise DmarcRecordError(f"{tag}: {uri!r} is not a mailto: address")
    return DmarcRecord(tags)


def suggested_record(domain: str, report_address: str | None) -> str:
    address = report_address or f"dmarc-reports@{normalize_name(domain)}"
    return f'{dmarc_name(domain)}. TXT "v=DMARC1; p=none; rua=mailto:{address}"'


def needs_authorisation(domain: str, address: str) -> bool:
    """Reports to another domain need its consent (RFC 7489 7.1).

    Without the public suffix list, a report domain that is the domain, a parent or a child
    counts as the same organisation.
    """
    mine = normalize_name(domain)
    theirs = normalize_name(address.rpartition("@")[2])
    return not (theirs == mine or mine.endswith("." + theirs) or theirs.endswith("." + mine))


def authorisation_name(domain: str, report_domain: str) -> str:
    return f"{normalize_name(domain)}._report._dmarc.{normalize_name(report_domain)}"


@dataclass
class _Findings:
    """Problems found so far; the result is the worst of them."""

    subject: str
    problems: list[tuple[Status, str, str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, status: Status, message: str, fix: str | None = None) -> None:
        self.problems.append((status, message, fix))

    def result(self, passed: str) -> CheckResult:
        if not self.problems:
            return CheckResult(CHECK, Status.PASS, self.subject, passed, tuple(self.notes))
        ordered = sorted(self.problems, key=lambda p: -SEVERITY[p[0]])
        status, summary, _ = ordered[0]
        details = tuple([m for _, m, _ in ordered[1:]] + self.notes)
        fixes = [f for _, _, f in ordered if f]
        return CheckResult(CHECK, status, self.subject, summary, details, "\n".join(fixes) or None)


async def check_dmarc(
    resolver: Resolver, domain: str, report_address: str | None = None
) -> CheckResult:
    """Check ``domain``'s DMARC record; ``report_address`` goes into suggested records."""
    name = dmarc_name(domain)
    answer = await resolver.query(name + ".", "TXT")
    if not answer.ok:
        return dns_unknown(CHECK, name, answer)
    records = [r for r in answer.records if is_dmarc(r)]
    found = _Findings(name)
    if not records:
        found.add(
            Status.FAIL,
            f"no DMARC record at {name}",
            f"publish: {suggested_record(domain, report_address)}",
        )
        return found.result("")
    if len(records) > 1:
        found.add(
            Status.FAIL,
            f"{len(records)} DMARC records at {name}: receivers ignore them all",
            "keep exactly one v=DMARC1 record",
        )
        return found.result("")
    try:
        record = parse_record(records[0])
    except DmarcRecordError as err:
        found.add(
            Status.FAIL,
            f"invalid DMARC record at {name}: {err}",
            f"publish: {suggested_record(domain, report_address)}",
        )
        return found.result("")
    found.notes.append(f"record: {records[0]}")
    _judge_policy(found, record, domain)
    await _judge_reports(found, resolver, record, domain)
    return found.result(f"DMARC policy of {normalize_name(domain)} is p={record.policy}")


def _judge_policy(found: _Findings, record: DmarcRecord, domain: str) -> None:
    if "pct" in record.tags:
        found.notes.append("pct= is ignored: RFC 9989 drops it, do not rely on it")
    nxt = NEXT_STAGE.get(record.policy)
    if record.policy == "none":
        found.add(
            Status.WARN,
            f"DMARC policy of {normalize_name(domain)} is p=none (monitoring only)",
            f"when reports show all your mail passes, move to p={nxt}, then p=reject",
        )
    elif nxt:
        found.notes.append(f"next stage: p={nxt} once reports stay clean")
    if not record.addresses("rua"):
        found.add(
            Status.WARN,
            "no rua= report address: you cannot see who sends as this domain",
            "add rua=mailto:ADDRESS to the record",
        )


async def _judge_reports(
    found: _Findings, resolver: Resolver, record: DmarcRecord, domain: str
) -> None:
    wanted: list[tuple[str, str]] = []  # (tag, report domain)
    for tag in ("rua", "ruf"):
        for address in record.addresses(tag):
            report_domain = normalize_name(address.rpartition("@")[2])
            if needs_authorisation(domain, address) and (tag, report_domain) not in wanted:
                wanted.append((tag, report_domain))
    names = [authorisation_name(domain, rd) for _, rd in wanted]
    answers = await asyncio.gather(*(resolver.query(n + ".", "TXT") for n in names))
    for (tag, report_domain), name, answer in zip(wanted, names, answers, strict=True):
        if not answer.ok:
            unknown = dns_unknown(CHECK, name, answer)
            found.add(Status.UNKNOWN, unknown.summary)
        elif not any(is_dmarc(r) for r in answer.records):
            found.add(
                Status.FAIL if tag == "rua" else Status.WARN,
                f"{report_domain} has not agreed to receive {tag} reports for "
                f"{normalize_name(domain)}: they are not sent",
                f'ask {report_domain} to publish: {name}. TXT "v=DMARC1"',
            )
