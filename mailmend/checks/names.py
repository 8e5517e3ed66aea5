"""DNS names as the checks and ``mailmend records`` compare and ask them.

>>> reverse_name("203.0.113.7")
'7.113.0.203.in-addr.arpa.'
>>> normalize_name("MX1.Example.COM.")
'mx1.example.com'
"""

from __future__ import annotations

import dns.reversename


def reverse_name(ip: str) -> str:
    """The PTR query name of an IPv4 or IPv6 address (nibbles for IPv6), absolute."""
    return str(dns.reversename.from_address(ip).to_text())


def normalize_name(name: str) -> str:
    """Lower case, no trailing dot: the form names are compared in."""
    return name.strip().rstrip(".").lower()
