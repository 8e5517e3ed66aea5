"""The sandbox builds its base image from the Debian mirror apt uses, never a third-party list."""

from __future__ import annotations

from sandbox.image import _mirrors_in

DEB822 = """\
Types: deb
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_bookworm_stanza_is_the_mirror() -> None:
    assert _mirrors_in(DEB822) == ["http://mirror.example.org/debian"]


def test_third_party_and_security_lists_are_skipped() -> None:
    third_party = "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
    assert _mirrors_in(third_party) == []
    one_line = (
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://ftp.example.de/debian bookworm main contrib\n"
    )
    assert _mirrors_in(one_line) == ["http://ftp.example.de/debian"]
