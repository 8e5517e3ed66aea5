"""A DNS proxy on loopback, in front of the sandbox's Knot, that loses or holds what a test
says: the reply to an update (Knot applied it, the client never hears), or a message held until
the test has interrupted the client. UDP passes through untouched; TCP messages go through
``rule``. Nothing here talks to anything but 127.0.0.x.

Example::

    lose_updates = lambda kind, n: DROP_REPLY if kind == "update" else PASS
    with DnsProxy(("127.5.9.53", 53), lose_updates) as p:
        run(["mailmend", "records", "--apply", "--server", p.address, ...])
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

PASS, DROP_REPLY, HOLD, HOLD_REPLY = "pass", "drop-reply", "hold", "hold-reply"
#: (kind "update" or "query", how many of that kind came before it) -> what to do
Rule = Callable[[str, int], str]
_UPDATE_OPCODE = 5


class DnsProxy:
    """TCP and UDP on 127.0.0.1:<free port>, forwarding to ``upstream``.

    DROP_REPLY forwards the message and closes the connection without the reply; HOLD keeps
    the message (never forwarded) and HOLD_REPLY forwards it and keeps the reply, both until
    :meth:`release` or the end; ``reached`` is set when a message is held.
    """

    def __init__(self, upstream: tuple[str, int], rule: Rule) -> None:
        self.upstream = upstream
        self.rule = rule
        self.reached = threading.Event()
        self._released = threading.Event()
        self._seen = {"update": 0, "query": 0}
        self._lock = threading.Lock()
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._udp: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        assert self._tcp is not None
        return f"127.0.0.1:{self._tcp.server_address[1]}"

    def release(self) -> None:
        self._released.set()

    def _decide(self, wire: bytes) -> str:
        kind = "update" if len(wire) > 2 and (wire[2] >> 3) & 0x0F == _UPDATE_OPCODE else "query"
        with self._lock:
            n = self._seen[kind]
            self._seen[kind] += 1
        return self.rule(kind, n)

    def _forward_tcp(self, wire: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=5) as up:
            up.sendall(len(wire).to_bytes(2, "big") + wire)
            size = int.from_bytes(_read(up, 2), "big")
            return _read(up, size)

    def _handle(self, conn: socket.socket) -> None:
        while True:
            head = _read(conn, 2, allow_eof=True)
            if not head:
                return
            wire = _read(conn, int.from_bytes(head, "big"))
            action = self._decide(wire)
            if action == HOLD:
                self.reached.set()
                self._released.wait(30)
                return  # never forwarded
            reply = self._forward_tcp(wire)
            if action == DROP_REPLY:
                return
            if action == HOLD_REPLY:
                self.reached.set()
                self._released.wait(30)
                return  # forwarded, reply never sent
            conn.sendall(len(reply).to_bytes(2, "big") + reply)

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while True:
            try:
                data, addr = self._udp.recvfrom(65535)
            except OSError:
                return
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(2)
                try:
                    up.sendto(data, self.upstream)
                    reply = up.recv(65535)
                except OSError:
                    continue
            try:
                self._udp.sendto(reply, addr)
            except OSError:
                return

    def __enter__(self) -> Self:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    proxy._handle(self.request)
                except OSError:
                    pass

        for _ in range(20):
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
            tcp.daemon_threads = True
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", tcp.server_address[1]))
            except OSError:
                tcp.server_close()
                udp.close()
                continue
            self._tcp, self._udp = tcp, udp
            break
        else:
            raise OSError("no free port for TCP and UDP on 127.0.0.1")
        for target in (self._tcp.serve_forever, self._serve_udp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        if self._tcp is not None:
            self._tcp.shutdown()
            self._tcp.server_close()
        if self._udp is not None:
            self._udp.close()


def _read(sock: socket.socket, size: int, allow_eof: bool = False) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            if allow_eof and not data:
                return b""
            raise OSError("connection closed")
        data += chunk
    return data
