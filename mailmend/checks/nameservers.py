"""Nameservers as the DNS engine and ``mailmend records`` reach them: an IP literal and a port.

>>> parse_nameserver("[::1]:5353")
Nameserver(host='::1', port=5353)
>>> str(parse_nameserver("127.0.0.1"))
'127.0.0.1:53'
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.resolver

__all__ = ["Nameserver", "parse_nameserver", "system_nameservers"]


@dataclass(frozen=True)
class Nameserver:
    """A nameserver's address (an IP literal, never a name) and UDP/TCP port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``IP``, ``IP:PORT``, ``IPv6`` or ``[IPv6]:PORT``.

    >>> parse_nameserver("[::1]:5353")
    Nameserver(host='::1', port=5353)
    """
    text = text.strip()
    host, port = _split_host_port(text)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {host!r} is not an IP address") from None
    return Nameserver(str(addr), _parse_port(text, port))


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None  # IPv4 alone, or a bare IPv6 address


def _parse_port(text: str, port: str | None) -> int:
    if port is None:
        return 53
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"nameserver {text!r}: port must be 1-65535")
    return int(port)


def system_nameservers() -> tuple[Nameserver, ...]:
    """The nameservers of /etc/resolv.conf (search list and options are ignored)."""
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        raise ValueError("no nameserver in /etc/resolv.conf: give one explicitly") from None
    return tuple(parse_nameserver(str(ns)) for ns in resolver.nameservers)
