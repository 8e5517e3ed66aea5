"""OVHcloud API, reverse DNS part.

Sources: the API console's reference, https://eu.api.ovh.com/console/ (``GET /ip`` with the
``ip`` filter lists the blocks holding an address; ``POST /ip/{ip}/reverse`` with
``{"ipReverse": ..., "reverse": ...}`` answers the ``ip.ReverseIp`` object {ipReverse,
reverse}; the reverse must resolve back to the address), the signing scheme of
https://help.ovhcloud.com/csm/en-gb-api-getting-started-ovhcloud-api (headers
``X-Ovh-Application``, ``X-Ovh-Consumer``, ``X-Ovh-Timestamp``, ``X-Ovh-Signature`` =
``"$1$" + sha1(AS+"+"+CK+"+"+METHOD+"+"+URL+"+"+BODY+"+"+TIMESTAMP)``, ``GET /auth/time``
unsigned), and the official client ``ovh`` 1.2, which signs so and maps errors by status and
``errorCode`` (403 ``INVALID_CREDENTIAL``, 404, 400, 429). Error bodies are
``{"message": ..., "errorCode": ..., "httpCode": ...}``; the exact message texts here are ours.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from tests.providers_standin import Reply, Request, StandIn

_REVERSE = re.compile(r"/1\.0/ip/([^/]+)/reverse\Z")


def _error(status: int, code: str, message: str, http: str) -> Reply:
    return status, {"errorCode": code, "httpCode": f"{status} {http}", "message": message}


class OvhStandIn(StandIn):
    base_path = "/1.0"

    def authenticate(self, request: Request, raw: bytes) -> Reply | None:
        if request.path == "/1.0/auth/time":
            return None
        ak, as_, ck = self.token.split(":")
        headers = request.headers
        if headers.get("X-Ovh-Application") != ak or headers.get("X-Ovh-Consumer") != ck:
            return self.unauthorized()
        stamp = headers.get("X-Ovh-Timestamp", "")
        url = self.url.removesuffix(self.base_path) + request.target
        text = "+".join([as_, ck, request.method, url, raw.decode(), stamp])
        if headers.get("X-Ovh-Signature") != "$1$" + hashlib.sha1(text.encode()).hexdigest():  # noqa: S324 - OVH's scheme
            return _error(400, "INVALID_SIGNATURE", "Invalid signature", "Bad Request")
        return None

    def unauthorized(self) -> Reply:
        return _error(403, "INVALID_CREDENTIAL", "This credential is not valid", "Forbidden")

    def rate_limited(self) -> Reply:
        return _error(429, "QUERY_LIMIT_REACHED", "Query limit reached", "Too Many Requests")

    def outage(self) -> Reply:
        return _error(503, "SERVICE_UNAVAILABLE", "Service unavailable", "Service Unavailable")

    def route(self, request: Request, query: dict[str, str]) -> Reply:
        if request.method == "GET" and request.path == "/1.0/auth/time":
            return 200, int(time.time())
        if request.method == "GET" and request.path == "/1.0/ip":
            machine = self.machine_by_ip(query.get("ip", ""))
            return 200, [f"{machine.ip}/32"] if machine else []
        match = _REVERSE.match(request.path)
        if request.method == "POST" and match:
            block = match[1].replace("%2F", "/")
            body: Any = request.body if isinstance(request.body, dict) else {}
            machine = self.machine_by_ip(str(body.get("ipReverse", "")))
            if machine is None or block != f"{machine.ip}/32":
                message = f"The requested object (ip = {block}) does not exist"
                return _error(404, "OBJECT_NOT_FOUND", message, "Not Found")
            reverse = str(body.get("reverse", ""))
            if not self.forward_resolves(reverse, machine.ip):
                message = f"Cannot check if {reverse} resolves to {machine.ip}"
                return _error(400, "INVALID_ARGUMENT", message, "Bad Request")
            self.publish_ptr(machine, reverse)
            return 200, {"ipReverse": machine.ip, "reverse": reverse}
        return _error(404, "OBJECT_NOT_FOUND", "Not found", "Not Found")
