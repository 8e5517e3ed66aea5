"""mailmend's own verdict on the received bytes, beside the receiver's, with fixes.

DKIM is verified with dkimpy (keys fetched through the project's DNS engine first, so every
lookup has its deadline), SPF evaluated by :mod:`checks.spf` for the IP the receiver saw and
the envelope sender (``Return-Path``), DMARC alignment of From with the DKIM ``d=`` and the
SPF domain (relaxed unless the record says ``adkim=s``/``aspf=s``; organisational domain by
the last two labels: no public suffix list). The fixes are those ``mailmend check`` and
``mailmend records`` propose.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.message import Message

import dkim

from mailmend.checks import spf as spf_mod
from mailmend.checks.dkim import check_dkim
from mailmend.checks.dmarc import (
    DmarcRecordError,
    dmarc_name,
    is_dmarc,
    parse_record,
    suggested_record,
)
from mailmend.checks.dns import Resolver
from mailmend.checks.result import CheckResult, Status, worst
from mailmend.mailtest.message import address_of, domain_of
from mailmend.mailtest.received import AuthResults, Hop

_SIG_TAG = re.compile(r"\b([ds])\s*=\s*([^;\s]+)")


@dataclass(frozen=True)
class Own:
    """mailmend's results: ``dkim`` pass/fail/none/temperror with the signing domain,
    ``spf`` an RFC 7208 result, ``dmarc`` pass/fail/none."""

    dkim: str
    dkim_domain: str | None
    dkim_selector: str | None
    spf: str
    spf_domain: str
    dmarc: str
    dmarc_policy: str | None
    from_domain: str


def signatures(msg: Message) -> list[tuple[str, str]]:
    """(d=, s=) of each DKIM-Signature header."""
    out = []
    for value in msg.get_all("DKIM-Signature") or []:
        tags = dict(_SIG_TAG.findall(" ".join(str(value).split())))
        if "d" in tags and "s" in tags:
            out.append((tags["d"].lower().rstrip("."), tags["s"]))
    return out


async def own_dkim(
    resolver: Resolver, raw: bytes, msg: Message
) -> tuple[str, str | None, str | None]:
    """(result, d=, s=) of the first signature, verified by dkimpy."""
    sigs = signatures(msg)
    if not sigs:
        return "none", None, None
    domain, selector = sigs[0]
    keys: dict[bytes, bytes] = {}
    name = f"{selector}._domainkey.{domain}."
    answer = await resolver.query(name, "TXT")
    if not answer.ok:
        return "temperror", domain, selector
    if answer.records:
        keys[name.encode()] = answer.records[0].encode()

    def dnsfunc(qname: bytes, timeout: int = 5) -> bytes:
        wanted = qname if qname.endswith(b".") else qname + b"."
        return keys.get(wanted, b"")

    try:
        ok = dkim.verify(raw, dnsfunc=dnsfunc)
    except dkim.DKIMException:
        ok = False
    return ("pass" if ok else "fail"), domain, selector


async def own_spf(resolver: Resolver, ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(RFC 7208 result, the domain evaluated) for ``ip`` and the envelope sender."""
    domain = domain_of(mail_from) if "@" in mail_from else helo.lower()
    if not spf_mod.valid_domain(domain):
        return "none", domain
    ev = spf_mod.Evaluation(resolver, ipaddress.ip_address(ip), sender=mail_from, helo=helo)
    try:
        record = await spf_mod.fetch_record(ev, domain)
        if record is None:
            return "none", domain
        match = await spf_mod.evaluate(ev, domain, record)
    except spf_mod.SPFTempError:
        return "temperror", domain
    except spf_mod.SPFPermError:
        return "permerror", domain
    return (match.result if match else "neutral"), domain


def org_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


