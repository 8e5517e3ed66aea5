"""Reading report mails from an IMAP folder (through :mod:`mailmend.imap`).

Messages are fetched in batches with ``BODY.PEEK[]`` (they stay unread for other clients).
Each message read is remembered by (mailbox, UIDVALIDITY, UID), so the next fetch asks for
new messages only. With ``move_to``, messages whose reports were kept (or were already kept)
move there; a message with a problem stays where it is, and is reported once.
"""

from __future__ import annotations

import email.parser
from collections.abc import Iterator, Sequence
from typing import Any

import imapclient.exceptions

from mailmend.dmarc.db import mark_seen, seen_uids
from mailmend.dmarc.ingest import Ingester
from mailmend.imap import ImapError

BATCH = 50  # messages per FETCH


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _subject(body: bytes) -> str:
    headers = email.parser.BytesHeaderParser().parsebytes(body[:16384])
    return str(headers.get("Subject", ""))[:120]


def fetch_reports(
    client: Any, folder: str, mailbox: str, ingester: Ingester, move_to: str | None = None
) -> list[int]:
    """Feed every new message of ``folder`` to ``ingester``; returns the UIDs moved.

    ``client`` is a logged-in ``imapclient.IMAPClient`` (or :class:`mailmend.imap.Bounded`);
    ``mailbox`` names the account and folder in the database. Raises :class:`ImapError` (one
    line) when the folder cannot be used. Batch by batch, the reports are committed together
    with the messages marked read; with ``move_to``, the kept messages are marked only once
    moved. A run stopped anywhere (a timeout, Ctrl-C) loses nothing: the next one reads the
    messages not marked, and a report it already has is counted as already kept, not twice.
    """
    conn = ingester.conn
    try:
        info = client.select_folder(folder)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        uids = sorted(int(u) for u in client.search(["ALL"]))
    except imapclient.exceptions.IMAPClientError as err:
        raise ImapError(f"cannot open folder {folder!r}: {err}") from None
    seen = seen_uids(conn, mailbox, uidvalidity)
    todo = [u for u in uids if u not in seen]
    limit = ingester.limits.max_input * 4 // 3 + 65536  # base64 and the rest of the mail
    moved: list[int] = []
    for batch in _chunks(todo, BATCH):
        done = _read(client, batch, ingester, limit)
        later = set(done) if move_to else set()  # marked once moved
        mark_seen(conn, mailbox, uidvalidity, [u for u in batch if u not in later])
        ingester.commit()
        if move_to and done:
            _move(client, done, move_to, create=not moved)
            mark_seen(conn, mailbox, uidvalidity, done)
            moved += done
    return moved


def _read(client: Any, batch: Sequence[int], ingester: Ingester, limit: int) -> list[int]:
    """Feed one batch to ``ingester``; the UIDs whose reports were kept (or already were)."""
    sizes = client.fetch(batch, ["RFC822.SIZE"])
    wanted = []
    for uid in batch:
        size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
        if size > limit:
            ingester.result.inputs += 1
            ingester.problem(f"message UID {uid}", f"{size} bytes: larger than {limit}")
        else:
            wanted.append(uid)
    bodies = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
    done: list[int] = []
    for uid in wanted:
        body = bodies.get(uid, {}).get(b"BODY[]")
        if not isinstance(body, bytes):
            ingester.problem(f"message UID {uid}", "the server sent no body")
            continue
        before = len(ingester.result.problems)
        ingester.add(body, f"message UID {uid} ({_subject(body)!r})")
        if len(ingester.result.problems) == before:
            done.append(uid)
    return done


def _move(client: Any, uids: list[int], folder: str, *, create: bool) -> None:
    try:
        if create and not client.folder_exists(folder):
            client.create_folder(folder)
        if client.has_capability("MOVE"):
            client.move(uids, folder)
        else:
            client.copy(uids, folder)
            client.delete_messages(uids)
            client.expunge(uids)
    except imapclient.exceptions.IMAPClientError as err:
        raise ImapError(f"cannot move the read messages to {folder!r}: {err}") from None
