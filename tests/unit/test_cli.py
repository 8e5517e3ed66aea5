"""The mailmend CLI: usage errors, exit codes, formats; DNS answered by a fake resolver."""

from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mailmend.checks import engine as engine_module
from mailmend.checks.dns import Rcode, Resolver
from mailmend.checks.host import FleetReport
from mailmend.checks.names import reverse_name
from mailmend.cli import check
from mailmend.cli.errors import UsageError
from mailmend.cli.main import COMMANDS, build_parser, main
from mailmend.dmarc.db import open_dmarc_db
from mailmend.dmarc.ingest import Ingester
from tests.dmarc_reports import Row, report_xml
from tests.unit.test_ptr import FQDN, IP, FakeResolver

D = "example.com"
Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]


def good_zone() -> Zone:
    return {
        (reverse_name(IP), "PTR"): (FQDN + ".",),
        (FQDN, "A"): (IP,),
        (D, "TXT"): (f"v=spf1 ip4:{IP} -all",),
        (f"_dmarc.{D}", "TXT"): (f"v=DMARC1; p=reject; rua=mailto:d@{D}",),
    }


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Zone:
    """The DNS the CLI sees; tests edit it before calling main()."""
    data = good_zone()

    @asynccontextmanager
    async def fake_open(nameservers: list[str], timeout: float | None) -> AsyncIterator[Resolver]:
        yield FakeResolver(data)

    monkeypatch.setattr(check, "open_resolver", fake_open)
    monkeypatch.delenv("MAILMEND_FLEET", raising=False)
    monkeypatch.delenv(check.DQS_ENV, raising=False)
    return data


ARGS = ["check", "--ip", IP, "--hostname", FQDN, "--domain", D, "--no-dnsbl"]


def test_invalid_ip_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--ip", "not-an-ip", "--hostname", FQDN]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "mailmend check: --ip: 'not-an-ip' is not an IP address (IPv4 or IPv6)"


def test_ip_twice_checks_a_dual_stack_host() -> None:
    target = check.single_target(["203.0.113.40", "2001:DB8::28"], FQDN, [])
    assert target.ips == ("203.0.113.40", "2001:db8::28")


@pytest.mark.parametrize(
    ("ips", "phrase"),
    [
        (["203.0.113.40", "203.0.113.41"], "at most one IPv4 and one IPv6"),
        (["::ffff:203.0.113.40"], "IPv4-mapped"),
    ],
)
def test_ip_repeats_and_mapped_addresses_are_usage_errors(ips: list[str], phrase: str) -> None:
    with pytest.raises(UsageError, match=phrase):
        check.single_target(ips, FQDN, [])


def test_invalid_hostname_and_domain_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--ip", IP, "--hostname", "localhost"]) == 2
    assert "--hostname" in capsys.readouterr().err
    assert main(["check", "--ip", IP, "--hostname", FQDN, "--domain", "bad_domain"]) == 2
    assert "--domain" in capsys.readouterr().err
    assert main(["check", "--ip", IP]) == 2


