"""The DNS records the fleet must publish, planned at the end of ``deploys/mail.py``.

Runs at execution time, after :mod:`deploys.summary` has read every host's DKIM public key:
the first host to reach this step plans for the whole fleet (SPF merged with what is
published, DKIM, DMARC, A and the PTR to ask the provider for) with :mod:`mailmend.records`
and prints the plan; nothing is published from a deploy (``mailmend records --apply`` does
that). Never a change on any host.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Generator
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host, state

from mailmend.checks.dkim_key import DkimPublicKey
from mailmend.deploys import contexts, summary

DEFAULTS: dict[str, Any] = {
    "mailmend_nameservers": [],  # "IP[:PORT]"; empty: this machine's resolvers
    "mailmend_dmarc_report_address": None,
    "mailmend_records": True,  # False: skip the plan in deploys/mail.py
}

_PLANNED: dict[int, str] = {}  # id(state) -> the plan's text, computed once per run
_LOCK = threading.Lock()


def _senders() -> list[Any]:
    from mailmend.records.plan import Sender

    out = []
    for h in state.inventory.iter_activated_hosts():
        data = contexts.host_data(h.data)
        domains = contexts.dkim_domains(h.name, data.get("domains") or [], "/")
        # An adopted key signs under its own selector (mailmend/adopt): the summary read it.
        signs = {k.domain: k.selector for k in summary.DKIM_RECORDS.get(h.name, ())}
        out.append(
            Sender(
                h.name,
                contexts.fqdn(h.name, "hostname", data.get("hostname")),
                data.get("public_ipv4"),
                data.get("public_ipv6"),
                tuple((d.name, signs.get(d.name, d.selector)) for d in domains),
                vps_provider=contexts.fleet_value(h.name, data, "vps_provider"),
            )
        )
    return out


def _dkim_keys() -> list[DkimPublicKey]:
    """The public keys the summary step read from every host (never the private halves)."""
    return [key for keys in summary.DKIM_RECORDS.values() for key in keys]


async def _plan(nameservers: list[str], report_address: str | None) -> str:
    from mailmend.checks.engine import Engine, EngineConfig
    from mailmend.checks.nameservers import parse_nameserver, system_nameservers
    from mailmend.records.plan import build_plan, render_plan

    servers = tuple(parse_nameserver(s) for s in nameservers) or system_nameservers()
    async with Engine(EngineConfig(nameservers=servers)) as engine:
        plan = await build_plan(
            engine, _senders(), dkim_keys=_dkim_keys(), report_address=report_address
        )
    return render_plan(plan)


@operation()
def records_plan(
    nameservers: list[str], report_address: str | None
) -> Generator[StringCommand, None, None]:
    """
    Plan the fleet's DNS records once per run and print the plan; never a change.

    + nameservers: where to read what is published now
    + report_address: the fleet's DMARC report address
    """
    if not state.is_executing:
        host.noop("the records are planned once every DKIM key exists")
        return
    with _LOCK:
        first = id(state) not in _PLANNED
        if first:
            _PLANNED[id(state)] = asyncio.run(_plan(nameservers, report_address))
    if first:
        print("--> mailmend records: what DNS must publish for this fleet", file=sys.stderr)
        for line in _PLANNED[id(state)].splitlines():
            print(f"    {line}", file=sys.stderr, flush=True)
        print("    publish with: mailmend records --apply --server IP --tsig-key FILE",
              file=sys.stderr, flush=True)  # fmt: skip
    host.noop("records planned for the fleet")
    yield from ()


@deploy("Records", data_defaults=DEFAULTS)
def records_plan_deploy() -> None:
    """Print the SPF, DKIM, DMARC, A and PTR records the fleet needs (read-only)."""
    data = contexts.host_data(host.data)
    if not data["mailmend_records"]:
        return
    records_plan(
        name="Plan the fleet's DNS records (SPF, DKIM, DMARC, A, PTR)",
        nameservers=[
            contexts.safe_text(host.name, "mailmend_nameservers", s)
            for s in data["mailmend_nameservers"] or []
        ],
        report_address=data["mailmend_dmarc_report_address"],
    )
