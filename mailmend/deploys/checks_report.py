"""Checks as a pyinfra deploy: PTR, FCrDNS, SPF, DKIM, DMARC and blocklists for every host.

The checks run on the admin's machine (the pyinfra controller): every DNS question goes from
here, through ``mailmend_nameservers`` (host data, ``["IP[:PORT]", ...]``; empty: the system's
resolvers), with the Spamhaus DQS key from ``$MAILMEND_DQS_KEY``. On the host, at most one
read-only command runs: the :class:`mailmend.deploys.facts.HostSigningDkim` fact reads the
selector the host's OpenDKIM signs each domain with (an adopted key keeps the admin's, which
may not be the fleet's) and the public half of that key (``KEY_DIR/DOMAIN/SELECTOR.txt``) so
the published record under that selector can be compared with it. Nothing is ever changed.

The checks run inside an operation that yields no command, at execution time: after every
operation placed before them in the same run (``deploys/mail.py`` ends with
:func:`checks_report_deploy`), and they never count as a change (a converged fleet reruns with zero
changed operations).
:func:`checks_report_deploy` prints each host's problems with their fixes; the last host to finish
prints the fleet summary, one line per host. Reports are kept in :data:`REPORTS`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host, state

from mailmend.adopt import host_keys
from mailmend.checks.dkim_key import KEY_DIR, key_files
from mailmend.deploys import contexts
from mailmend.deploys.facts import HostDkimPublicKey, HostSigningDkim
from mailmend.fleet import DomainSpec, HostSpec

DEFAULTS: dict[str, Any] = {
    "mailmend_nameservers": [],  # "IP[:PORT]" strings; empty: /etc/resolv.conf of this machine
    "mailmend_dnsbl": True,  # also ask the DNS blocklists (checks/blocklists.toml)
    "mailmend_check_timeout": 1.5,  # seconds per DNS attempt
    "mailmend_check_deadline": 60.0,  # seconds for one host's checks
    "mailmend_dmarc_report_address": None,
    "opendkim_key_dir": KEY_DIR,
    "domains": [],
}
DQS_ENV = "MAILMEND_DQS_KEY"

#: Filled while the deploy executes: inventory host name -> its report.
REPORTS: dict[str, Any] = {}
_SUMMARY_PRINTED: set[int] = set()
_ONE_LOOP = threading.Lock()  # gevent's cooperative lock once pyinfra has patched threading


def _target(name: str, data: Mapping[str, Any], keys: Mapping[tuple[str, str], str]) -> Any:
    from mailmend.checks.host import HostTarget

    ips = tuple(ip for ip in (data.get("public_ipv4"), data.get("public_ipv6")) if ip)
    domains = contexts.dkim_domains(name, data.get("domains") or [], data["opendkim_key_dir"])
    signs = dict(keys)  # an adopted key signs under its own selector (mailmend/adopt)
    signs_with = {domain: selector for domain, selector in signs}
    return HostTarget(
        name=name,
        hostname=contexts.fqdn(name, "hostname", data.get("hostname")),
        ips=tuple(contexts.ip_address(name, "public_ip", ip) for ip in ips),
        domains=tuple((d.name, signs_with.get(d.name, d.selector)) for d in domains),
        dkim_public_keys=signs,
        dmarc_report_address=data.get("mailmend_dmarc_report_address"),
    )


def _host_keys(data: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """The public DKIM keys on the host; absent keys are left out.

    In ``deploys/mail.py`` the Summary step has read them already in this run; alone
    (``deploys/check.py``) they are read here with the same read-only fact.
    """
    from mailmend.deploys.summary import DKIM_RECORDS

    if host.name in DKIM_RECORDS:
        return {(r.domain, r.selector): r.public_key_b64 for r in DKIM_RECORDS[host.name]}
    key_dir = data["opendkim_key_dir"]
    domains = contexts.dkim_domains(host.name, data.get("domains") or [], key_dir)
    # The selector the host's OpenDKIM signs with (an adopted key keeps the admin's).
    spec = HostSpec(name=host.name, ssh_host=host.name,
                    domains=tuple(DomainSpec(d.name, d.selector) for d in domains))  # fmt: skip
    output = host.get_fact(HostSigningDkim, domains=[d.name for d in domains], key_dir=key_dir)
    found = host_keys.host_keys(spec, output or "", key_dir=key_dir)
    keys: dict[tuple[str, str], str] = {}
    for signs in found.domains:
        if signs.key is not None:
            keys[(signs.domain, signs.selector)] = signs.key.public_key_b64
            continue
        _, private_key, txt = key_files(signs.domain, signs.selector, key_dir)
        key = host.get_fact(HostDkimPublicKey, txt=txt, private_key=private_key)
        if key:  # a key put there by hand, without its .txt
            keys[(signs.domain, signs.selector)] = key
    return keys


async def _check(target: Any, data: Mapping[str, Any]) -> Any:
    from mailmend.checks.blocklists import load_blocklists
    from mailmend.checks.engine import Engine, EngineConfig
    from mailmend.checks.host import check_fleet
    from mailmend.checks.nameservers import parse_nameserver, system_nameservers

    servers: Sequence[str] = data.get("mailmend_nameservers") or []
    nameservers = tuple(parse_nameserver(s) for s in servers) or system_nameservers()
    config = EngineConfig(nameservers=nameservers, timeout=float(data["mailmend_check_timeout"]))
    lists = load_blocklists() if data["mailmend_dnsbl"] else None
    dqs_key = os.environ.get(DQS_ENV) or None
    deadline = float(data["mailmend_check_deadline"])
    async with Engine(config) as engine:
        run = await check_fleet(engine, [target], lists, dqs_key, deadline=deadline)
    [report] = run.hosts  # a broken list (run.lists) is not this host's problem
    return report


def run_checks(data: Mapping[str, Any]) -> None:
    """Check this host from here and print what is wrong (runs at execution time).

    ``data`` is the host's data with this deploy's defaults, taken when the deploy is planned.
    """
    from mailmend.checks.report_table import render_table
    from mailmend.providers.ptr import point_fixes_at_ptr

    target = _target(host.name, data, _host_keys(data))
    with _ONE_LOOP:  # pyinfra runs hosts as greenlets of one thread: one asyncio loop at a time
        report = asyncio.run(_check(target, data))
    fleet_file = data.get("mailmend_fleet_file") or "FLEET.toml"
    provider = contexts.fleet_value(host.name, data, "vps_provider")
    point_fixes_at_ptr(report.results, host.name, provider, fleet_file)
    REPORTS[host.name] = report
    for line in render_table([report]).splitlines():
        if line.strip() and not line.startswith("1 hosts:"):
            host.log(line)
    _fleet_summary()


def _fleet_summary() -> None:
    """Once every active host has a report: one line per host, then the totals."""
    from mailmend.checks.report_table import render_table

    names = sorted(h.name for h in state.active_hosts)
    if id(state) in _SUMMARY_PRINTED or any(n not in REPORTS for n in names):
        return
    _SUMMARY_PRINTED.add(id(state))
    reports = [REPORTS[n] for n in names]
    lines = render_table(reports).splitlines()
    per_host = lines[-len(reports) - 1 :]  # the host lines and the totals line
    # stderr, like pyinfra's own progress: stdout stays clean for ``pyinfra --json``.
    print("--> mailmend checks, fleet summary:", file=sys.stderr, flush=True)
    for line in per_host:
        print(f"    {line}", file=sys.stderr, flush=True)


@operation()
def check_dns(data: Mapping[str, Any]) -> Generator[StringCommand, None, None]:
    """
    Run the checks for this host at execution time; never a change on the host.

    + data: the host's validated data (this deploy's defaults included)
    """
    if not state.is_executing:
        host.noop("checks run once the deploy has executed")
        return
    run_checks(data)
    report = REPORTS[host.name]
    host.noop(f"checked: {report.status}")
    yield from ()


@deploy("Checks", data_defaults=DEFAULTS)
def checks_report_deploy() -> None:
    """Check the host's DNS, PTR, SPF, DKIM, DMARC and blocklists from this machine.

    Changes nothing; reads the host's DKIM public keys to compare them with the published ones.
    """
    check_dns(
        name="Check PTR, FCrDNS, SPF, DKIM, DMARC and blocklists (DNS asked from here)",
        data=_settings(host.name, contexts.host_data(host.data)),
    )


def _settings(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate what the checks need before anything runs (a bad value stops the deploy)."""
    from mailmend.checks.nameservers import parse_nameserver

    servers = data.get("mailmend_nameservers") or []
    if not isinstance(servers, list):
        raise contexts.DeployValueError(name, "mailmend_nameservers", "expected a list")
    for server in servers:
        try:
            parse_nameserver(contexts.safe_text(name, "mailmend_nameservers", server))
        except ValueError as err:
            raise contexts.DeployValueError(name, "mailmend_nameservers", str(err)) from None
    _target(name, data, {})  # hostname, IPs and domains are valid
    contexts.fleet_value(name, data, "vps_provider")  # a name mailmend ptr knows, or none
    return data
