"""Publish a ``mailmend records`` plan through a DNS provider's API: dns-lexicon's providers
(:class:`Session`), and Hostinger through its own client (:mod:`.hostinger_dns`), which lexicon
lacks. Both are a :class:`ZoneApi`.

The guarantees of the RFC 2136 path (:mod:`mailmend.records.publish`), as far as an HTTP API
allows them:

* only the plan's changes are written; the other records at a name (site verifications) stay;
* each zone's rrsets are read again from the API right before writing; if one is not what the
  plan read, nothing is written to that zone ("changed since it was read"). Unlike RFC 2136
  prerequisites, no provider API makes the write itself conditional: a change made in the
  second between that re-read and the write is not detected;
* a TXT record longer than 255 bytes is sent as several character-strings (2048-bit DKIM
  keys), in the form the provider takes (:data:`TXT_STYLE`);
* after writing, the records are read back through the API, then asked in DNS;
* the outcome is per zone: a refused zone leaves the other zones' outcome intact, and a zone
  where only some writes went through says which ones did.

Example::

    provider = DnsProvider("powerdns", {"pdns_server": "http://127.0.0.1:8081"},
                           {"auth_token": "env:PDNS_API_KEY"})
    outcomes = publish(plan, provider, timeout=10)
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import requests

from mailmend.checks.txt import split_txt
from mailmend.providers.secrets import (
    AuthRefused,
    NoAnswer,
    ProviderError,
    RateLimited,
    Unavailable,
    http_deadline,
    http_error,
    redact,
    resolve_all,
)
from mailmend.records.plan import Plan, RecordChange

#: How a provider takes a TXT record's character-strings in lexicon's ``content``:
#: "zone" = zone-file strings without the outer quotes (lexicon adds them: ``a" "b``);
#: "joined" = the whole text, the provider splits it. Only powerdns was tested (sandbox).
TXT_STYLE = {"powerdns": "zone"}

#: Providers written through their own official client instead of dns-lexicon (which has
#: none for them): name -> the mailmend module with ``installed()`` and ``PACKAGE`` (its
#: client), ``settings_problem(options, credentials)`` and ``Zone`` (a :class:`ZoneApi`).
NATIVE = {"hostinger": "mailmend.providers.hostinger_dns"}


class StaleZone(ProviderError):
    pass


@dataclass(frozen=True)
class DnsProvider:
    """A lexicon provider, its plain options and its credentials (option -> reference)."""

    name: str
    options: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ZoneOutcome:
    zone: str
    records: list[RecordChange]
    status: str = "pending"  # applied | refused | partial | unknown (a write went unanswered)
    message: str = ""
    written: list[str] = field(default_factory=list)
    #: What the provider keeps of the zone as it was before (e.g. Hostinger's snapshot id).
    notes: list[str] = field(default_factory=list)
    api_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "applied" and not self.api_failures


def encode_txt(provider: str, value: str) -> str:
    if TXT_STYLE.get(provider) != "zone":
        return value
    return '" "'.join(_escape(s) for s in split_txt(value))


def decode_txt(provider: str, content: str) -> str:
    if TXT_STYLE.get(provider) != "zone":
        return content
    return joined_strings(f'"{content}"') or content


def joined_strings(zone_form: str) -> str | None:
    """A TXT value in zone-file form (``"a" "b"``) as the joined text; None if it is not."""
    try:
        rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, zone_form)
    except dns.exception.DNSException:
        return None
    return b"".join(rd.strings).decode("utf-8", errors="replace")  # type: ignore[attr-defined]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _content(provider: str, rdtype: str, value: str) -> str:
    if rdtype == "TXT":
        return encode_txt(provider, value)
    return value


def _text(provider: str, rdtype: str, record: Mapping[str, Any]) -> str:
    content = str(record.get("content", ""))
    if rdtype == "TXT":
        return decode_txt(provider, content)
    return name_value(rdtype, content)


def name_value(rdtype: str, content: str) -> str:
    """A non-TXT value as the plan compares it: names without their final dot."""
    return content.rstrip(".") if rdtype in ("PTR", "CNAME", "MX", "NS") else content


class ZoneApi(Protocol):
    """One provider zone as :func:`publish` uses it: read an rrset's values, write rrsets."""

    provider: str
    zone: str

    def refresh(self) -> None:
        """Forget what was read: the next :meth:`texts` asks the API again."""

    def texts(self, name: str, rdtype: str) -> list[str]:
        """The values of the rrset ``name``/``rdtype`` (TXT: the joined text), sorted."""

    def write(
        self, rrsets: Mapping[tuple[str, str], Sequence[RecordChange]], outcome: ZoneOutcome
    ) -> None:
        """Write the planned changes (after :meth:`texts` read every rrset in ``rrsets``);
        each call that went through is added to ``outcome.written``."""


