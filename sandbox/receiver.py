"""The SMTP receiver standing in for the rest of the internet.

Records every message it accepts (raw ``.eml`` plus one JSON line with its arrival time,
peer, HELO, envelope) and answers chosen recipients with 550 5.1.1 (hard bounce) or 450
(deferral), read from ``rules.json`` at every RCPT so tests can change them live.

Run: ``python -m sandbox.receiver STATE_DIR LISTEN_ADDR`` (the sandbox starts it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.scenario import SINK_HOST


@dataclass(frozen=True)
class Received:
    time: float
    peer: str
    helo: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    path: Path

    def content(self) -> bytes:
        return self.path.read_bytes()


class Receiver:
    """Paths of one receiver's records; used by the server and by tests."""

    def __init__(self, state: Path) -> None:
        self.dir = state / "receiver"
        self.messages = self.dir / "messages"
        self.index = self.dir / "index.jsonl"
        self.rules = self.dir / "rules.json"

    def set_rules(self, reject: list[str] | None = None, defer: list[str] | None = None) -> None:
        tmp = self.rules.with_suffix(".tmp")
        tmp.write_text(json.dumps({"reject": reject or [], "defer": defer or []}))
        tmp.rename(self.rules)

    def read_rules(self) -> dict[str, set[str]]:
        try:
            data = json.loads(self.rules.read_text())
        except FileNotFoundError:
            return {"reject": set(), "defer": set()}
        return {k: {a.lower() for a in data.get(k, [])} for k in ("reject", "defer")}

    def received(self) -> list[Received]:
        if not self.index.exists():
            return []
        out = []
        for line in self.index.read_text().splitlines():
            d = json.loads(line)
            out.append(
                Received(
                    d["time"],
                    d["peer"],
                    d["helo"],
                    d["mail_from"],
                    tuple(d["rcpt_tos"]),
                    self.dir / d["file"],
                )
            )
        return out


class _Handler:
    def __init__(self, rec: Receiver) -> None:
        self.rec = rec
        self.count = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        rules = self.rec.read_rules()
        if address.lower() in rules["reject"]:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.lower() in rules["defer"]:
            return f"450 4.2.0 <{address}>: Recipient address rejected: Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.time()
        self.count += 1
        name = f"messages/{now:.6f}-{self.count}.eml"
        (self.rec.dir / name).write_bytes(envelope.original_content or envelope.content)
        entry = {
            "time": now,
            "peer": session.peer[0] if session.peer else "",
            "helo": session.host_name or "",
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "file": name,
        }
        with self.rec.index.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        return "250 2.0.0 Ok: queued by the mailmend sandbox receiver"


def main(argv: list[str]) -> int:
    from aiosmtpd.controller import Controller

    rec = Receiver(Path(argv[0]))
    addr = argv[1]
    rec.messages.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        _Handler(rec),
        hostname=addr,
        port=25,
        server_hostname=SINK_HOST,
        ready_timeout=10,
    )
    controller.start()
    print(f"receiver: listening on {addr}:25", flush=True)
    try:
        asyncio.run(_forever())
    finally:
        controller.stop()
    return 0


async def _forever() -> None:
    await asyncio.Event().wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
