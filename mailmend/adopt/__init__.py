"""Adopting existing servers: merge into a main.cf someone else wrote, find the DKIM key that
already signs, and notice another MTA, instead of replacing what is there.

Pure functions over text read from a host (every value from a host is treated as hostile:
:func:`shown` before it reaches a terminal).
"""

from __future__ import annotations


def shown(text: str) -> str:
    """``text`` safe for a terminal line: control and other non-printable characters escaped.

    >>> shown("relay.example\\x1b[2J")
    'relay.example\\\\x1b[2J'
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
