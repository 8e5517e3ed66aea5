"""The one ``tag=value; tag=value`` parser: DKIM key records (RFC 6376 3.2) and DMARC
records (RFC 7489 6.4) are both tag-lists.

Folding white space (space, tab, CR, LF) around a tag name, around ``=`` and around a value
is dropped; white space inside a value is kept. An empty value is a value. Empty parts
(a trailing ``;``, or ``;;``) are skipped. A part without ``=``, an empty tag name, or a tag
given twice is a :class:`TagListError`.

>>> parse_tag_list(" v = DKIM1 ; k=rsa;\\tp= ;")
{'v': 'DKIM1', 'k': 'rsa', 'p': ''}
>>> parse_tag_list("V=DMARC1; P=none", fold_case=True)
{'v': 'DMARC1', 'p': 'none'}
"""

from __future__ import annotations

__all__ = ["FWS", "TagListError", "parse_tag_list"]

FWS = " \t\r\n"  # RFC 5322 folding white space, as DNS TXT data can carry it


class TagListError(ValueError):
    """Not a tag-list: the message says which part and why."""


def parse_tag_list(text: str, *, fold_case: bool = False) -> dict[str, str]:
    """The tags of ``text`` in order of appearance.

    Tag names are case-sensitive in DKIM (RFC 6376 3.2); ``fold_case`` lower-cases them for
    DMARC, whose tag names are case-insensitive. A repeated tag is an error either way.
    """
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip(FWS):
            continue
        name, sep, value = part.partition("=")
        name = name.strip(FWS)
        if fold_case:
            name = name.lower()
        if not sep or not name:
            raise TagListError(f"{part.strip(FWS)!r} is not tag=value")
        if name in tags:
            raise TagListError(f"tag {name}= appears twice")
        tags[name] = value.strip(FWS)
    return tags
