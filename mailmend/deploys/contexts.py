"""Turn ``host.data`` into typed, validated template contexts, one function per component.

Fleet files are validated by :mod:`mailmend.fleet`, but host data can also come from
``group_data/``, ``--data`` or an inventory written by hand, so every value that reaches a
template or a shell command is checked again here, before any operation is added: the fleet
keys by the fleet's own checkers (:func:`mailmend.keys.check_value`, one rule set), the
tuning keys (``DEFAULTS`` of each deploy) here. A refused value raises
:class:`DeployValueError` (a pyinfra ``DeployError``) naming the host and the field:

    >>> hostname_context("mx1", {"hostname": "mx1.example.com\\nrelayhost = evil"})
    Traceback (most recent call last):
    ...
    mailmend.deploys.contexts.DeployValueError: host mx1: hostname: ...

The contexts are plain frozen dataclasses; templates read their attributes and nothing else.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import DeployError

from mailmend import keys, secretref
from mailmend.checks.dkim_key import key_files
from mailmend.rules import MANAGED_POSTFIX_KEYS as MANAGED_POSTFIX_KEYS  # the one list
from mailmend.rules import ip_problem, relay_credentials_problem, unsafe_char_problem

#: The templates shipped with the package (``mailmend/templates``), found by importlib.
TEMPLATES_DIR = Path(str(resources.files("mailmend.templates")))

#: Options for pyinfra's ``files.template`` (and the tests' renderer): Jinja's
#: ``StrictUndefined`` and ``keep_trailing_newline`` are pyinfra's own defaults.
JINJA_ENV_KWARGS: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True}

#: Tuning keys that both the Postfix and the OpenDKIM deploy read (the milter socket is wired
#: on both sides), merged into each deploy's ``DEFAULTS``.
SHARED_DEFAULTS: dict[str, Any] = {
    "postfix_queue_dir": "/var/spool/postfix",
    # Under Postfix's queue directory, so chrooted smtpd reaches it, and a Unix socket so
    # sandbox hosts sharing one loopback never collide on a TCP port.
    "opendkim_socket": "/var/spool/postfix/opendkim/opendkim.sock",
    # Sending hygiene (deploys/hygiene.py): main.cf references the suppression tables in this
    # directory and the policy service's socket, so both deploys read them.
    "hygiene_suppression_dir": "/etc/postfix/mailmend",
    # policyd-rate-limit's default; under the queue directory, so chrooted smtpd reaches it.
    "hygiene_policy_socket": "/var/spool/postfix/ratelimit/policy",
    # Postfix's master writes it; the Postfix and Hygiene deploys reload from live state.
    "postfix_pidfile": "/var/spool/postfix/pid/master.pid",
    # Backups (FILE.mailmend-<UTC time>) kept per file a deploy replaces; older ones go.
    "backups_keep": 10,
}


def backups_keep(host: str, data: Mapping[str, Any]) -> int:
    """The ``backups_keep`` tuning key, validated."""
    return positive_int(host, "backups_keep", data["backups_keep"])


#: The suppression tables' file names in ``hygiene_suppression_dir``.
SUPPRESS_RECIPIENTS = "suppress_recipients"
SUPPRESS_TRANSPORT = "suppress_transport"


class DeployValueError(DeployError, ValueError):
    """A host data value that must not reach a template or a shell command.

    A pyinfra ``DeployError``: pyinfra prints it on one line and exits 1, no traceback.
    """

    def __init__(self, host: str, field: str, reason: str) -> None:
        super().__init__(f"host {host}: {field}: {reason}")
        self.host = host
        self.field = field
        self.reason = reason


# -- contexts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostnameContext:
    fqdn: str
    short: str
    public_ipv4: str
    public_ipv6: str | None


@dataclass(frozen=True)
class RelayContext:
    #: exactly as written in main.cf ``relayhost`` and as the sasl_passwd lookup key
    nexthop: str
    #: ``user:password`` read on the admin's machine, or None for an unauthenticated relay
    credentials: str | None


@dataclass(frozen=True)
class PostfixContext:
    hostname: str
    rate_limit_per_minute: int
    rate_delay_seconds: int
    recipient_limit: int | None
    inet_interfaces: str
    inet_protocols: str
    #: the one address the SMTP server listens on (master.cf is then managed), or None
    smtpd_listen: str | None
    bind_address: str | None
    bind_address6: str | None
    relay: RelayContext | None
    milter_socket: str
    maillog_file: str
    config_dir: str
    extra_settings: tuple[tuple[str, str], ...]
    #: ``hash:`` maps of the suppression tables (check_recipient_access, transport_maps)
    suppress_recipients_map: str
    suppress_transport_map: str
    #: the per-sender quota service as smtpd names it: ``unix:ratelimit/policy``
    policy_service: str
    #: send over IPv4 only (``smtp_address_preference = ipv4``): the host's IPv6 address has
    #: no working PTR, or the fleet says so (decided at deploy time: mailmend/adopt/ipv6.py)
    ipv4_only: bool = False


@dataclass(frozen=True)
class DkimDomain:
    name: str
    selector: str
    key_dir: str
    #: the private key, ``KEY_DIR/SELECTOR.private`` (opendkim-genkey's name)
    private_key: str
    #: opendkim-genkey's ready-made TXT record, ``KEY_DIR/SELECTOR.txt`` (public half only)
    txt_record: str
    #: an existing key mailmend signs with but does not own (mailmend/adopt): its file is
    #: never generated, moved or re-permissioned; txt_record is a copy of its public half
    adopted: bool = False

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.name}"


@dataclass(frozen=True)
class OpenDkimContext:
    domains: tuple[DkimDomain, ...]
    trusted_hosts: tuple[str, ...]
    socket: str
    key_bits: int
    key_root: str
    config_file: str
    table_dir: str


# -- primitive checks -----------------------------------------------------------------------


def safe_text(host: str, field: str, value: object) -> str:
    """``value`` as a string with no control character, quote or backslash, else refuse it.

    The character rules are the fleet file's (:mod:`mailmend.rules`); plain inner spaces are
    allowed here because Postfix list values need them.
    """
    if not isinstance(value, str):
        raise DeployValueError(host, field, f"expected a string, got {type(value).__name__}")
    problem = unsafe_char_problem(value, allow_space=True)
    if problem:
        raise DeployValueError(host, field, problem)
    if value != value.strip():
        raise DeployValueError(host, field, f"leading or trailing whitespace in {value!r}")
    return value


def fleet_value(host: str, data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The fleet key ``key`` of host data (``default`` when unset), checked by the fleet's own
    checker (:mod:`mailmend.keys`): the same rules, the same messages as ``fleet.toml``.

    A sandbox fleet's hosts carry ``mailmend_sandbox`` (loopback public addresses allowed).
    """
    raw = data.get(key)
    if raw is None:
        return default
    sandbox = data.get("mailmend_sandbox") is True
    value, problems = keys.check_value(key, _fleet_form(key, raw), sandbox=sandbox)
    if problems:
        field, reason = problems[0]
        raise DeployValueError(host, field, reason)
    return value


