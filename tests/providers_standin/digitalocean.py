"""DigitalOcean API v2: no PTR call; a droplet's PTR follows its name.

Sources: the API reference, https://docs.digitalocean.com/reference/api/ ("List All
Droplets": ``GET /v2/droplets`` answering ``{"droplets": [...], "links", "meta": {"total"}}``
with ``networks.v4[].ip_address``; "Rename a Droplet": ``POST /v2/droplets/{id}/actions`` with
``{"type": "rename", "name": ...}`` answering 201 ``{"action": {...}}``; errors
``{"id": ..., "message": ...}``, 401 ``unauthorized``, 404 ``not_found``, 429
``too_many_requests``), and https://docs.digitalocean.com/products/networking/dns/how-to/manage-records/
(PTR records are set from the droplet's name). Auth: ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import re

from tests.providers_standin import Machine, Reply, Request, StandIn

_ACTIONS = re.compile(r"/v2/droplets/(\d+)/actions\Z")


def _error(status: int, code: str, message: str) -> Reply:
    return status, {"id": code, "message": message}


class DigitalOceanStandIn(StandIn):
    base_path = "/v2"

    def unauthorized(self) -> Reply:
        return _error(401, "unauthorized", "Unable to authenticate you")

    def rate_limited(self) -> Reply:
        return _error(429, "too_many_requests", "API Rate limit exceeded.")

    def outage(self) -> Reply:
        return _error(500, "server_error", "Server was unable to give you a response.")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        if request.method == "GET" and request.path == "/v2/droplets":
            droplets = [self._droplet(m) for m in self.machines]
            return 200, {"droplets": droplets, "links": {}, "meta": {"total": len(droplets)}}
        match = _ACTIONS.match(request.path)
        if request.method == "POST" and match:
            machine = next((m for m in self.machines if m.id == int(match[1])), None)
            if machine is None:
                return _error(
                    404, "not_found", "The resource you were accessing could not be found."
                )
            body = request.body if isinstance(request.body, dict) else {}
            if body.get("type") != "rename" or not body.get("name"):
                return _error(422, "unprocessable_entity", "Name is required")
            machine.name = str(body["name"])
            self.publish_ptr(machine, machine.name)  # the PTR follows the droplet's name
            action = {"id": 36804745, "status": "in-progress", "type": "rename",
                      "resource_id": machine.id, "resource_type": "droplet"}  # fmt: skip
            return 201, {"action": action}
        return _error(404, "not_found", "The resource you were accessing could not be found.")

    def _droplet(self, m: Machine) -> dict[str, object]:
        v4 = [{"ip_address": m.ip, "netmask": "255.255.255.0", "type": "public"}]
        return {"id": m.id, "name": m.name, "status": "active", "networks": {"v4": v4, "v6": []}}
