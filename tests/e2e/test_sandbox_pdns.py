"""The sandbox's PowerDNS: its DNS serves copies of the mail zones, and dns-lexicon's powerdns
provider reads and writes them through the HTTP API (X-API-Key header, server id
``localhost``, zone names with a trailing dot), as ``records --provider powerdns`` does.
"""

from __future__ import annotations

from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from lexicon._private.discovery import load_provider_module
from lexicon.config import ConfigResolver

from sandbox.control import Sandbox
from sandbox.pdns import SERVER_ID

pytestmark = pytest.mark.end_to_end


def lexicon(sb: Sandbox, zone: str, key: str | None = None) -> Any:
    config = ConfigResolver().with_dict(
        {
            "provider_name": "powerdns",
            "domain": zone,
            "ttl": 300,
            "powerdns": {
                "auth_token": key if key is not None else sb.pdns.api_key(),
                "pdns_server": sb.pdns.api_url,
                "pdns_server_id": SERVER_ID,
            },
        }
    )
    provider = load_provider_module("powerdns").Provider(config)
    provider.authenticate()
    return provider


def ask(sb: Sandbox, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), sb.net.pdns, timeout=3)


def test_pdns_serves_copies_of_the_mail_zones(sandbox: Sandbox) -> None:
    for h in sandbox.hosts():
        reply = ask(sandbox, h.fqdn, "A")
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rd.address for rr in reply.answer for rd in rr] == [h.public_ipv4]
    assert ask(sandbox, "mx1.sink.test", "A").rcode() == dns.rcode.REFUSED  # not a copy


def test_api_key_is_private_and_required(sandbox: Sandbox) -> None:
    assert sandbox.pdns.api_key_file.stat().st_mode & 0o077 == 0
    url = f"{sandbox.pdns.api_url}/api/v1/servers/{SERVER_ID}/zones"
    assert requests.get(url, headers={"X-API-Key": "wrong"}, timeout=5).status_code == 401
    ok = requests.get(url, headers={"X-API-Key": sandbox.pdns.api_key()}, timeout=5)
    assert ok.status_code == 200
    assert {z["name"] for z in ok.json()} >= {h.domain + "." for h in sandbox.hosts()}


def test_lexicon_powerdns_writes_through_the_api_and_dns_shows_it(sandbox: Sandbox) -> None:
    zone = sandbox.hosts()[0].domain
    name = f"_lexicon-check.{zone}"
    provider = lexicon(sandbox, zone)
    # Two character-strings, as a 2048-bit DKIM record needs: PowerDNS takes zone-file
    # content; lexicon adds the outer quotes.
    provider.create_record("TXT", name, "v=DKIM1; p=" + "A" * 240 + '" "' + "B" * 100)
    reply = ask(sandbox, name, "TXT")
    strings = [s for rr in reply.answer for rd in rr for s in rd.strings]
    assert strings == [b"v=DKIM1; p=" + b"A" * 240, b"B" * 100]
    listed = lexicon(sandbox, zone).list_records("TXT", name)
    assert [r["name"] for r in listed] == [name]
    provider.delete_record(rtype="TXT", name=name)
    assert ask(sandbox, name, "TXT").rcode() == dns.rcode.NXDOMAIN


def test_lexicon_powerdns_wrong_key_is_http_401(sandbox: Sandbox) -> None:
    with pytest.raises(requests.HTTPError) as err:
        lexicon(sandbox, sandbox.hosts()[0].domain, key="wrong")
    assert err.value.response is not None and err.value.response.status_code == 401
