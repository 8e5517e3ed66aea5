"""Hostinger's DNS API (zones and snapshots), over the sandbox's PowerDNS as its DNS.

Sources:
* The API reference, https://developers.hostinger.com/#tag/dns-zone and #tag/dns-snapshot.
* The OpenAPI document that the official client ``hostinger-api`` 4.3 is generated from:
  ``api/dns_zone_api.py``, ``api/dns_snapshot_api.py`` and their models.

The calls:
* ``GET /api/dns/v1/zones/{domain}`` answers a list of ``DNSV1ZoneRecordResource``
  ``{name, records: [{content, is_disabled}], ttl, type}``. ``name`` is relative, ``@`` is the
  apex.
* ``PUT /api/dns/v1/zones/{domain}`` takes ``DNSV1ZoneUpdateRequest`` ``{overwrite (default
  true), zone: [{name, records: [{content}], ttl?, type}]}``. The model says: with overwrite,
  "resource records (RRs) matching name and type will be deleted and new RRs will be created,
  otherwise resource records' ttl's are updated and new records are appended". It answers 200
  ``CommonSuccessEmptyResource`` ``{message}``.
* ``POST /api/dns/v1/zones/{domain}/validate`` takes the same body and answers 200, or 422
  ``{message, errors, correlation_id}``.
* ``GET /api/dns/v1/snapshots/{domain}`` answers a list of ``DNSV1SnapshotSnapshotResource``
  ``{id, reason, created_at}``.

Errors: 401 and 500 ``{message, correlation_id}``; 422 also carries ``errors`` (the models
InlineObject, InlineObject1 and InlineObject2). Auth is ``Authorization: Bearer TOKEN``.

Not in the reference, so chosen here:
* A domain the account does not hold gets 422.
* TXT content is plain text, as hPanel takes it. This stand-in splits it into 255-byte strings
  in DNS.
* Each accepted PUT adds a snapshot of the zone as it was before the change.

Behind the API is the sandbox's PowerDNS, driven through its own HTTP API. So what mailmend
writes is served in DNS, and a change made "behind mailmend's back" in PowerDNS shows in this
API, as it would in hPanel.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.providers_standin import Reply, Request
from tests.providers_standin.hostinger import NOW, HostingerStandIn

_ZONE = re.compile(r"/api/dns/v1/zones/([a-z0-9.-]+)(/validate)?\Z")
_SNAPSHOTS = re.compile(r"/api/dns/v1/snapshots/([a-z0-9.-]+)\Z")
TYPES = ("A", "AAAA", "CNAME", "ALIAS", "MX", "TXT", "NS", "SOA", "SRV", "CAA")
DEFAULT_TTL = 14400


def txt_to_zone(text: str) -> str:
    """Plain text as PowerDNS's zone-file form: 255-byte strings, quoted."""
    data = text.encode()
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    quoted = []
    for chunk in chunks:
        body = chunk.decode("utf-8", "replace").replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{body}"')
    return " ".join(quoted)


def zone_to_txt(content: str) -> str:
    """PowerDNS's zone-file form back to plain text (the strings joined)."""
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', content)
    return "".join(re.sub(r"\\(.)", r"\1", s) for s in strings)


