"""What each host signs DKIM with, read over ssh (mailmend.adopt.host_keys), and what
``records --dkim-from-hosts`` and ``check --dkim-from-hosts`` make of it.

The host side is the real shell command, run here by ``sh`` over a scratch root that stands
for the host's ``/`` (the fake ssh rewrites ``/etc/`` into it): the opendkim.conf captured on
the sandbox's ``dkim`` server (single-key form, selector ``default``), and mailmend's own
OpenDKIM templates as the deploy renders them after adopting that key. A fleet of 12 hosts
has one that hangs, one that refuses ssh and one with no key: each gets one line, the others
are planned, and the whole read ends by its deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mailmend.adopt import host_keys
from mailmend.cli.main import main
from mailmend.deploys import contexts
from mailmend.fleet import DomainSpec, HostSpec
from tests.conftest import genkey_txt
from tests.faultdns import FakeDns, aio, zone

FIXTURES = Path(__file__).with_name("fixtures") / "adopt"
ADMIN_KEY = "/etc/dkimkeys/default.private"


def spec(
    name: str = "dkim", domain: str = "signed.example", selector: str = "news2026"
) -> HostSpec:
    return HostSpec(name=name, ssh_host="192.0.2.1", hostname=f"mail.{domain}",
                    public_ipv4="192.0.2.1", domains=(DomainSpec(domain, selector),))  # fmt: skip


class FakeHost:
    """A host's ``/`` under ``root``: runs the remote command with ``sh`` there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "etc").mkdir(parents=True, exist_ok=True)

    def write(self, path: str, text: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(" /etc/", f" {self.root}/etc/").replace(
            ":/etc/", f":{self.root}/etc/"))  # fmt: skip

    def run(self, command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        local = command.replace("/etc/", f"{self.root}/etc/")
        done = subprocess.run(["sh", "-c", local], capture_output=True, timeout=timeout)
        out = done.stdout.replace(str(self.root).encode(), b"")  # paths as the host sees them
        return subprocess.CompletedProcess(done.args, done.returncode, out, done.stderr)


def before_deploy(host: FakeHost) -> None:
    """The sandbox's dkim server as built: Debian's OpenDKIM, single-key form, no .txt kept
    by mailmend yet."""
    host.write("/etc/opendkim.conf", (FIXTURES / "dkim-opendkim.conf").read_text())


def after_deploy(host: FakeHost, tmp: Path, selector: str = "default") -> str:
    """mailmend's OpenDKIM files after adopting the admin's key under ``selector``: the
    templates the deploy renders, and the public half it copied beside its own keys."""
    domain = SimpleNamespace(
        name="signed.example", selector=selector, private_key=ADMIN_KEY,
        record_name=f"{selector}._domainkey.signed.example",
    )  # fmt: skip
    ctx = SimpleNamespace(domains=[domain], table_dir="/etc/opendkim", socket="/run/o.sock")
    for name, path in (("opendkim.conf", "/etc/opendkim.conf"),
                       ("KeyTable", "/etc/opendkim/KeyTable"),
                       ("SigningTable", "/etc/opendkim/SigningTable")):  # fmt: skip
        host.write(path, contexts.render_template(f"opendkim/{name}.j2", opendkim=ctx))
    txt = genkey_txt(tmp, selector).read_text()
    host.write(f"/etc/opendkim/keys/signed.example/{selector}.txt", txt)
    return txt


def fake_ssh(hosts: dict[str, Callable[[str, float], subprocess.CompletedProcess[bytes]]]) -> Any:
    def runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        dash = list(argv).index("--")
        return hosts[argv[dash + 1]](argv[dash + 2], timeout)

    return runner


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path / "host")


def read(host: FakeHost, s: HostSpec | None = None) -> host_keys.HostKeys:
    s = s or spec()
    return host_keys.read_host(s, 10, fake_ssh({s.ssh_host: host.run}))


def test_selector_found_on_the_host_before_the_deploy(host: FakeHost) -> None:
    before_deploy(host)
    keys = read(host)
    [d] = keys.domains
    assert (d.selector, d.source, d.key) == ("default", "opendkim.conf KeyFile", None)
    assert keys.problem == (
        "host dkim: no DKIM public key for signed.example "
        "(/etc/opendkim/keys/signed.example/default.txt): deploy it (pyinfra inventory.py "
        "deploys/mail.py --limit dkim) or give --dkim-txt signed.example:default=FILE"
    )


def test_selector_and_key_after_the_deploy_adopted_the_key(host: FakeHost, tmp_path: Path) -> None:
    txt = after_deploy(host, tmp_path)
    keys = read(host)
    [d] = keys.domains
    assert keys.problem is None
    assert (d.selector, d.fleet_selector, d.source) == ("default", "news2026", "opendkim KeyTable")
    assert d.key is not None and d.key.public_key_b64 in txt.replace('" "', "")
    assert d.origin() == (
        "selector default is the one dkim signs with (from its opendkim KeyTable); "
        "the fleet file names news2026"
    )


