"""Merge mailmend's settings into a ``main.cf`` someone else wrote, keeping everything else.

The file is kept line for line: comments, blank lines, continuation lines and the order of
parameters. Only the parameters mailmend manages change, and each change is recorded
(old -> new) for the plan. Postfix's syntax (postconf(5)): a logical line starts at column 0;
a line starting with whitespace continues it; empty lines and lines whose first
non-whitespace character is ``#`` are ignored, also between continuation lines. When a
parameter is defined twice, the last definition wins: that is the one changed.

Restriction lists are merged, not replaced: mailmend's checks go before ``permit_mynetworks``
(or first when the list has none) and the admin's entries stay in their order.

    >>> cf = MainCf.parse("# mine\\nmyhostname = old.example\\n")
    >>> cf.set("myhostname", "mx1.example.com")
    >>> cf.set("smtp_transport_rate_delay", "12s")
    >>> print(cf.render(), end="")
    # mine
    myhostname = mx1.example.com
    <BLANKLINE>
    # -- added by mailmend (the parameters it manages); everything above is kept as it was
    smtp_transport_rate_delay = 12s
    >>> [str(c) for c in cf.changes]
    ['myhostname: old.example -> mx1.example.com', 'smtp_transport_rate_delay: (unset) -> 12s']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailmend.adopt import shown

#: The first line of a main.cf written from mailmend's own template.
TEMPLATE_MARKER = "# Managed by mailmend (templates/postfix/main.cf.j2)"
ADDED_HEADER = (
    "# -- added by mailmend (the parameters it manages); everything above is kept as it was"
)

_PARAM = re.compile(r"([A-Za-z0-9_.-]+)\s*=\s?(.*)\Z", re.DOTALL)
#: Restrictions followed by one argument (a table, a list, a service, a number).
_TAKES_ARG = re.compile(
    r"(check_[a-z_]+|reject_rbl_client|reject_rhsbl_[a-z_]+|permit_dnswl_client"
    r"|permit_rhswl_client|sleep)\Z"
)


class MainCfError(ValueError):
    """A main.cf that cannot be merged (e.g. an unbalanced ``{`` in a list)."""


@dataclass(frozen=True)
class Change:
    name: str
    old: str | None
    new: str

    def __str__(self) -> str:
        old = "(unset)" if self.old is None else shown(self.old) or "(empty)"
        return f"{self.name}: {old} -> {shown(self.new) or '(empty)'}"


@dataclass
class _Entry:
    lines: list[str]
    name: str | None = None  # None: a comment, a blank line or text Postfix ignores


def _trivia(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


@dataclass
class MainCf:
    entries: list[_Entry]
    changes: list[Change] = field(default_factory=list)
    trailing_newline: bool = True

    @classmethod
    def parse(cls, text: str) -> MainCf:
        entries: list[_Entry] = []
        pending: list[str] = []  # comments/blank lines that may sit inside a continuation
        current: _Entry | None = None
        for line in text.splitlines():
            if _trivia(line):
                pending.append(line)
                continue
            if line[:1].isspace() and current is not None:
                current.lines += [*pending, line]
                pending = []
                continue
            entries += [_Entry([p]) for p in pending]
            pending = []
            match = _PARAM.match(line.strip()) if not line[:1].isspace() else None
            current = _Entry([line], match.group(1) if match else None)
            entries.append(current)
        entries += [_Entry([p]) for p in pending]
        return cls(entries, trailing_newline=text.endswith("\n") or not text)

    # -- reading ------------------------------------------------------------------------
    def _last(self, name: str) -> _Entry | None:
        for entry in reversed(self.entries):
            if entry.name == name:
                return entry
        return None

    def get(self, name: str) -> str | None:
        """The effective value (last definition), continuation lines joined, or None."""
        entry = self._last(name)
        return None if entry is None else _value(entry)

    def names(self) -> list[str]:
        return [e.name for e in self.entries if e.name is not None]

    def render(self) -> str:
        text = "\n".join(line for entry in self.entries for line in entry.lines)
        return text + ("\n" if self.trailing_newline and text else "")

    # -- changing -----------------------------------------------------------------------
    def set(self, name: str, value: str) -> None:
        """Give ``name`` the value ``value`` (unchanged when equal up to whitespace)."""
        entry = self._last(name)
        old = None if entry is None else _value(entry)
        if old is not None and _norm(old) == _norm(value):
            return
        line = f"{name} = {value}" if value else f"{name} ="
        if entry is None:
            self._append(_Entry([line], name))
        else:
            entry.lines = [line]
        self.changes.append(Change(name, old, value))

    def set_list(self, name: str, items: Sequence[str]) -> None:
        """Give the list parameter ``name`` these items, keeping the admin's layout if it can."""
        entry = self._last(name)
        old = None if entry is None else _value(entry)
        if old is not None and _items(old) == list(items):
            return
        if entry is not None and not _insert_lines(entry, _items(old or ""), list(items)):
            entry.lines = [f"{name} = {', '.join(items)}"]
        elif entry is None:
            self._append(_Entry([f"{name} = {', '.join(items)}"], name))
        self.changes.append(Change(name, old, ", ".join(items)))

    def _append(self, entry: _Entry) -> None:
        if not any(e.lines == [ADDED_HEADER] for e in self.entries):
            if self.entries and self.entries[-1].lines[-1].strip():
                self.entries.append(_Entry([""]))
            self.entries.append(_Entry([ADDED_HEADER]))
        self.entries.append(entry)


def _value(entry: _Entry) -> str:
    first = _PARAM.match(entry.lines[0].strip())
    parts = [first.group(2).strip() if first else ""]
    parts += [line.strip() for line in entry.lines[1:] if not _trivia(line)]
    return " ".join(p for p in parts if p)


def _norm(value: str) -> str:
    return " ".join(value.split())


# -- lists ----------------------------------------------------------------------------------


def _tokens(value: str) -> list[str]:
    """Words of a Postfix list: separated by commas and whitespace; ``{ ... }`` is one word."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c.isspace() or c == ",":
            i += 1
        elif c == "{":
            depth, j = 0, i
            while j < n:
                depth += {"{": 1, "}": -1}.get(value[j], 0)
                if depth == 0:
                    break
                j += 1
            if depth:
                raise MainCfError(f"unbalanced '{{' in {value!r}")
            inner = [w for w in re.split(r"[\s,]+", value[i + 1 : j]) if w]
            out.append("{ " + ", ".join(inner) + " }")
            i = j + 1
        else:
            j = i
            while j < n and not (value[j].isspace() or value[j] in ",{"):
                j += 1
            out.append(value[i:j])
            i = j
    return out


def _items(value: str) -> list[str]:
    """A restriction list as items: a restriction with its argument is one item."""
    items: list[str] = []
    tokens = _tokens(value)
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if _TAKES_ARG.match(word) and i + 1 < len(tokens):
            items.append(f"{word} {tokens[i + 1]}")
            i += 2
        else:
            items.append(word)
            i += 1
    return items


def list_items(value: str | None) -> list[str]:
    """Public form of the item split, for plans and tests.

    >>> list_items("permit_mynetworks,check_policy_service { unix:p, default_action=DUNNO }")
    ['permit_mynetworks', 'check_policy_service { unix:p, default_action=DUNNO }']
    """
    return _items(value or "")


def merge_restrictions(current: str | None, ours: Sequence[str]) -> list[str]:
    """``ours`` before ``permit_mynetworks`` (first if absent); the admin's items in order.

    >>> merge_restrictions("permit_mynetworks, permit_sasl_authenticated, "
    ...                    "reject_unauth_destination", ["check_recipient_access hash:/s"])
    ['check_recipient_access hash:/s', 'permit_mynetworks', 'permit_sasl_authenticated', \
'reject_unauth_destination']
    """
    mine = [_canonical(item) for item in ours]
    admin = [item for item in _items(current or "") if item not in mine]
    at = admin.index("permit_mynetworks") if "permit_mynetworks" in admin else 0
    return admin[:at] + mine + admin[at:]


def merge_first(current: str | None, ours: str) -> list[str]:
    """``ours`` first in a list of tables (``transport_maps``), the admin's after it."""
    return [ours, *[t for t in _tokens(current or "") if t != ours]]


def merge_milters(current: str | None, ours: str, replaces: Callable[[str], bool]) -> list[str]:
    """``ours`` added to a milter list; entries ``replaces`` matches (an old DKIM signer) go.

    ``$smtpd_milters`` style references are kept as they are.
    """
    kept = [m for m in _tokens(current or "") if m != ours and not replaces(m)]
    return [*kept, ours]


def _canonical(item: str) -> str:
    return " ".join(_items(item)) if item else item


def _insert_lines(entry: _Entry, old: list[str], new: list[str]) -> bool:
    """Insert ``new``'s extra items as continuation lines; False if that cannot express it.

    Works when ``new`` is ``old`` with items added (none removed or moved) and each added
    run sits before an item that starts a continuation line of its own.
    """
    if [i for i in new if i in old] != old or len(set(new)) != len(new):
        return False
    lines = entry.lines
    starts: dict[str, int] = {}
    for idx, line in enumerate(lines):
        if idx and line[:1].isspace() and not _trivia(line):
            words = _items(line)
            if words:
                starts.setdefault(words[0], idx)
    out = list(lines)
    pending: list[str] = []
    inserts: list[tuple[int, list[str]]] = []
    for item in new:
        if item not in old:
            pending.append(item)
            continue
        if pending:
            if item not in starts:
                return False
            inserts.append((starts[item], pending))
            pending = []
    if pending:
        return False
    for at, items in sorted(inserts, reverse=True):
        anchor = lines[at]
        indent = anchor[: len(anchor) - len(anchor.lstrip())]
        prev = lines[at - 1].rstrip()
        comma = "," if anchor.rstrip().endswith(",") or prev.endswith(",") else ""
        out[at:at] = [f"{indent}{item}{comma}" for item in items]
    entry.lines = out
    return True


# -- the merge mailmend does --------------------------------------------------------------

#: TLS levels of the Postfix SMTP client, weakest first: a stronger one the admin chose stays.
_TLS_ORDER = ("", "none", "may", "encrypt")


@dataclass(frozen=True)
class MergeSpec:
    """What mailmend needs in a main.cf it does not own (built from the host's fleet data)."""

    #: plain parameters set to exactly this value (identity, pacing, milter action, ...)
    settings: tuple[tuple[str, str], ...]
    #: mailmend's RCPT checks (suppression, quota): before ``permit_mynetworks``
    recipient_checks: tuple[str, ...]
    #: the suppression transport table: first in ``transport_maps``
    transport_map: str
    #: the signing milter, added to ``smtpd_milters``; None leaves the milters alone
    milter: str | None
    #: the SMTP client TLS level mailmend wants at least (``may``, or ``encrypt`` with a relay)
    tls_level: str


def replaces_milter(entry: str) -> bool:
    """An OpenDKIM milter entry mailmend's own replaces (its socket, or the usual port 8891)."""
    return "opendkim" in entry.lower() or entry.rstrip("/").endswith((":8891", "@localhost:8891"))


def merge(text: str, spec: MergeSpec) -> MainCf:
    """``text`` with mailmend's parameters merged in; ``.changes`` lists what changed."""
    cf = MainCf.parse(text)
    for name, value in spec.settings:
        cf.set(name, value)
    current_tls = (cf.get("smtp_tls_security_level") or "").strip()
    if current_tls in _TLS_ORDER and _TLS_ORDER.index(current_tls) < _TLS_ORDER.index(
        spec.tls_level
    ):
        cf.set("smtp_tls_security_level", spec.tls_level)
    cf.set_list(
        "smtpd_recipient_restrictions",
        merge_restrictions(cf.get("smtpd_recipient_restrictions"), spec.recipient_checks),
    )
    cf.set_list("transport_maps", merge_first(cf.get("transport_maps"), spec.transport_map))
    if spec.milter is not None:
        cf.set_list(
            "smtpd_milters", merge_milters(cf.get("smtpd_milters"), spec.milter, replaces_milter)
        )
        non_smtpd = cf.get("non_smtpd_milters")
        if _norm(non_smtpd or "") not in ("$smtpd_milters", "${smtpd_milters}"):
            if non_smtpd:
                cf.set_list(
                    "non_smtpd_milters", merge_milters(non_smtpd, spec.milter, replaces_milter)
                )
            else:
                cf.set("non_smtpd_milters", "$smtpd_milters")
    return cf