@dataclass
class HostingerDnsStandIn(HostingerStandIn):
    """``mode`` "invalid": validate and PUT answer 422, as for a record Hostinger refuses;
    "answer_late": a PUT is applied, and its answer comes ``late`` seconds after."""

    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    late: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pdns = requests.Session()
        self.pdns.headers["X-API-Key"] = self.sandbox.pdns.api_key()

    # -- PowerDNS behind the API ---------------------------------------------------------
    def _pdns_url(self, domain: str) -> str:
        return f"{self.sandbox.pdns.api_url}/api/v1/servers/localhost/zones/{domain}."

    def _rrsets(self, domain: str) -> list[dict[str, Any]] | None:
        reply = self.pdns.get(self._pdns_url(domain), timeout=5)
        if reply.status_code in (404, 422):
            return None
        reply.raise_for_status()
        rrsets: list[dict[str, Any]] = reply.json()["rrsets"]
        return rrsets

    def _relative(self, domain: str, fqdn: str) -> str:
        name = fqdn.rstrip(".")
        return "@" if name == domain else name.removesuffix("." + domain)

    def _absolute(self, domain: str, name: str) -> str:
        return f"{domain}." if name == "@" else f"{name}.{domain}."

    # -- the API -------------------------------------------------------------------------
    def route(self, request: Request, query: dict[str, str]) -> Reply:
        zone = _ZONE.match(request.path)
        if zone:
            domain, validate = zone[1], bool(zone[2])
            rrsets = self._rrsets(domain)
            if rrsets is None:
                return self._invalid("domain", "The selected domain is invalid.")
            if request.method == "GET" and not validate:
                return 200, [self._resource(domain, rr) for rr in rrsets]
            if (request.method, validate) in (("PUT", False), ("POST", True)):
                problem = self._problem(request.body)
                if problem is not None:
                    return self._invalid(*problem)
                if validate:
                    return 200, {"message": "Request accepted"}
                self._snapshot(domain)
                self._apply(domain, rrsets, request.body)
                if self.mode == "answer_late":
                    time.sleep(self.late)
                return 200, {"message": "Request accepted"}
        snapshots = _SNAPSHOTS.match(request.path)
        if snapshots and request.method == "GET":
            domain = snapshots[1]
            if self._rrsets(domain) is None:
                return self._invalid("domain", "The selected domain is invalid.")
            return 200, self.snapshots.setdefault(domain, [self._first(1)])
        return super().route(request, query)

    def _invalid(self, key: str, text: str) -> Reply:
        return 422, {"message": text, "errors": {key: [text]}, "correlation_id": "standin-0003"}

    def _resource(self, domain: str, rrset: dict[str, Any]) -> dict[str, Any]:
        records = []
        for record in rrset["records"]:
            content = record["content"]
            if rrset["type"] == "TXT":
                content = zone_to_txt(content)
            records.append({"content": content, "is_disabled": bool(record.get("disabled"))})
        return {
            "name": self._relative(domain, rrset["name"]),
            "records": records,
            "ttl": rrset["ttl"],
            "type": rrset["type"],
        }

    def _problem(self, body: Any) -> tuple[str, str] | None:
        if self.mode == "invalid":
            return "zone.0.records.0.content", "The content is invalid for this record type."
        if not isinstance(body, dict) or not isinstance(body.get("zone"), list):
            return "zone", "The zone field is required."
        if not isinstance(body.get("overwrite", True), bool):
            return "overwrite", "The overwrite field must be true or false."
        for i, entry in enumerate(body["zone"]):
            if not isinstance(entry, dict):
                return f"zone.{i}", "The zone entry must be an object."
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                return f"zone.{i}.name", "The name field is required."
            if entry.get("type") not in TYPES:
                return f"zone.{i}.type", "The selected type is invalid."
            if "ttl" in entry and not isinstance(entry["ttl"], int):
                return f"zone.{i}.ttl", "The ttl must be an integer."
            records = entry.get("records")
            if not isinstance(records, list) or not records:
                return f"zone.{i}.records", "The records field is required."
            for j, record in enumerate(records):
                if not isinstance(record, dict) or not isinstance(record.get("content"), str):
                    return f"zone.{i}.records.{j}.content", "The content field is required."
        return None

    def _apply(self, domain: str, rrsets: list[dict[str, Any]], body: dict[str, Any]) -> None:
        """One PowerDNS PATCH for the whole request (all or nothing, as one API call)."""
        overwrite = body.get("overwrite", True)
        changes = []
        for entry in body["zone"]:
            name = self._absolute(domain, entry["name"])
            current = next(
                (rr for rr in rrsets if rr["name"] == name and rr["type"] == entry["type"]), None
            )
            new = [
                {"content": self._content(entry["type"], r["content"]), "disabled": False}
                for r in entry["records"]
            ]
            if not overwrite and current is not None:
                new = [*current["records"], *new]
            ttl = entry.get("ttl") or (current["ttl"] if current else DEFAULT_TTL)
            changes.append(
                {"name": name, "type": entry["type"], "ttl": ttl, "changetype": "REPLACE",
                 "records": new}
            )  # fmt: skip
        reply = self.pdns.patch(self._pdns_url(domain), json={"rrsets": changes}, timeout=5)
        reply.raise_for_status()

    def _content(self, rdtype: str, content: str) -> str:
        return txt_to_zone(content) if rdtype == "TXT" else content

    def _first(self, number: int) -> dict[str, Any]:
        return {"id": number, "reason": "Zone created", "created_at": NOW}

    def _snapshot(self, domain: str) -> None:
        taken = self.snapshots.setdefault(domain, [self._first(1)])
        taken.append({"id": len(taken) + 1, "reason": "Zone records updated", "created_at": NOW})

    # -- for the tests: what hPanel shows, and changes made there behind mailmend's back ----
    def listing(self, domain: str) -> list[dict[str, Any]]:
        """The zone as ``GET /api/dns/v1/zones/{domain}`` answers it."""
        return [self._resource(domain, rr) for rr in self._rrsets(domain) or []]

    def set_rrset(
        self, domain: str, name: str, rdtype: str, values: list[str], disabled: tuple[str, ...] = ()
    ) -> None:
        """Replace an rrset in PowerDNS; ``disabled`` values are added as disabled records."""
        rrsets = self._rrsets(domain) or []
        fqdn = self._absolute(domain, self._relative(domain, name))
        current = next((rr for rr in rrsets if rr["name"] == fqdn and rr["type"] == rdtype), None)
        records = [{"content": self._content(rdtype, v), "disabled": False} for v in values]
        records += [{"content": self._content(rdtype, v), "disabled": True} for v in disabled]
        ttl = current["ttl"] if current else 300
        change = {"name": fqdn, "type": rdtype, "ttl": ttl, "changetype": "REPLACE",
                  "records": records}  # fmt: skip
        reply = self.pdns.patch(self._pdns_url(domain), json={"rrsets": [change]}, timeout=5)
        reply.raise_for_status()
