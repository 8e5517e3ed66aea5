"""Sandbox DNS: zone files from a :class:`Scenario`, Knot to serve them, dnsmasq for hosts.

* Knot (authoritative) on ``127.0.9.53:53`` serves the mail domains, the reverse zones of
  the documentation ranges, the recipient domains of the SMTP sink and local copies of
  real blocklist zones (RFC 5782 test points included). It accepts TSIG-signed dynamic
  updates for the mail domains.
* dnsmasq on ``127.0.9.54:53`` is the hosts' resolver: sandbox zones go to Knot, anything
  else (the Debian mirror for apt) to this machine's own resolver.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.reversename

from sandbox.scenario import (
    MAILBOX_DOMAIN,
    MAILBOX_HOST,
    PUBLIC_NETS,
    RECIPIENT_DOMAINS,
    SINK_HOST,
    TSIG_KEY_NAME,
    Net,
    Scenario,
)

Record = tuple[str, str, str]  # owner (relative to the zone, "@" for the apex), type, rdata
SINK_ZONE = "sink.test"
#: The VPS provider's zone: the generic names its default PTRs point at resolve back (as at a
#: real provider), so a "PTR elsewhere" host is forward-confirmed under the wrong name.
PROVIDER_ZONE = "vps.provider.test"
NS_NAME = "ns1.sandbox.test."
#: The IPv6 documentation prefix (RFC 3849): the sandbox's "public" IPv6 addresses.
PUBLIC_NET6 = "2001:db8::/32"


def reverse_zone(net: str) -> str:
    return ".".join(reversed(net.split("."))) + ".in-addr.arpa"


def reverse_zone6(net: str) -> str:
    """The ip6.arpa zone of an IPv6 network on a nibble boundary (``8.b.d.0.1.0.0.2.ip6.arpa``)."""
    network = ipaddress.IPv6Network(net)
    if network.prefixlen % 4:
        raise ValueError(f"{net}: an ip6.arpa zone needs a prefix length divisible by 4")
    name = dns.reversename.from_address(str(network.network_address))
    keep = network.prefixlen // 4 + 2  # the network's nibbles, then ip6 and arpa
    return str(dns.name.Name(name.labels[-keep - 1 :]).to_text(omit_final_dot=True))


#: Always served (possibly empty): tests add AAAA hosts' PTRs here via ``extra_records``.
REVERSE_ZONE6 = reverse_zone6(PUBLIC_NET6)


def _blocklist_zones() -> dict[str, tuple[str, str]]:
    """zone -> (target, listed test point) for every list in the checks' data file.

    The test point is the list's own (``dbltest.com`` for the Spamhaus DBL, ...): the checks
    probe exactly that name, and a list that does not answer for it is judged broken.
    """
    try:
        from mailmend.checks.blocklists import load_blocklists
    except ImportError:
        return {}
    return {
        bl.zone: (bl.target.value, bl.test_listed or _DEFAULT_TEST_POINT[bl.target.value])
        for bl in load_blocklists()
    }


_DEFAULT_TEST_POINT = {"ip": "127.0.0.2", "domain": "test"}


def _dnsbl_key(subject: str, zone: str) -> str:
    """The owner of ``subject``'s listing in ``zone``: reversed octets (relative), nibbles
    (absolute, as the checks ask: ``dns.reversename``) for IPv6, the name for a domain."""
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        return subject
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    origin = dns.name.from_text(zone)
    return str(dns.reversename.from_address(subject, v4_origin=origin, v6_origin=origin))


def _blocklist_records(
    zone: str, test_point: str, listed: dict[str, str], broken: bool
) -> list[Record]:
    if broken:
        return [("*", "A", "127.0.0.2"), ("*", "TXT", '"listed (sandbox: broken list)"')]
    records: list[Record] = [(_dnsbl_key(test_point, zone), "A", "127.0.0.2")]
    for subject, code in sorted(listed.items()):
        records.append((_dnsbl_key(subject, zone), "A", code))
        records.append((_dnsbl_key(subject, zone), "TXT", f'"sandbox listing {code}"'))
    return records


def scenario_zones(scn: Scenario) -> dict[str, list[Record]]:
    """Every zone the sandbox serves, with its records (SOA and NS are added on write)."""
    zones: dict[str, list[Record]] = {}
    for h in scn.hosts:
        zones.setdefault(h.domain, []).extend(
            [
                (h.fqdn + ".", "A", h.public_ipv4),
                ("@", "MX", f"10 {h.fqdn}."),
            ]
        )
    for net in PUBLIC_NETS:
        zones[reverse_zone(net)] = []
    zones[REVERSE_ZONE6] = []
    for h in scn.hosts:
        rz = reverse_zone(h.public_ipv4.rsplit(".", 1)[0])
        last = h.public_ipv4.rsplit(".", 1)[1]
        if h.ptr == "right":
            zones[rz].append((last, "PTR", h.fqdn + "."))
        elif h.ptr == "elsewhere":
            zones[rz].append((last, "PTR", h.generic_ptr + "."))
    zones[PROVIDER_ZONE] = [
        (h.generic_ptr + ".", "A", h.public_ipv4) for h in scn.hosts if h.ptr == "elsewhere"
    ]
    zones[SINK_ZONE] = [(SINK_HOST + ".", "A", scn.net.sink)]
    # The smarthost existing servers relay through: the mailserver setup's submission port.
    zones[SINK_ZONE] += [
        ("smarthost", "A", h.ssh_addr) for h in scn.hosts if h.setup == "mailserver"
    ][:1]
    for rd in RECIPIENT_DOMAINS:
        zones[rd] = [("@", "MX", f"10 {SINK_HOST}.")]
    zones[MAILBOX_DOMAIN] = [
        ("@", "MX", f"10 {MAILBOX_HOST}."),
        (MAILBOX_HOST + ".", "A", scn.net.mailbox),
    ]
    targets = _blocklist_zones()
    for zone in {*targets, *scn.listings, *scn.broken_zones}:
        _target, test_point = targets.get(zone, ("ip", _DEFAULT_TEST_POINT["ip"]))
        zones[zone] = _blocklist_records(
            zone, test_point, scn.listings.get(zone, {}), zone in scn.broken_zones
        )
    for zone, extra in scn.extra_records.items():
        zones.setdefault(zone, []).extend(extra)
    return zones


def render_zone(zone: str, records: list[Record], serial: int) -> str:
    lines = [
        f"$ORIGIN {zone}.",
        "$TTL 60",
        f"@ SOA {NS_NAME} hostmaster.sandbox.test. {serial} 60 60 600 60",
        f"@ NS {NS_NAME}",
    ]
    lines += [f"{owner} {rtype} {rdata}" for owner, rtype, rdata in records]
    return "\n".join(lines) + "\n"


class SandboxDns:
    """Zone files, Knot and dnsmasq of one sandbox (state under ``STATE/dns``)."""

    def __init__(self, state: Path, net: Net) -> None:
        self.net = net
        self.dir = state / "dns"
        self.zones_dir = self.dir / "zones"
        self.conf = self.dir / "knot.conf"
        self.tsig_file = self.dir / "tsig.key"
        self.control_socket = self.dir / "run" / "knot.sock"

    # -- zone files ------------------------------------------------------------------
    def _next_serial(self) -> int:
        path = self.dir / "serial"
        last = int(path.read_text()) if path.exists() else 0
        serial = max(int(time.time()), last + 1)
        path.write_text(f"{serial}\n")
        return serial

    def write_zones(self, zones: dict[str, list[Record]]) -> None:
        self.zones_dir.mkdir(parents=True, exist_ok=True)
        serial = self._next_serial()
        for zone, records in zones.items():
            (self.zones_dir / f"{zone}.zone").write_text(render_zone(zone, records, serial))
        (self.dir / "zones.list").write_text("\n".join(sorted(zones)) + "\n")

    def configure(self, scn: Scenario) -> dict[str, list[Record]]:
        """Write ``scn``'s zone files and knot.conf (TSIG updates for the mail domains, and for
        the reverse zones: the VPS provider stand-ins publish the PTRs they are asked for)."""
        zones = scenario_zones(scn)
        self.write_zones(zones)
        updatable = {h.domain for h in scn.hosts} | {z for z in zones if z.endswith(".arpa")}
        self.conf.write_text(self.render_knot_conf(updatable))
        return zones

    def serve(self, scn: Scenario, timeout: float = 15.0) -> None:
        """Serve ``scn`` on the running Knot and wait until every zone answers its new serial.

        Zones new since ``up`` are served by Knot but not forwarded by the hosts' dnsmasq
        (its forwarding list is fixed when it starts): fine for checks asked from here.
        """
        zones = self.configure(scn)
        self.reload()
        serial = int((self.dir / "serial").read_text())
        deadline = time.monotonic() + timeout
        for name in zones:
            while not self._serves(name, serial):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Knot does not serve serial {serial} of {name}")
                time.sleep(0.05)

    def answering(self, timeout: float) -> bool:
        """True once Knot answers for the first sandbox zone (any serial)."""
        zone = self.zone_names()[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = dns.query.udp(dns.message.make_query(zone, "SOA"), self.net.dns, timeout=1)
            except (dns.exception.Timeout, OSError):
                time.sleep(0.1)
                continue
            if reply.answer:
                return True
            time.sleep(0.1)
        return False

    def _serves(self, zone: str, serial: int) -> bool:
        query = dns.message.make_query(zone, "SOA")
        try:
            reply = dns.query.udp(query, self.net.dns, timeout=2)
        except dns.exception.Timeout:
            return False
        return bool(reply.answer) and reply.answer[0][0].serial == serial

    def zone_names(self) -> list[str]:
        return (self.dir / "zones.list").read_text().split()

    # -- TSIG key for dynamic updates --------------------------------------------------
    def tsig_secret(self) -> str:
        if not self.tsig_file.exists():
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            self.tsig_file.write_text(
                f'key "{TSIG_KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'
            )
            self.tsig_file.chmod(0o600)
        text = self.tsig_file.read_text()
        return text.split('secret "', 1)[1].split('"', 1)[0]

    # -- Knot --------------------------------------------------------------------------
    def render_knot_conf(self, update_zones: set[str]) -> str:
        run = self.dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        (self.dir / "db").mkdir(exist_ok=True)
        out = [
            "server:",
            f'    rundir: "{run}"',
            f"    listen: {self.net.dns}@53",
            "    udp-workers: 2",
            "    tcp-workers: 2",
            "log:",
            "  - target: stderr",
            "    any: notice",
            "database:",
            f'    storage: "{self.dir / "db"}"',
            "key:",
            f"  - id: {TSIG_KEY_NAME}",
            "    algorithm: hmac-sha256",
            f"    secret: {self.tsig_secret()}",
            "acl:",
            "  - id: sandbox-update",
            f"    key: {TSIG_KEY_NAME}",
            "    action: update",
            "template:",
            "  - id: default",
            f'    storage: "{self.zones_dir}"',
            '    file: "%s.zone"',
            "    zonefile-sync: 0",
            "    zonefile-load: whole",
            "    journal-content: none",
            "    semantic-checks: off",
            "zone:",
        ]
        for zone in self.zone_names():
            out.append(f"  - domain: {zone}")
            if zone in update_zones:
                out.append("    acl: sandbox-update")
        return "\n".join(out) + "\n"

    def knot_argv(self) -> list[str]:
        return ["knotd", "-c", str(self.conf)]

    def knotc(self, *args: str) -> str:
        proc = subprocess.run(
            ["knotc", "-c", str(self.conf), "-t", "10", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"knotc {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def reload(self) -> None:
        """Re-read knot.conf (new zones) and every zone file."""
        self.knotc("reload")

    # -- dnsmasq -----------------------------------------------------------------------
    def dnsmasq_argv(self, upstreams: list[str]) -> list[str]:
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={self.net.resolver}",
            "--port=53",
            "--cache-size=0",
            "--user=root",
            "--log-facility=-",
            f"--pid-file={self.dir / 'dnsmasq.pid'}",
        ]
        for zone in self.zone_names():
            argv.append(f"--server=/{zone}/{self.net.dns}")
        argv += [f"--server={up}" for up in upstreams]
        return argv


def system_upstreams() -> list[str]:
    """This machine's resolvers (read, never changed), for the hosts' apt traffic."""
    ups = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1 and not words[1].startswith("127."):
            ups.append(words[1])
    return ups
