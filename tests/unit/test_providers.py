"""Provider support without a network: fleet keys, TXT strings for PowerDNS, secrets kept out
of messages and logs, HTTP errors as one line, and the PTR plan's states."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mailmend import rules as v
from mailmend.checks.dns import Rcode
from mailmend.checks.names import reverse_name
from mailmend.fleet import FleetError, HostSpec, parse_fleet
from mailmend.providers import secrets
from mailmend.providers.dns import decode_txt, encode_txt
from mailmend.providers.ptr import State, plan_host
from tests.unit.test_ptr import FakeResolver

IP = "203.0.113.7"
HOST = """
[hosts.mx1]
ssh_host = "203.0.113.7"
hostname = "mx1.example.com"
public_ipv4 = "203.0.113.7"
"""


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://api.hetzner.cloud/v1", True),
        ("http://127.0.0.1:8081", True),
        ("http://localhost:8081/v1", True),
        ("ovh-eu", True),
        ("http://api.example.com/v1", False),  # a token would travel in clear
        ("https://user:pw@api.example.com", False),
        ("https://api.example.com/v1?token=abc", False),
        ("ftp://api.example.com", False),
    ],
)
def test_api_endpoints(value: str, ok: bool) -> None:
    assert (v.api_endpoint_problem(value) is None) is ok


def test_vps_keys_and_dns_table_are_validated() -> None:
    fleet = parse_fleet(
        HOST
        + 'vps_provider = "linode"\nvps_credentials = "env:LINODE_TOKEN"\n'
        + '[dns]\nprovider = "powerdns"\noptions = { pdns_server = "http://127.0.0.1:8081" }\n'
        + 'credentials = { auth_token = "file:/etc/mailmend/pdns" }\n'
    )
    host = fleet.hosts[0]
    assert (host.vps_provider, host.vps_credentials) == ("linode", "env:LINODE_TOKEN")
    assert fleet.dns.provider == "powerdns"
    assert dict(fleet.dns.credentials) == {"auth_token": "file:/etc/mailmend/pdns"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('vps_provider = "aws"', "'aws' is not a provider mailmend knows"),
        ('vps_credentials = "hunter2"\nvps_provider = "vultr"', "must be a reference"),
        ('[dns]\nprovider = "powerdns"\ncredentials = { auth_token = "s3cret" }', "reference"),
        ('[dns]\noptions = { pdns_server = "x" }', "missing: name the provider"),
        ('[dns]\nprovider = "powerdns"\nsecret = "x"', "unknown key 'secret'"),
    ],
)
def test_bad_provider_keys_are_refused(extra: str, message: str) -> None:
    with pytest.raises(FleetError) as err:
        parse_fleet(HOST + extra + "\n")
    assert message in str(err.value)
    assert "hunter2" not in str(err.value) and "s3cret" not in str(err.value)


def test_credentials_without_a_provider_are_a_warning() -> None:
    fleet = parse_fleet(HOST + 'vps_credentials = "env:X"\n')
    assert any("ignored: no vps_provider" in str(w) for w in fleet.warnings)


def test_powerdns_txt_strings_round_trip() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 392  # a 2048-bit key's length
    content = encode_txt("powerdns", value)
    assert content.count('" "') == 1  # two character-strings, lexicon adds the outer quotes
    assert decode_txt("powerdns", content) == value
    odd = 'a "quoted" \\ text'
    assert decode_txt("powerdns", encode_txt("powerdns", odd)) == odd
    assert encode_txt("cloudflare", value) == value  # the provider splits it


def test_secrets_never_reach_messages_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MAILMEND_TEST_TOKEN", "tok-0123456789abcdef")
    assert secrets.resolve("env:MAILMEND_TEST_TOKEN", "test") == "tok-0123456789abcdef"
    assert (
        secrets.redact("Authorization: Bearer tok-0123456789abcdef") == "Authorization: Bearer ***"
    )
    record = logging.LogRecord(
        "x", logging.DEBUG, "f", 1, "headers %s", ({"t": "tok-0123456789abcdef"},), None
    )
    assert secrets._Redact().filter(record) and "tok-0123456789abcdef" not in record.getMessage()
    with pytest.raises(secrets.BadCredentials, match="environment variable NOPE_UNSET is not set"):
        secrets.resolve("env:NOPE_UNSET", "test")


@pytest.mark.parametrize(
    ("status", "kind", "text"),
    [
        (401, secrets.AuthRefused, "refused the credentials (HTTP 401: line1\\010line2)"),
        (403, secrets.AuthRefused, "refused the credentials (HTTP 403: "),
        (404, secrets.NotFound, "not found at the provider (HTTP 404: "),
        (429, secrets.RateLimited, "rate limited by the provider (HTTP 429); try again later"),
        (503, secrets.Unavailable, "provider outage (HTTP 503: line1\\010line2); try again"),
        (422, secrets.ProviderError, "refused the request (HTTP 422: "),
    ],
)
def test_http_statuses_are_one_line(status: int, kind: type[Exception], text: str) -> None:
    err = secrets.status_error(status, "vultr: x", "line1\nline2")
    assert type(err) is kind and text in str(err) and "\n" not in str(err)


def host(**keys: object) -> HostSpec:
    base: dict[str, object] = {"name": "mx1", "ssh_host": IP, "hostname": "mx1.example.com",
                               "public_ipv4": IP, "vps_provider": "hetzner"}  # fmt: skip
    return HostSpec(**{**base, **keys})  # type: ignore[arg-type]


FWD = ("mx1.example.com", "A")
REV = (reverse_name(IP), "PTR")


@pytest.mark.parametrize(
    ("zone", "keys", "state"),
    [
        ({FWD: (IP,), REV: ("mx1.example.com.",)}, {}, State.KEEP),
        ({FWD: (IP,)}, {}, State.SET),
        ({FWD: (IP,), REV: ("ip-203-0-113-7.provider.test.",)}, {}, State.SET),
        ({FWD: ("198.51.100.1",)}, {}, State.BLOCKED),
        ({}, {}, State.BLOCKED),
        ({FWD: (IP,)}, {"vps_provider": None}, State.MANUAL),
        ({FWD: (IP,)}, {"vps_provider": "digitalocean"}, State.RENAME),
        ({FWD: (IP,), REV: Rcode.SERVFAIL}, {}, State.UNKNOWN),
    ],
)
def test_ptr_plan_states(zone: dict, keys: dict[str, object], state: State) -> None:  # type: ignore[type-arg]
    (plan,) = asyncio.run(plan_host(FakeResolver(zone), host(**keys)))
    assert plan.state is state
    if state is State.BLOCKED:
        assert "publish its A record first (mailmend records --apply)" in plan.note


def test_check_fixes_name_mailmend_ptr_where_the_provider_is_known() -> None:
    from mailmend.checks.ptr import evaluate_ptr
    from mailmend.providers.ptr import point_fixes_at_ptr

    missing = evaluate_ptr(
        asyncio.run(FakeResolver({}).query(reverse_name(IP), "PTR")), IP, "mx1.example.com"
    )
    assert missing.fix == f"ask your VPS provider to set the PTR of {IP} to mx1.example.com"
    results = [missing]
    point_fixes_at_ptr(results, "mx1", None, "fleet.toml")
    assert results == [missing]  # no provider known: the fix stays
    point_fixes_at_ptr(results, "mx1", "hetzner", "fleet.toml")
    assert results[0].fix == (
        "run mailmend ptr --fleet fleet.toml --host mx1 --apply (it asks hetzner to set the PTR "
        f"of {IP} to mx1.example.com)"
    )


def test_records_plan_points_at_mailmend_ptr() -> None:
    from mailmend.records.plan import Sender, _ptr, _Reader

    resolver = FakeResolver({FWD: (IP,)})
    sender = Sender("mx1", "mx1.example.com", IP, vps_provider="vultr")
    change = asyncio.run(_ptr(_Reader(resolver), sender, IP))
    assert change.reason == (
        f"run mailmend ptr --host mx1 --apply: sets PTR of {IP} to mx1.example.com through "
        "vultr (now: none)"
    )
    plain = asyncio.run(_ptr(_Reader(resolver), Sender("mx1", "mx1.example.com", IP), IP))
    assert plain.reason.startswith("ask the VPS provider: set PTR of")


class _FakeApi:
    """A lexicon provider whose create fails after the delete (an outage mid-zone)."""

    def __init__(self, store: dict[str, list[str]], fail_create: bool) -> None:
        self.store, self.fail_create = store, fail_create

    def list_records(self, rtype: str, name: str) -> list[dict[str, str]]:
        return [{"name": name, "content": c, "id": f"{name}={c}"} for c in self.store.get(name, [])]

    def delete_record(self, identifier: str) -> None:
        name, _, value = identifier.partition("=")
        self.store[name].remove(value)

    def create_record(self, rtype: str, name: str, content: str) -> None:
        if self.fail_create:
            import requests

            response = requests.Response()
            response.status_code = 503
            raise requests.HTTPError(response=response)
        self.store.setdefault(name, []).append(content)


def _fake_sessions(
    monkeypatch: pytest.MonkeyPatch, store: dict[str, list[str]], fail: bool
) -> None:
    from mailmend.providers import dns as provider_dns

    class FakeSession(provider_dns.Session):
        """The real lexicon Session (its reads and writes) over a fake lexicon provider."""

        def __init__(self, provider: object, secrets: object, zone: str, ttl: int) -> None:
            self.provider, self.zone = "fake", zone
            self.api = _FakeApi(store, fail)
            self._read = {}

    monkeypatch.setattr(provider_dns, "Session", FakeSession)


def _dmarc_plan(old: str, new: str) -> object:
    from mailmend.records.plan import Action, DomainPlan, Plan, RecordChange

    change = RecordChange("dmarc", "_dmarc.example.com", "TXT", Action.CHANGE, new, (old,), (old,))
    return Plan(domains=(DomainPlan("example.com", (change,)),), hosts=())


def test_a_zone_half_written_says_what_was_done(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailmend.providers.dns import DnsProvider, outcome_lines, publish

    old, new = "v=DMARC1; p=none", "v=DMARC1; p=quarantine"
    store = {"_dmarc.example.com": [old]}
    _fake_sessions(monkeypatch, store, fail=True)
    (outcome,) = publish(_dmarc_plan(old, new), DnsProvider("fake"), zone="example.com")  # type: ignore[arg-type]
    assert outcome.status == "partial" and outcome.written == [
        "deleted TXT _dmarc.example.com (old value)"
    ]
    lines = outcome_lines(outcome)
    assert lines[0].startswith(
        "zone example.com: PARTLY CHANGED: zone example.com: provider outage (HTTP 503)"
    )
    assert "already done at the provider: deleted TXT _dmarc.example.com (old value)" in lines[1]


def test_a_record_changed_since_the_plan_stops_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailmend.providers.dns import DnsProvider, publish

    old, new = "v=DMARC1; p=none", "v=DMARC1; p=quarantine"
    store = {"_dmarc.example.com": ["v=DMARC1; p=none; fo=1"]}  # someone else's change
    _fake_sessions(monkeypatch, store, fail=False)
    (outcome,) = publish(_dmarc_plan(old, new), DnsProvider("fake"), zone="example.com")  # type: ignore[arg-type]
    assert outcome.status == "refused" and outcome.written == []
    assert "changed since it was read" in outcome.message
    assert store == {"_dmarc.example.com": ["v=DMARC1; p=none; fo=1"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "powerdns", "--server", "127.0.0.1", "--tsig-key", "k"], "not both"),
        (
            ["--provider-credential", "auth_token=s3cret", "--provider", "powerdns"],
            "must be a reference",
        ),
        (["--provider-option", "pdns_server=x"], "need --provider NAME"),
        (
            ["--provider", "no_such_provider_xyz"],
            "dns-lexicon has no provider 'no_such_provider_xyz'",
        ),
        (["--provider", "hostinger"], "hostinger needs its API token by reference"),
        (
            ["--provider", "hostinger", "--provider-credential", "api_token=s3cret"],
            "must be a reference",
        ),
        (
            ["--provider", "hostinger", "--provider-credential", "token=env:T"],
            "hostinger has no credential 'token' (known: api_token, auth_token)",
        ),
        (
            ["--provider", "hostinger", "--provider-credential", "api_token=env:T",
             "--provider-credential", "auth_token=env:T"],
            "give api_token or auth_token, not both",
        ),
        (
            ["--provider", "hostinger", "--provider-option", "pdns_server=http://127.0.0.1:1",
             "--provider-credential", "api_token=env:T"],
            "hostinger has no option 'pdns_server' (known: endpoint)",
        ),
        (
            ["--provider", "hostinger", "--provider-option", "endpoint=http://api.example.com",
             "--provider-credential", "api_token=env:T"],
            "endpoint: ",
        ),
    ],
)  # fmt: skip
def test_records_provider_options_are_checked_first(
    tmp_path: object, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse
    from pathlib import Path

    from mailmend.cli import records as records_cli

    assert isinstance(tmp_path, Path)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(HOST)
    key = tmp_path / "k"
    key.write_text('key "k" { algorithm hmac-sha256; secret "AAAA"; };\n')
    parser = argparse.ArgumentParser()
    records_cli.add_arguments(parser)
    argv = [a if a != "k" else str(key) for a in argv]
    assert records_cli.run(parser.parse_args(["--fleet", str(fleet), *argv])) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": warning: " not in line]  # fleet warnings
    assert len(errors) == 1 and message in errors[0] and "s3cret" not in err


def test_hostinger_client_failures_without_a_status_are_one_line() -> None:
    """hostinger-api speaks urllib3, not requests: a refused connection and a server that
    never answers are one Unavailable line each, after one try with the timeout (urllib3
    would otherwise retry 3 times)."""
    import socket
    import time

    from mailmend.providers.vps import Hostinger

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(secrets.Unavailable, match=r"^hostinger: listing virtual machines: "):
        Hostinger("token", f"http://127.0.0.1:{port}", 1.0).find(IP)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts, never answers
    try:
        started = time.monotonic()
        with pytest.raises(secrets.Unavailable, match="did not answer in time"):
            Hostinger("token", f"http://127.0.0.1:{silent.getsockname()[1]}", 0.5).find(IP)
        assert time.monotonic() - started < 2.0  # one try of 0.5 s, not four
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("v=spf1 ip4:203.0.113.7 -all", "v=spf1 ip4:203.0.113.7 -all"),  # as hPanel shows it
        ('"v=DKIM1; k=rsa; p=MIIB" "IjANBg"', "v=DKIM1; k=rsa; p=MIIBIjANBg"),  # zone-file form
        ('"unterminated', '"unterminated'),  # not zone-file form after all: kept as it is
    ],
)
def test_hostinger_txt_values_read_back_joined(content: str, text: str) -> None:
    from mailmend.providers.hostinger_dns import joined_txt

    assert joined_txt(content) == text
