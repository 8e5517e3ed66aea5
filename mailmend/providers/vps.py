"""One small adapter per VPS provider: find the server by its IP, set the PTR of that IP.

Each adapter uses the provider's official Python client where one exists (``hostinger-api``,
``hcloud``, ``linode-api4``, ``ovh``) and its REST API over ``requests`` otherwise (Vultr,
DigitalOcean). Every failure becomes one :class:`~mailmend.providers.secrets.ProviderError`
line: refused credentials, a server not found by its IP, a rate limit, an outage.

DigitalOcean has no PTR call: a droplet's PTR follows its name. :meth:`DigitalOcean.set_ptr`
renames the droplet, and :mod:`mailmend.providers.ptr` calls it only with an explicit flag.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from mailmend.providers.secrets import (
    NoAnswer,
    NotFound,
    ProviderError,
    Unavailable,
    client_errors,
    http_errors,
    redact,
    remember,
    status_error,
)

DEFAULT_ENDPOINTS = {
    "hostinger": "https://developers.hostinger.com",
    "hetzner": "https://api.hetzner.cloud/v1",
    "linode": "https://api.linode.com/v4",
    "ovh": "ovh-eu",
    "vultr": "https://api.vultr.com/v2",
    "digitalocean": "https://api.digitalocean.com/v2",
}


@dataclass(frozen=True)
class Target:
    """Where the PTR of ``ip`` is set: the provider's ids for it, and its name there."""

    ip: str
    server_id: str
    detail: str = ""  # e.g. Hostinger's IP address id, OVH's IP block


class PtrApi(Protocol):
    name: str

    def find(self, ip: str) -> Target: ...

    def set_ptr(self, target: Target, fqdn: str) -> None: ...


def _not_found(provider: str, ip: str) -> NotFound:
    return NotFound(f"{provider}: no server with the IP {ip} in this account")


class Hostinger:
    """hostinger-api: ``POST /api/vps/v1/virtual-machines/{vmId}/ptr/{ipAddressId}``."""

    name = "hostinger"

    def __init__(self, token: str, endpoint: str, timeout: float) -> None:
        from mailmend.providers import hostinger_client

        self.client = hostinger_client.api_client(endpoint, token)
        self.timeout = timeout
        self.hostinger = hostinger_client

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return self.hostinger.errors(what)

    def find(self, ip: str) -> Target:
        (vms_api,) = self.hostinger.load("api.vps_virtual_machine_api")
        vms = vms_api.VPSVirtualMachineApi(self.client)
        with self._errors("hostinger: listing virtual machines"):
            machines = vms.get_virtual_machines_v1(_request_timeout=self.timeout)
        for vm in machines:
            for address in [*(vm.ipv4 or []), *(vm.ipv6 or [])]:
                if address.address == ip:
                    return Target(ip, str(vm.id), str(address.id))
        raise _not_found(self.name, ip)

    def set_ptr(self, target: Target, fqdn: str) -> None:
        ptr_api, models = self.hostinger.load("api.vpsptr_records_api", "models")
        ptr = ptr_api.VPSPTRRecordsApi(self.client)
        request = models.VPSV1VirtualMachinePTRStoreRequest(domain=fqdn)
        with self._errors(f"hostinger: setting the PTR of {target.ip}"):
            ptr.create_ptr_record_v1(
                int(target.server_id), int(target.detail), request, _request_timeout=self.timeout
            )