def aligned(a: str, b: str, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else org_domain(a) == org_domain(b)


async def own_dmarc(
    resolver: Resolver, from_domain: str, dkim_result: str, dkim_domain: str | None,
    spf_result: str, spf_domain: str,
) -> tuple[str, str | None]:  # fmt: skip
    """(pass/fail/none/temperror, the published policy) for the From domain."""
    for name in dict.fromkeys((from_domain, org_domain(from_domain))):
        answer = await resolver.query(dmarc_name(name) + ".", "TXT")
        if not answer.ok:
            return "temperror", None
        records = [r for r in answer.records if is_dmarc(r)]
        if len(records) != 1:
            continue
        try:
            record = parse_record(records[0])
        except DmarcRecordError:
            return "permerror", None
        strict_d = record.tags.get("adkim", "r").lower() == "s"
        strict_s = record.tags.get("aspf", "r").lower() == "s"
        dkim_ok = (
            dkim_result == "pass"
            and bool(dkim_domain)
            and aligned(str(dkim_domain), from_domain, strict_d)
        )
        spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, strict_s)
        return ("pass" if dkim_ok or spf_ok else "fail"), record.policy
    return "none", None


async def own_verdict(resolver: Resolver, raw: bytes, msg: Message, the_hop: Hop | None) -> Own:
    from_domain = domain_of(address_of(str(msg.get("From", ""))))
    d_result, d_domain, d_selector = await own_dkim(resolver, raw, msg)
    mail_from = address_of(str(msg.get("Return-Path", "")))
    if the_hop is None:
        s_result, s_domain = "none", domain_of(mail_from)
    else:
        s_result, s_domain = await own_spf(resolver, the_hop.ip, mail_from, the_hop.helo)
    m_result, policy = await own_dmarc(
        resolver, from_domain, d_result, d_domain, s_result, s_domain
    )
    return Own(d_result, d_domain, d_selector, s_result, s_domain, m_result, policy, from_domain)


# --- results with fixes ---------------------------------------------------------------------------


def _status(result: str) -> Status:
    if result == "pass":
        return Status.PASS
    if result in ("temperror",):
        return Status.UNKNOWN
    if result in ("neutral", "none", "softfail"):
        return Status.WARN
    return Status.FAIL


async def auth_checks(
    resolver: Resolver,
    own: Own,
    receiver: AuthResults | None,
    ip: str | None,
    report_address: str | None,
) -> list[CheckResult]:
    """spf, dkim, dmarc: each the worse of the receiver's and mailmend's result, both shown."""
    out: list[CheckResult] = []
    for method, mine, subject in (
        ("spf", own.spf, own.spf_domain),
        ("dkim", own.dkim, own.dkim_domain or own.from_domain),
        ("dmarc", own.dmarc, own.from_domain),
    ):
        theirs = [r.result for r in receiver.get(method)] if receiver else []
        their = theirs[0] if theirs else None
        status = _status(mine)
        if their is not None:
            status = worst([_status(their), status])
        agree = their is None or their == mine
        summary = f"receiver: {their or 'no result'}; mailmend: {mine}"
        if not agree:
            summary += " (they disagree)"
        fix = None
        if status is not Status.PASS:
            fix = await _fix(resolver, method, own, ip, report_address)
        out.append(
            CheckResult(
                method,
                status,
                subject,
                summary,
                details=tuple(r.text for r in receiver.get(method)) if receiver else (),
                fix=fix,
                extra={"receiver": their, "mailmend": mine, "agree": agree},
            )
        )
    return out


async def _fix(
    resolver: Resolver, method: str, own: Own, ip: str | None, report_address: str | None
) -> str | None:
    if method == "spf" and ip:
        result = await spf_mod.check_spf(resolver, own.spf_domain, [ip])
        return result.fix or "make the SPF record authorise this host's IP (mailmend records)"
    if method == "dkim":
        if own.dkim == "none":
            return "sign with OpenDKIM for the From domain (deploy: mailmend's mail deploy)"
        if own.dkim_domain and own.dkim_selector:
            result = await check_dkim(resolver, own.dkim_domain, own.dkim_selector)
            if result.fix:
                return f"{result.fix} (mailmend records --dkim-from-hosts proposes it)"
        return "publish the DKIM key the host signs with (mailmend records --dkim-from-hosts)"
    if method == "dmarc":
        if own.dmarc == "none":
            return f"publish: {suggested_record(own.from_domain, report_address)}"
        return "align From with a passing DKIM d= or SPF domain: fix SPF or DKIM above"
    return None
