"""Loopback HTTP peers that fail (test-only): one that accepts connections and never sends a
byte, one that answers reads but never a write, and one that answers every request with the
same error status.

What a provider's API does in an outage, as ``mailmend ptr`` and ``records --provider`` meet
it; nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Silent:
    """Accepts every TCP connection on ``127.0.0.1:port`` and never answers (nor closes)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._held.append(conn)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SilentWrites:
    """Answers GET with ``read(path)`` (JSON; None: 404) and never answers a request that
    changes something (POST, PUT, PATCH, DELETE): the call may or may not have been carried
    out."""

    def __init__(
        self, read: Callable[[str], Any], checks: Callable[[str], Any] | None = None
    ) -> None:
        """``checks(path)``: the JSON answer to a POST that changes nothing (a provider's
        validate call); None (or no ``checks``): held like every write."""
        self.writes: list[tuple[str, str]] = []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                body = read(self.path)
                if body is None:
                    data = json.dumps({"error": "Not Found"}).encode()
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._answer(body)

            def _hold(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer = checks(self.path) if checks and self.command == "POST" else None
                if answer is not None:
                    self._answer(answer)
                    return
                server.writes.append((self.command, self.path))
                server._stop.wait()

            do_POST = do_PUT = do_PATCH = do_DELETE = _hold

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SilentWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Failing:
    """Answers every request with ``status`` and a JSON error body (an outage)."""

    def __init__(self, status: int = 500, body: Any = None) -> None:
        data = json.dumps(body if body is not None else {"error": "Internal server error."})
        self.requests: list[tuple[str, str]] = []
        failing = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                failing.requests.append((self.command, self.path))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Failing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
