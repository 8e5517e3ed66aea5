"""Hostinger's VPS API, reverse DNS part.

Sources: the API reference, https://developers.hostinger.com/#tag/vps-ptr-records
("Create PTR record": ``POST /api/vps/v1/virtual-machines/{virtualMachineId}/ptr/{ipAddressId}``
with ``{"domain": ...}``; "Get virtual machines": ``GET /api/vps/v1/virtual-machines``), and the
OpenAPI document the official client ``hostinger-api`` 4.3 is generated from (its models:
``VPSV1VirtualMachinePTRStoreRequest`` {domain}, ``VPSV1ActionActionResource``
{id, name, state, created_at, updated_at}, ``VPSV1IPAddressIPAddressResource`` {id, address,
ptr}; errors 401 and 500 {message, correlation_id}, 422 {message, errors, correlation_id}).
Auth: ``Authorization: Bearer TOKEN``. The 429 body is not in the reference: the shape of the
other errors is used.
"""

from __future__ import annotations

import re

from tests.providers_standin import Reply, Request, StandIn

_PTR = re.compile(r"/api/vps/v1/virtual-machines/(\d+)/ptr/(\d+)\Z")
NOW = "2026-01-01T00:00:00Z"


class HostingerStandIn(StandIn):
    def _error(self, status: int, message: str) -> Reply:
        return status, {"message": message, "correlation_id": "standin-0001"}

    def unauthorized(self) -> Reply:
        return self._error(401, "Unauthenticated.")

    def rate_limited(self) -> Reply:
        return self._error(429, "Too Many Attempts.")

    def outage(self) -> Reply:
        return self._error(500, "Internal server error")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        if request.method == "GET" and request.path == "/api/vps/v1/virtual-machines":
            return 200, [self._vm(m) for m in self.machines]
        match = _PTR.match(request.path)
        if request.method == "POST" and match:
            vm_id, ip_id = int(match[1]), int(match[2])
            machine = next((m for m in self.machines if m.id == vm_id and m.ip_id == ip_id), None)
            if machine is None:
                return self._error(404, "Not found")
            body = request.body if isinstance(request.body, dict) else {}
            domain = body.get("domain")
            if not isinstance(domain, str) or not domain:
                return 422, {
                    "message": "The domain field is required.",
                    "errors": {"domain": ["The domain field is required."]},
                    "correlation_id": "standin-0002",
                }
            self.publish_ptr(machine, domain)
            action = {"id": 8123, "name": "ptr_create", "state": "success"}
            return 200, {**action, "created_at": NOW, "updated_at": NOW}
        return self._error(404, "Not found")

    def _vm(self, m: object) -> dict[str, object]:
        from tests.providers_standin import Machine

        assert isinstance(m, Machine)
        return {
            "id": m.id,
            "hostname": m.name,
            "state": "running",
            "ipv4": [{"id": m.ip_id, "address": m.ip, "ptr": m.ptr}],
            "ipv6": [],
            "created_at": NOW,
        }
