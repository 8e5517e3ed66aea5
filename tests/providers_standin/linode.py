"""Linode (Akamai) API v4, reverse DNS part.

Sources: the API reference, https://techdocs.akamai.com/linode-api/reference/put-ip ("Update
an IP address": ``PUT /v4/networking/ips/{address}`` with ``{"rdns": ...}``; "Forward DNS must
already be set up for reverse DNS to be applied"; answers the IP address object) and
https://techdocs.akamai.com/linode-api/reference/get-ip (``GET /v4/networking/ips/{address}``);
errors are ``{"errors": [{"reason": ..., "field": ...}]}`` (401 without a valid token, 404, 429,
400 for a bad field), as the official client ``linode-api4`` 5.48 reads them
(``ApiError.errors``). Auth: ``Authorization: Bearer TOKEN``. The exact 400 reason for an
rdns whose forward record is missing is not quoted in the reference: the text here is ours.
"""

from __future__ import annotations

import re

from tests.providers_standin import Machine, Reply, Request, StandIn

_IP = re.compile(r"/v4/networking/ips/([0-9a-fA-F.:]+)\Z")


def _errors(status: int, reason: str, field: str | None = None) -> Reply:
    error: dict[str, str] = {"reason": reason}
    if field:
        error["field"] = field
    return status, {"errors": [error]}


class LinodeStandIn(StandIn):
    base_path = "/v4"

    def unauthorized(self) -> Reply:
        return _errors(401, "Invalid Token")

    def rate_limited(self) -> Reply:
        return _errors(429, "Too many requests")

    def outage(self) -> Reply:
        return _errors(503, "Service unavailable")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        match = _IP.match(request.path)
        machine = self.machine_by_ip(match[1]) if match else None
        if machine is None:
            return _errors(404, "Not found")
        if request.method == "GET":
            return 200, self._ip(machine)
        if request.method == "PUT":
            body = request.body if isinstance(request.body, dict) else {}
            rdns = body.get("rdns")
            if not isinstance(rdns, str) or not self.forward_resolves(rdns, machine.ip):
                return _errors(400, f"{rdns} does not resolve to {machine.ip}", "rdns")
            self.publish_ptr(machine, rdns)
            return 200, self._ip(machine)
        return _errors(405, "Method not allowed")

    def _ip(self, m: Machine) -> dict[str, object]:
        return {
            "address": m.ip,
            "gateway": m.ip.rsplit(".", 1)[0] + ".1",
            "subnet_mask": "255.255.255.0",
            "prefix": 24,
            "type": "ipv4",
            "public": True,
            "rdns": m.ptr,
            "linode_id": m.id,
            "region": "us-east",
        }