def check_fleet_keys(host: str, data: Mapping[str, Any]) -> None:
    """Every fleet key of host data, by the fleet's rules, with nothing gathered from the host:
    the mail deploy runs it first, so a bad ``--data`` or ``group_data/`` value stops it before
    any fact is read or any operation added."""
    for key in keys.SHARED_KEYS:
        if not key.startswith("ssh_"):  # pyinfra's own ssh_* data, not the fleet's
            fleet_value(host, data, key)
    required(host, data, "hostname")
    required(host, data, "public_ipv4")


def _fleet_form(key: str, raw: object) -> object:
    """Host data as the fleet file spells it: ``group_data/`` is Python, not TOML."""
    if key == "postfix_main_cf" and isinstance(raw, Mapping):
        # A Python True or 10240000 is the main.cf "yes" or "10240000".
        return {k: _main_cf_text(v) for k, v in raw.items()}
    if key == "domains" and isinstance(raw, list | tuple):
        return [
            d if isinstance(d, Mapping) else {"name": getattr(d, "name", None),
                                               "selector": getattr(d, "selector", None)}
            for d in raw
        ]  # fmt: skip
    return raw


def _main_cf_text(value: object) -> object:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if isinstance(value, int) else value


def required(host: str, data: Mapping[str, Any], key: str) -> Any:
    """A fleet key every host needs (``hostname``; ``public_ipv4`` for the deploy)."""
    value = fleet_value(host, data, key)
    if value is None:
        raise DeployValueError(host, key, "missing: every host needs it")
    return value


