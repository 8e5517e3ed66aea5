"""Content and delivery: the folder, the receiver's spam verdict, SpamAssassin's local score,
and the hop (HELO, reverse name, TLS, delay). Results only; nothing printed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from mailmend.checks.result import CheckResult, Status
from mailmend.mailtest.received import Hop, SpamRule, SpamVerdict

LOCAL_SA_TIMEOUT = 60.0
_TABLE_LINE = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)\s+([A-Z][A-Z0-9_]+)\s+(.*)$")
_DETAILS = re.compile(r"Content analysis details:\s+\((-?[0-9.]+) points?, (-?[0-9.]+) required\)")


_CHANGE = "change what the rules above name (the highest points first)"


def _names(rules: Sequence[SpamRule]) -> str:
    return ", ".join(r.name for r in rules) or "none"


def _spam_extra(
    score: float | None, required: float | None, rules: Sequence[SpamRule]
) -> dict[str, object]:
    return {"score": score, "required": required, "rules": [r.name for r in rules]}


def _rules_text(rules: Sequence[SpamRule]) -> tuple[str, ...]:
    return tuple(
        f"{'?' if r.points is None else format(r.points, 'g')} {r.name}"
        + (f": {r.description}" if r.description else "")
        for r in rules
    )


def folder_result(kind: str, folder: str) -> CheckResult:
    if kind == "inbox":
        return CheckResult("folder", Status.PASS, folder, f"delivered to {folder}")
    if kind == "junk":
        return CheckResult(
            "folder",
            Status.FAIL,
            folder,
            f"filed as spam: {folder}",
            fix="see the content rules and the authentication results: fix what failed first",
        )
    return CheckResult("folder", Status.WARN, folder, f"delivered to folder {folder}")


def receiver_spam(verdict: SpamVerdict | None) -> CheckResult:
    if verdict is None:
        return CheckResult("content", Status.PASS, "receiver", "the receiver wrote no spam score")
    score = (
        f"score {verdict.score:g} of {verdict.required:g}"
        if verdict.score is not None and verdict.required is not None
        else "no score"
    )
    scoring = [r for r in verdict.rules if r.points is None or r.points > 0]
    names = ", ".join(r.name for r in scoring) or "none"
    if verdict.flagged:
        return CheckResult(
            "content",
            Status.FAIL,
            "receiver",
            f"spam: {score}; rules {names}",
            details=_rules_text(verdict.rules),
            fix=_CHANGE,
            extra={
                "score": verdict.score,
                "required": verdict.required,
                "rules": [r.name for r in verdict.rules],
            },
        )
    status = Status.WARN if scoring and any((r.points or 0) >= 1 for r in scoring) else Status.PASS
    return CheckResult(
        "content",
        status,
        "receiver",
        f"not spam: {score}; rules {names}",
        details=_rules_text(verdict.rules),
        fix="change what the rules above name before it adds up" if status is Status.WARN else None,
        extra={
            "score": verdict.score,
            "required": verdict.required,
            "rules": [r.name for r in verdict.rules],
        },
    )


def local_spamassassin(raw: bytes) -> CheckResult | None:
    """SpamAssassin on this machine, local rules only (``spamassassin -t -L``); None if absent."""
    program = shutil.which("spamassassin")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "-t", "-L"],
            input=raw,
            capture_output=True,
            timeout=LOCAL_SA_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return CheckResult("content", Status.UNKNOWN, "local", "spamassassin -t -L timed out")
    return parse_local(done.stdout.decode("utf-8", "replace"))


def parse_local(output: str) -> CheckResult:
    """The ``Content analysis details`` table ``spamassassin -t`` appends."""
    head = _DETAILS.search(output)
    rules: list[SpamRule] = []
    if head:
        # The rule table ends at the first blank line (with report_safe, the report may be
        # there twice: in the wrapped message and appended).
        table = output[head.end() :].split("----", 1)[-1].split("\n\n", 1)[0]
        for line in table.splitlines():
            match = _TABLE_LINE.match(line)
            if match:
                rules.append(SpamRule(match[2], float(match[1]), match[3].strip()))
            elif line.startswith((" ", "\t")) and line.strip() and rules:
                last = rules[-1]
                rules[-1] = SpamRule(last.name, last.points, f"{last.description} {line.strip()}")
    if head is None:
        return CheckResult("content", Status.UNKNOWN, "local", "spamassassin printed no report")
    score, required = float(head[1]), float(head[2])
    status = Status.FAIL if score >= required else Status.PASS
    return CheckResult(
        "content",
        status,
        "local",
        f"local SpamAssassin: {score:g} of {required:g}; rules {_names(rules)}",
        details=_rules_text(rules),
        fix=_CHANGE if status is Status.FAIL else None,
        extra=_spam_extra(score, required, rules),
    )


def hop_results(the_hop: Hop | None, fqdn: str, delay: float | None) -> list[CheckResult]:
    if the_hop is None:
        return [
            CheckResult(
                "hop",
                Status.UNKNOWN,
                "Received",
                "no Received header names the client IP",
                fix="the receiver hides the hop: test with a mailbox whose receiver shows it",
            )
        ]
    out = []
    helo_ok = the_hop.helo.lower().rstrip(".") == fqdn.lower()
    out.append(
        CheckResult(
            "hop",
            Status.PASS if helo_ok else Status.FAIL,
            "HELO",
            f"HELO {the_hop.helo}" + ("" if helo_ok else f", not the host's FQDN {fqdn}"),
            fix=None
            if helo_ok
            else f"set the fleet key hostname = {fqdn} and deploy (Postfix HELO = myhostname)",
        )
    )
    ptr = the_hop.reverse_name.lower().rstrip(".")
    ptr_ok = ptr == fqdn.lower()
    out.append(
        CheckResult(
            "hop",
            Status.PASS if ptr_ok else Status.FAIL,
            "PTR",
            f"{the_hop.ip} reverse name {the_hop.reverse_name}"
            + ("" if ptr_ok else f", not {fqdn}"),
            fix=None
            if ptr_ok
            else f"ask the VPS provider to set the PTR of {the_hop.ip} to {fqdn}",
            extra={"ip": the_hop.ip},
        )
    )
    if the_hop.tls_version:
        out.append(
            CheckResult(
                "hop",
                Status.PASS,
                "TLS",
                f"{the_hop.tls_version} with {the_hop.tls_cipher}",
                extra={"version": the_hop.tls_version, "cipher": the_hop.tls_cipher},
            )
        )
    else:
        out.append(
            CheckResult(
                "hop",
                Status.WARN,
                "TLS",
                "delivered without TLS",
                fix="smtp_tls_security_level = may (mailmend's deploy sets it); "
                "Gmail shows a red lock otherwise",
            )
        )
    if delay is not None:
        out.append(
            CheckResult(
                "hop",
                Status.PASS,
                "delay",
                f"{delay:.1f} s from submission to the mailbox",
                extra={"seconds": round(delay, 1)},
            )
        )
    return out
