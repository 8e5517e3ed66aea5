"""``python -m sandbox up|status|down|zones``: the local sandbox fleet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.control import Sandbox, SandboxError
from sandbox.existing import SETUPS
from sandbox.image import SUITES
from sandbox.paths import default_state_dir
from sandbox.scenario import MAILBOX_DOMAIN, SSH_PORT, default_scenario


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="state directory (default $MAILMEND_SANDBOX or .sandbox/)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build/restore the base image and start N hosts, DNS, SMTP")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument(
        "--suite", choices=SUITES, default="bookworm", help="Debian release of the hosts"
    )
    up.add_argument(
        "--existing",
        default="",
        metavar="SETUP,...",
        help=f"also start existing servers ({', '.join(SETUPS)}), one host each",
    )
    sub.add_parser("status", help="show the hosts and services; exit 1 if anything is down")
    sub.add_parser("down", help="stop every process; mounts vanish with their namespaces")
    args = p.parse_args(argv)
    sb = Sandbox(args.state or default_state_dir())
    try:
        if args.cmd == "up":
            names = tuple(n for n in args.existing.split(",") if n)
            unknown = [n for n in names if n not in SETUPS]
            if unknown:
                print(f"sandbox: error: unknown setup {unknown[0]!r}", file=sys.stderr)
                return 2
            sb.up(args.hosts, default_scenario(args.hosts, sb.net, args.suite, names))
            _print_status(sb)
            return 0
        if args.cmd == "status":
            return 0 if _print_status(sb) else 1
        sb.down()
        print("sandbox: down (every process stopped)")
        return 0
    except SandboxError as e:
        print(f"sandbox: error: {e}", file=sys.stderr)
        return 1


def _print_status(sb: Sandbox) -> bool:
    st = sb.status()
    if not st.hosts:
        print(f"sandbox: nothing running in {sb.state}")
        return False
    print(f"state: {sb.state}")
    print(f"fleet file: {sb.fleet_file}")
    for h in sb.hosts():
        mark = "up  " if st.hosts.get(h.name) else "DOWN"
        print(
            f"  {mark} {h.name:<6} ssh root@{h.ssh_addr}:{SSH_PORT}  {h.fqdn:<24} "
            f"public {h.public_ipv4:<15} PTR {h.ptr:<9} {h.suite}"
            + (f" existing {h.setup}" if h.setup else "")
        )
    where = {
        "knot": f"DNS {sb.net.dns}:53",
        "pdns": f"PowerDNS {sb.net.pdns}:53, API {sb.pdns.api_url}",
        "dnsmasq": f"resolver {sb.net.resolver}:53",
        "receiver": f"SMTP {sb.net.sink}:25",
        "mailbox": f"IMAPS {sb.net.mailbox}:993 (users in {sb.mailbox.passwords})",
        "mxproxy": f"SMTP {sb.net.mailbox}:25 (MX of {MAILBOX_DOMAIN})",
    }
    for svc, ok in st.services.items():
        print(f"  {'up  ' if ok else 'DOWN'} {svc:<8} {where[svc]}")
    return st.healthy


if __name__ == "__main__":
    sys.exit(main())
