"""Text read from DNS, made safe for each output: a terminal line, a zone-file comment, a name.

Published records are hostile input: a TXT string may hold a newline (a new zone-file line), an
ESC or BEL (terminal control sequences), a bidi override. :func:`visible` shows such characters
as ``\\DDD`` (the UTF-8 bytes in decimal, as zone files escape them) and doubles ``\\`` so that
an escape in the data cannot pass for ours. TXT values in zone files are quoted by
:func:`mailmend.records.plan.quote_txt`; JSON escapes by itself.
"""

from __future__ import annotations

import re
import unicodedata

import dns.exception
import dns.name

_LDH = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _unsafe(ch: str) -> bool:
    if ch == " ":
        return False
    # C*: control, format (bidi overrides), surrogates, private use, unassigned; Z*: separators
    # other than the plain space (U+2028 ends a line for some readers).
    return ch == "\\" or unicodedata.category(ch)[0] in "CZ"


def visible(text: str) -> str:
    """``text`` with every control, format or separator character (and ``\\``) as ``\\DDD``."""
    if not any(_unsafe(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif _unsafe(ch):
            out.append("".join(f"\\{byte:03d}" for byte in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def zone_name(name: str) -> str | None:
    """``name`` (no trailing dot) as an absolute zone-file owner, or None when it is not a
    host name made of letters, digits, ``-`` and ``_`` (such a name is never written live)."""
    labels = name.split(".")
    if not all(_LDH.fullmatch(label) for label in labels):
        return None
    try:
        return str(dns.name.from_text(name + ".").to_text())
    except dns.exception.DNSException:  # too long
        return None
