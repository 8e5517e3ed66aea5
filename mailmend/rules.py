"""Pure validators for the values of a fleet file.

Each ``*_problem`` function takes one value and returns the reason it is refused (a sentence
fragment that names the value) or ``None`` when it is acceptable. Nothing here connects,
prints or raises for a bad value; :mod:`mailmend.fleet` turns the reasons into problems.

    >>> fqdn_problem("mx1..example.com")
    "'mx1..example.com' is not a valid FQDN (empty label); use a name like mx1.example.com"
    >>> fqdn_problem("MX1.Example.com.") is None
    True
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import unicodedata

MAX_FQDN_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_PORT = 65535

_LDH_LABEL = re.compile(r"[A-Za-z0-9-]+\Z")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
_INVENTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_POSTFIX_KEY = re.compile(r"[a-z][a-z0-9_]*\Z")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&*+/=?^_`{|}~-]+)*\Z")

_FORBIDDEN_PUNCTUATION = frozenset("'\"\\")
_PACING = "mailmend paces with exactly one knob from rate_limit_per_minute"
_MILTERS = "mailmend wires the OpenDKIM milter itself from domains"
_NAMES = "set through the fleet key hostname instead"
_RELAY = "set through the fleet key relay_host instead"
_NOT_OPEN = "mailmend keeps the host from relaying for others (never an open relay)"
_HYGIENE = "the suppression tables (deploys/hygiene.py) use it"
_RENDERED = "mailmend renders it (templates/postfix/main.cf.j2)"

#: Every main.cf parameter mailmend renders itself (``templates/postfix/main.cf.j2``), with
#: where to set it instead. The one list: the fleet check and the deploy both refuse these in
#: ``postfix_main_cf`` (a second definition would silently win, or add a second pacing knob).
MANAGED_POSTFIX_KEYS: dict[str, str] = {
    "compatibility_level": _RENDERED,
    "myhostname": _NAMES,
    "mydomain": f"{_NAMES} (mailmend derives it)",
    "myorigin": f"{_NAMES} (mailmend derives it)",
    "mydestination": f"{_NAMES} (mailmend derives it)",
    "smtp_helo_name": f"{_NAMES} (mailmend derives it)",
    "alias_maps": _RENDERED,
    "alias_database": _RENDERED,
    "inet_interfaces": "set through the fleet key receives_mail instead (or listen_address)",
    "inet_protocols": "set through the fleet key public_ipv6 instead (IPv6 only with a public "
    "IPv6 address)",
    "smtp_bind_address": "set through the fleet key bind_address instead",
    "smtp_bind_address6": "set through the fleet key bind_address instead",
    "mynetworks": _NOT_OPEN,
    "relay_domains": f"{_NOT_OPEN}; with no relay domains the relay transport carries no mail",
    "smtpd_relay_restrictions": _NOT_OPEN,
    "smtpd_recipient_restrictions": f"{_NOT_OPEN}; {_HYGIENE}",
    "smtpd_recipient_limit": "set through the fleet key recipient_limit instead",
    "access_map_reject_code": _HYGIENE,
    "transport_maps": _HYGIENE,
    "relayhost": _RELAY,
    "smtp_tls_security_level": f"{_RELAY} (a relay gets encrypt, direct delivery may)",
    "smtp_sasl_auth_enable": "set through the fleet key relay_credentials instead",
    "smtp_sasl_password_maps": "set through the fleet key relay_credentials instead",
    "smtp_sasl_security_options": "set through the fleet key relay_credentials instead",
    "smtp_transport_rate_delay": _PACING,
    "smtpd_milters": _MILTERS,
    "non_smtpd_milters": _MILTERS,
    "milter_default_action": _MILTERS,
    "maillog_file": "set through the tuning key postfix_maillog_file instead (group_data/)",
}

#: The pacing knob: mailmend sets it and nothing may route mail around it.
PACING_KNOB = "smtp_transport_rate_delay"
_BYPASS = (
    f"{_PACING} ({PACING_KNOB}, which covers only the smtp transport): mail would leave unpaced"
)
#: (what the key does, how it is recognised) for main.cf parameters that defeat the pacing.
_PACING_BYPASS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a second pacing knob (delays add up or override the one knob)",
        re.compile(r".*_rate_delay\Z"),
    ),
    (
        "it moves mail onto a delivery transport of its own",
        re.compile(r".*_transport(_maps)?\Z"),
    ),
    (
        "it hands every message to a transport or server of its own",
        re.compile(r"(content_filter|smtpd_proxy_filter)\Z"),
    ),
    ("it renames a Postfix service (delivery agents among them)", re.compile(r".*_service_name\Z")),
)
#: A FILTER action written inline (``inline:{...}``, ``static:...``) selects a transport too.
_FILTER_ACTION = re.compile(r"(?i)(?<![\w/.:-])FILTER\s+[^\s,}]*:")


# -- generic ------------------------------------------------------------------------------


def type_name(value: object) -> str:
    """The TOML name of a value's type, for messages: ``"string"``, ``"array"``..."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.date | datetime.time):
        return "date/time"
    return type(value).__name__


