"""A local IMAPS server for fault tests (test-only): real TLS, real IMAP lines, on 127.0.0.1.

It speaks the part of IMAP4rev1 that ``mailmend dmarc fetch`` and ``mailmend mail-test`` use
(CAPABILITY, LOGIN, LIST, SELECT/EXAMINE, CREATE, UID SEARCH/FETCH/MOVE/STORE/EXPUNGE,
LOGOUT), from messages held in memory, and can **stall**: ``stall={"SEARCH": 1}`` answers the
first UID SEARCH of each connection and then never answers another one (the connection stays
open, nothing is sent, or with ``trickle`` a byte now and then) until :meth:`ImapStandIn.fix`
or :meth:`ImapStandIn.close`. The real
provider (Dovecot in the sandbox, tests/e2e) cannot be made to stall like this.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path

from tests.tls import server_context

USER, PASSWORD = "reports@inbox.test", "s3cret-imap"
UIDVALIDITY = 7
_SET = re.compile(r"^[0-9:,*]+$")


class ImapStandIn:
    """IMAPS on ``127.0.0.1:port`` with folders of UID -> message; trust :attr:`cafile`."""

    def __init__(
        self,
        tmp_path: Path,
        messages: Mapping[int, bytes] | None = None,
        stall: Mapping[str, int] | None = None,
        trickle: bool = False,
    ) -> None:
        self.context, self.cafile = server_context(tmp_path)
        self.folders: dict[str, dict[int, bytes]] = {"INBOX": dict(messages or {})}
        self.stall = dict(stall or {})
        self.trickle = trickle  # a stalled answer: one byte every 0.2 s, never a whole line
        self.log: list[str] = []  # every command line received (LOGIN's password hidden)
        self.stalled = threading.Event()  # set once a command was left unanswered
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def fix(self) -> None:
        """From now on every command is answered (connections already stalled stay so)."""
        self.stall = {}

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()

    def __enter__(self) -> ImapStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the server ------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(30)  # a client that vanishes does not keep this thread for ever
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        with self._lock:
            self._conns.append(conn)
        session = _Session(self, conn)
        try:
            session.run()
        except OSError:
            pass
        finally:
            conn.close()


class _Session:
    def __init__(self, server: ImapStandIn, conn: ssl.SSLSocket) -> None:
        self.server = server
        self.conn = conn
        self.reader = conn.makefile("rb")
        self.folder = "INBOX"
        self.answered: dict[str, int] = {}

    def send(self, *lines: str | bytes) -> None:
        data = b"".join((x.encode() if isinstance(x, str) else x) + b"\r\n" for x in lines)
        self.conn.sendall(data)

    def run(self) -> None:
        self.send("* OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] mailmend IMAP stand-in ready")
        while True:
            line = self.reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = text.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if verb == "UID":
                verb, _, args = args.partition(" ")
                verb = verb.upper()
            self.server.log.append(f"{verb} {args}" if verb != "LOGIN" else "LOGIN")
            limit = self.server.stall.get(verb)
            if limit is not None and self.answered.get(verb, 0) >= limit:
                self.server.stalled.set()
                while self.server.trickle and not self.server._stop.wait(0.2):
                    self.conn.sendall(b"*")
                self.server._stop.wait()  # never answers: holds the connection open
                return
            self.answered[verb] = self.answered.get(verb, 0) + 1
            if not self.answer(tag, verb, args):
                return

    def answer(self, tag: str, verb: str, args: str) -> bool:
        box = self.server.folders.setdefault(self.folder, {})
        if verb == "CAPABILITY":
            self.send("* CAPABILITY IMAP4rev1 UIDPLUS MOVE", f"{tag} OK done")
        elif verb == "LOGIN":
            ok = USER in args and PASSWORD in args
            self.send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] no")
        elif verb == "LIST":
            pattern = _unquote(args.split(" ", 1)[1]) if " " in args else "*"
            for name in self.server.folders:
                if pattern in ("*", name):
                    self.send(f'* LIST (\\HasNoChildren) "/" "{name}"')
            self.send(f"{tag} OK done")
        elif verb in ("SELECT", "EXAMINE"):
            self.folder = _unquote(args)
            box = self.server.folders.setdefault(self.folder, {})
            self.send(
                f"* {len(box)} EXISTS",
                f"* OK [UIDVALIDITY {UIDVALIDITY}] UIDs valid",
                f"{tag} OK [READ-WRITE] selected",
            )
        elif verb == "CREATE":
            self.server.folders.setdefault(_unquote(args), {})
            self.send(f"{tag} OK created")
        elif verb == "SEARCH":
            self.send("* SEARCH " + " ".join(str(u) for u in _search(box, args)), f"{tag} OK done")
        elif verb == "FETCH":
            uid_set, _, items = args.partition(" ")
            for uid in _uids(uid_set, box):
                data = box[uid]
                if "RFC822.SIZE" in items.upper():
                    self.send(f"* {uid} FETCH (UID {uid} RFC822.SIZE {len(data)})")
                else:
                    self.send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(data)}}}", data + b")")
            self.send(f"{tag} OK done")
        elif verb == "MOVE":
            uid_set, _, target = args.partition(" ")
            dest = self.server.folders.setdefault(_unquote(target), {})
            for uid in _uids(uid_set, box):
                dest[max(dest, default=0) + 1] = box.pop(uid)
            self.send(f"{tag} OK moved")
        elif verb == "STORE":
            for uid in _uids(args.split(" ", 1)[0], box):
                self.send(f"* {uid} FETCH (UID {uid} FLAGS (\\Deleted))")
            self.send(f"{tag} OK stored")
        elif verb == "EXPUNGE":
            for uid in _uids(args, box):
                box.pop(uid, None)
            self.send(f"{tag} OK expunged")
        elif verb == "NOOP":
            self.send(f"{tag} OK done")
        elif verb == "LOGOUT":
            self.send("* BYE see you", f"{tag} OK bye")
            return False
        else:
            self.send(f"{tag} BAD not spoken here")
        return True


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _uids(uid_set: str, box: Mapping[int, bytes]) -> list[int]:
    if not _SET.match(uid_set):
        return []
    wanted: set[int] = set()
    for part in uid_set.split(","):
        low, _, high = part.partition(":")
        top = max(box, default=0)
        a = top if low == "*" else int(low)
        b = a if not high else top if high == "*" else int(high)
        wanted.update(range(min(a, b), max(a, b) + 1))
    return sorted(u for u in wanted if u in box)


def _search(box: Mapping[int, bytes], criteria: str) -> list[int]:
    words = criteria.split(" ")
    if len(words) >= 3 and words[0].upper() == "HEADER":
        needle = f"{_unquote(words[1])}: {_unquote(' '.join(words[2:]))}".lower().encode()
        return sorted(u for u, data in box.items() if needle in data.lower())
    return sorted(box)
