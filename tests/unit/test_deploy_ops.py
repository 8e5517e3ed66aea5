"""The commands the deploy's operations yield, against faked facts (no host, no network).

Each operation's generator (``op._inner``) runs under a fake pyinfra host whose facts are
given per test, the way pyinfra's own operation tests fake them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory, File, Sha1File
from pyinfra.facts.server import Hostname, Os, Which
from pyinfra.operations import server

from mailmend.adopt import deploy as adopt
from mailmend.checks.txt import split_txt
from mailmend.deploys import contexts, facts, opendkim, postfix, staged, summary
from mailmend.deploys.facts import HostDkimPublicKey, parse_dkim_public_key

DOMAIN = contexts.DkimDomain(
    name="example.com",
    selector="mx1",
    key_dir="/etc/opendkim/keys/example.com",
    private_key="/etc/opendkim/keys/example.com/mx1.private",
    txt_record="/etc/opendkim/keys/example.com/mx1.txt",
)
FIXTURES = Path(__file__).with_name("fixtures") / "adopt"
KEY_FILE = {"user": "opendkim", "group": "opendkim", "mode": 600}


class FakeHost:
    name = "mx1"
    current_op_global_arguments = None

    def __init__(self, facts: dict[tuple[type, str | None], Any]) -> None:
        self.facts = facts
        self.noops: list[str] = []
        self.logs: list[str] = []
        self.reads: list[tuple[type, Any]] = []

    def get_fact(self, cls: type, *args: Any, **kwargs: Any) -> Any:
        key = kwargs.get("path") or kwargs.get("command") or kwargs.get("txt")
        self.reads.append((cls, key))
        return self.facts.get((cls, key), self.facts.get((cls, None)))

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def log(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.logs.append(message)

    def get_temp_filename(self, *args: Any, **kwargs: Any) -> str:
        return "/tmp/pyinfra-test"


@contextmanager
def fake(facts: dict[tuple[type, str | None], Any], executing: bool = True) -> Iterator[FakeHost]:
    host = FakeHost(facts)
    state = SimpleNamespace(is_executing=executing, cwd=None, config=SimpleNamespace(DIFF=False))
    with ctx_state.use(state), ctx_host.use(host):
        yield host


def shell(commands: list[Any]) -> list[str]:
    return [c.get_raw_value() for c in commands if isinstance(c, StringCommand)]


# -- hostname -------------------------------------------------------------------------------


def test_hostname_is_set_quoted_without_hostnamectl() -> None:
    facts = {
        (Hostname, None): "sandbox",
        (Which, "hostnamectl"): None,
        (Os, None): "Linux",
        (File, "/etc/hostname"): False,
        (Directory, "/etc"): {"mode": 755},
    }
    with fake(facts):
        commands = list(server.hostname._inner(hostname="mx1.example.com"))
    assert shell(commands) == ["hostname mx1.example.com"]
    assert [c.dest for c in commands if isinstance(c, FileUploadCommand)] == ["/etc/hostname"]


def test_hostname_unchanged_is_a_noop() -> None:
    facts = {
        (Hostname, None): "mx1.example.com",
        (Which, "hostnamectl"): None,
        (Os, None): "Linux",
        (File, "/etc/hostname"): {"mode": 644, "user": "root"},
        (Sha1File, "/etc/hostname"): staged.sha1_text("mx1.example.com\n"),
        (Directory, "/etc"): {"mode": 755},
    }
    with fake(facts) as host:
        assert list(server.hostname._inner(hostname="mx1.example.com")) == []
    assert "hostname is set" in host.noops


# -- DKIM keys ------------------------------------------------------------------------------


def test_missing_key_is_generated_behind_a_guard_and_locked_down() -> None:
    with fake({(File, DOMAIN.private_key): False}):
        commands = shell(list(opendkim.dkim_key._inner(domain=DOMAIN, bits=2048)))
    genkey, perms = commands
    assert genkey.startswith(f"test -e {DOMAIN.private_key} || opendkim-genkey ")
    assert "-b 2048 -d example.com -s mx1 -D /etc/opendkim/keys/example.com" in genkey
    assert " -f" not in genkey and "--force" not in genkey and "rm " not in genkey
    assert (
        perms == f"chown opendkim:opendkim {DOMAIN.private_key} && chmod 600 {DOMAIN.private_key}"
    )


def test_existing_key_is_never_regenerated() -> None:
    with fake({(File, DOMAIN.private_key): KEY_FILE}) as host:
        assert list(opendkim.dkim_key._inner(domain=DOMAIN, bits=4096)) == []
    assert any("never regenerated" in n for n in host.noops)


def test_existing_key_with_loose_mode_only_gets_its_mode_fixed() -> None:
    with fake({(File, DOMAIN.private_key): {**KEY_FILE, "mode": 644, "user": "root"}}):
        commands = shell(list(opendkim.dkim_key._inner(domain=DOMAIN, bits=2048)))
    assert len(commands) == 1 and "opendkim-genkey" not in commands[0]
    assert "chmod 600" in commands[0]


def test_shell_words_are_quoted() -> None:
    odd = contexts.DkimDomain("example.com", "mx1", "/k/dir with space", "/k/a b.private", "/k/t")
    command = opendkim.genkey_command(odd, 2048).get_raw_value()
    assert "-D '/k/dir with space'" in command and "test -e '/k/a b.private'" in command


# -- the staged validate-swap ---------------------------------------------------------------

MAIN_CF = "/etc/postfix/main.cf"


def _validate(staging: str) -> StringCommand:
    return StringCommand("validate", staging)


def test_converged_config_yields_nothing() -> None:
    facts = {(File, MAIN_CF): {"mode": 644}, (Sha1File, MAIN_CF): staged.sha1_text("new\n")}
    with fake(facts) as host:
        ops = list(
            staged.staged_config._inner(
                configs=[(MAIN_CF, "new\n")], staging_dir="/etc/postfix/s", validate=_validate
            )
        )
    assert ops == [] and host.noops


def test_changed_config_is_staged_validated_then_swapped() -> None:
    facts = {(File, MAIN_CF): {"mode": 644}, (Sha1File, MAIN_CF): staged.sha1_text("hand-edited")}
    with fake(facts):
        ops = list(
            staged.staged_config._inner(
                configs=[(MAIN_CF, "new\n")], staging_dir="/etc/postfix/s", validate=_validate
            )
        )
    _mkdir, upload, validate, swap = ops
    assert isinstance(upload, FileUploadCommand) and upload.dest == "/etc/postfix/s/main.cf"
    assert upload.src.read() == "new\n"  # type: ignore[union-attr]
    assert validate.get_raw_value() == "validate /etc/postfix/s"  # type: ignore[union-attr]
    swap_text = swap.get_raw_value()  # type: ignore[union-attr]
    assert swap_text.index("cp -p") < swap_text.index("mv -f /etc/postfix/s/main.cf " + MAIN_CF)
    assert '/etc/postfix/main.cf.mailmend-"$(date -u +%Y%m%dT%H%M%SZ)"' in swap_text


def test_changed_config_reads_each_fact_once() -> None:
    """pyinfra does not cache facts: every get_fact is a command on the host."""
    facts = {(File, MAIN_CF): {"mode": 644}, (Sha1File, MAIN_CF): staged.sha1_text("hand-edited")}
    with fake(facts) as host:
        list(
            staged.staged_config._inner(
                configs=[(MAIN_CF, "new\n")], staging_dir="/etc/postfix/s", validate=_validate
            )
        )
    assert host.reads == [(File, MAIN_CF), (Sha1File, MAIN_CF)]


def test_only_changed_files_of_a_set_are_swapped() -> None:
    master = "/etc/postfix/master.cf"
    facts = {
        (File, MAIN_CF): {"mode": 644},
        (Sha1File, MAIN_CF): staged.sha1_text("old"),
        (File, master): {"mode": 644},
        (Sha1File, master): staged.sha1_text("m\n"),
    }
    with fake(facts):
        ops = shell(
            list(
                staged.staged_config._inner(
                    configs=[(MAIN_CF, "new\n"), (master, "m\n")],
                    staging_dir="/s",
                    validate=_validate,
                )
            )
        )
    assert ops[-1] == "rm -f /s/master.cf"
    assert "mv -f /s/main.cf /etc/postfix/main.cf" in ops[-2]


def test_secret_file_is_created_0600_before_content_and_never_logged() -> None:
    with fake({(File, "/etc/postfix/sasl_passwd"): False}):
        ops = list(
            staged.secret_file._inner(
                secret=lambda: "[relay]:587 u:hunter2\n", dest="/etc/postfix/sasl_passwd"
            )
        )
    create, upload, _perms = ops
    assert "umask 077" in create.get_raw_value()  # type: ignore[union-attr]
    assert isinstance(upload, FileUploadCommand)
    assert "hunter2" not in repr(ops) and "hunter2" not in str(ops)


# -- summary ----------------------------------------------------------------------------------

TXT = [
    'mx1._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "',
    '\t  "p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA' + "A" * 300 + '"',
    '\t  "' + "B" * 50 + 'IDAQAB" )  ; ----- DKIM key mx1 for example.com',
]


def test_public_key_is_parsed_from_opendkim_genkey_txt() -> None:
    key = parse_dkim_public_key(TXT)
    assert key is not None and key.startswith("MIIBIjAN") and key.endswith("IDAQAB")
    assert parse_dkim_public_key(["p=QUJD"]) == "QUJD"
    assert parse_dkim_public_key([]) is None


def test_public_key_fact_never_reads_the_private_key_content() -> None:
    command = HostDkimPublicKey().command(txt=DOMAIN.txt_record, private_key=DOMAIN.private_key)
    text = command.get_raw_value()
    assert f"cat {DOMAIN.txt_record}" in text
    assert f"cat {DOMAIN.private_key}" not in text and "-pubout" in text


def test_summary_prints_zone_records_split_at_255_bytes() -> None:
    ctx = contexts.opendkim_context(
        "mx1",
        {
            "hostname": "mx1.example.com",
            "public_ipv4": "192.0.2.10",
            **opendkim.DEFAULTS,
            "domains": [{"name": "example.com", "selector": "mx1"}],
        },
    )
    key = parse_dkim_public_key(TXT)
    with fake({(HostDkimPublicKey, DOMAIN.txt_record): key}) as host:
        assert list(summary.dkim_summary._inner(ctx=ctx)) == []
    (record,) = summary.DKIM_RECORDS["mx1"]
    assert record.fqdn == "mx1._domainkey.example.com."
    assert all(len(s.encode()) <= 255 for s in record.strings) and len(record.strings) >= 2
    assert record.value() == "".join(record.strings) == f"v=DKIM1; k=rsa; p={key}"
    assert (record.domain, record.selector, record.public_key_b64) == ("example.com", "mx1", key)
    line = record.zone_line()
    assert line.startswith('mx1._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=MIIB')
    assert any(line in log for log in host.logs)


def test_summary_prints_nothing_while_planning() -> None:
    ctx = contexts.opendkim_context(
        "mx1",
        {
            "hostname": "mx1.example.com",
            "public_ipv4": "192.0.2.10",
            **opendkim.DEFAULTS,
            "domains": [],
        },
    )
    with fake({}, executing=False) as host:
        assert list(summary.dkim_summary._inner(ctx=ctx)) == []
    assert host.logs == []


@pytest.mark.parametrize(("length", "strings"), [(0, 1), (255, 1), (256, 2), (510, 2), (511, 3)])
def test_split_txt_boundaries(length: int, strings: int) -> None:
    parts = split_txt("x" * length)
    assert len(parts) == strings and "".join(parts) == "x" * length


def test_adoption_is_read_and_logged_once_per_host() -> None:
    """The mail deploy adopts in the OpenDKIM step and again in the summary: the second
    answer is the first one, with no second read of the host and no second log line."""
    ctx = contexts.opendkim_context(
        "mx1",
        {
            "hostname": "mx1.signed.example",
            "public_ipv4": "192.0.2.10",
            **opendkim.DEFAULTS,
            "domains": [{"name": "signed.example", "selector": "news2026"}],
        },
    )
    conf = (FIXTURES / "dkim-opendkim.conf").read_text()
    facts = {(adopt.FileText, ctx.config_file): conf, (DebPackages, None): {"rspamd": ["3.4"]}}
    make = contexts.adopted_dkim_domain(ctx.key_root)
    with fake(facts) as host:
        first = adopt.adopt_dkim(ctx, make)
        reads = list(host.reads)
        assert adopt.opendkim_wanted({})[0] is False  # rspamd signs: same packages, no read
        assert adopt.adopt_dkim(ctx, make) == first
    assert [d.selector for d in first.domains] == ["default"] and first.domains[0].adopted
    assert host.reads == reads
    assert sum("adopting the existing key" in line for line in host.logs) == 1
    assert sum("rspamd is also active" in line for line in host.logs) == 1
    with fake(facts) as other:  # another host (or run) is read afresh
        assert adopt.adopt_dkim(ctx, make) == first
    assert other.reads == reads


def test_installed_packages_are_read_once_per_host() -> None:
    """Other-MTA check, Postfix, OpenDKIM and hygiene each ask which packages are installed:
    one ``dpkg`` read a host (pyinfra 3 caches no fact)."""
    packages = {"postfix": ["3.7"]}
    with fake({(DebPackages, None): packages}) as host:
        assert adopt._installed() == ["postfix"]
        assert facts.installed_packages() == packages
        assert postfix._missing(["postfix"]) is False and postfix._missing(["opendkim"]) is True
    assert host.reads == [(DebPackages, None)]
    with fake({(DebPackages, None): {}}) as other:  # another host is read afresh
        assert facts.installed_packages() == {}
    assert other.reads == [(DebPackages, None)]
