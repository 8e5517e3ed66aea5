"""Hetzner Cloud API, reverse DNS part.

Sources: the API reference, https://docs.hetzner.cloud/reference/cloud ("Change reverse DNS
entry for this Server": ``POST /v1/servers/{id}/actions/change_dns_ptr`` with
``{"ip": ..., "dns_ptr": ...}``, answering 201 ``{"action": {...}}``; "Get all Servers":
``GET /v1/servers`` with ``page``/``per_page`` and ``meta.pagination``; "Errors": every error
is ``{"error": {"code", "message", "details"}}`` with codes ``unauthorized`` (401),
``not_found`` (404), ``rate_limit_exceeded`` (429), ``unavailable`` (503)), and the official
client ``hcloud`` 2.27, which sends ``Authorization: Bearer TOKEN`` and reads those bodies.
"""

from __future__ import annotations

import re

from tests.providers_standin import Machine, Reply, Request, StandIn

_SERVER = re.compile(r"/v1/servers/(\d+)\Z")
_PTR = re.compile(r"/v1/servers/(\d+)/actions/change_dns_ptr\Z")
NOW = "2026-01-01T00:00:00+00:00"


def _error(status: int, code: str, message: str) -> Reply:
    return status, {"error": {"code": code, "message": message, "details": {}}}


class HetznerStandIn(StandIn):
    base_path = "/v1"

    def unauthorized(self) -> Reply:
        return _error(401, "unauthorized", "unable to authenticate")

    def rate_limited(self) -> Reply:
        return _error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached")

    def outage(self) -> Reply:
        return _error(503, "unavailable", "service is unavailable")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        if request.method == "GET" and request.path == "/v1/servers":
            servers = [self._server(m) for m in self.machines]
            pagination = {"page": 1, "per_page": 50, "previous_page": None, "next_page": None,
                          "last_page": 1, "total_entries": len(servers)}  # fmt: skip
            return 200, {"servers": servers, "meta": {"pagination": pagination}}
        match = _SERVER.match(request.path)
        if request.method == "GET" and match:
            machine = self._by_id(int(match[1]))
            if machine is None:
                return _error(404, "not_found", "server not found")
            return 200, {"server": self._server(machine)}
        match = _PTR.match(request.path)
        if request.method == "POST" and match:
            machine = self._by_id(int(match[1]))
            if machine is None:
                return _error(404, "not_found", "server not found")
            body = request.body if isinstance(request.body, dict) else {}
            if body.get("ip") != machine.ip or "dns_ptr" not in body:
                return _error(400, "invalid_input", "invalid input in field 'ip'")
            self.publish_ptr(machine, str(body["dns_ptr"]))
            return 201, {"action": self._action(machine)}
        return _error(404, "not_found", "not found")

    def _by_id(self, server_id: int) -> Machine | None:
        return next((m for m in self.machines if m.id == server_id), None)

    def _server(self, m: Machine) -> dict[str, object]:
        return {
            "id": m.id,
            "name": m.name,
            "status": "running",
            "created": NOW,
            "public_net": {
                "ipv4": {"id": m.ip_id, "ip": m.ip, "blocked": False, "dns_ptr": m.ptr or ""},
                "ipv6": None,
                "floating_ips": [],
                "firewalls": [],
            },
            "private_net": [],
            "labels": {},
            "volumes": [],
        }

    def _action(self, m: Machine) -> dict[str, object]:
        return {
            "id": 13,
            "command": "change_dns_ptr",
            "status": "running",
            "progress": 0,
            "started": NOW,
            "finished": None,
            "resources": [{"id": m.id, "type": "server"}],
            "error": None,
        }
