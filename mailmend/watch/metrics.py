"""Prometheus metrics of the last run, with ``prometheus_client``.

- ``mailmend_dnsbl_listed{host,ip,zone}``: 1 listed, 0 not listed; ABSENT when the answer was
  unknown (a timeout, a broken list): an alert on ``== 1`` never fires on a DNS outage and a
  ``== 0`` is never a false all-clear. Domain lists put the domain in ``ip``; allowlists
  (being on one is good news) are left out.
- ``mailmend_check_status{host,check,subject,status}``: 1 for the current status of every
  other check (ptr, fcrdns, spf, dkim, dmarc), 0 for the three others.
- ``mailmend_list_broken{zone}``: 1 while a list answers its test points wrong.
- ``mailmend_last_run_timestamp_seconds``, ``mailmend_run_duration_seconds``.

``--metrics-file`` writes them for node_exporter's textfile collector (write, then rename);
``--serve ADDR:PORT`` serves them on ``/metrics``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailmend.watch.model import UNKNOWN, Observation

STATUSES = ("pass", "warn", "fail", "unknown")


@dataclass(frozen=True)
class Snapshot:
    seen: Sequence[Observation] = ()
    zones: Sequence[str] = ()  # every list zone asked this run
    broken: frozenset[str] = field(default_factory=frozenset)
    finished: float | None = None
    duration: float | None = None


class WatchCollector(Collector):
    """Yields the metrics of the latest :class:`Snapshot` (swapped in atomically)."""

    def __init__(self) -> None:
        self._snapshot = Snapshot()
        self._lock = threading.Lock()

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot
        listed = GaugeMetricFamily(
            "mailmend_dnsbl_listed",
            "1 if the IP (or domain) is on the blocklist, 0 if not; absent when unknown",
            labels=["host", "ip", "zone"],
        )
        status = GaugeMetricFamily(
            "mailmend_check_status",
            "1 for the current status of a check (ptr, fcrdns, spf, dkim, dmarc), else 0",
            labels=["host", "check", "subject", "status"],
        )
        allow = allowlists()
        for obs in snap.seen:
            if obs.check == "dnsbl":
                if obs.status != UNKNOWN and obs.zone not in snap.broken and obs.zone not in allow:
                    listed.add_metric([obs.host, obs.subject, obs.zone], 1.0 if obs.listed else 0.0)
            else:
                for name in STATUSES:
                    value = 1.0 if obs.status == name else 0.0
                    status.add_metric([obs.host, obs.check, obs.subject, name], value)
        broken = GaugeMetricFamily(
            "mailmend_list_broken",
            "1 while the list answers its RFC 5782 test points wrong (its answers are ignored)",
            labels=["zone"],
        )
        for zone in sorted({*snap.zones, *snap.broken}):
            broken.add_metric([zone], 1.0 if zone in snap.broken else 0.0)
        yield from (listed, status, broken)
        if snap.finished is not None:
            yield GaugeMetricFamily(
                "mailmend_last_run_timestamp_seconds",
                "when the last watch run finished (Unix time)",
                value=snap.finished,
            )
        if snap.duration is not None:
            yield GaugeMetricFamily(
                "mailmend_run_duration_seconds",
                "how long the last watch run took",
                value=snap.duration,
            )


class Metrics:
    """The registry of the watcher, written to a file and/or served over HTTP."""

    def __init__(self, metrics_file: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = WatchCollector()
        self.registry.register(self.collector)
        self.metrics_file = metrics_file

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def publish(self, snapshot: Snapshot) -> None:
        """Swap in the new run's values; write the file (atomically) if one is configured."""
        self.collector.update(snapshot)
        if self.metrics_file is not None:
            write_to_textfile(str(self.metrics_file), self.registry)


@functools.cache
def allowlists() -> frozenset[str]:
    """Allowlist zones: being on one is good news, not a listing (no ``dnsbl_listed``)."""
    from mailmend.checks.blocklists import Kind, load_blocklists

    return frozenset(bl.zone for bl in load_blocklists() if bl.kind is Kind.ALLOW)


def zones_of(seen: Iterable[Observation]) -> list[str]:
    allow = allowlists()
    return sorted({o.zone for o in seen if o.check == "dnsbl" and o.zone and o.zone not in allow})
