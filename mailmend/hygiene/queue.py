"""Queue triage from ``postqueue -j``: what is waiting, why, and who put it there.

``postqueue -j`` prints one JSON object per queued message (Postfix >= 3.1)::

    {"queue_name": "deferred", "queue_id": "4F2A21C0B3", "arrival_time": 1795867201,
     "message_size": 2310, "forced_expire": false, "sender": "web@example.com",
     "recipients": [{"address": "a@example.net", "delay_reason": "connect to ...: timed out"}]}

:func:`triage` summarises a queue and raises two flags (data, never printed here):

- ``mass_mailing``: one sender owns many queued messages (a compromised account or a web form
  filling the queue): at least ``sender_count`` messages, or at least ``sender_share`` of a
  queue of at least ``min_queue`` messages.
- ``backscatter``: the queue is full of bounces (the null sender): Postfix is bouncing mail it
  accepted for non-existent users, which gets the IP on backscatter lists.

A bounce's sender is empty in the envelope; Postfix 3.7's ``postqueue -j`` prints it as
``"sender": "MAILER-DAEMON"`` (older versions printed ``""``): both parse to ``""``. Acting on
bounces takes :data:`BOUNCES`, never an empty sender string (an empty shell variable must not
select every bounce).

    >>> msgs = parse_queue(['{"queue_name": "active", "queue_id": "ABC123", '
    ...     '"arrival_time": 100, "message_size": 10, "sender": "MAILER-DAEMON", "recipients": '
    ...     '[{"address": "x@example.net"}]}'])
    >>> msgs[0].is_bounce, queue_ids_for_sender(msgs, BOUNCES)
    (True, ['ABC123'])
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: How Postfix shows the empty (bounce) sender: ``postqueue -p`` and, from 3.7 at least,
#: ``postqueue -j``.
BOUNCE_SENDER = "MAILER-DAEMON"


class Bounces:
    """The selector for bounces (the null sender) in :func:`queue_ids_for_sender`."""

    def __repr__(self) -> str:
        return "BOUNCES"


#: Select bounces, explicitly: no sender string means "bounces".
BOUNCES = Bounces()
_QUEUE_ID = re.compile(r"[0-9A-Za-z]{5,32}\Z")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_BRACKETED = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_SPACES = re.compile(r"\s+")
MAX_REASON_LENGTH = 160

FlagKind = Literal["mass_mailing", "backscatter"]


class QueueParseError(ValueError):
    """A ``postqueue -j`` line that is not a queue entry; names the line."""


@dataclass(frozen=True)
class Recipient:
    address: str
    delay_reason: str = ""


@dataclass(frozen=True)
class QueuedMessage:
    queue_name: str
    queue_id: str
    arrival_time: int
    message_size: int
    sender: str
    recipients: tuple[Recipient, ...]
    forced_expire: bool = False

    @property
    def is_bounce(self) -> bool:
        return self.sender == ""

    @property
    def sender_label(self) -> str:
        return self.sender or BOUNCE_SENDER


@dataclass(frozen=True)
class Thresholds:
    """When to raise a flag; see the module docstring."""

    sender_count: int = 50
    sender_share: float = 0.5
    min_queue: int = 20
    bounce_count: int = 50
    bounce_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("sender_count", "min_queue", "bounce_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("sender_share", "bounce_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    message: str
    sender: str | None = None


@dataclass(frozen=True)
class QueueTriage:
    messages: int
    recipients: int
    size_bytes: int
    by_queue: dict[str, int]
    oldest_age_seconds: int | None
    top_senders: list[tuple[str, int]]
    top_recipient_domains: list[tuple[str, int]]
    deferral_reasons: list[tuple[str, int]]
    bounces: int
    flags: list[Flag] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "recipients": self.recipients,
            "size_bytes": self.size_bytes,
            "by_queue": self.by_queue,
            "oldest_age_seconds": self.oldest_age_seconds,
            "bounces": self.bounces,
            "top_senders": [{"sender": s, "messages": n} for s, n in self.top_senders],
            "top_recipient_domains": [
                {"domain": d, "recipients": n} for d, n in self.top_recipient_domains
            ],
            "deferral_reasons": [{"reason": r, "recipients": n} for r, n in self.deferral_reasons],
            "flags": [
                {"kind": f.kind, "message": f.message, "sender": f.sender} for f in self.flags
            ],
        }


# -- parsing ------------------------------------------------------------------------------


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise QueueParseError(f"{where}: {name!r} missing or not {getattr(kind, '__name__', kind)}")
    return value


def parse_entry(obj: Any, where: str = "entry") -> QueuedMessage:
    """One :class:`QueuedMessage` from a decoded ``postqueue -j`` object."""
    if not isinstance(obj, dict):
        raise QueueParseError(f"{where}: not a JSON object")
    queue_id = _field(obj, "queue_id", str, where)
    if not _QUEUE_ID.match(queue_id):
        raise QueueParseError(f"{where}: {queue_id!r} is not a Postfix queue id")
    recipients = []
    for item in _field(obj, "recipients", list, where):
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise QueueParseError(f"{where}: a recipient without an address")
        reason = item.get("delay_reason", "")
        recipients.append(Recipient(item["address"], reason if isinstance(reason, str) else ""))
    return QueuedMessage(
        queue_name=_field(obj, "queue_name", str, where),
        queue_id=queue_id,
        arrival_time=_field(obj, "arrival_time", int, where),
        message_size=_field(obj, "message_size", int, where),
        sender=_sender(_field(obj, "sender", str, where)),
        recipients=tuple(recipients),
        forced_expire=obj.get("forced_expire") is True,
    )


def _sender(raw: str) -> str:
    """The envelope sender; ``""`` for a bounce, whichever way ``postqueue -j`` shows it."""
    return "" if raw == BOUNCE_SENDER else raw


def parse_queue(lines: Iterable[str]) -> list[QueuedMessage]:
    """Every message in ``postqueue -j`` output; blank lines skipped, bad ones raised."""
    messages = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise QueueParseError(f"line {number}: not JSON ({err.msg})") from None
        messages.append(parse_entry(obj, f"line {number}"))
    return messages


# -- triage -------------------------------------------------------------------------------


def normalize_reason(reason: str) -> str:
    """A deferral reason with addresses masked, so one cause counts once across hosts/IPs."""
    text = _BRACKETED.sub("[IP]", reason)
    text = _IPV4.sub("IP", text)
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 3] + "..."


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() or "(local)"


def _flags(messages: Sequence[QueuedMessage], senders: Counter[str], t: Thresholds) -> list[Flag]:
    total = len(messages)
    flags = []
    big_enough = total >= t.min_queue
    for sender, count in senders.most_common():
        if sender == BOUNCE_SENDER:
            continue
        share = count / total
        if count >= t.sender_count or (big_enough and share >= t.sender_share):
            flags.append(
                Flag(
                    "mass_mailing",
                    f"{sender} has {count} of {total} queued messages ({share:.0%}): "
                    "a mass mailing, or a compromised account or web form",
                    sender,
                )
            )
    bounces = sum(1 for m in messages if m.is_bounce)
    bounce_share = bounces / total
    if bounces and (bounces >= t.bounce_count or (big_enough and bounce_share >= t.bounce_share)):
        flags.append(
            Flag(
                "backscatter",
                f"{bounces} of {total} queued messages are bounces ({bounce_share:.0%}): "
                "backscatter risk; reject unknown recipients at RCPT time instead of bouncing",
                BOUNCE_SENDER,
            )
        )
    return flags


def triage(
    messages: Sequence[QueuedMessage],
    *,
    now: float,
    thresholds: Thresholds | None = None,
    top: int = 5,
) -> QueueTriage:
    """Summarise a queue: size, age, deferral reasons, top senders and domains, and flags."""
    t = thresholds or Thresholds()
    senders = Counter(m.sender.lower() if m.sender else BOUNCE_SENDER for m in messages)
    domains: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for message in messages:
        for rcpt in message.recipients:
            domains[_domain(rcpt.address)] += 1
            if rcpt.delay_reason:
                reasons[normalize_reason(rcpt.delay_reason)] += 1
    oldest = min((m.arrival_time for m in messages), default=None)
    return QueueTriage(
        messages=len(messages),
        recipients=sum(len(m.recipients) for m in messages),
        size_bytes=sum(m.message_size for m in messages),
        by_queue=dict(Counter(m.queue_name for m in messages).most_common()),
        oldest_age_seconds=None if oldest is None else max(0, int(now - oldest)),
        top_senders=senders.most_common(top),
        top_recipient_domains=domains.most_common(top),
        deferral_reasons=reasons.most_common(top),
        bounces=sum(1 for m in messages if m.is_bounce),
        flags=_flags(messages, senders, t) if messages else [],
    )


# -- acting on one sender -----------------------------------------------------------------


def sender_matches(message: QueuedMessage, sender: str | Bounces) -> bool:
    """Exact (case-insensitive) sender match; :data:`BOUNCES` selects bounces.

    An empty or bounce-like sender string (``""``, ``<>``, ``MAILER-DAEMON``) is refused: it
    must never quietly mean every bounce.
    """
    if isinstance(sender, Bounces):
        return message.is_bounce
    if sender.strip() in ("", "<>") or sender.upper() == BOUNCE_SENDER:
        raise ValueError(f"{sender!r} is not a sender address; select bounces with BOUNCES")
    return message.sender.lower() == sender.lower()


def queue_ids_for_sender(
    messages: Iterable[QueuedMessage], sender: str | Bounces, *, skip_held: bool = False
) -> list[str]:
    """The queue ids of exactly ``sender``'s messages (never a substring match), validated."""
    ids = []
    for message in messages:
        if not sender_matches(message, sender):
            continue
        if skip_held and message.queue_name == "hold":
            continue
        if not _QUEUE_ID.match(message.queue_id):  # parse_entry checked; keep the guarantee
            raise QueueParseError(f"{message.queue_id!r} is not a Postfix queue id")
        ids.append(message.queue_id)
    return ids