def test_missing_fleet_is_a_usage_error(
    zone: Zone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    assert "no fleet file" in capsys.readouterr().err
    assert main(["check", "--fleet", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_bad_fleet_file_prints_its_problems(
    zone: Zone, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text("this is = not [toml\n")
    assert main(["check", "--fleet", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailmend check: ") and "fleet.toml" in err


def test_ip_and_fleet_together_is_a_usage_error(zone: Zone) -> None:
    assert main([*ARGS, "--fleet", "x.toml"]) == 2


def test_unknown_subcommand_and_bad_format_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main([*ARGS, "--format", "xml"])
    assert info.value.code == 2


def test_all_good_but_warn_exits_0(zone: Zone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(ARGS) == 0  # DKIM has no selector: a warning
    out = capsys.readouterr().out
    assert out.startswith("WARN ")
    assert out.splitlines()[-1] == "1 hosts: 0 fail, 0 unknown, 1 warn, 4 pass"


def test_a_failing_check_exits_1(zone: Zone) -> None:
    del zone[(reverse_name(IP), "PTR")]
    assert main(ARGS) == 1


def test_unknown_without_failure_exits_3(zone: Zone) -> None:
    zone[(f"_dmarc.{D}", "TXT")] = Rcode.SERVFAIL
    assert main(ARGS) == 3


def test_json_to_file(zone: Zone, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert main([*ARGS, "--format", "json", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    doc = json.loads(out.read_text())
    assert doc["schema"] == 1
    assert doc["hosts"][0]["hostname"] == FQDN
    assert doc["hosts"][0]["ip"] == IP


def test_nagios_exit_codes_follow_nagios(zone: Zone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--format", "nagios"]) == 1  # WARNING, where plain check says 0
    assert capsys.readouterr().out.startswith(
        "MAILMEND WARNING - 0 fail, 1 warn, 0 unknown on 1 hosts"
    )
    del zone[(reverse_name(IP), "PTR")]
    assert main([*ARGS, "--format", "nagios"]) == 2


def test_html_output(zone: Zone, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_html_with_dmarc_reports_opens_one_database_and_one_dns_engine(
    zone: Zone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db, other = tmp_path / "dmarc.db", "198.51.100.77"
    conn = open_dmarc_db(db)
    ingester = Ingester(conn)
    rows = [Row(IP, 40, header_from=D), Row(other, 5, header_from=D, dkim="fail", spf="fail")]
    ingester.add(report_xml("google.com", "r1", D, rows, begin=int(time.time()) - 86_400), "r1")
    ingester.commit()
    conn.close()
    zone[(reverse_name(other), "PTR")] = ("sender.elsewhere.test.",)
    connections: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def counting_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        connections.append(real_connect(*args, **kwargs))  # type: ignore[call-overload]
        return connections[-1]

    def no_second_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("a second DNS engine was started")

    fake_open, opened = check.open_resolver, []

    @asynccontextmanager
    async def counting_open(
        nameservers: list[str], timeout: float | None
    ) -> AsyncIterator[Resolver]:
        async with fake_open(nameservers, timeout) as resolver:
            opened.append(resolver)
            yield resolver

    monkeypatch.setattr(sqlite3, "connect", counting_connect)
    monkeypatch.setattr(engine_module, "Engine", no_second_engine)
    monkeypatch.setattr(check, "open_resolver", counting_open)
    assert main([*ARGS, "--format", "html", "--dmarc-db", str(db)]) == 0
    page = capsys.readouterr().out
    assert f"DMARC {D}" in page and "sender.elsewhere.test" in page
    assert len(connections) == 1  # one database connection ...
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connections[0].execute("SELECT 1")  # ... closed when the report is written
    (resolver,) = opened  # one engine: the DMARC sources were asked on the checks' own
    assert (reverse_name(other).rstrip("."), "PTR") in resolver.asked  # type: ignore[attr-defined]


@pytest.fixture
def seen_keys(zone: Zone, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    seen: list[str | None] = []

    async def fake_fleet(
        resolver: object, targets: object, blocklists: object, dqs_key: str | None, **kw: object
    ) -> FleetReport:
        seen.append(dqs_key)
        return FleetReport([])

    monkeypatch.setattr(check, "check_fleet", fake_fleet)
    return seen


def test_dqs_key_is_passed_but_never_printed(
    seen_keys: list[str | None], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(check.DQS_ENV, "s3cr3t-env")
    assert main(ARGS) == 0
    assert main([*ARGS, "--dqs-key", "s3cr3t-arg", "--format", "json"]) == 0
    assert seen_keys == ["s3cr3t-env", "s3cr3t-arg"]
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err


def test_fleet_hosts_become_targets(
    zone: Zone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailmend.fleet import DomainSpec, Fleet, FleetSettings, HostSpec

    fleet = Fleet(
        "fleet.toml",
        FleetSettings(dmarc_report_address="dmarc@example.net"),
        (
            HostSpec("mx1", "mx1", hostname=FQDN, public_ipv4=IP, domains=(DomainSpec(D, "mx1"),)),
            HostSpec("mx2", "mx2", hostname="mx2.example.com", public_ipv6="2001:db8::2"),
        ),
        (),
    )
    targets = check.targets_from_fleet(fleet)
    assert targets[0].domains == ((D, "mx1"),) and targets[0].ips == (IP,)
    assert targets[0].dmarc_report_address == "dmarc@example.net"
    assert targets[1].ips == ("2001:db8::2",)
    monkeypatch.setattr("mailmend.fleet.load_fleet", lambda path: fleet)
    assert main(["check", "--fleet", "f.toml", "--host", "nope", "--no-dnsbl"]) == 2
    assert "no host nope" in capsys.readouterr().err
    assert (
        main(["check", "--fleet", "f.toml", "--host", "mx1", "--no-dnsbl", "--format", "json"]) == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in doc["hosts"]] == ["mx1"]  # mx1's DKIM key is not published


def test_subcommands_are_pluggable() -> None:
    assert "check" in COMMANDS
    argv = ["check", "--ip", IP, "--hostname", FQDN]
    args = build_parser(argv).parse_args(argv)
    assert args.command == "check" and args.format == "table"


def _public_key_b64() -> str:
    """A fresh 2048-bit RSA public key, base64 DER (the DKIM p= value)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def test_dkim_key_file_is_compared_with_the_published_key(
    zone: Zone, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published, other = _public_key_b64(), _public_key_b64()
    zone[(f"mx1._domainkey.{D}", "TXT")] = (f"v=DKIM1; k=rsa; p={published}",)
    txt = tmp_path / "mx1.txt"
    halves = f'"p={published[:200]}" "{published[200:]}"'
    txt.write_text(f'mx1._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; "\n\t  {halves} )\n')
    args = ["check", "--ip", IP, "--hostname", FQDN, "--domain", f"{D}:mx1", "--no-dnsbl"]
    assert main([*args, "--dkim-key", f"{D}:mx1={txt}", "--format", "json"]) == 0
    capsys.readouterr()
    txt.write_text(f"p={other}\n")
    assert main([*args, "--dkim-key", f"{D}:mx1={txt}", "--format", "json"]) == 1
    dkim = [c for c in json.loads(capsys.readouterr().out)["hosts"][0]["checks"]
            if c["check"] == "dkim"]  # fmt: skip
    assert dkim[0]["status"] == "fail"
    assert dkim[0]["summary"] == "published key does not match the key on the host"
    assert other[:40] in dkim[0]["fix"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("example.com=x", "expected DOMAIN:SELECTOR=FILE"),
        ("other.example:mx1=x", "is not one of the --domain"),
        ("example.com:mx1=/nonexistent/key.txt", "cannot read /nonexistent/key.txt"),
    ],
)
def test_bad_dkim_key_is_a_usage_error(
    zone: Zone, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", "--ip", IP, "--hostname", FQDN, "--domain", f"{D}:mx1", "--no-dnsbl"]
    assert main([*args, "--dkim-key", value]) == 2
    assert message in capsys.readouterr().err


def test_bad_dqs_key_is_a_usage_error_without_echo(
    zone: Zone, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["check", "--ip", IP, "--hostname", FQDN, "--dqs-key", "no good!"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "DQS key" in err and "no good!" not in err


def test_fleet_nameservers_are_used_unless_given(
    zone: Zone, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[fleet]\nnameservers = ["192.0.2.53:5353"]\n'
        f'[hosts.mx1]\nssh_host = "{IP}"\nhostname = "{FQDN}"\npublic_ipv4 = "{IP}"\n'
    )
    seen: list[list[str]] = []

    @asynccontextmanager
    async def spy(nameservers: list[str], timeout: float | None) -> AsyncIterator[Resolver]:
        seen.append(nameservers)
        yield FakeResolver(zone)

    monkeypatch.setattr(check, "open_resolver", spy)
    main(["check", "--fleet", str(fleet), "--no-dnsbl"])
    main(["check", "--fleet", str(fleet), "--no-dnsbl", "--nameserver", "127.0.0.1"])
    assert seen == [["192.0.2.53:5353"], ["127.0.0.1"]]


# --- bad input anywhere in `check`: one line, exit 2, no traceback, nothing asked -------------


def _swap(arg: str, files: dict[str, str]) -> str:
    for name, path in files.items():
        arg = arg.replace(name, path)
    return arg


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "key.fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--ip", "fe80::1%eth0"], "zone index"),  # issue 15: was a traceback
        (["--ip", "2001:db8::1%1"], "zone index"),
        (["--ip", "::"], "not one host's address"),
        (["--ip", "0.0.0.0"], "not one host's address"),  # noqa: S104 (an input, not a bind)
        (["--ip", "224.0.0.1"], "not one host's address"),
        (["--ip", IP, "--domain", f"{D}:"], "ends with ':'"),
        # A FIFO (or /dev/zero: not used here, an unfixed CLI eats memory) was read for ever.
        (["--ip", IP, "--domain", f"{D}:s", "--dkim-key", f"{D}:s=FIFO"], "regular file"),
        (["--ip", IP, "--domain", f"{D}:s", "--dkim-key", f"{D}:s=BIG"], "over 64 KiB"),
        (["--ip", IP, "--timeout", "nan"], "finite number of seconds"),
        (["--ip", IP, "--deadline", "inf"], "finite number of seconds"),
        (["--ip", IP, "--deadline", "1e308"], "at most 86400"),
        (["--ip", IP, "--timeout", "0"], "finite number of seconds"),
        (["--ip", IP, "--timeout", "-1"], "finite number of seconds"),
    ],
)
def test_bad_check_input_is_one_line_exit_2(
    zone: Zone, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], phrase: str
) -> None:
    fifo = _fifo(tmp_path)
    big = tmp_path / "big.txt"
    big.write_text("p=" + "A" * 100_000, encoding="ascii")
    files = {"FIFO": fifo, "BIG": str(big)}
    argv = ["check", "--hostname", FQDN, *(_swap(a, files) for a in extra)]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors (option values)
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and phrase in err, err


# --- the DQS key: by reference, not on the command line (issue 15) ----------------------------


KEY = "s3cr3tkey0123456789"


def test_dqs_key_file_is_read_and_never_printed(
    seen_keys: list[str | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dqs.key"
    path.write_text(KEY + "\n", encoding="ascii")
    path.chmod(0o600)
    assert main([*ARGS, "--dqs-key-file", str(path)]) == 0
    assert seen_keys == [KEY]
    out, err = capsys.readouterr()
    assert err == "" and KEY not in out


def test_dqs_key_file_readable_by_others_is_warned_about(
    seen_keys: list[str | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dqs.key"
    path.write_text(KEY, encoding="ascii")
    path.chmod(0o644)
    assert main([*ARGS, "--dqs-key-file", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path} is readable by others: chmod 600" in err and KEY not in err


def test_dqs_key_on_the_command_line_still_works_with_a_warning(
    seen_keys: list[str | None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression (issue 15): a key in argv is readable by every user in /proc/PID/cmdline."""
    assert main([*ARGS, "--dqs-key", KEY]) == 0
    assert seen_keys == [KEY]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "mailmend check: warning: --dqs-key is readable by every user of this machine "
        "(ps, /proc/PID/cmdline): use --dqs-key-file FILE or $MAILMEND_DQS_KEY"
    ]


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--dqs-key-file", "MISSING"], "cannot read"),
        (["--dqs-key-file", "EMPTY"], "is empty"),
        (["--dqs-key-file", "FIFO"], "not a regular file"),
        (["--dqs-key-file", "EMPTY", "--dqs-key", KEY], "not both"),
    ],
)
def test_bad_dqs_key_file_is_one_line_exit_2(
    seen_keys: list[str | None],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    phrase: str,
) -> None:
    (tmp_path / "empty").write_text("\n", encoding="ascii")
    files = {"MISSING": str(tmp_path / "nope"), "EMPTY": str(tmp_path / "empty")}
    files["FIFO"] = _fifo(tmp_path)
    assert main([*ARGS, *(_swap(a, files) for a in extra)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and phrase in err and KEY not in err
    assert seen_keys == []


def test_no_fix_recommends_the_key_on_the_command_line() -> None:
    """Regression (issue 15): the public-resolver fix text said '(--dqs-key)'."""
    from mailmend.checks.blocklists import load_blocklists

    fixes = [e.fix or "" for bl in load_blocklists() for e in bl.errors.values()]
    dqs = [f for f in fixes if "DQS key" in f]
    assert dqs and all("--dqs-key-file" in f and "$MAILMEND_DQS_KEY" in f for f in dqs)
    assert not any("--dqs-key)" in f or "--dqs-key " in f for f in fixes)


# --- fleet warnings reach the admin in check and records (issue 15, docs/fleet.md) -------------


@pytest.mark.parametrize("command", ["check", "records"])
def test_fleet_warnings_are_printed(
    zone: Zone, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Regression: only pyinfra's inventory printed them; SPF then gained such IPs silently."""
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[hosts.mx1]\nssh_host = "{IP}"\nhostname = "{FQDN}"\npublic_ipv4 = "{IP}"\n'
        f'domains = [{{ name = "{D}", selector = "mx1" }}]\n'
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # records: a closed port
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    main([command, "--fleet", str(fleet), "--nameserver", closed, "--timeout", "0.1"])
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"mailmend {command}: warning: {fleet}: host 'mx1': public_ipv4: {IP} is not globally "
        "routable (a private, shared or documentation range); other mail servers will not see "
        "this as the sender's address"
    )
