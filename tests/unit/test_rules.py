"""The pure value validators: each refuses what it should, with a useful reason."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from mailmend import rules as v

UNSPECIFIED_V4 = str(ipaddress.IPv4Address(0))  # spelled out, it trips ruff S104

# -- strings ----------------------------------------------------------------------------------

UNSAFE = ["\n", "\r", "\t", " ", "'", '"', "\\", "\x00", "\x1b", "\x7f", "\u200b", "\u2028"]


@pytest.mark.parametrize("ch", UNSAFE)
def test_unsafe_char_refused_and_shown_escaped(ch: str) -> None:
    reason = v.unsafe_char_problem(f"ab{ch}c")
    assert reason is not None
    assert repr(ch) in reason
    assert "position 3" in reason


def test_unsafe_char_accepts_plain_text() -> None:
    assert v.unsafe_char_problem("permit_mynetworks,reject_unauth_destination") is None
    assert v.unsafe_char_problem("/home/ops/.ssh/id_ed25519") is None


def test_allow_space_accepts_only_the_plain_space() -> None:
    assert v.unsafe_char_problem("permit_mynetworks, reject", allow_space=True) is None
    assert v.unsafe_char_problem("a b") is not None
    for ch in ["\t", "\n", "\u00a0", '"', "'", "\\"]:
        reason = v.unsafe_char_problem(f"a{ch}b", allow_space=True)
        assert reason is not None and repr(ch) in reason


# -- integers and booleans --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        (True, "not the boolean true"),
        (False, "not the boolean false"),
        ("5", "write it without quotes: 5"),
        (5.0, "not a float"),
        (0, "between 1 and 10"),
        (11, "between 1 and 10"),
    ],
)
def test_int_problem(value: object, phrase: str) -> None:
    reason = v.int_problem(value, 1, 10)
    assert reason is not None and phrase in reason


def test_int_problem_accepts_bounds_and_open_upper_bound() -> None:
    assert v.int_problem(1, 1, 10) is None
    assert v.int_problem(10, 1, 10) is None
    assert v.int_problem(10**9, 1) is None
    assert "at least 1" in (v.int_problem(0, 1) or "")


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, 1.0])
def test_bool_problem_refuses_non_booleans(value: object) -> None:
    reason = v.bool_problem(value)
    assert reason is not None and "true or false" in reason


def test_bool_problem_accepts_booleans() -> None:
    assert v.bool_problem(True) is None
    assert v.bool_problem(False) is None


def test_type_name() -> None:
    assert v.type_name(True) == "boolean"
    assert v.type_name([1]) == "array"
    assert v.type_name({}) == "table"
    assert v.type_name(datetime.date(2024, 1, 1)) == "date/time"


# -- FQDNs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("", "empty name"),
        (".", "empty name"),
        ("mx1..example.com", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("a" * 64 + ".example.com", "is 64 characters, the limit is 63"),
        (".".join(["a" * 63] * 4) + ".com", "the limit is 253"),
        ("mx_1.example.com", "bad character '_'"),
        ("mx1.exämple.com", "xn-- form"),
        ("-mx1.example.com", "starts or ends with a hyphen"),
        ("mx1-.example.com", "starts or ends with a hyphen"),
        ("localhost", "single label"),
        ("mx1.example.123", "all digits"),
        ("192.0.2.7", "all digits"),
    ],
)
def test_fqdn_problem(name: str, phrase: str) -> None:
    reason = v.fqdn_problem(name)
    assert reason is not None
    assert phrase in reason
    assert reason.startswith(f"{name!r} is not a valid FQDN")
    assert reason.endswith("use a name like mx1.example.com")


@pytest.mark.parametrize(
    "name",
    [
        "mx1.example.com",
        "MX1.Example.COM.",
        "a.b",
        "xn--exmple-cua.com",
        "1.example.com",
        "a" * 63 + ".example.com",
        "mx1.example.co2",
    ],
)
def test_fqdn_accepts(name: str) -> None:
    assert v.fqdn_problem(name) is None


def test_fqdn_total_length_limit_is_253() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    assert len(name) == 253
    assert v.fqdn_problem(name) is None
    assert v.fqdn_problem(name + "d") is not None


def test_normalize_fqdn() -> None:
    assert v.normalize_fqdn("MX1.Example.COM.") == "mx1.example.com"
    assert v.normalize_fqdn("mx1.example.com") == "mx1.example.com"


def test_fqdn_example_hint() -> None:
    assert (v.fqdn_problem("com", "example.com") or "").endswith("like example.com")


# -- selectors, names, users ------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["mx1", "s2024-01", "mx1.eu", "A1"])
def test_selector_accepts(selector: str) -> None:
    assert v.selector_problem(selector) is None


@pytest.mark.parametrize(
    ("selector", "phrase"),
    [
        ("mx_1", "bad character '_'"),
        ("mx1.", "empty label"),
        ("", "empty label"),
        ("a" * 64, "the limit is 63"),
        ("-mx1", "hyphen"),
    ],
)
def test_selector_refuses(selector: str, phrase: str) -> None:
    reason = v.selector_problem(selector)
    assert reason is not None and phrase in reason and "DKIM selector" in reason


def test_dkim_record_name_length() -> None:
    domain = ".".join(["d" * 63, "e" * 63, "f" * 63]) + ".com"
    assert v.dkim_record_problem("s", "example.com") is None
    assert "over 253" in (v.dkim_record_problem("a" * 63, domain) or "")


@pytest.mark.parametrize("name", ["mx1", "mx1.example.com", "web_2", "A-1"])
def test_inventory_name_accepts(name: str) -> None:
    assert v.inventory_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-mx1", "mx 1", "mx/1", "@local", "*"])
def test_inventory_name_refuses(name: str) -> None:
    assert "not a usable name" in (v.inventory_name_problem(name) or "")


def test_user_problem() -> None:
    assert v.user_problem("root") is None
    assert v.user_problem("deploy-bot") is None
    assert "not a valid user name" in (v.user_problem("root@host") or "")
    assert v.user_problem("a" * 33) is not None


# -- ssh_host ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["203.0.113.7", "2001:db8::7", "mx1.example.com", "mx1", "127.0.0.1"]
)
def test_ssh_host_accepts(host: str) -> None:
    assert v.ssh_host_problem(host) is None


@pytest.mark.parametrize(
    ("host", "phrase"),
    [
        ("[2001:db8::7]", "without brackets"),
        ("root@mx1.example.com", "ssh_user"),
        ("mx1.example.com:2222", "ssh_port"),
        ("mx1..example.com", "empty label"),
        ("", "empty name"),
    ],
)
def test_ssh_host_refuses(host: str, phrase: str) -> None:
    assert phrase in (v.ssh_host_problem(host) or "")


def test_normalize_host_or_ip() -> None:
    assert v.normalize_host_or_ip("2001:DB8:0::7") == "2001:db8::7"
    assert v.normalize_host_or_ip("MX1.Example.com.") == "mx1.example.com"


# -- public addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "version", "phrase"),
    [
        ("mx1", 4, "not an IPv4 address"),
        ("2001:db8::1", 4, "put it in public_ipv6"),
        ("203.0.113.7", 6, "put it in public_ipv4"),
        ("01.2.3.4", 4, "not an IPv4 address"),
        ("127.0.0.1", 4, "loopback"),
        (UNSPECIFIED_V4, 4, "unspecified"),
        ("224.0.0.1", 4, "multicast"),
        ("169.254.1.1", 4, "link-local"),
        ("240.0.0.1", 4, "reserved"),
        ("::1", 6, "loopback"),
        ("::", 6, "unspecified"),
        ("ff02::1", 6, "multicast"),
        ("fe80::1", 6, "link-local"),
        ("fec0::1", 6, "site-local"),
        ("fe80::1%eth0", 6, "zone index"),
        ("::ffff:203.0.113.7", 6, "IPv4-mapped"),
    ],
)
def test_public_ip_problem(value: str, version: int, phrase: str) -> None:
    reason = v.public_ip_problem(value, version)
    assert reason is not None and phrase in reason


@pytest.mark.parametrize("value", ["127.0.0.1", UNSPECIFIED_V4, "169.254.1.1", "240.0.0.1"])
def test_special_addresses_allowed_in_sandbox(value: str) -> None:
    assert v.public_ip_problem(value, 4, sandbox=True) is None


def test_wrong_family_refused_even_in_sandbox() -> None:
    assert v.public_ip_problem("::1", 4, sandbox=True) is not None


@pytest.mark.parametrize(
    "value",
    [
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.1",
        "203.0.113.7",
        "100.64.0.1",
        "fd00::1",
        "2001:db8::1",
    ],
)
def test_private_addresses_are_warnings(value: str) -> None:
    version = 6 if ":" in value else 4
    assert v.public_ip_problem(value, version) is None
    assert "not globally routable" in (v.public_ip_warning(value) or "")
    assert v.public_ip_warning(value, sandbox=True) is None


@pytest.mark.parametrize("value", ["5.9.10.11", "2a01:4f8::11"])
def test_global_addresses_pass_silently(value: str) -> None:
    version = 6 if ":" in value else 4
    assert v.public_ip_problem(value, version) is None
    assert v.public_ip_warning(value) is None


def test_ip_problem() -> None:
    assert v.ip_problem("127.0.10.1") is None
    assert v.ip_problem("2001:db8::1") is None
    assert "not an IP address" in (v.ip_problem("127.0.0.1,127.0.0.2") or "")
    assert "unspecified or multicast" in (v.ip_problem(UNSPECIFIED_V4) or "")


def test_canonical_ip() -> None:
    assert v.canonical_ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert v.canonical_ip("not-an-ip") == "not-an-ip"


# -- relay ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "smtp.example.net",
        "smtp.example.net:587",
        "[smtp.example.net]",
        "[smtp.example.net]:587",
        "[192.0.2.1]:25",
        "[2001:db8::1]:587",
    ],
)
def test_relay_host_accepts(value: str) -> None:
    assert v.relay_host_problem(value) is None


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("smtp", "single label"),
        ("smtp.example.net:0", "between 1 and 65535"),
        ("smtp.example.net:submission", "must be a number"),
        ("smtp.example.net:70000", "between 1 and 65535"),
        ("[smtp.example.net", "missing ']'"),
        ("[smtp.example.net]x", "after ']'"),
        ("2001:db8::1", "in brackets"),
        ("192.0.2.1:25", "in brackets, like [192.0.2.1]"),
        ("smtp..example.net", "empty label"),
    ],
)
def test_relay_host_refuses(value: str, phrase: str) -> None:
    reason = v.relay_host_problem(value)
    assert reason is not None and phrase in reason and "not a relay host" in reason


def test_normalize_relay_host() -> None:
    assert v.normalize_relay_host("[SMTP.Example.NET.]:587") == "[smtp.example.net]:587"
    assert v.normalize_relay_host("[2001:DB8::0:1]") == "[2001:db8::1]"
    assert v.normalize_relay_host("Smtp.Example.net") == "smtp.example.net"


@pytest.mark.parametrize("value", ["env:RELAY_PASSWORD", "env:_X1", "file:/etc/mailmend/relay"])
def test_relay_credentials_accepts_references(value: str) -> None:
    assert v.relay_credentials_problem(value) is None


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("hunter2", "secrets never go in the fleet file"),
        ("user:password", "secrets never go in the fleet file"),
        ("env:relay_password", "must match [A-Z_][A-Z0-9_]*"),
        ("env:", "must match"),
        ("file:relay.txt", "absolute path"),
        ("file:/", "absolute path"),
    ],
)
def test_relay_credentials_refuses(value: str, phrase: str) -> None:
    assert phrase in (v.relay_credentials_problem(value) or "")


# -- email ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["dmarc@example.com", "dmarc+rua@mail.example.com", "a.b@x.io"])
def test_email_accepts(value: str) -> None:
    assert v.email_problem(value) is None


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        ("dmarc", "no local@domain form"),
        ("@example.com", "no local@domain form"),
        ("dmarc@localhost", "single label"),
        (".dmarc@example.com", "bad local part"),
        ("dm..arc@example.com", "bad local part"),
        ("dmarc@example..com", "empty label"),
        ("a" * 65 + "@example.com", "bad local part"),
    ],
)
def test_email_refuses(value: str, phrase: str) -> None:
    reason = v.email_problem(value)
    assert reason is not None and phrase in reason and "plausible email address" in reason


def test_normalize_email_lowercases_domain_only() -> None:
    assert v.normalize_email("DMARC@Example.COM.") == "DMARC@example.com"


# -- Postfix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "smtpd_banner",
        "message_size_limit",
        "smtp_tls_loglevel",
        "smtp_destination_concurrency_limit",
        "sender_dependent_relayhost_maps",
    ],
)
def test_postfix_key_accepts(key: str) -> None:
    assert v.postfix_key_problem(key) is None


@pytest.mark.parametrize("key", ["Smtpd_banner", "1abc", "smtpd-banner", "_x", ""])
def test_postfix_key_refuses_bad_names(key: str) -> None:
    assert "not a main.cf parameter name" in (v.postfix_key_problem(key) or "")


@pytest.mark.parametrize(
    ("key", "fleet_key"),
    [
        ("myhostname", "hostname"),
        ("mydomain", "hostname"),
        ("myorigin", "hostname"),
        ("inet_interfaces", "receives_mail"),
        ("relayhost", "relay_host"),
        ("smtp_sasl_password_maps", "relay_credentials"),
        ("smtp_bind_address", "bind_address"),
    ],
)
def test_postfix_managed_keys_point_to_the_fleet_key(key: str, fleet_key: str) -> None:
    reason = v.postfix_key_problem(key)
    assert reason is not None
    assert f"set through the fleet key {fleet_key} instead" in reason


@pytest.mark.parametrize(
    "key",
    [
        "smtp_transport_rate_delay",
        "default_transport_rate_delay",
        "smtp_destination_rate_delay",
        "default_destination_rate_delay",
    ],
)
def test_postfix_pacing_keys_refused(key: str) -> None:
    reason = v.postfix_key_problem(key) or ""
    assert "mailmend paces with exactly one knob from rate_limit_per_minute" in reason


@pytest.mark.parametrize("key", ["smtpd_milters", "non_smtpd_milters", "milter_default_action"])
def test_postfix_milter_keys_refused(key: str) -> None:
    assert "managed by mailmend" in (v.postfix_key_problem(key) or "")


def test_postfix_value() -> None:
    assert v.postfix_value_problem("permit_mynetworks, reject_unauth_destination") is None
    assert v.postfix_value_problem("$myhostname ESMTP") is None
    assert v.postfix_value_problem("a\nrelayhost = evil") is not None
    assert v.postfix_value_problem('"quoted"') is not None