class Session:
    """One authenticated lexicon provider object for one zone."""

    def __init__(self, provider: DnsProvider, secrets: Mapping[str, str], zone: str, ttl: int):
        module = importlib.import_module(f"lexicon._private.providers.{provider.name}")
        from lexicon.config import ConfigResolver

        config = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
            {
                "provider_name": provider.name,
                "domain": zone,
                "ttl": ttl,
                provider.name: {**provider.options, **secrets},
            }
        )
        self.provider = provider.name
        self.zone = zone
        self.api = module.Provider(config)
        self.api.authenticate()
        self._read: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def rrset(self, name: str, rdtype: str) -> list[dict[str, Any]]:
        if (name, rdtype) not in self._read:
            records = self.api.list_records(rdtype, name)
            self._read[(name, rdtype)] = [
                r for r in records if str(r.get("name", "")).rstrip(".") == name
            ]
        return self._read[(name, rdtype)]

    def refresh(self) -> None:
        self._read.clear()

    def texts(self, name: str, rdtype: str) -> list[str]:
        return sorted(_text(self.provider, rdtype, r) for r in self.rrset(name, rdtype))

    def write(
        self, rrsets: Mapping[tuple[str, str], Sequence[RecordChange]], outcome: ZoneOutcome
    ) -> None:
        """Per record: delete each replaced value (by the id read), then add the new one.
        lexicon has no atomic replace: a failure between the two leaves a partial zone."""
        for (name, rdtype), group in rrsets.items():
            for record in group:
                for old in record.remove:
                    for listed in self.rrset(name, rdtype):
                        if _text(self.provider, rdtype, listed) == old:
                            self.api.delete_record(identifier=listed.get("id"))
                            outcome.written.append(f"deleted {rdtype} {name} (old value)")
                self.api.create_record(
                    rdtype, name, _content(self.provider, rdtype, record.value or "")
                )
                outcome.written.append(f"added {rdtype} {name}")


