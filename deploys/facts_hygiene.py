"""pyinfra facts for sending hygiene: hard bounces from the mail log, and the mail queue.

Both run plain POSIX tools on the host (no Python there) and return parsed data; only the
matching log lines and the queue listing cross the network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.facts import FactBase

from mailmend.hygiene import bounces, queue, scan


class HardBounces(FactBase[Any]):
    """
    Hard bounces (``status=bounced``, ``dsn=5.x.x``) in ``maillog_file`` and its rotations
    (``.1``, ``.2.gz``...) and in the journal when the host has one, one record per address.

    .. code:: python

        host.get_fact(HardBounces, log_file="/var/log/postfix.log")
        {"gone@example.com": BounceRecord(address="gone@example.com",
            first_seen=datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC), last_seen=...,
            count=3, dsn="5.1.1", text="host mx.example.com[192.0.2.1] said: 550 5.1.1 ...")}
    """

    @staticmethod
    def default() -> dict[str, bounces.BounceRecord]:
        return {}

    def command(self, log_file: str = scan.DEFAULT_LOG_FILE, journal: bool = True) -> StringCommand:
        return scan.scan_command(log_file, journal=journal)

    def process(self, output: list[str]) -> dict[str, bounces.BounceRecord]:
        events = bounces.parse_lines(output, reference=datetime.now(UTC))
        return bounces.hard_bounces(events)


class MailQueue(FactBase[Any]):
    """
    The Postfix queue as parsed ``postqueue -j`` entries (empty list when Postfix is absent).

    .. code:: python

        host.get_fact(MailQueue)
        [QueuedMessage(queue_name="deferred", queue_id="4F2A21C0B3", arrival_time=1795867201,
            message_size=2310, sender="web@example.com",
            recipients=(Recipient(address="a@example.net", delay_reason="..."),))]
    """

    @staticmethod
    def default() -> list[queue.QueuedMessage]:
        return []

    def requires_command(self) -> str:
        return "postqueue"

    def command(self) -> str:
        return "postqueue -j"

    def process(self, output: list[str]) -> list[queue.QueuedMessage]:
        return queue.parse_queue(output)
