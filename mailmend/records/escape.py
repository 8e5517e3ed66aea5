"""Text read from DNS, made safe for each output: a terminal line, a zone-file comment, a name.

Published records are hostile input: a TXT string may hold a newline (a new zone-file line), an
ESC or BEL (terminal control sequences), a bidi override. :func:`visible` shows such characters
as ``\\DDD`` (the UTF-8 bytes in decimal, as zone files escape them) and doubles ``\\`` so that
an escape in the data cannot pass for ours. TXT values in zone files are quoted by
:func:`mailmend.records.plan.quote_txt`; JSON escapes by itself.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name

from mailmend.checks.escape import visible

__all__ = ["visible", "zone_name"]

_LDH = re.compile(r"[A-Za-z0-9_-]{1,63}")


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
