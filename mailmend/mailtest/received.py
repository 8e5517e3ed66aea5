"""What the receiver wrote into the message: hostile text, parsed without trusting it.

* ``Authentication-Results`` (RFC 8601) of the receiver: its authserv-id is that of the
  topmost header (a header further down may have been forged by the sender); the results of
  ``spf``, ``dkim`` and ``dmarc``. Debian's milters write one header each; Gmail writes one
  with every method (``mx.google.com; dkim=pass header.i=@... spf=pass ... dmarc=pass``).
* The hop: the topmost ``Received`` that names a client IP: HELO, reverse name, IP, and TLS
  as Postfix writes it (``using TLSv1.3 with cipher X``) or Gmail (``version=TLS1_3
  cipher=X``).
* SpamAssassin's ``X-Spam-Status`` / ``X-Spam-Report``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message

_METHOD = re.compile(r"(?:^|[;\s])(spf|dkim|dmarc)\s*=\s*([A-Za-z]+)")
_PROP = re.compile(r"\b(smtp\.mailfrom|header\.from|header\.d|header\.i|header\.s)\s*=\s*([^\s;]+)")
_FROM = re.compile(r"^from\s+(\S+)\s+\(([^()]*?)\[([0-9A-Fa-f:.]+)\]\)", re.IGNORECASE)
_TLS_POSTFIX = re.compile(r"using\s+(TLSv[0-9.]+|SSLv[0-9.]+)\s+with\s+cipher\s+(\S+)")
_TLS_GMAIL = re.compile(r"version=(TLS1_[0-9]|TLSv[0-9.]+)\s+cipher=(\S+?)[\s)]")
_SPAM_SCORE = re.compile(r"score=(-?[0-9.]+)\s+required=(-?[0-9.]+)")
_SPAM_TESTS = re.compile(r"tests=([A-Za-z0-9_,\s]*?)(?:\s+autolearn=|\s+version=|$)", re.S)
_REPORT_LINE = re.compile(r"^\s*\*\s*(-?[0-9.]+)\s+([A-Z0-9_]+)\s+(.*)$")


def unfold(value: str) -> str:
    return " ".join(str(value).split())


@dataclass(frozen=True)
class MethodResult:
    method: str  # spf, dkim, dmarc
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror, ...
    props: dict[str, str] = field(default_factory=dict)
    text: str = ""  # the whole result clause, for the report


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str
    results: tuple[MethodResult, ...]

    def get(self, method: str) -> list[MethodResult]:
        return [r for r in self.results if r.method == method]


def auth_results(msg: Message) -> AuthResults | None:
    """The receiver's Authentication-Results (None when it wrote none)."""
    headers = [unfold(v) for v in (msg.get_all("Authentication-Results") or [])]
    if not headers:
        return None
    authserv = headers[0].split(";", 1)[0].split()[0] if headers[0].strip() else ""
    found: list[MethodResult] = []
    for header in headers:
        ident, _sep, rest = header.partition(";")  # an authserv-id has no comment
        if not ident.split() or ident.split()[0].lower() != authserv.lower():
            continue
        for clause in _clauses(rest):
            match = _METHOD.search(" " + clause)
            if match:
                props = {k.lower(): v for k, v in _PROP.findall(clause)}
                found.append(MethodResult(match[1].lower(), match[2].lower(), props, clause))
    return AuthResults(authserv, tuple(found))


def _split_outside_comments(text: str) -> list[str]:
    """``text`` split on ';' outside (RFC 5322) comments: ``dkim=pass (2048-bit key; x)``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == ";" and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _clauses(rest: str) -> list[str]:
    """Result clauses: split on ';', and on a new method inside one clause (Gmail)."""
    out: list[str] = []
    for part in _split_outside_comments(rest):
        starts = [m.start(1) for m in _METHOD.finditer(" " + part)]
        bounds = [max(s - 1, 0) for s in starts] + [len(part)]
        if not starts:
            continue
        out += [part[a:b].strip() for a, b in itertools.pairwise(bounds)]
    return out


@dataclass(frozen=True)
class Hop:
    helo: str
    reverse_name: str  # the receiver's reverse lookup of the IP ("unknown" when none)
    ip: str
    tls_version: str | None
    tls_cipher: str | None
    received_at: datetime | None
    text: str


def hop(msg: Message) -> Hop | None:
    """The topmost Received naming a public client IP: the host's connection to the receiver."""
    for value in msg.get_all("Received") or []:
        text = unfold(value)
        match = _FROM.match(text)
        if not match:
            continue
        try:
            ip = ipaddress.ip_address(match[3])
        except ValueError:
            continue
        if ip.is_loopback:
            continue
        names = match[2].split()
        reverse = names[0] if names else "unknown"
        tls = _TLS_POSTFIX.search(text) or _TLS_GMAIL.search(text + " ")
        when = None
        if ";" in text:
            try:
                when = email.utils.parsedate_to_datetime(text.rsplit(";", 1)[1].strip())
            except (TypeError, ValueError, IndexError):
                when = None
        return Hop(
            helo=match[1],
            reverse_name=reverse,
            ip=str(ip),
            tls_version=tls[1] if tls else None,
            tls_cipher=tls[2] if tls else None,
            received_at=when,
            text=text,
        )
    return None


@dataclass(frozen=True)
class SpamRule:
    name: str
    points: float | None
    description: str


@dataclass(frozen=True)
class SpamVerdict:
    flagged: bool
    score: float | None
    required: float | None
    rules: tuple[SpamRule, ...]


def spam_verdict(msg: Message) -> SpamVerdict | None:
    """SpamAssassin's headers (None when the receiver wrote none)."""
    status = msg.get("X-Spam-Status")
    if status is None:
        return None
    text = unfold(str(status))
    score = _SPAM_SCORE.search(text)
    tests = _SPAM_TESTS.search(text)
    names = [t.strip() for t in (tests[1] if tests else "").replace(" ", "").split(",")]
    described = {r.name: r for r in report_rules(str(msg.get("X-Spam-Report", "")))}
    rules = tuple(
        described.get(n, SpamRule(n, None, "")) for n in names if n and n.lower() != "none"
    )
    flag = str(msg.get("X-Spam-Flag", "")).strip().upper() == "YES"
    return SpamVerdict(
        flagged=flag or text.lower().startswith("yes"),
        score=float(score[1]) if score else None,
        required=float(score[2]) if score else None,
        rules=rules,
    )


def report_rules(report: str) -> list[SpamRule]:
    """``* 1000 GTUBE BODY: Generic Test ...`` lines (continuations joined)."""
    rules: list[SpamRule] = []
    for line in str(report).splitlines():
        match = _REPORT_LINE.match(line)
        if match:
            rules.append(SpamRule(match[2], float(match[1]), match[3].strip()))
        elif rules and line.strip() and not line.strip().startswith(("*", "Content")):
            last = rules[-1]
            rules[-1] = SpamRule(last.name, last.points, f"{last.description} {line.strip()}")
    return rules
