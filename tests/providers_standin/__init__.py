"""Local stand-ins for VPS provider APIs (test-only): the official clients are pointed at them.

Each stand-in serves, on a loopback address of the sandbox, the documented paths, methods,
auth headers, request bodies, status codes and error bodies of one provider's reverse-DNS
calls (the sources are cited in each module). When a PTR is set it publishes it in the
sandbox's Knot with a TSIG-signed update, so ``mailmend ptr``'s verification in DNS is real.

What a stand-in cannot show: the real service's exact error texts where the reference does
not give them, its rate limits' numbers, and its delay before a PTR shows in DNS (``delay``
simulates one; ``never_publish`` simulates "accepted, still pending").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.reversename
import dns.update

from mailmend.records.tsig import load_key_file
from sandbox.control import Sandbox
from sandbox.dns import reverse_zone

Reply = tuple[int, Any]  # status, JSON body (None: no body)


@dataclass
class Machine:
    """One VPS in the stand-in's account."""

    id: int
    name: str
    ip: str
    ip_id: int = 0
    ptr: str | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    target: str = ""  # the path with its query, as sent


@dataclass
class StandIn:
    """A provider API on ``127.B.9.60:PORT``; subclasses implement :meth:`route`."""

    sandbox: Sandbox
    machines: list[Machine]
    token: str
    mode: str = "ok"  # ok | rate_limit | outage
    never_publish: bool = False
    requests: list[Request] = field(default_factory=list)

    base_path = ""

    def __post_init__(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, dict(self.headers), body, self.path)
                standin.requests.append(request)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                status, reply = standin.dispatch(request, query, raw)
                data = b"" if reply is None else json.dumps(reply).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        address = f"127.{self.sandbox.net.block}.9.60"  # beside the sandbox's services
        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.base_path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def dispatch(self, request: Request, query: dict[str, str], raw: bytes) -> Reply:
        denied = self.authenticate(request, raw)
        if denied is not None:
            return denied
        if self.mode == "rate_limit":
            return self.rate_limited()
        if self.mode == "outage":
            return self.outage()
        return self.route(request, query)

    # -- per provider --------------------------------------------------------------------
    def authenticate(self, request: Request, raw: bytes) -> Reply | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.unauthorized()
        return None

    def unauthorized(self) -> Reply:
        raise NotImplementedError

    def rate_limited(self) -> Reply:
        raise NotImplementedError

    def outage(self) -> Reply:
        raise NotImplementedError

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        raise NotImplementedError

    # -- the sandbox DNS -----------------------------------------------------------------
    def machine_by_ip(self, ip: str) -> Machine | None:
        return next((m for m in self.machines if m.ip == ip), None)

    def forward_resolves(self, name: str, ip: str) -> bool:
        query = dns.message.make_query(name.rstrip(".") + ".", "AAAA" if ":" in ip else "A")
        reply = dns.query.udp(query, self.sandbox.net.dns, timeout=3)
        return ip in {rd.to_text() for rr in reply.answer for rd in rr}

    def publish_ptr(self, machine: Machine, name: str) -> None:
        """Set the PTR (as the provider's own DNS would), unless ``never_publish``."""
        machine.ptr = name.rstrip(".")
        if self.never_publish:
            return
        key = load_key_file(self.sandbox.dns.tsig_file)
        zone = reverse_zone(machine.ip.rsplit(".", 1)[0])
        update = dns.update.UpdateMessage(zone + ".", keyring=key.key(), keyname=key.key().name)
        owner = dns.reversename.from_address(machine.ip)
        update.replace(owner, 60, dns.rdata.from_text("IN", "PTR", machine.ptr + "."))
        reply = dns.query.tcp(update, self.sandbox.net.dns, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(reply.rcode())