class Hetzner:
    """hcloud: ``POST /v1/servers/{id}/actions/change_dns_ptr``."""

    name = "hetzner"

    def __init__(self, token: str, endpoint: str, timeout: float) -> None:
        from hcloud import Client

        self.client = Client(token=token, api_endpoint=endpoint, timeout=timeout)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        from hcloud import APIException

        statuses = {"unauthorized": 401, "forbidden": 403, "not_found": 404}
        statuses |= {"rate_limit_exceeded": 429, "service_error": 503, "unavailable": 503}

        def convert(err: Any) -> tuple[int, str]:
            code = err.code
            return code if isinstance(code, int) else statuses.get(str(code), 400), err.message

        return _unreadable_errors(what, client_errors(what, APIException, convert))

    def find(self, ip: str) -> Target:
        with self._errors("hetzner: listing servers"):
            servers = self.client.servers.get_all()
        for server in servers:
            net = server.public_net
            v4 = net.ipv4.ip if net is not None and net.ipv4 is not None else None
            v6 = net.ipv6.network if net is not None and net.ipv6 is not None else None
            if v4 == ip or (v6 and ":" in ip and _in_network(ip, v6)):
                return Target(ip, str(server.id))
        raise _not_found(self.name, ip)

    def set_ptr(self, target: Target, fqdn: str) -> None:
        with self._errors(f"hetzner: setting the PTR of {target.ip}"):
            server = self.client.servers.get_by_id(int(target.server_id))
            server.change_dns_ptr(target.ip, fqdn)


class Linode:
    """linode-api4: ``PUT /v4/networking/ips/{address}`` with ``rdns`` (the forward record
    must already resolve to the address)."""

    name = "linode"

    def __init__(self, token: str, endpoint: str, timeout: float) -> None:
        from linode_api4 import LinodeClient

        self.client = LinodeClient(token, base_url=endpoint, retry_max=2)
        self.timeout = timeout

    def _errors(self, what: str) -> AbstractContextManager[None]:
        from linode_api4.errors import ApiError

        return client_errors(
            what, ApiError, lambda e: (int(e.status or 0), "; ".join(map(str, e.errors)))
        )

    def find(self, ip: str) -> Target:
        from linode_api4 import IPAddress

        try:
            with self._errors(f"linode: looking up {ip}"):
                address = self.client.load(IPAddress, ip)
        except NotFound:
            raise _not_found(self.name, ip) from None
        if getattr(address, "linode_id", None) is None:
            raise _not_found(self.name, ip)
        return Target(ip, str(address.linode_id))

    def set_ptr(self, target: Target, fqdn: str) -> None:
        from linode_api4 import IPAddress

        with self._errors(f"linode: setting the rdns of {target.ip}"):
            address = self.client.load(IPAddress, target.ip)
            address.rdns = fqdn
            address.save()


class Ovh:
    """ovh: ``POST /ip/{block}/reverse`` (the forward record must resolve to the address)."""

    name = "ovh"

    def __init__(self, secret: str, endpoint: str, timeout: float) -> None:
        import ovh
        import ovh.client

        parts = secret.split(":")
        if len(parts) != 3 or not all(parts):
            raise ProviderError(
                "ovh: the secret must be APPLICATION_KEY:APPLICATION_SECRET:CONSUMER_KEY"
            )
        for part in parts:
            remember(part)
        if endpoint.startswith(("http://", "https://")):
            ovh.client.ENDPOINTS.setdefault(endpoint, endpoint)  # a base URL, as a named one
        self.client = ovh.Client(
            endpoint=endpoint,
            application_key=parts[0],
            application_secret=parts[1],
            consumer_key=parts[2],
            timeout=timeout,
        )

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import ovh.exceptions as ovh_errors

        try:
            with http_errors(what):
                yield
        except ovh_errors.APIError as err:
            response = getattr(err, "response", None)
            status = int(getattr(response, "status_code", 0) or 0)
            cause = err.args[1] if len(err.args) > 1 else None
            if isinstance(err, ovh_errors.HTTPError) and isinstance(cause, requests.Timeout):
                raise NoAnswer(f"{what}: the OVH API did not answer in time") from None
            if isinstance(err, ovh_errors.HTTPError | ovh_errors.NetworkError):
                raise ProviderError(f"{what}: cannot reach the OVH API") from None
            message = err.args[0] if err.args and err.args[0] is not None else ""
            raise status_error(status or 400, what, redact(str(message))) from None

    def find(self, ip: str) -> Target:
        with self._errors(f"ovh: looking up {ip}"):
            blocks = self.client.get("/ip", ip=ip)
        if not blocks:
            raise _not_found(self.name, ip)
        return Target(ip, str(blocks[0]), str(blocks[0]))

    def set_ptr(self, target: Target, fqdn: str) -> None:
        with self._errors(f"ovh: setting the reverse of {target.ip}"):
            self.client.post(
                f"/ip/{_quote(target.detail)}/reverse", ipReverse=target.ip, reverse=fqdn + "."
            )


