"""Vultr API v2, reverse DNS part (no official Python client: REST over requests).

Sources: the API reference, https://www.vultr.com/api/ ("Create Instance Reverse IPv4":
``POST /v2/instances/{instance-id}/ipv4/reverse`` with ``{"ip": ..., "reverse": ...}``,
answering 204 No Content; "List Instances": ``GET /v2/instances`` with the ``main_ip`` filter,
answering ``{"instances": [...], "meta": {"total", "links"}}``; errors ``{"error": ...,
"status": ...}`` with 400, 401, 404, 429, 500), and
https://docs.vultr.com/reference/terraform/resources/reverse_ipv4 ("DNS changes may take 6-12
hours to become active": ``never_publish`` stages that). Auth: ``Authorization: Bearer KEY``.
The error texts here are ours.
"""

from __future__ import annotations

import re

from tests.providers_standin import Machine, Reply, Request, StandIn

_REVERSE = re.compile(r"/v2/instances/([^/]+)/ipv4/reverse\Z")


def _error(status: int, message: str) -> Reply:
    return status, {"error": message, "status": status}


class VultrStandIn(StandIn):
    base_path = "/v2"

    def unauthorized(self) -> Reply:
        return _error(401, "Invalid API token.")

    def rate_limited(self) -> Reply:
        return _error(429, "Rate limit exceeded.")

    def outage(self) -> Reply:
        return _error(500, "Internal server error.")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        if request.method == "GET" and request.path == "/v2/instances":
            found = [m for m in self.machines if query.get("main_ip") in (None, m.ip)]
            meta = {"total": len(found), "links": {"next": "", "prev": ""}}
            return 200, {"instances": [self._instance(m) for m in found], "meta": meta}
        match = _REVERSE.match(request.path)
        if request.method == "POST" and match:
            machine = next((m for m in self.machines if str(m.id) == match[1]), None)
            if machine is None:
                return _error(404, "Invalid instance-id.")
            body = request.body if isinstance(request.body, dict) else {}
            if body.get("ip") != machine.ip or not body.get("reverse"):
                return _error(400, "Invalid IP address.")
            self.publish_ptr(machine, str(body["reverse"]))
            return 204, None
        return _error(404, "Not found.")

    def _instance(self, m: Machine) -> dict[str, object]:
        return {"id": str(m.id), "label": m.name, "main_ip": m.ip, "v6_main_ip": "",
                "status": "active", "power_status": "running"}  # fmt: skip