def test_the_fleets_selector_when_the_host_signs_with_it_or_names_none(
    host: FakeHost, tmp_path: Path
) -> None:
    after_deploy(host, tmp_path, selector="news2026")
    [d] = read(host).domains
    assert (d.selector, d.from_host, d.origin()) == ("news2026", False, "")
    empty = FakeHost(tmp_path / "empty")  # no OpenDKIM at all: a host not deployed yet
    keys = read(empty)
    assert keys.domains[0].selector == "news2026" and keys.domains[0].source == host_keys.FLEET
    assert "no DKIM public key for signed.example" in str(keys.problem)


def test_a_hostile_selector_or_ssh_error_never_reaches_the_terminal(host: FakeHost) -> None:
    host.write("/etc/opendkim.conf", "KeyTable file:/etc/opendkim/KeyTable\n")
    host.write("/etc/opendkim/KeyTable", "k signed.example:x;rm\x1b[2J:/k\n")
    [d] = read(host).domains
    assert d.selector == "news2026"  # not a selector: ignored

    def refused(command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess([], 255, b"", b"ssh: \x1b[2Jconnect refused\n")

    keys = host_keys.read_host(spec(), 5, fake_ssh({"192.0.2.1": refused}))
    assert keys.problem is not None and "\x1b" not in keys.problem
    assert keys.problem.startswith("host dkim: cannot read its DKIM keys over ssh (ssh: \\027[2J")


# -- a fleet of 12 hosts: one hangs, one refuses ssh, one has no key ------------------------

N = 12
HANGS, REFUSES, NO_KEY = 3, 7, 10


def fleet_specs() -> list[HostSpec]:
    return [
        HostSpec(
            name=f"mx{i}",
            ssh_host=f"127.3.0.{10 + i}",
            hostname=f"mx{i}.d{i}.example",
            public_ipv4=f"192.0.2.{10 + i}",
            ssh_user="root",
            ssh_port=22,
            domains=(DomainSpec(f"d{i}.example", "mail"),),
        )
        for i in range(N)
    ]


@pytest.fixture
def fleet_hosts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """12 fake hosts: mailmend's files with a key under ``mail`` each, except the three."""
    stop = threading.Event()
    runners: dict[str, Any] = {}
    for i, s in enumerate(fleet_specs()):
        h = FakeHost(tmp_path / s.name)
        if i != NO_KEY:
            key = genkey_txt(tmp_path, f"k{i}", bits=1024).read_text()
            h.write(f"/etc/opendkim/keys/d{i}.example/mail.txt", key.replace(f"k{i}.", "mail."))
        runners[s.ssh_host] = h.run

    def hang(command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        stop.wait(timeout)  # a host that takes the connection and never answers
        raise subprocess.TimeoutExpired("ssh", timeout)

    def refuse(command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        err = b"ssh: connect to host 127.3.0.17 port 22: Connection refused\r\n"
        return subprocess.CompletedProcess([], 255, b"", err)

    runners["127.3.0.13"], runners["127.3.0.17"] = hang, refuse
    yield runners
    stop.set()


def test_twelve_hosts_one_hangs_one_refuses_one_has_no_key(fleet_hosts: dict[str, Any]) -> None:
    start = time.monotonic()
    found = host_keys.read_hosts(fleet_specs(), timeout=1.0, runner=fake_ssh(fleet_hosts))
    took = time.monotonic() - start
    assert took < 1.0 + 2.0, took  # in parallel: one deadline, not one per host
    assert [h.host for h in found] == [f"mx{i}" for i in range(N)]
    problems = {h.host: h.problem for h in found if h.problem}
    assert set(problems) == {f"mx{HANGS}", f"mx{REFUSES}", f"mx{NO_KEY}"}
    assert "(no answer within 1s)" in str(problems[f"mx{HANGS}"])
    assert "Connection refused" in str(problems[f"mx{REFUSES}"])
    assert "no DKIM public key for d10.example" in str(problems[f"mx{NO_KEY}"])
    keyed = [h for h in found if not h.problem]
    assert len(keyed) == N - 3 and all(d.key is not None for h in keyed for d in h.domains)


def fleet_file(tmp_path: Path, nameserver: str) -> Path:
    lines = ["[fleet]", "sandbox = true", f'nameservers = ["{nameserver}"]']
    lines.append('dmarc_report_address = "r@d0.example"')
    for s in fleet_specs():
        lines += [
            f"[hosts.{s.name}]", f'ssh_host = "{s.ssh_host}"', f'hostname = "{s.hostname}"',
            f'public_ipv4 = "{s.public_ipv4}"',
            f'domains = [{{ name = "{s.domains[0].name}", selector = "mail" }}]',
        ]  # fmt: skip
    path = tmp_path / "fleet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@aio
async def test_records_plans_every_host_with_a_key_and_says_which_one_has_none(
    tmp_path: Path,
    fleet_hosts: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Regression: one host without a key made --dkim-from-hosts exit 2 with no plan at all."""
    monkeypatch.setattr(host_keys, "RUNNER", fake_ssh(fleet_hosts))
    async with FakeDns(zone({})) as server:  # nothing published anywhere
        fleet = fleet_file(tmp_path, str(server.nameserver))
        start = time.monotonic()
        code = await asyncio.to_thread(
            main, ["records", "--fleet", str(fleet), "--dkim-from-hosts", "--ssh-timeout", "1",
                   "--format", "json"],
        )  # fmt: skip
        took = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 1, err
    assert took < 15, took
    plan = json.loads(out)
    dkim = {r["name"]: r for d in plan["domains"] for r in d["records"] if r["kind"] == "dkim"}
    skipped = {n for n, r in dkim.items() if r["action"] == "skip"}
    assert skipped == {f"mail._domainkey.d{i}.example." for i in (HANGS, REFUSES, NO_KEY)}
    assert all(r["action"] == "add" for n, r in dkim.items() if n not in skipped)
    lines = err.splitlines()
    assert len(lines) == 3 and all(line.startswith("mailmend records: host mx") for line in lines)
    assert lines[2] == (
        "mailmend records: host mx10: no DKIM public key for d10.example "
        "(/etc/opendkim/keys/d10.example/mail.txt): deploy it (pyinfra inventory.py "
        "deploys/mail.py --limit mx10) or give --dkim-txt d10.example:mail=FILE; "
        "its DKIM records are skipped"
    )
    assert dkim["mail._domainkey.d10.example."]["reason"] == lines[2].removeprefix(
        "mailmend records: "
    )


@aio
async def test_records_uses_the_selector_the_host_signs_with_and_says_so(
    tmp_path: Path, host: FakeHost, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Regression: records looked under the fleet's selector (news2026) for an adopted key."""
    txt = after_deploy(host, tmp_path)
    value = " ".join(f'"{part}"' for part in txt.split('"')[1::2])  # the strings, as rdata
    monkeypatch.setattr(host_keys, "RUNNER", fake_ssh({"192.0.2.1": host.run}))
    published = {("default._domainkey.signed.example.", "TXT"): [value]}
    async with FakeDns(zone(published)) as server:
        fleet = tmp_path / "fleet.toml"
        fleet.write_text(
            f'[fleet]\nsandbox = true\nnameservers = ["{server.nameserver}"]\n[hosts.dkim]\n'
            'ssh_host = "192.0.2.1"\nhostname = "mail.signed.example"\n'
            'public_ipv4 = "192.0.2.1"\n'
            'domains = [{ name = "signed.example", selector = "news2026" }]\n'
        )
        code = await asyncio.to_thread(main, ["records", "--fleet", str(fleet),
                                              "--dkim-from-hosts"])  # fmt: skip
    out, err = capsys.readouterr()
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if " dkim " in line)
    assert lines[at].split()[:3] == ["keep", "dkim", "default._domainkey.signed.example."]
    assert lines[at + 1] == (
        "            from the host: selector default is the one dkim signs with (from its "
        "opendkim KeyTable); the fleet file names news2026"
    )
    assert "news2026" not in lines[at]
    assert err == "" and code == 0, err


def silent_listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def test_real_ssh_to_a_host_that_never_answers_ends_by_the_deadline() -> None:
    """The real ssh client against a port that takes the connection and never speaks."""
    for port in silent_listener():
        s = HostSpec(name="mute", ssh_host="127.0.0.1", ssh_port=port, hostname="mute.example",
                     domains=(DomainSpec("mute.example", "mail"),))  # fmt: skip
        start = time.monotonic()
        keys = host_keys.read_host(s, 2.0)
        took = time.monotonic() - start
        assert took < 4.0, took
        assert keys.problem is not None
        assert keys.problem.startswith("host mute: cannot read its DKIM keys over ssh (")
        assert keys.domains[0].key is None


# -- check --dkim-from-hosts ------------------------------------------------------------------


def check_zone(value: str, selector: str) -> dict[tuple[str, str], list[str]]:
    """Everything signed.example's host needs, published, with the DKIM key at ``selector``."""
    return {
        ("1.2.0.192.in-addr.arpa.", "PTR"): ["mail.signed.example."],
        ("mail.signed.example.", "A"): ["192.0.2.1"],
        ("signed.example.", "TXT"): ['"v=spf1 ip4:192.0.2.1 -all"'],
        ("_dmarc.signed.example.", "TXT"): ['"v=DMARC1; p=reject; rua=mailto:d@signed.example"'],
        (f"{selector}._domainkey.signed.example.", "TXT"): [value],
    }


async def run_check(tmp_path: Path, published: dict[tuple[str, str], list[str]],
                    *options: str) -> int:  # fmt: skip
    async with FakeDns(zone(published)) as server:
        fleet = tmp_path / "fleet.toml"
        fleet.write_text(
            f'[fleet]\nsandbox = true\nnameservers = ["{server.nameserver}"]\n[hosts.dkim]\n'
            'ssh_host = "192.0.2.1"\nhostname = "mail.signed.example"\n'
            'public_ipv4 = "192.0.2.1"\n'
            'domains = [{ name = "signed.example", selector = "news2026" }]\n'
        )
        code = await asyncio.to_thread(
            main, ["check", "--fleet", str(fleet), "--no-dnsbl", "--format", "json", *options]
        )
    return code


@aio
async def test_check_from_hosts_checks_the_selector_the_host_signs_with(
    tmp_path: Path, host: FakeHost, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Regression: check looked at news2026 (the fleet's) while the host signs as default."""
    txt = after_deploy(host, tmp_path)
    value = " ".join(f'"{part}"' for part in txt.split('"')[1::2])
    monkeypatch.setattr(host_keys, "RUNNER", fake_ssh({"192.0.2.1": host.run}))
    published = check_zone(value, "default")
    plain = await run_check(tmp_path, published)
    out, err = capsys.readouterr()
    [dkim] = [c for c in json.loads(out)["hosts"][0]["checks"] if c["check"] == "dkim"]
    assert plain == 1 and dkim["status"] == "fail" and "news2026" in dkim["summary"], dkim
    code = await run_check(tmp_path, published, "--dkim-from-hosts")
    out, err = capsys.readouterr()
    checks = json.loads(out)["hosts"][0]["checks"]
    assert {c["check"]: c["status"] for c in checks}["dkim"] == "pass", checks
    [dkim] = [c for c in checks if c["check"] == "dkim"]
    assert "default._domainkey.signed.example" in dkim["summary"]
    assert (code, err) == (0, ""), (checks, err)


@aio
async def test_check_from_hosts_with_an_unreadable_host_says_so_and_exits_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host refuses ssh: checked as the fleet says (all pass), one line, exit 3."""
    txt = genkey_txt(tmp_path, "news2026").read_text()
    value = " ".join(f'"{part}"' for part in txt.split('"')[1::2])

    def refused(command: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        err = b"ssh: connect to host 192.0.2.1 port 22: Connection refused\r\n"
        return subprocess.CompletedProcess([], 255, b"", err)

    monkeypatch.setattr(host_keys, "RUNNER", fake_ssh({"192.0.2.1": refused}))
    code = await run_check(tmp_path, check_zone(value, "news2026"), "--dkim-from-hosts")
    out, err = capsys.readouterr()
    statuses = {c["check"]: c["status"] for c in json.loads(out)["hosts"][0]["checks"]}
    assert "fail" not in statuses.values(), statuses
    assert code == 3
    assert err == (
        "mailmend check: host dkim: cannot read its DKIM keys over ssh (ssh: connect to host "
        "192.0.2.1 port 22: Connection refused): check that it is up and reachable, or give "
        "--dkim-txt signed.example:news2026=FILE; its DKIM is checked under the fleet file's "
        "selector, without the host's key\n"
    )


def test_the_selectors_origin_is_a_comment_in_the_zone_snippet_and_in_json() -> None:
    from mailmend.records.dkim import read_genkey_txt
    from mailmend.records.plan import Sender, build_plan, plan_json, render_zone
    from tests.unit.test_ptr import FakeResolver

    key = read_genkey_txt(genkey_txt_text(), "signed.example", "default")
    origin = "selector default is the one dkim signs with (from its opendkim KeyTable); \x1b[2J"
    plan = asyncio.run(
        build_plan(
            FakeResolver({}),
            [
                Sender(
                    "dkim",
                    "mail.signed.example",
                    "192.0.2.1",
                    None,
                    (("signed.example", "default"),),
                )
            ],
            dkim_keys=[key],
            dkim_origins={("signed.example", "default"): origin},
        )
    )
    lines = render_zone(plan).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("default._domainkey"))
    assert lines[at - 1] == (
        "; from the host: selector default is the one dkim signs with (from its opendkim "
        "KeyTable); \\027[2J"
    )
    [dkim] = [r for d in plan_json(plan)["domains"] for r in d["records"] if r["kind"] == "dkim"]
    assert dkim["origin"] == origin and dkim["action"] == "add"


def genkey_txt_text() -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return genkey_txt(Path(tmp), "default", bits=1024).read_text()