class Vultr:
    """REST: ``POST /v2/instances/{id}/ipv4/reverse`` (``/ipv6/reverse`` for IPv6)."""

    name = "vultr"

    def __init__(self, token: str, endpoint: str, timeout: float) -> None:
        self.base = endpoint.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        with http_errors(what):
            response = self.session.request(
                method, self.base + path, timeout=self.timeout, **kwargs
            )
        if not response.ok:
            body = _json(response.text)
            text = body.get("error") or body.get("message") or ""  # Vultr / DigitalOcean
            raise status_error(response.status_code, what, redact(str(text)))
        return _json(response.text) if response.content else {}

    def find(self, ip: str) -> Target:
        key = "main_ip"
        found = self._call("vultr: listing instances", "GET", "/instances", params={key: ip})
        for instance in found.get("instances", []):
            if instance.get("main_ip") == ip or instance.get("v6_main_ip") == ip:
                return Target(ip, str(instance["id"]))
        raise _not_found(self.name, ip)

    def set_ptr(self, target: Target, fqdn: str) -> None:
        family = "ipv6" if ":" in target.ip else "ipv4"
        self._call(
            f"vultr: setting the reverse of {target.ip}",
            "POST",
            f"/instances/{_quote(target.server_id)}/{family}/reverse",
            json={"ip": target.ip, "reverse": fqdn},
        )


class DigitalOcean:
    """No PTR call: the PTR follows the droplet's name. ``set_ptr`` RENAMES the droplet
    (``POST /v2/droplets/{id}/actions`` ``{"type": "rename"}``)."""

    name = "digitalocean"

    def __init__(self, token: str, endpoint: str, timeout: float) -> None:
        self.vultr_like = Vultr(token, endpoint, timeout)

    def find(self, ip: str) -> Target:
        found = self.vultr_like._call(
            "digitalocean: listing droplets", "GET", "/droplets", params={"per_page": 200}
        )
        for droplet in found.get("droplets", []):
            networks = droplet.get("networks", {})
            for net in [*networks.get("v4", []), *networks.get("v6", [])]:
                if net.get("ip_address") == ip:
                    return Target(ip, str(droplet["id"]), str(droplet.get("name", "")))
        raise _not_found(self.name, ip)

    def set_ptr(self, target: Target, fqdn: str) -> None:
        self.vultr_like._call(
            f"digitalocean: renaming droplet {target.server_id}",
            "POST",
            f"/droplets/{_quote(target.server_id)}/actions",
            json={"type": "rename", "name": fqdn},
        )


@contextmanager
def _unreadable_errors(what: str, inner: AbstractContextManager[None]) -> Iterator[None]:
    """hcloud reads an error body of another shape (``{"error": "text"}``, as a proxy in
    front of the API may send) with a TypeError or KeyError: one line instead."""
    try:
        with inner:
            yield
    except (TypeError, KeyError) as err:
        raise Unavailable(
            f"{what}: the provider answered an error its client could not read "
            f"({type(err).__name__}); try again later"
        ) from None


def _json(text: object) -> dict[str, Any]:
    import json

    try:
        value = json.loads(str(text or "") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _in_network(ip: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


_ADAPTERS: dict[str, type[Any]] = {
    "hostinger": Hostinger,
    "hetzner": Hetzner,
    "linode": Linode,
    "ovh": Ovh,
    "vultr": Vultr,
    "digitalocean": DigitalOcean,
}


def adapter(provider: str, secret: str, endpoint: str | None, timeout: float) -> PtrApi:
    """The adapter for ``provider`` (a name from :data:`mailmend.rules.VPS_PROVIDERS`)."""
    cls = _ADAPTERS[provider]
    try:
        api: PtrApi = cls(secret, endpoint or DEFAULT_ENDPOINTS[provider], timeout)
    except ImportError as err:
        raise ProviderError(
            f"{provider}: needs the Python package {err.name}: pip install 'mailmend[providers]'"
        ) from None
    return api