def load_provider(name: str) -> None:
    """Refuse a provider lexicon does not have (exit 2 before anything is sent)."""
    if name in NATIVE:
        native = importlib.import_module(NATIVE[name])
        if not native.installed():  # says so without loading the client
            raise ProviderError(
                f"the {name} provider needs the Python package {native.PACKAGE}: "
                "pip install 'mailmend[providers]'"
            )
        return
    try:
        importlib.import_module(f"lexicon._private.providers.{name}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("lexicon"):
            raise ProviderError(
                f"dns-lexicon has no provider {name!r}, or it is not installed: "
                "pip install 'mailmend[providers]'"
            ) from None
        raise ProviderError(
            f"the {name} provider needs the Python package {err.name}: "
            "pip install 'mailmend[providers]'"
        ) from None


def settings_problem(
    name: str, options: Mapping[str, str], credentials: Mapping[str, str]
) -> str | None:
    """Why a provider's settings cannot work, checked before anything is sent; lexicon's
    providers check theirs when they authenticate."""
    if name not in NATIVE:
        return None
    problem: str | None = importlib.import_module(NATIVE[name]).settings_problem(
        options, credentials
    )
    return problem


@contextmanager
def provider_errors(what: str) -> Iterator[None]:
    """Any failure of a provider library as one :class:`ProviderError` line."""
    try:
        yield
    except ProviderError:
        raise
    except requests.RequestException as err:
        raise http_error(err, what) from None
    except Exception as err:  # noqa: BLE001 - lexicon providers raise bare Exception
        text = redact(str(err)).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ProviderError(f"{what}: {text}") from None


def find_zone(
    name: str, open_session: Callable[[str], ZoneApi], cache: dict[str, ZoneApi | None], what: str
) -> ZoneApi:
    """The provider's zone holding ``name``: the longest suffix the API authenticates."""
    labels = name.split(".")
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate not in cache:
            try:
                with provider_errors(what):
                    cache[candidate] = open_session(candidate)
            except (AuthRefused, RateLimited, Unavailable):  # says nothing of the zone
                raise
            except ProviderError:
                cache[candidate] = None
        found = cache[candidate]
        if found is not None:
            return found
    raise ProviderError(f"the provider holds no zone for {name}: give --zone")


def publish(
    plan: Plan,
    provider: DnsProvider,
    *,
    zone: str | None = None,
    timeout: float = 10.0,
    deadline: float | None = None,
) -> list[ZoneOutcome]:
    """Write ``plan.changes()`` zone by zone; raises only before any write (credentials,
    unreachable API, no zone), otherwise each zone has its outcome. No zone is begun after
    ``deadline`` seconds, and no request of one waits past it."""
    end = None if deadline is None else time.monotonic() + deadline
    secrets = resolve_all(provider.credentials, f"DNS provider {provider.name}")
    changes = plan.changes()

    def open_session(zone_name: str) -> ZoneApi:
        if provider.name in NATIVE:
            native = importlib.import_module(NATIVE[provider.name])
            zone_api: ZoneApi = native.Zone(
                provider.options, secrets, zone_name, plan.ttl, timeout, end
            )
            return zone_api
        return Session(provider, secrets, zone_name, plan.ttl)

    with http_deadline(timeout):
        cache: dict[str, ZoneApi | None] = {}
        groups: dict[str, list[RecordChange]] = {}
        for record in changes:
            if zone:
                groups.setdefault(zone, []).append(record)
            else:
                found = find_zone(record.name, open_session, cache, f"{provider.name} API")
                groups.setdefault(found.zone, []).append(record)
        outcomes: list[ZoneOutcome] = []
        try:
            _publish_zones(groups, outcomes, cache, open_session, timeout, end, deadline)
        except KeyboardInterrupt:
            raise Interrupted(_interrupted(groups, outcomes)) from None
        return outcomes


class Interrupted(Exception):
    """Ctrl-C while writing: ``outcomes`` says, zone by zone, how far each got."""

    def __init__(self, outcomes: list[ZoneOutcome]) -> None:
        super().__init__("interrupted (Ctrl-C)")
        self.outcomes = outcomes


def _interrupted(
    groups: Mapping[str, list[RecordChange]], outcomes: list[ZoneOutcome]
) -> list[ZoneOutcome]:
    """Every zone's outcome at Ctrl-C: the zone being written is partly changed or may have
    changed; the zones not reached were not sent."""
    for outcome in outcomes:
        if outcome.status in ("pending", "writing"):
            outcome.message = "interrupted (Ctrl-C)"
            unsure = outcome.status == "writing"
            outcome.status = "partial" if outcome.written else "unknown" if unsure else "refused"
            if outcome.status == "refused":
                outcome.message = "not sent: interrupted (Ctrl-C)"
    reached = {o.zone for o in outcomes}
    for zone_name, records in groups.items():
        if zone_name not in reached:
            outcomes.append(
                ZoneOutcome(zone_name, records, "refused", "not sent: interrupted (Ctrl-C)")
            )
    return outcomes


def _publish_zones(
    groups: Mapping[str, list[RecordChange]],
    outcomes: list[ZoneOutcome],
    cache: dict[str, ZoneApi | None],
    open_session: Callable[[str], ZoneApi],
    timeout: float,
    end: float | None,
    deadline: float | None,
) -> None:
    """Each zone in turn; ``outcomes`` gets each one as it begins."""
    for zone_name, records in groups.items():
        outcome = ZoneOutcome(zone_name, records)
        outcomes.append(outcome)
        left = timeout if end is None else min(timeout, end - time.monotonic())
        if left <= 0:
            outcome.status = "refused"
            outcome.message = f"not sent: the {deadline:g} s deadline (--deadline) passed first"
            continue
        try:
            with provider_errors(f"zone {zone_name}"), http_deadline(left):
                session = cache.get(zone_name) or open_session(zone_name)
                _publish_zone(session, records, outcome)
                _check_api(session, records, outcome)
        except ProviderError as err:
            unanswered = outcome.status == "writing" and isinstance(err, NoAnswer)
            outcome.status = (
                "partial" if outcome.written else "unknown" if unanswered else "refused"
            )
            outcome.message = str(err)


def _publish_zone(session: ZoneApi, records: Sequence[RecordChange], outcome: ZoneOutcome) -> None:
    by_rrset: dict[tuple[str, str], list[RecordChange]] = {}
    for record in records:
        by_rrset.setdefault((record.name, record.rdtype), []).append(record)
    session.refresh()  # read again right before writing
    for (name, rdtype), group in by_rrset.items():
        now = session.texts(name, rdtype)
        read = sorted(group[0].rrset)
        if now != read:
            raise StaleZone(
                f"{rdtype} {name} changed since it was read ({_difference(read, now)}): "
                f"nothing was written to zone {session.zone}; run records again"
            )
    outcome.status = "writing"
    session.write(by_rrset, outcome)
    outcome.status = "applied"


def _difference(read: Sequence[str], now: Sequence[str]) -> str:
    """How an rrset differs from what the plan read, in counts (values may be long)."""
    gone = len(set(read) - set(now))
    new = len(set(now) - set(read))
    return f"read {len(read)} record(s), now {len(now)}: {gone} gone, {new} new"


def _check_api(session: ZoneApi, records: Sequence[RecordChange], outcome: ZoneOutcome) -> None:
    """Read back through the API: each new value is there, each replaced one is gone."""
    session.refresh()
    for record in records:
        have = session.texts(record.name, record.rdtype)
        if record.value not in have:
            outcome.api_failures.append(
                f"{record.rdtype} {record.name}: the API does not list the new record"
            )
        elif any(old in have for old in record.remove if old != record.value):
            outcome.api_failures.append(
                f"{record.rdtype} {record.name}: the API still lists the old record"
            )


async def verify_dns(
    check: Callable[[Sequence[RecordChange]], Awaitable[list[str]]],
    records: Sequence[RecordChange],
    deadline: float,
    interval: float = 1.0,
) -> list[str]:
    """Ask DNS (``check``: a fresh resolver each call) until every change shows or the
    deadline passes; the failures of the last round (empty: all visible)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        failures = await check(records)
        if not failures or loop.time() + interval > end:
            return failures
        await asyncio.sleep(interval)


def outcome_lines(outcome: ZoneOutcome, dns_failures: Sequence[str] = ()) -> list[str]:
    """What ``records --apply --provider`` says of one zone (stderr)."""
    n = len(outcome.records)
    notes = [f"zone {outcome.zone}: {note}" for note in outcome.notes]
    if outcome.status == "refused":
        return [f"zone {outcome.zone}: not changed: {outcome.message}"]
    if outcome.status == "unknown":
        return [
            f"zone {outcome.zone}: MAY HAVE CHANGED: {outcome.message}; run records again to see",
            *notes,
        ]
    if outcome.status == "partial":
        done = "; ".join(outcome.written)
        return [
            f"zone {outcome.zone}: PARTLY CHANGED: {outcome.message}",
            f"zone {outcome.zone}: already done at the provider: {done}; run records again",
            *notes,
        ]
    lines = [f"zone {outcome.zone}: {n} change(s) written through the API"]
    lines += [f"zone {outcome.zone}: {failure}" for failure in outcome.api_failures]
    lines += [f"zone {outcome.zone}: not visible in DNS: {failure}" for failure in dns_failures]
    if not outcome.api_failures and not dns_failures:
        lines[0] += ", verified through the API and in DNS"
    return lines + notes
