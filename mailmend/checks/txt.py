"""TXT values as DNS carries them: character-strings of at most 255 bytes (RFC 1035 3.3).

The one splitter of the project: checks' fixes, the deploy's summary and ``mailmend records``.

>>> split_txt("v=spf1 -all")
('v=spf1 -all',)
>>> txt_strings("v=spf1 -all")
'"v=spf1 -all"'
"""

from __future__ import annotations

TXT_STRING_MAX = 255


def split_txt(value: str) -> tuple[str, ...]:
    """``value`` as TXT character-strings of at most 255 bytes each (joined, they are ``value``).

    Splits on byte boundaries of the UTF-8 form without cutting a character in two.
    """
    data = value.encode("utf-8")
    out: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + TXT_STRING_MAX, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1  # do not cut a multi-byte character
        out.append(data[start:end].decode("utf-8"))
        start = end
    return tuple(out) or ("",)


def txt_strings(value: str) -> str:
    """A TXT value in quoted strings of at most 255 bytes (REFERENCE 3)."""
    return " ".join(f'"{c}"' for c in split_txt(value))