def _forbidden(ch: str, *, allow_space: bool) -> bool:
    if ch == " ":
        return not allow_space
    if ch in _FORBIDDEN_PUNCTUATION or ch.isspace():
        return True
    # C*: control, format, surrogate, private use, unassigned; Z*: separators.
    return unicodedata.category(ch)[0] in "CZ"


def unsafe_char_problem(value: str, *, allow_space: bool = False) -> str | None:
    """Refuse whitespace, quotes, backslashes and control characters (shown escaped).

    With ``allow_space`` a plain space (U+0020) is accepted, nothing else is.
    """
    for i, ch in enumerate(value):
        if _forbidden(ch, allow_space=allow_space):
            rule = (
                "main.cf values may contain plain spaces but no other whitespace"
                if allow_space
                else "values must not contain whitespace"
            )
            return (
                f"{value!r} contains {ch!r} at position {i + 1}; {rule}, quotes, "
                "backslashes or control characters"
            )
    return None


def is_safe_string(value: str, *, allow_space: bool = False) -> bool:
    return unsafe_char_problem(value, allow_space=allow_space) is None


def int_problem(value: object, low: int, high: int | None = None) -> str | None:
    """Refuse non-integers (booleans included) and integers outside ``low..high``."""
    if isinstance(value, bool):
        return f"must be an integer, not the boolean {str(value).lower()}"
    if not isinstance(value, int):
        hint = f" (write it without quotes: {value})" if _is_digits(value) else ""
        return f"must be an integer, not a {type_name(value)}{hint}"
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        return f"{value} is out of range: must be {bounds}"
    return None


