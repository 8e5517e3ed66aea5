"""Text read from outside (DNS data, logs, headers), made safe to print on a terminal.

Published records and log lines are hostile input: a TXT string may hold a newline, an ESC or
BEL (terminal control sequences), a bidi override. :func:`visible` shows such characters as
``\\DDD`` (the UTF-8 bytes in decimal, as zone files escape them) and doubles ``\\`` so that
an escape in the data cannot pass for ours. Every terminal output of mailmend prints outside
text through it; HTML is autoescaped and JSON escapes by itself.
"""

from __future__ import annotations

import unicodedata


def _unsafe(ch: str) -> bool:
    if ch == " ":
        return False
    # C*: control, format (bidi overrides), surrogates, private use, unassigned; Z*: separators
    # other than the plain space (U+2028 ends a line for some readers).
    return ch == "\\" or unicodedata.category(ch)[0] in "CZ"


def visible(text: str) -> str:
    """``text`` with every control, format or separator character (and ``\\``) as ``\\DDD``."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, at C speed: printable ASCII has nothing to escape
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
