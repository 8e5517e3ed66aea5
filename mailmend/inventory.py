"""Turn a validated fleet file into pyinfra groups of ``(name, data)`` hosts.

``inventory.py`` at the top of the repository is a thin wrapper around :func:`pyinfra_groups`.
Validation happens here, before pyinfra connects to anything: a bad fleet file prints one
line per problem and exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from mailmend.fleet import Fleet, FleetError, HostSpec, fleet_path_from_env, load_fleet

EXIT_INPUT_ERROR = 2
ALL_GROUP = "mailmend"


def host_data(spec: HostSpec) -> dict[str, Any]:
    """pyinfra host data: the ssh_* connector keys, then the fleet fields by name."""
    data: dict[str, Any] = {
        "ssh_hostname": spec.ssh_host,
        "ssh_port": spec.ssh_port,
        "ssh_user": spec.ssh_user,
        "hostname": spec.hostname,
        "public_ipv4": spec.public_ipv4,
        "public_ipv6": spec.public_ipv6,
        "domains": [{"name": d.name, "selector": d.selector} for d in spec.domains],
        "rate_limit_per_minute": spec.rate_limit_per_minute,
        "recipient_limit": spec.recipient_limit,
        "relay_host": spec.relay_host,
        "relay_credentials": spec.relay_credentials,
        "receives_mail": spec.receives_mail,
        "listen_address": spec.listen_address,
        "bind_address": spec.bind_address,
        "postfix_main_cf": dict(spec.postfix_main_cf),
        "postfix_config": spec.postfix_config,
        "replace_mta": spec.replace_mta,
        "send_ipv6": spec.send_ipv6,
        "dkim_signer": spec.dkim_signer,
        "mailmend_groups": list(spec.groups),
        # Where `mailmend ptr` sets the PTR: the deploy's plan and checks point at it. The
        # provider's credentials stay out of host data (only `mailmend ptr` reads them).
        "vps_provider": spec.vps_provider,
    }
    if spec.sender_limit_per_day is not None:
        # Per-sender quotas (deploys/hygiene.py): the provider's rate per minute, and the day.
        data["sender_limit_per_day"] = spec.sender_limit_per_day
    if spec.ssh_key:
        data["ssh_key"] = str(Path(spec.ssh_key).expanduser())
    if spec.ssh_known_hosts_file:
        data["ssh_known_hosts_file"] = str(Path(spec.ssh_known_hosts_file).expanduser())
        data["ssh_strict_host_key_checking"] = "yes"
    return data


def groups_of(fleet: Fleet) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every host in the ``mailmend`` group, plus one pyinfra group per fleet group."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {ALL_GROUP: []}
    for spec in fleet.hosts:
        data = host_data(spec)
        # Fleet-wide settings the check deploy reads (mailmend/deploys/checks_report.py).
        data["mailmend_nameservers"] = list(fleet.settings.nameservers)
        # The deploy checks host data with the fleet's rules: loopback addresses in a sandbox.
        data["mailmend_sandbox"] = fleet.settings.sandbox
        data["mailmend_dmarc_report_address"] = fleet.settings.dmarc_report_address
        # deploys/watch.py: the host that runs `mailmend watch`, and the file it watches by.
        data["mailmend_monitor_host"] = fleet.settings.monitor_host
        data["mailmend_fleet_file"] = str(Path(fleet.path).resolve())
        entry = (spec.name, data)
        groups[ALL_GROUP].append(entry)
        for g in spec.groups:
            groups.setdefault(g, []).append(entry)
    return groups


def pyinfra_groups() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Load, validate and convert; on any problem print it and exit 2 (no host contacted)."""
    try:
        path = fleet_path_from_env()
        if path is None:
            _fail(
                "no fleet file: set MAILMEND_FLEET=FILE or create ./fleet.toml (see "
                "fleet.example.toml); for the local sandbox fleet: "
                "MAILMEND_FLEET=.sandbox/fleet.toml"
            )
        fleet = load_fleet(path)
    except FleetError as err:
        _fail(str(err))
    problems = deploy_input_problems(fleet)
    if problems:
        _fail("\n".join(problems))
    for warning in fleet.warnings:
        print(f"mailmend: warning: {warning}", file=sys.stderr)
    return groups_of(fleet)


def deploy_input_problems(fleet: Fleet) -> list[str]:
    """What the deploy reads on this machine besides the fleet file, checked before connecting.

    The relay secrets (``env:NAME`` set, ``user:password`` in it; never shown) and the
    repository's suppression lists (valid addresses, none on both lists).
    """
    from mailmend.deploys.contexts import SUPPRESSION_DIR, DeployValueError, read_relay_credentials
    from mailmend.hygiene import bounces

    problems = []
    for spec in fleet.hosts:
        if spec.relay_host is None or spec.relay_credentials is None:
            continue
        try:
            read_relay_credentials(spec.name, spec.relay_credentials)
        except DeployValueError as err:
            problems.append(f"{fleet.path}: {err} (the deploy needs it on this machine)")
    try:
        lists = [
            bounces.parse_address_list(_read_list(path), str(path))
            for path in (SUPPRESSION_DIR / "allow.txt", SUPPRESSION_DIR / "deny.txt")
        ]
        bounces.build_suppression([], allow=lists[0], deny=lists[1])
    except (OSError, bounces.HygieneError) as err:
        problems.append(str(err) if not isinstance(err, OSError) else f"{err.filename}: {err}")
    return problems


def _read_list(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _fail(message: str) -> NoReturn:
    for line in message.splitlines():
        print(f"mailmend: error: {line}", file=sys.stderr)
    print("mailmend: nothing was changed; no host was contacted", file=sys.stderr)
    raise SystemExit(EXIT_INPUT_ERROR)
