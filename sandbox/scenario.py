"""What the sandbox fleet looks like: hosts, their "public" IPs, and the DNS situations.

Everything here is data. ``sandbox.dns`` turns a :class:`Scenario` into zone files; tests
build variants of it (``dataclasses.replace``) to stage other situations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Documentation ranges (RFC 5737): never routed, safe as sandbox "public" addresses.
PUBLIC_NETS = ("192.0.2", "198.51.100", "203.0.113")
MAIL_DOMAINS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
)  # fmt: skip
SSH_PORT = 2222
SINK_HOST = "mx.sink.test"
RECIPIENT_DOMAINS = ("inbox-a.test", "inbox-b.test", "inbox-c.test")
#: The receiving mail provider (real Postfix, OpenDKIM, OpenDMARC, SPF, SpamAssassin, Dovecot):
#: MX of this domain, IMAPS for its mailboxes.
MAILBOX_DOMAIN = "inbox.test"
MAILBOX_HOST = "mx.inbox.test"
#: Mailboxes made at ``up`` (their passwords in ``STATE/mailbox/passwords/USER``).
MAILBOX_USERS = ("tester", "dmarc-reports", "postmaster")
TSIG_KEY_NAME = "mailmend-sandbox"
BLOCK_ENV = "MAILMEND_SANDBOX_BLOCK"


@dataclass(frozen=True)
class Net:
    """The loopback addresses of one sandbox: 127.B.9.x for services, 127.B.10.N for hosts.

    Two sandboxes with different blocks (the quickstart's and a test run's) never collide.
    """

    block: int = 0

    @property
    def dns(self) -> str:  # Knot, authoritative for every sandbox zone
        return f"127.{self.block}.9.53"

    @property
    def resolver(self) -> str:  # dnsmasq, the hosts' resolver
        return f"127.{self.block}.9.54"

    @property
    def pdns(self) -> str:  # PowerDNS with its HTTP API: the "DNS provider" (sandbox.pdns)
        return f"127.{self.block}.9.55"

    @property
    def sink(self) -> str:  # the SMTP receiver ("the rest of the internet")
        return f"127.{self.block}.9.25"

    @property
    def mailbox(self) -> str:  # the receiving mail provider: SMTP 25, IMAPS 993
        return f"127.{self.block}.9.26"

    def host(self, i: int) -> str:  # sshd and Postfix of host i listen here
        return f"127.{self.block}.10.{i}"


@dataclass(frozen=True)
class SandboxHost:
    index: int
    name: str  # pyinfra host name, e.g. mx1
    fqdn: str  # the hostname the deploy must set
    domain: str  # the mail domain it sends for
    selector: str  # its DKIM selector
    public_ipv4: str
    ssh_addr: str  # 127.B.10.N: sshd and Postfix listen here
    ptr: str = "right"  # right | missing | elsewhere
    suite: str = "bookworm"  # the Debian release it runs (bookworm | trixie)
    setup: str = ""  # "" for an empty VPS, else the existing server it starts as (sandbox.existing)

    @property
    def generic_ptr(self) -> str:
        return f"ip-{self.public_ipv4.replace('.', '-')}.vps.provider.test"


@dataclass(frozen=True)
class Scenario:
    hosts: tuple[SandboxHost, ...]
    net: Net = Net()
    # zone -> {IP or domain -> return code}
    listings: dict[str, dict[str, str]] = field(default_factory=dict)
    broken_zones: tuple[str, ...] = ()  # lists that answer for everything (wildcard)
    extra_records: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)
    mailbox_users: tuple[str, ...] = MAILBOX_USERS  # local parts at MAILBOX_DOMAIN


def make_host(i: int, ptr: str = "right", net: Net = Net(), suite: str = "bookworm") -> SandboxHost:
    label = MAIL_DOMAINS[(i - 1) % len(MAIL_DOMAINS)]
    domain = f"{label}.example" if i <= len(MAIL_DOMAINS) else f"{label}{i}.example"
    prefix = PUBLIC_NETS[(i - 1) % len(PUBLIC_NETS)]
    return SandboxHost(
        index=i,
        name=f"mx{i}",
        fqdn=f"mx{i}.{domain}",
        domain=domain,
        selector=f"mx{i}",
        public_ipv4=f"{prefix}.{10 + i}",
        ssh_addr=net.host(i),
        ptr=ptr,
        suite=suite,
    )


def make_existing_host(i: int, setup: str, net: Net = Net()) -> SandboxHost:
    """Host ``i`` starting as the existing server ``setup`` (its names come with the setup)."""
    from sandbox.existing import setup as find_setup

    s = find_setup(setup)
    prefix = PUBLIC_NETS[(i - 1) % len(PUBLIC_NETS)]
    return SandboxHost(
        index=i,
        name=s.name,
        fqdn=s.fqdn,
        domain=s.domain,
        selector=s.selector,
        public_ipv4=f"{prefix}.{10 + i}",
        ssh_addr=net.host(i),
        suite=s.suites[0],
        setup=s.name,
    )


# Check-only addresses (no SSH host behind them) with situations for the checks.
SITUATION_IPS = {
    "listed": "203.0.113.201",  # Barracuda lists it
    "pbl": "203.0.113.202",  # Spamhaus PBL (policy, not spam)
    "refused": "203.0.113.203",  # Spamhaus answers 127.255.255.254 (public resolver)
}


def default_scenario(
    n_hosts: int,
    net: Net = Net(),
    suite: str = "bookworm",
    existing: tuple[str, ...] = (),
) -> Scenario:
    """N hosts: PTR right except host 2 (missing) and host 3 (provider default); then one host
    per name in ``existing`` (sandbox.existing's setups)."""
    ptrs = {2: "missing", 3: "elsewhere"}
    hosts = tuple(make_host(i, ptrs.get(i, "right"), net, suite) for i in range(1, n_hosts + 1))
    hosts += tuple(
        make_existing_host(n_hosts + k, name, net) for k, name in enumerate(existing, start=1)
    )
    listings: dict[str, dict[str, str]] = {
        "b.barracudacentral.org": {SITUATION_IPS["listed"]: "127.0.0.2"},
        "zen.spamhaus.org": {
            SITUATION_IPS["pbl"]: "127.0.0.11",
            SITUATION_IPS["refused"]: "127.255.255.254",
        },
        "bl.spamcop.net": {},
    }
    if n_hosts >= 2:
        listings["bl.spamcop.net"][hosts[1].public_ipv4] = "127.0.0.2"
    if n_hosts >= 3:
        listings["zen.spamhaus.org"][hosts[2].public_ipv4] = "127.0.0.10"
    return Scenario(hosts=hosts, net=net, listings=listings, broken_zones=("all.s5h.net",))
