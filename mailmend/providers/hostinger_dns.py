"""Hostinger DNS through Hostinger's official client, ``hostinger-api``.

dns-lexicon has no Hostinger provider, so this zone uses the client directly. The API works on
whole rrsets. The sources are hostinger-api 4.3's models, generated from Hostinger's OpenAPI
document, and the reference at https://developers.hostinger.com/#tag/dns-zone:

* ``GET /api/dns/v1/zones/{domain}`` returns the zone as rrsets:
  ``{name, type, ttl, records: [{content, is_disabled}]}``. Names are relative, ``@`` is the apex.
* ``PUT /api/dns/v1/zones/{domain}`` takes ``{overwrite, zone: [rrsets]}``. In the request
  model's own words: with ``overwrite`` true, "resource records (RRs) matching name and type will
  be deleted and new RRs will be created". Otherwise the records are appended and the TTLs
  updated. Other names and types are not touched.
* ``POST /api/dns/v1/zones/{domain}/validate`` takes the same body, answers 200 or 422 and
  writes nothing.
* ``GET /api/dns/v1/snapshots/{domain}`` lists the zone snapshots Hostinger keeps by itself.

How a zone is written:

1. The rrsets are read again right before writing (:func:`mailmend.providers.dns.publish`
   compares them with the plan).
2. The newest snapshot is noted as the rollback point.
3. The body is validated (a 422 writes nothing).
4. One PUT with ``overwrite`` true carries each changed rrset in full. Its values are kept as
   they were read, byte for byte; the replaced ones are left out and the new one is added. The
   rrset keeps its own TTL; a new rrset gets the plan's TTL. One request per zone: Hostinger
   applies it or refuses it, and no rrset is left half written by mailmend. An update whose
   answer never comes leaves the zone "may have changed" (the next run reads what is there).

An rrset that holds a disabled record is refused: the overwrite would delete that record, and the
API has no way to create a disabled one. TXT values are sent as the whole text. hPanel takes TXT
values without quotes and leaves the 255-byte split to the provider. A value read back in zone-file
form (``"a" "b"``) is joined. The real service's handling of TXT values over 255 bytes was never
tested (docs/records.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from mailmend.providers import hostinger_client
from mailmend.providers.dns import joined_strings, name_value
from mailmend.providers.secrets import (
    BadCredentials,
    NoAnswer,
    ProviderError,
    Unavailable,
)
from mailmend.records.plan import RecordChange
from mailmend.rules import api_endpoint_problem

if TYPE_CHECKING:
    from mailmend.providers.dns import ZoneOutcome

#: The official client this module needs (:func:`mailmend.providers.dns.load_provider`).
PACKAGE = "hostinger-api"
installed = hostinger_client.installed
#: Where the API lives (``endpoint`` option: a stand-in or a proxy).
DEFAULT_ENDPOINT = "https://developers.hostinger.com"
OPTIONS = ("endpoint",)
#: ``auth_token`` is accepted too: the name dns-lexicon's token providers use.
CREDENTIALS = ("api_token", "auth_token")


def settings_problem(options: Mapping[str, str], credentials: Mapping[str, str]) -> str | None:
    """Why these settings cannot work (checked before anything is sent), or None."""
    for key in options:
        if key not in OPTIONS:
            return f"hostinger has no option {key!r} (known: {', '.join(OPTIONS)})"
    for key in credentials:
        if key not in CREDENTIALS:
            return f"hostinger has no credential {key!r} (known: {', '.join(CREDENTIALS)})"
    if len(credentials) > 1:
        return "hostinger takes one API token: give api_token or auth_token, not both"
    if not credentials:
        return (
            "hostinger needs its API token by reference: --provider-credential "
            "api_token=env:HOSTINGER_API_TOKEN (or credentials = { api_token = ... } in [dns])"
        )
    endpoint = options.get("endpoint")
    problem = api_endpoint_problem(endpoint) if endpoint is not None else None
    return f"endpoint: {problem}" if problem else None


def joined_txt(content: str) -> str:
    """A TXT value as read: zone-file strings (``"a" "b"``) are joined, plain text stays."""
    if not content.startswith('"'):
        return content
    return joined_strings(content) or content


class HostingerZone:
    """One Hostinger zone (:class:`mailmend.providers.dns.ZoneApi`)."""

    provider = "hostinger"

    def __init__(
        self,
        options: Mapping[str, str],
        secrets: Mapping[str, str],
        zone: str,
        ttl: int,
        timeout: float,
        end: float | None = None,
    ) -> None:
        """``end``: a ``time.monotonic()`` no request waits past (``--deadline``)."""
        token = secrets.get("api_token") or secrets.get("auth_token")
        if not token:
            raise BadCredentials(settings_problem(options, {}) or "hostinger: no API token")
        client = hostinger_client.api_client(options.get("endpoint", DEFAULT_ENDPOINT), token)
        zones, snapshots, self.models = hostinger_client.load(
            "api.dns_zone_api", "api.dns_snapshot_api", "models"
        )
        self.zone, self.ttl, self.timeout, self.end = zone, ttl, timeout, end
        self.zones = zones.DNSZoneApi(client)
        self.snapshots = snapshots.DNSSnapshotApi(client)
        self._rrsets: dict[tuple[str, str], Any] | None = None
        self.refresh()
        self._load()  # a zone the account does not hold fails here (find_zone goes on)

    def _wait(self) -> float:
        """The timeout of the next request: ``timeout``, or less when the deadline is near."""
        if self.end is None:
            return self.timeout
        return max(0.05, min(self.timeout, self.end - time.monotonic()))

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return hostinger_client.errors(f"hostinger: {what}")

    def refresh(self) -> None:
        self._rrsets = None

    def _load(self) -> dict[tuple[str, str], Any]:
        if self._rrsets is None:
            with self._errors(f"reading zone {self.zone}"):
                listed = self.zones.get_dns_records_v1(self.zone, _request_timeout=self._wait())
            self._rrsets = {}
            for entry in listed or []:
                name = self._absolute(entry.name or "@")
                self._rrsets[(name, (entry.type or "").upper())] = entry
        return self._rrsets

    def _absolute(self, name: str) -> str:
        name = name.rstrip(".").lower()
        if name in ("@", "", self.zone):
            return self.zone
        return name if name.endswith("." + self.zone) else f"{name}.{self.zone}"

    def _relative(self, name: str) -> str:
        return "@" if name == self.zone else name.removesuffix("." + self.zone)

    def _records(self, name: str, rdtype: str) -> list[Any]:
        entry = self._load().get((name, rdtype))
        return list(entry.records or []) if entry is not None else []

    def texts(self, name: str, rdtype: str) -> list[str]:
        """The values DNS serves: disabled records are left out, as DNS leaves them out."""
        served = [r for r in self._records(name, rdtype) if not r.is_disabled]
        return sorted(_value(rdtype, r.content or "") for r in served)

    def write(
        self, rrsets: Mapping[tuple[str, str], Sequence[RecordChange]], outcome: ZoneOutcome
    ) -> None:
        zone = [self._entry(name, rdtype, group) for (name, rdtype), group in rrsets.items()]
        request = self.models.DNSV1ZoneUpdateRequest(overwrite=True, zone=zone)
        rollback = self._newest_snapshot()
        try:
            with self._errors(f"validating the update of zone {self.zone}"):
                self.zones.validate_dns_records_v1(
                    self.zone, request, _request_timeout=self._wait()
                )
        except NoAnswer as err:  # a check, not a write: an unanswered one changed nothing
            raise Unavailable(str(err)) from None
        if rollback:
            outcome.notes.append(rollback)
        # One request: applied or not. Unanswered, the zone's outcome is "may have changed".
        with self._errors(f"updating zone {self.zone}"):
            self.zones.update_dns_records_v1(self.zone, request, _request_timeout=self._wait())
        for (name, rdtype), group in rrsets.items():
            replaced = any(record.remove for record in group)
            outcome.written.append(f"{'replaced' if replaced else 'added'} {rdtype} {name}")

    def _entry(self, name: str, rdtype: str, group: Sequence[RecordChange]) -> Any:
        current = self._records(name, rdtype)
        if any(r.is_disabled for r in current):
            raise ProviderError(
                f"{rdtype} {name} holds a disabled record at Hostinger; writing the rrset would "
                "delete it (the API cannot create a disabled record): remove or enable it in "
                f"hPanel, then run records again; nothing was written to zone {self.zone}"
            )
        removed = {old for record in group for old in record.remove}
        contents = [
            r.content or "" for r in current if _value(rdtype, r.content or "") not in removed
        ]
        contents += [record.value or "" for record in group]
        entry = self._load().get((name, rdtype))
        ttl = entry.ttl if entry is not None and entry.ttl else self.ttl
        return self.models.DNSV1ZoneUpdateRequestZoneInner(
            name=self._relative(name),
            type=rdtype,
            ttl=ttl,
            records=[
                self.models.DNSV1ZoneUpdateRequestZoneInnerRecordsInner(content=c) for c in contents
            ],
        )

    def _newest_snapshot(self) -> str:
        """The rollback point, in words ("" when the API lists none)."""
        try:
            with self._errors(f"listing the snapshots of zone {self.zone}"):
                listed = self.snapshots.get_dns_snapshot_list_v1(
                    self.zone, _request_timeout=self._wait()
                )
        except ProviderError as err:
            if isinstance(err, Unavailable):
                raise
            return ""
        dated = [s for s in listed or [] if s.id is not None]
        if not dated:
            return ""
        newest = max(dated, key=lambda s: (str(s.created_at or ""), s.id))
        return (
            f"rollback point: Hostinger snapshot {newest.id} of {newest.created_at}, the newest "
            f"before this write (restore: POST /api/dns/v1/snapshots/{self.zone}/{newest.id}"
            "/restore)"
        )


def _value(rdtype: str, content: str) -> str:
    return joined_txt(content) if rdtype == "TXT" else name_value(rdtype, content)


Zone = HostingerZone  # what mailmend.providers.dns.NATIVE looks up
