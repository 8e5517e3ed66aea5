"""``mailmend ptr``: each host's reverse DNS, planned from DNS and set through its provider.

Per host and public IP: the PTR published now (asked in DNS), the one to set (the host's
``hostname``), and the forward check first: the hostname must already resolve to the IP, or
FCrDNS would not hold afterwards (Linode and OVH refuse the call then anyway). Applying asks
the provider (:mod:`mailmend.providers.vps`), then polls DNS until the new PTR shows or the
deadline passes: then the PTR is "pending at the provider" (Vultr: hours), never "done".

Example::

    plans = await plan_fleet(resolver, fleet.hosts)
    for item in plans: print(render(item))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from mailmend.checks.dns import Resolver
from mailmend.checks.escape import visible
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.result import CheckResult
from mailmend.fleet import HostSpec


class State(StrEnum):
    KEEP = "keep"  # the PTR already names the host
    SET = "set"  # to set through the provider
    BLOCKED = "blocked"  # the forward record is missing or elsewhere: publish it first
    MANUAL = "manual"  # no vps_provider in the fleet: set it in the provider's panel
    RENAME = "rename"  # DigitalOcean: the PTR follows the droplet name
    UNKNOWN = "unknown"  # DNS did not answer


@dataclass(frozen=True)
class PtrPlan:
    host: str
    ip: str
    fqdn: str
    provider: str | None
    current: tuple[str, ...]
    state: State
    note: str = ""


@dataclass
class PtrOutcome:
    plan: PtrPlan
    result: str  # done | pending | failed | skipped
    message: str = ""
    done_at_provider: bool = False


def host_ips(host: HostSpec) -> list[str]:
    return [ip for ip in (host.public_ipv4, host.public_ipv6) if ip]


async def plan_host(resolver: Resolver, host: HostSpec) -> list[PtrPlan]:
    out = []
    fqdn = normalize_name(host.hostname)
    for ip in host_ips(host):
        answer = await resolver.query(reverse_name(ip), "PTR")
        current = tuple(normalize_name(r) for r in answer.records)
        forward = await resolver.query(fqdn + ".", "AAAA" if ":" in ip else "A")
        base = PtrPlan(host.name, ip, fqdn, host.vps_provider, current, State.SET)
        if not answer.ok or not forward.ok:
            bad = answer if not answer.ok else forward
            out.append(replace(base, state=State.UNKNOWN, note=f"DNS: {bad.rcode.value}"))
        elif current == (fqdn,):
            out.append(replace(base, state=State.KEEP))
        elif ip not in forward.records:
            where = ", ".join(forward.records) or "nothing"
            out.append(
                replace(
                    base,
                    state=State.BLOCKED,
                    note=f"{fqdn} resolves to {where}, not {ip}: publish its "
                    f"{'AAAA' if ':' in ip else 'A'} record first (mailmend records --apply)",
                )
            )
        elif host.vps_provider is None:
            out.append(
                replace(
                    base,
                    state=State.MANUAL,
                    note="no vps_provider in the fleet: set it in your provider's panel, or "
                    "add vps_provider and vps_credentials to the host (docs/ptr.md)",
                )
            )
        elif host.vps_provider == "digitalocean":
            out.append(
                replace(
                    base,
                    state=State.RENAME,
                    note=f"DigitalOcean sets the PTR from the droplet's name: rename the "
                    f"droplet to {fqdn} (--rename-droplet does it)",
                )
            )
        else:
            out.append(base)
    return out


async def plan_fleet(resolver: Resolver, hosts: Sequence[HostSpec]) -> list[PtrPlan]:
    plans: list[PtrPlan] = []
    for host in hosts:
        plans += await plan_host(resolver, host)
    return plans


def render(plan: PtrPlan) -> str:
    current = ", ".join(visible(c) for c in plan.current) or "(none)"
    line = f"  {plan.state.value:<8} {plan.host:<12} {plan.ip:<16} PTR {current}"
    if plan.state in (State.SET, State.RENAME):
        line += f" -> {plan.fqdn}"
        if plan.provider:
            line += f" (via {plan.provider})"
    if plan.note:
        line += f"\n           {plan.note}"
    return line


async def wait_for_ptr(
    ask: Callable[[str], Awaitable[tuple[str, ...]]],
    ip: str,
    fqdn: str,
    deadline: float,
    interval: float = 2.0,
) -> bool:
    """Poll DNS for ``ip``'s PTR until it names ``fqdn`` (True) or the deadline passes."""
    end = time.monotonic() + deadline
    while True:
        if await ask(ip) == (fqdn,):
            return True
        if time.monotonic() + interval > end:
            return False
        await asyncio.sleep(interval)


@dataclass
class Summary:
    outcomes: list[PtrOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(o.result == "failed" for o in self.outcomes)

    @property
    def pending(self) -> bool:
        return any(o.result == "pending" for o in self.outcomes)


_ASK = "ask your VPS provider"


def point_fixes_at_ptr(
    results: list[CheckResult], host: str, provider: str | None, fleet_path: str
) -> None:
    """``mailmend check``: where the host's provider is known, a PTR or FCrDNS fix that says
    "ask your VPS provider" names the command that does it (in place)."""
    if provider is None:
        return
    command = f"mailmend ptr --fleet {fleet_path} --host {host} --apply"
    for i, result in enumerate(results):
        if result.check in ("ptr", "fcrdns") and result.fix and result.fix.startswith(_ASK):
            detail = result.fix[len(_ASK) :].strip()
            how = f"it asks {provider} {detail}"
            if provider == "digitalocean":
                how = "with --rename-droplet it renames the droplet: DigitalOcean's PTR follows it"
            results[i] = replace(result, fix=f"run {command} ({how})")
