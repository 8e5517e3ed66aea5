"""records.publish: reading an update back when its answer was lost (issue 15 item 8). The
server is faked at read_rrset; the real path is tests/e2e/test_records_publish_faults.py."""

from __future__ import annotations

import dns.rrset
import dns.update
import pytest

from mailmend.checks.nameservers import Nameserver
from mailmend.records import publish
from mailmend.records.plan import Action, RecordChange
from mailmend.records.publish import APPLIED, NOT_APPLIED, UNKNOWN, ZoneUpdate, settle

D = "example.com"
OLD, NEW = "v=spf1 -all", "v=spf1 ip4:203.0.113.7 -all"
SPF = RecordChange("spf", D, "TXT", Action.CHANGE, NEW, (OLD,), ("site=1", OLD))
DMARC = RecordChange("dmarc", f"_dmarc.{D}", "TXT", Action.ADD, "v=DMARC1; p=none")
UPDATE = ZoneUpdate(D, dns.update.UpdateMessage(D + "."), (SPF, DMARC))
SERVER = Nameserver("127.0.0.1", 53)


def serve(monkeypatch: pytest.MonkeyPatch, data: dict[str, tuple[str, ...]] | None) -> None:
    def read(name: str, rdtype: str, server: Nameserver, timeout: float) -> object:
        if data is None:
            raise publish.UpdateRefused("cannot ask 127.0.0.1:53 for TXT: timed out")
        values = data.get(name, ())
        if not values:
            return None
        return dns.rrset.from_text(name + ".", 300, "IN", "TXT", *(f'"{v}"' for v in values))

    monkeypatch.setattr(publish, "read_rrset", read)


@pytest.mark.parametrize(
    ("data", "state"),
    [
        ({D: ("site=1", NEW), f"_dmarc.{D}": ("v=DMARC1; p=none",)}, APPLIED),
        ({D: ("site=1", OLD)}, NOT_APPLIED),
        ({D: ("site=1", OLD), f"_dmarc.{D}": ("v=DMARC1; p=reject",)}, UNKNOWN),  # someone else
        ({D: ("site=1", NEW, OLD), f"_dmarc.{D}": ("v=DMARC1; p=none",)}, UNKNOWN),  # old stays
        (None, UNKNOWN),  # cannot read back
    ],
)
def test_settle_reads_the_update_back(
    monkeypatch: pytest.MonkeyPatch, data: dict[str, tuple[str, ...]] | None, state: str
) -> None:
    serve(monkeypatch, data)
    got, seen = settle(UPDATE, SERVER, 1.0)
    assert got == state, seen
    if data is None:
        assert "cannot read it back" in seen and "run records again" in seen


@pytest.mark.parametrize("answer", ["silent", "none", "ttl"])
def test_published_ttls_asks_once_per_rrset(monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    """Records of one rrset cost one TCP read, also when the server gives no TTL for it."""
    asked: list[tuple[str, str]] = []

    def read(name: str, rdtype: str, server: Nameserver, timeout: float) -> object:
        asked.append((name, rdtype))
        if answer == "silent":
            raise publish.UpdateRefused("cannot ask 127.0.0.1:53 for A: timed out")
        if answer == "none":
            return None
        return dns.rrset.from_text(name + ".", 600, "IN", "A", "192.0.2.1")

    monkeypatch.setattr(publish, "read_rrset", read)
    name, published = f"mx.{D}", ("192.0.2.1",)
    records = [
        RecordChange("a", name, "A", Action.ADD, "192.0.2.2", rrset=published),
        RecordChange("a", name, "A", Action.ADD, "192.0.2.3", rrset=published),
        RecordChange("a", name, "A", Action.KEEP, "192.0.2.1", rrset=published),
    ]
    ttls = publish.published_ttls(records, SERVER, 1.0)
    assert asked == [(name, "A")]
    assert ttls == ({(name, "A"): 600} if answer == "ttl" else {})