def fqdn(host: str, field: str, value: object) -> str:
    """A lower-cased fully qualified host name (the fleet key ``hostname``'s rules)."""
    name = fleet_value(host, {"hostname": value}, "hostname")
    if name is None:
        raise DeployValueError(host, field, "missing: every host needs it")
    assert isinstance(name, str)
    return name


def ip_address(host: str, field: str, value: object, version: int | None = None) -> str:
    """One IP address of a tuning key (the fleet's ``ip_problem`` rule), canonical text."""
    text = safe_text(host, field, value)
    problem = ip_problem(text)
    if problem:
        raise DeployValueError(host, field, problem)
    address = ipaddress.ip_address(text)
    if version is not None and address.version != version:
        raise DeployValueError(host, field, f"{text!r} is not an IPv{version} address")
    return address.compressed


def positive_int(host: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DeployValueError(host, field, f"expected a positive integer, got {value!r}")
    return value


def pacing_delay(rate_per_minute: int) -> int:
    """Seconds between deliveries so that at most ``rate_per_minute`` leave in any minute.

    Rounded UP: 7 per minute is 8.57 s, so 9 s (6.7 per minute), never 8 s (7.5 per minute).

    >>> [pacing_delay(r) for r in (5, 7, 30, 60, 1)]
    [12, 9, 2, 1, 60]
    """
    if isinstance(rate_per_minute, bool) or rate_per_minute < 1:
        raise ValueError(f"rate must be a positive number per minute, not {rate_per_minute}")
    return math.ceil(60 / rate_per_minute)


# -- components -----------------------------------------------------------------------------


def hostname_context(host: str, data: Mapping[str, Any]) -> HostnameContext:
    name = required(host, data, "hostname")
    return HostnameContext(
        fqdn=name,
        short=name.split(".", 1)[0],
        public_ipv4=required(host, data, "public_ipv4"),
        public_ipv6=fleet_value(host, data, "public_ipv6"),
    )


def read_relay_credentials(
    host: str,
    reference: object,
    environ: Mapping[str, str] | None = None,
    read_file: Callable[[Path], str] | None = None,
) -> str:
    """Resolve ``env:NAME`` or ``file:/path`` ON THE ADMIN'S MACHINE to ``user:password``.

    The secret is never part of an error message.
    """
    field = "relay_credentials"
    ref = safe_text(host, field, reference)
    if ref.partition(":")[0] in ("env", "file"):
        problem = relay_credentials_problem(ref)  # the fleet key's rule and message
        if problem:
            raise DeployValueError(host, field, problem)
    try:
        secret = secretref.resolve(ref, environ, read_file)
    except secretref.SecretRefError as err:
        raise DeployValueError(host, field, str(err)) from None
    user, sep, password = secret.partition(":")
    if not sep or not user or not password:
        raise DeployValueError(host, field, f"the secret in {ref} is not user:password")
    if any(ord(c) < 32 or ord(c) == 127 for c in secret) or user != user.strip():
        raise DeployValueError(host, field, f"the secret in {ref} has control characters")
    if any(c.isspace() for c in user):
        raise DeployValueError(host, field, f"the user name in {ref} contains whitespace")
    return secret


def extra_settings(host: str, value: object) -> tuple[tuple[str, str], ...]:
    """The admin's extra main.cf settings, in their order (the fleet key's rules)."""
    settings = fleet_value(host, {"postfix_main_cf": value}, "postfix_main_cf", {})
    return tuple(settings.items())


def postfix_context(
    host: str,
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    read_file: Callable[[Path], str] | None = None,
) -> PostfixContext:
    names = hostname_context(host, data)
    rate = fleet_value(host, data, "rate_limit_per_minute", 5)
    recipient_limit = fleet_value(host, data, "recipient_limit")

    smtpd_listen = fleet_value(host, data, "listen_address")
    if smtpd_listen is not None:
        # Postfix refuses an inet_interfaces address that is not on a local interface (the
        # sandbox's 127.0.10.N are not): master.cf binds it instead, Postfix's own loopback
        # stays the interface list.
        if ":" in smtpd_listen:
            smtpd_listen = f"[{smtpd_listen}]"
        inet_interfaces = "loopback-only"
    elif fleet_value(host, data, "receives_mail", False):
        inet_interfaces = "all"
    else:
        inet_interfaces = "loopback-only"
    # No public IPv6 means no IPv6 PTR: sending over IPv6 would hurt the reputation.
    inet_protocols = "all" if names.public_ipv6 or ":" in (smtpd_listen or "") else "ipv4"

    bind4 = bind6 = None
    address = fleet_value(host, data, "bind_address")
    if address is not None:
        if ":" in address:
            bind6 = address
        else:
            bind4 = address

    relay = None
    nexthop = fleet_value(host, data, "relay_host")
    if nexthop is not None:
        reference = data.get("relay_credentials")
        secret = None
        if reference is not None:
            secret = read_relay_credentials(host, reference, environ, read_file)
        relay = RelayContext(nexthop=nexthop, credentials=secret)

    suppression_dir = _abs_path(host, "hygiene_suppression_dir", data).rstrip("/")
    return PostfixContext(
        hostname=names.fqdn,
        rate_limit_per_minute=rate,
        rate_delay_seconds=pacing_delay(rate),
        recipient_limit=recipient_limit,
        inet_interfaces=inet_interfaces,
        inet_protocols=inet_protocols,
        smtpd_listen=smtpd_listen,
        bind_address=bind4,
        bind_address6=bind6,
        relay=relay,
        milter_socket=_milter_socket(host, data),
        maillog_file=_abs_path(host, "postfix_maillog_file", data),
        config_dir=_abs_path(host, "postfix_config_dir", data),
        extra_settings=tuple(fleet_value(host, data, "postfix_main_cf", {}).items()),
        suppress_recipients_map=f"hash:{suppression_dir}/{SUPPRESS_RECIPIENTS}",
        suppress_transport_map=f"hash:{suppression_dir}/{SUPPRESS_TRANSPORT}",
        policy_service=_queue_relative(host, "hygiene_policy_socket", data),
    )


def _abs_path(host: str, field: str, data: Mapping[str, Any]) -> str:
    path = safe_text(host, field, data.get(field))
    if not path.startswith("/") or any(c.isspace() for c in path) or "/../" in path + "/":
        raise DeployValueError(host, field, f"{path!r} is not a plain absolute path")
    return path


def _milter_socket(host: str, data: Mapping[str, Any]) -> str:
    """OpenDKIM's socket as Postfix names it: relative to Postfix's queue directory."""
    return _queue_relative(host, "opendkim_socket", data)


def _queue_relative(host: str, field: str, data: Mapping[str, Any]) -> str:
    """A Unix socket under Postfix's queue directory as ``unix:RELATIVE`` (chroot-proof)."""
    socket = _abs_path(host, field, data)
    queue = _abs_path(host, "postfix_queue_dir", data).rstrip("/") + "/"
    if not socket.startswith(queue):
        raise DeployValueError(host, field, f"{socket} is not under {queue}")
    return "unix:" + socket[len(queue) :]


def dkim_domains(host: str, value: object, key_root: str) -> tuple[DkimDomain, ...]:
    """The fleet key ``domains`` (its rules: one selector per domain), with key file paths."""
    specs = fleet_value(host, {"domains": value}, "domains", ())
    out: list[DkimDomain] = []
    for spec in specs:
        key_dir, private_key, txt_record = key_files(spec.name, spec.selector, key_root)
        out.append(
            DkimDomain(
                name=spec.name,
                selector=spec.selector,
                key_dir=key_dir,
                private_key=private_key,
                txt_record=txt_record,
            )
        )
    return tuple(out)


def adopted_dkim_domain(key_root: str) -> Callable[[str, str, str], DkimDomain]:
    """Builds the entry of an adopted key: signs with ``private_key`` where it is; its public
    half is copied to mailmend's place (``KEY_ROOT/DOMAIN/SELECTOR.txt``) for records."""

    def make(name: str, selector: str, private_key: str) -> DkimDomain:
        key_dir = f"{key_root.rstrip('/')}/{name}"
        return DkimDomain(
            name=name,
            selector=selector,
            key_dir=key_dir,
            private_key=private_key,
            txt_record=f"{key_dir}/{selector}.txt",
            adopted=True,
        )

    return make


def opendkim_context(host: str, data: Mapping[str, Any]) -> OpenDkimContext:
    names = hostname_context(host, data)
    trusted = ["127.0.0.0/8", "::1", "localhost", names.public_ipv4]
    if names.public_ipv6:
        trusted.append(names.public_ipv6)
    for field in ("listen_address", "bind_address"):
        if data.get(field) is not None:
            trusted.append(fleet_value(host, data, field))
    bits = positive_int(host, "opendkim_key_bits", data.get("opendkim_key_bits"))
    if bits < 1024:
        raise DeployValueError(host, "opendkim_key_bits", f"{bits} bits is too weak for DKIM")
    key_root = _abs_path(host, "opendkim_key_dir", data)
    return OpenDkimContext(
        domains=dkim_domains(host, data.get("domains") or (), key_root),
        trusted_hosts=tuple(dict.fromkeys(trusted)),
        socket=_abs_path(host, "opendkim_socket", data),
        key_bits=bits,
        key_root=key_root,
        config_file=_abs_path(host, "opendkim_config_file", data),
        table_dir=_abs_path(host, "opendkim_table_dir", data),
    )


def render_template(relative: str, **context: Any) -> str:
    """Render ``templates/RELATIVE`` exactly as pyinfra's ``files.template`` does."""
    from pyinfra.api.util import get_template

    path = str(TEMPLATES_DIR / relative)
    return str(get_template(path, dict(JINJA_ENV_KWARGS)).render(context))


def host_data(data: Any) -> dict[str, Any]:
    """``host.data`` (inventory, group data and the current deploy's defaults) as a dict."""
    return dict(data.dict())


# -- sending hygiene ------------------------------------------------------------------------

#: The repository's admin lists, resolved from this file (like the templates), never the cwd.
#: The default (empty) allow/deny lists shipped with the package; a fleet names its own.
SUPPRESSION_DIR = Path(str(resources.files("mailmend") / "suppression"))
#: ``policyd-rate-limit``'s daily cap when neither the fleet key ``sender_limit_per_day`` nor
#: the tuning key ``hygiene_sender_limits`` is set.
DEFAULT_DAILY_SENDER_LIMIT = 1000


@dataclass(frozen=True)
class HygieneContext:
    #: the tables on the host, and the Postfix log the hard-bounce scan reads
    recipients_table: str
    transport_table: str
    maillog_file: str
    #: the admin's allow / deny lists, read on the admin's machine
    allow_file: Path
    deny_file: Path
    #: ``(count, seconds)`` pairs: at most ``count`` recipients per sender in ``seconds``
    sender_limits: tuple[tuple[int, int], ...]
    #: client networks keyed by IP when a request carries no sender (local submitters)
    limited_networks: tuple[str, ...]
    policy_socket: str
    policy_config: str


def sender_limits(
    host: str, value: object, rate_per_minute: int, per_day: int | None = None
) -> tuple[tuple[int, int], ...]:
    """``[[count, seconds], ...]``; by default the provider's per-minute cap, then a daily cap
    (the fleet key ``sender_limit_per_day``, else 1000). ``value`` is the tuning key
    ``hygiene_sender_limits``: a list of windows of its own, which wins when set.

    >>> sender_limits("mx1", None, 5)
    ((5, 60), (1000, 86400))
    >>> sender_limits("mx1", None, 4, 300)
    ((4, 60), (300, 86400))
    """
    field = "hygiene_sender_limits"
    if value is None:
        return ((rate_per_minute, 60), (per_day or DEFAULT_DAILY_SENDER_LIMIT, 86400))
    if not isinstance(value, (list, tuple)) or not value:
        raise DeployValueError(host, field, "expected a non-empty list of [count, seconds]")
    out: list[tuple[int, int]] = []
    for index, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DeployValueError(host, f"{field}[{index}]", "expected [count, seconds]")
        count = positive_int(host, f"{field}[{index}][0]", pair[0])
        seconds = positive_int(host, f"{field}[{index}][1]", pair[1])
        out.append((count, seconds))
    if len({seconds for _, seconds in out}) != len(out):
        raise DeployValueError(host, field, "two limits for the same period")
    return tuple(sorted(out, key=lambda pair: pair[1]))


def _list_file(host: str, field: str, value: object, default: Path) -> Path:
    if value is None:
        return default
    text = safe_text(host, field, value)
    return Path(text).expanduser().resolve()


def hygiene_context(host: str, data: Mapping[str, Any]) -> HygieneContext:
    rate = fleet_value(host, data, "rate_limit_per_minute", 5)
    per_day = fleet_value(host, data, "sender_limit_per_day")
    suppression_dir = _abs_path(host, "hygiene_suppression_dir", data).rstrip("/")
    networks = data.get("hygiene_limited_networks")
    if not isinstance(networks, (list, tuple)):
        raise DeployValueError(host, "hygiene_limited_networks", "expected a list of networks")
    limited: list[str] = []
    for index, raw in enumerate(networks):
        where = f"hygiene_limited_networks[{index}]"
        try:
            limited.append(str(ipaddress.ip_network(safe_text(host, where, raw))))
        except ValueError:
            raise DeployValueError(host, where, f"{raw!r} is not a network") from None
    _queue_relative(host, "hygiene_policy_socket", data)  # smtpd must reach it chrooted
    return HygieneContext(
        recipients_table=f"{suppression_dir}/{SUPPRESS_RECIPIENTS}",
        transport_table=f"{suppression_dir}/{SUPPRESS_TRANSPORT}",
        maillog_file=_abs_path(host, "postfix_maillog_file", data),
        allow_file=_list_file(
            host,
            "hygiene_allow_file",
            data.get("hygiene_allow_file"),
            SUPPRESSION_DIR / "allow.txt",
        ),
        deny_file=_list_file(
            host, "hygiene_deny_file", data.get("hygiene_deny_file"), SUPPRESSION_DIR / "deny.txt"
        ),
        sender_limits=sender_limits(host, data.get("hygiene_sender_limits"), rate, per_day),
        limited_networks=tuple(limited),
        policy_socket=_abs_path(host, "hygiene_policy_socket", data),
        policy_config=_abs_path(host, "hygiene_policy_config", data),
    )