def _is_digits(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def bool_problem(value: object) -> str | None:
    """Refuse anything but a TOML boolean: no ``"yes"``, no ``1``."""
    if isinstance(value, bool):
        return None
    shown = f" {value!r}" if isinstance(value, str | int) else ""
    return f"must be true or false (a TOML boolean), not the {type_name(value)}{shown}"


# -- names --------------------------------------------------------------------------------


def normalize_fqdn(name: str) -> str:
    """Lower-case and drop one trailing dot: ``"MX1.Example.com."`` -> ``"mx1.example.com"``."""
    return (name[:-1] if name.endswith(".") else name).lower()


def _label_reason(label: str) -> str | None:
    if not label:
        return "empty label"
    if len(label) > MAX_LABEL_LENGTH:
        return f"label {label[:12]!r}... is {len(label)} characters, the limit is 63"
    if not _LDH_LABEL.match(label):
        bad = next(ch for ch in label if not _LDH_LABEL.match(ch))
        hint = "; write internationalised names in their xn-- form" if not bad.isascii() else ""
        return f"bad character {bad!r} in label {label!r}: use letters, digits and '-'{hint}"
    if label.startswith("-") or label.endswith("-"):
        return f"label {label!r} starts or ends with a hyphen"
    return None


def _hostname_reason(name: str, *, min_labels: int) -> str | None:
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped:
        return "empty name"
    if len(stripped) > MAX_FQDN_LENGTH:
        return f"{len(stripped)} characters, the limit is {MAX_FQDN_LENGTH}"
    labels = stripped.split(".")
    for label in labels:
        reason = _label_reason(label)
        if reason:
            return reason
    if len(labels) < min_labels:
        return "single label: a fully qualified name has at least two"
    if min_labels > 1 and labels[-1].isdigit():
        return f"top-level label {labels[-1]!r} is all digits"
    return None


def fqdn_problem(name: str, example: str = "mx1.example.com") -> str | None:
    """RFC 1123 fully qualified domain name; a trailing dot is accepted."""
    reason = _hostname_reason(name, min_labels=2)
    if reason is None:
        return None
    return f"{name!r} is not a valid FQDN ({reason}); use a name like {example}"


def selector_problem(selector: str) -> str | None:
    """DKIM selector (RFC 6376): one or more dot-separated LDH labels."""
    for label in selector.split("."):
        reason = _label_reason(label)
        if reason:
            return f"{selector!r} is not a valid DKIM selector ({reason}); use one like mx1"
    return None


def dkim_record_problem(selector: str, domain: str) -> str | None:
    """The DKIM key record ``SELECTOR._domainkey.DOMAIN`` must fit in a DNS name."""
    record = f"{selector}._domainkey.{domain}"
    if len(record) > MAX_FQDN_LENGTH:
        return f"the DKIM record name {record[:20]!r}... is {len(record)} characters, over 253"
    return None


def inventory_name_problem(name: str) -> str | None:
    """A host or group name as pyinfra sees it (``--limit NAME``)."""
    if _INVENTORY_NAME.match(name) and len(name) <= MAX_FQDN_LENGTH:
        return None
    return (
        f"{name!r} is not a usable name: use letters, digits, '.', '-' and '_', "
        "starting with a letter or digit"
    )


def user_problem(user: str) -> str | None:
    """A login name for SSH."""
    if _USER_NAME.match(user):
        return None
    return f"{user!r} is not a valid user name (letters, digits, '_', '.', '-'; at most 32)"


def ssh_host_problem(value: str) -> str | None:
    """An IP address (IPv6 without brackets) or a DNS name; a single label is allowed."""
    if _ip_or_none(value) is not None:
        return None
    if value.startswith("["):
        return f"{value!r}: write IPv6 addresses without brackets; the port goes in ssh_port"
    if "@" in value:
        return f"{value!r}: put the user name in ssh_user, not in ssh_host"
    if ":" in value:
        return f"{value!r}: put the port in ssh_port, not in ssh_host"
    reason = _hostname_reason(value, min_labels=1)
    if reason is None:
        return None
    return f"{value!r} is neither an IP address nor a valid host name ({reason})"


def normalize_host_or_ip(value: str) -> str:
    """Canonical IP text (``2001:DB8::0:1`` -> ``2001:db8::1``) or a normalised name."""
    ip = _ip_or_none(value)
    return str(ip) if ip is not None else normalize_fqdn(value)


# -- addresses ----------------------------------------------------------------------------

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip_or_none(value: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _special_kind(ip: _IPAddress) -> str | None:
    """The kind of a never-public address, or None."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_reserved:
        return "reserved"
    return None


def public_ip_problem(value: str, version: int, *, sandbox: bool = False) -> str | None:
    """An address of ``version`` (4 or 6) that can be a server's public address."""
    ip = _ip_or_none(value)
    if ip is None:
        return f"{value!r} is not an IPv{version} address"
    if ip.version != version:
        return f"{value} is an IPv{ip.version} address; put it in public_ipv{ip.version}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return f"{value} has a zone index (%{ip.scope_id}); a public address has none"
        if ip.ipv4_mapped is not None:
            return f"{value} is an IPv4-mapped address; put {ip.ipv4_mapped} in public_ipv4"
    kind = _special_kind(ip)
    if kind and not sandbox:
        return (
            f"{value} is a {kind} address, which cannot be a public address "
            "(allowed only in a sandbox fleet, [fleet] sandbox = true)"
        )
    return None


def public_ip_warning(value: str, *, sandbox: bool = False) -> str | None:
    """A warning for an acceptable but not globally routable address (never in a sandbox)."""
    ip = _ip_or_none(value)
    if sandbox or ip is None or ip.is_global:
        return None
    return (
        f"{ip} is not globally routable (a private, shared or documentation range); "
        "other mail servers will not see this as the sender's address"
    )


def ip_problem(value: str) -> str | None:
    """One concrete local IP address (IPv4 or IPv6) to listen on or send from."""
    ip = _ip_or_none(value)
    if ip is None:
        return f"{value!r} is not an IP address (give exactly one, IPv4 or IPv6)"
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return (
            f"{value!r} has an IPv6 zone index (%...); Postfix's master.cf and main.cf take "
            "the address alone"
        )
    if ip.is_unspecified or ip.is_multicast:
        return f"{value} is not a usable local address (unspecified or multicast)"
    return None


def canonical_ip(value: str) -> str:
    """``2001:DB8:0::1`` -> ``2001:db8::1``; the value unchanged if it is not an address."""
    ip = _ip_or_none(value)
    return str(ip) if ip is not None else value


# -- relay --------------------------------------------------------------------------------


def _split_relay(value: str) -> tuple[str, str | None, bool] | str:
    """(host, port or None, bracketed) or the reason the value does not parse."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "missing ']'"
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return f"unexpected {rest!r} after ']'"
        return host, rest[1:] if rest else None, True
    if value.count(":") > 1:
        return "write an IPv6 address in brackets, like [2001:db8::1]:587"
    host, sep, port = value.partition(":")
    return host, port if sep else None, False


def relay_host_problem(value: str) -> str | None:
    """``host``, ``host:port``, ``[host]`` or ``[host]:port`` (brackets: no MX lookup)."""
    parts = _split_relay(value)
    reason: str | None
    if isinstance(parts, str):
        reason = parts
    else:
        host, port, bracketed = parts
        reason = None if port is None else port_problem(port)
        if reason is None and _ip_or_none(host) is not None:
            reason = None if bracketed else f"write an IP address in brackets, like [{host}]"
        elif reason is None:
            reason = fqdn_problem(host, "smtp.example.net")
    if reason is None:
        return None
    return f"{value!r} is not a relay host ({reason}); use a form like [smtp.example.net]:587"


def port_problem(port: str) -> str | None:
    """Why ``port`` (text) is not a TCP port 1-65535 (ASCII digits only), or None."""
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= MAX_PORT:
        return f"port {port!r} must be a number between 1 and {MAX_PORT}"
    return None


def normalize_relay_host(value: str) -> str:
    """Lower-case the host part, drop a trailing dot, and canonicalise an IP literal."""
    parts = _split_relay(value)
    if isinstance(parts, str):
        return value
    host, port, bracketed = parts
    host = normalize_host_or_ip(host)
    text = f"[{host}]" if bracketed else host
    return f"{text}:{port}" if port is not None else text


def secret_reference_problem(value: str, example: str = "/etc/mailmend/secret") -> str | None:
    """A reference to a secret, ``env:NAME`` or ``file:/absolute/path`` (never the secret)."""
    kind, sep, rest = value.partition(":")
    if sep and kind == "env":
        if _ENV_NAME.match(rest):
            return None
        return f"environment variable name {rest!r} must match [A-Z_][A-Z0-9_]*"
    if sep and kind == "file":
        if rest.startswith("/") and len(rest) > 1:
            return None
        return f"the file reference {rest!r} must be an absolute path, like file:{example}"
    return (
        "must be a reference, env:NAME or file:/absolute/path (secrets never go in the "
        "fleet file; put the secret in that variable or file)"
    )


def relay_credentials_problem(value: str) -> str | None:
    """A reference to the relay secret, ``env:NAME`` or ``file:/absolute/path``."""
    problem = secret_reference_problem(value, "/etc/mailmend/relay")
    return problem and problem.replace("put the secret in", "put the user:password in")


#: VPS providers ``mailmend ptr`` sets reverse DNS at (fleet key ``vps_provider``).
VPS_PROVIDERS = ("hostinger", "hetzner", "linode", "ovh", "vultr", "digitalocean")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_LOOPBACK_NAMES = ("localhost",)


def vps_provider_problem(value: str) -> str | None:
    if value in VPS_PROVIDERS:
        return None
    return f"{value!r} is not a provider mailmend knows; use one of {', '.join(VPS_PROVIDERS)}"


def option_name_problem(value: str) -> str | None:
    if _OPTION_NAME.match(value):
        return None
    return f"{value!r} is not an option name (lower case letters, digits, _ and -)"


def api_endpoint_problem(value: str) -> str | None:
    """An API base URL: https, or http to a loopback address only (a token never travels
    unencrypted off this machine); or a named endpoint such as ``ovh-eu``."""
    if _OPTION_NAME.match(value):
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r} is not an http(s) URL or an endpoint name like ovh-eu"
    if parts.scheme == "http":
        host = parts.hostname
        ip = _ip_or_none(host)
        if not (host in _LOOPBACK_NAMES or (ip is not None and ip.is_loopback)):
            return f"{value!r}: plain http only to a loopback address; use https"
    if parts.username or parts.password or parts.query:
        return f"{value!r}: no credentials or query in the URL; give them by reference"
    return None


def email_problem(value: str) -> str | None:
    """A plausible ``local@fqdn`` address."""
    local, sep, domain = value.rpartition("@")
    if not sep or not local:
        reason: str | None = "no local@domain form"
    elif len(local) > 64 or not _LOCAL_PART.match(local):
        reason = f"bad local part {local!r}"
    else:
        reason = _hostname_reason(domain, min_labels=2)
        reason = f"domain: {reason}" if reason else None
    if reason is None:
        return None
    return f"{value!r} is not a plausible email address ({reason}); use one like dmarc@example.com"


def normalize_email(value: str) -> str:
    """Lower-case the domain part (the local part is the receiver's business)."""
    local, _, domain = value.rpartition("@")
    return f"{local}@{normalize_fqdn(domain)}"


# -- Postfix ------------------------------------------------------------------------------


def postfix_key_problem(key: str) -> str | None:
    """An extra main.cf parameter name that mailmend lets the admin set.

    Refused: a bad name, a parameter mailmend renders itself, and any parameter that would
    route mail around the single pacing knob (another rate delay, a transport of its own, a
    content filter).
    """
    if not _POSTFIX_KEY.match(key):
        return f"{key!r} is not a main.cf parameter name (must match ^[a-z][a-z0-9_]*$)"
    managed = MANAGED_POSTFIX_KEYS.get(key)
    if managed:
        return f"{key} is managed by mailmend: {managed}"
    for what, pattern in _PACING_BYPASS:
        if pattern.match(key):
            return f"{key} is refused: {what}; {_BYPASS}"
    return None


def postfix_value_problem(value: str) -> str | None:
    """A main.cf value: plain spaces allowed (``permit_mynetworks, reject``), nothing else.

    An inline ``FILTER transport:nexthop`` action is refused: it bypasses the pacing.
    """
    reason = unsafe_char_problem(value, allow_space=True)
    if reason is None and _FILTER_ACTION.search(value):
        what = "a FILTER action: it hands mail to a transport of its own choosing"
        return f"{value!r} holds {what}; {_BYPASS}"
    return reason
