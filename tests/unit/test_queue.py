"""mailmend.hygiene.queue and mailmend.cli.queue: postqueue -j triage, flags, hold/delete."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailmend.cli import queue as queue_cli
from mailmend.hygiene import queue as q

NOW = 1_795_867_201  # 2026-11-28T12:00:01Z


def entry(
    qid: str,
    sender: str,
    rcpts: list[tuple[str, str]] | None = None,
    *,
    queue_name: str = "deferred",
    age: int = 600,
    size: int = 2310,
) -> str:
    recipients = [
        {"address": a, "delay_reason": r} if r else {"address": a}
        for a, r in (rcpts or [("someone@example.net", "")])
    ]
    return json.dumps(
        {
            "queue_name": queue_name,
            "queue_id": qid,
            "arrival_time": NOW - age,
            "message_size": size,
            "forced_expire": False,
            "sender": sender,
            "recipients": recipients,
        }
    )


TIMEOUT = "connect to mx.example.org[203.0.113.9]:25: Connection timed out"
TIMEOUT2 = "connect to mx.example.org[203.0.113.10]:25: Connection timed out"
GREY = (
    "host mx.example.com[192.0.2.1] said: 450 4.7.1 <x@example.com>: Recipient address "
    "rejected: Greylisted (in reply to RCPT TO command)"
)


def realistic_queue() -> list[str]:
    return [
        entry("4F2A21C0B3", "web@shop.example", [("a@example.org", TIMEOUT)], age=7200),
        entry("5A1B2C3D4E", "web@shop.example", [("b@example.org", TIMEOUT2)], age=3600),
        entry("6B2C3D4E5F", "Web@Shop.example", [("c@example.com", GREY)], queue_name="active"),
        entry("7C3D4E5F6A", "", [("web@shop.example", TIMEOUT)], age=90_000),
        entry("8D4E5F6A7B", "alice@example.com", [("d@example.net", "")], queue_name="hold"),
        entry(
            "9E5F6A7B8C",
            "webmaster@shop.example",
            [("e@example.com", GREY), ("f@example.org", TIMEOUT)],
            queue_name="incoming",
            size=100_000,
        ),
        "",
    ]


def test_parser_reads_the_documented_schema() -> None:
    messages = q.parse_queue(realistic_queue())
    assert [m.queue_id for m in messages] == [
        "4F2A21C0B3", "5A1B2C3D4E", "6B2C3D4E5F", "7C3D4E5F6A", "8D4E5F6A7B", "9E5F6A7B8C",
    ]  # fmt: skip
    first = messages[0]
    assert (first.queue_name, first.arrival_time, first.message_size) == (
        "deferred", NOW - 7200, 2310,
    )  # fmt: skip
    assert first.recipients == (q.Recipient("a@example.org", TIMEOUT),)
    assert messages[3].is_bounce and messages[3].sender_label == "MAILER-DAEMON"
    assert messages[4].recipients[0].delay_reason == ""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 1: not JSON"),
        ("[]", "not a JSON object"),
        ('{"queue_id": "ABCDE1"}', "'recipients' missing"),
        (entry("bad id;rm", "a@example.com"), "is not a Postfix queue id"),
        (entry("ABCDEF1", "a@example.com").replace('"message_size": 2310', '"message_size": true'),
         "'message_size' missing or not int"),
    ],
)  # fmt: skip
def test_parser_refuses_bad_lines(line: str, message: str) -> None:
    with pytest.raises(q.QueueParseError, match=message):
        q.parse_queue([line])


def test_triage_summary() -> None:
    t = q.triage(q.parse_queue(realistic_queue()), now=NOW)
    assert (t.messages, t.recipients, t.size_bytes, t.bounces) == (6, 7, 5 * 2310 + 100_000, 1)
    assert t.by_queue == {"deferred": 3, "active": 1, "hold": 1, "incoming": 1}
    assert t.oldest_age_seconds == 90_000
    assert t.top_senders[0] == ("web@shop.example", 3)  # case folded: Web@Shop.example counts
    assert ("MAILER-DAEMON", 1) in t.top_senders
    assert t.top_recipient_domains[0] == ("example.org", 3)
    assert t.deferral_reasons[0] == (
        "connect to mx.example.org[IP]:25: Connection timed out", 4,
    )  # fmt: skip
    assert t.flags == []  # small queue, nobody over the thresholds
    assert json.loads(json.dumps(t.to_json()))["top_senders"][0]["messages"] == 3


def test_empty_queue() -> None:
    t = q.triage([], now=NOW)
    assert (t.messages, t.oldest_age_seconds, t.flags) == (0, None, [])


def many(sender: str, n: int, start: int = 0) -> list[str]:
    return [entry(f"M{start + i:09X}", sender) for i in range(n)]


def test_mass_mailing_by_count() -> None:
    lines = many("spam@shop.example", 50) + many("ok@example.com", 200, 1000)
    flags = q.triage(q.parse_queue(lines), now=NOW).flags
    assert [(f.kind, f.sender) for f in flags] == [
        ("mass_mailing", "ok@example.com"),
        ("mass_mailing", "spam@shop.example"),
    ]
    flags = q.triage(q.parse_queue(many("spam@shop.example", 49)), now=NOW).flags
    assert [f.sender for f in flags] == ["spam@shop.example"]  # 100% of a queue of 49


def test_mass_mailing_by_share_needs_a_big_enough_queue() -> None:
    small = many("form@shop.example", 10) + many("x@example.com", 9, 100)
    assert q.triage(q.parse_queue(small), now=NOW).flags == []  # 19 < min_queue 20
    big = many("form@shop.example", 10) + many("x@example.com", 10, 100)
    flags = q.triage(q.parse_queue(big), now=NOW).flags
    assert [f.sender for f in flags] == ["form@shop.example", "x@example.com"]  # 50% each
    strict = q.Thresholds(sender_share=0.6)
    assert q.triage(q.parse_queue(big), now=NOW, thresholds=strict).flags == []


def test_backscatter_flag() -> None:
    lines = many("", 12) + many("a@example.com", 4, 100) + many("b@example.com", 4, 200)
    flags = q.triage(q.parse_queue(lines), now=NOW).flags
    assert [(f.kind, f.sender) for f in flags] == [("backscatter", "MAILER-DAEMON")]
    assert "12 of 20" in flags[0].message
    assert q.triage(q.parse_queue(many("", 50)), now=NOW).flags[0].kind == "backscatter"


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="sender_share"):
        q.Thresholds(sender_share=0)
    with pytest.raises(ValueError, match="min_queue"):
        q.Thresholds(min_queue=0)


def test_hold_selection_is_exactly_one_sender() -> None:
    messages = q.parse_queue(realistic_queue())
    assert q.queue_ids_for_sender(messages, "web@shop.example") == [
        "4F2A21C0B3",
        "5A1B2C3D4E",
        "6B2C3D4E5F",
    ]  # not webmaster@shop.example, not the bounce addressed to web@
    assert q.queue_ids_for_sender(messages, q.BOUNCES) == ["7C3D4E5F6A"]
    for bounce_like in ("", "<>", "MAILER-DAEMON", "mailer-daemon", " "):
        with pytest.raises(ValueError, match="BOUNCES"):
            q.queue_ids_for_sender(messages, bounce_like)
    assert q.queue_ids_for_sender(messages, "shop.example") == []
    assert q.queue_ids_for_sender(messages, "alice@example.com", skip_held=True) == []


# -- the CLI, with a fake ssh --------------------------------------------------------------


FLEET = """
[hosts.mx1]
ssh_host = "127.0.0.11"
ssh_port = 2222
ssh_key = "/keys/id_ed25519"
ssh_known_hosts_file = "/keys/known_hosts"
hostname = "mx1.example.com"
public_ipv4 = "198.51.100.7"

[hosts.mx2]
ssh_host = "127.0.0.12"
hostname = "mx2.example.com"
public_ipv4 = "198.51.100.8"
"""


class FakeSsh:
    def __init__(self, queues: dict[str, list[str]], fail: set[str] | None = None) -> None:
        self.queues = queues
        self.fail = fail or set()
        self.calls: list[tuple[list[str], bytes | None]] = []

    def __call__(
        self, argv: Sequence[str], stdin: bytes | None, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((list(argv), stdin))
        host = argv[argv.index("--") + 1]
        if host in self.fail:
            return subprocess.CompletedProcess(argv, 255, b"", b"ssh: connect: refused\n")
        if argv[-2:] == ["postqueue", "-j"]:
            out = "".join(f"{line}\n" for line in self.queues.get(host, []))
            return subprocess.CompletedProcess(argv, 0, out.encode(), b"")
        return subprocess.CompletedProcess(argv, 0, b"", b"")


def cli(tmp_path: Path, *argv: str) -> argparse.Namespace:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET)
    parser = argparse.ArgumentParser()
    queue_cli.add_arguments(parser)
    return parser.parse_args(["--fleet", str(fleet), *argv])


def test_ssh_argv_uses_the_fleet_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_cli.time, "time", lambda: float(NOW))
    ssh = FakeSsh({"127.0.0.11": realistic_queue()})
    out = io.StringIO()
    assert queue_cli.run(cli(tmp_path, "--host", "mx1"), runner=ssh, out=out) == 0
    [(argv, stdin)] = ssh.calls
    assert argv == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", "2222", "-l", "root",
        "-i", "/keys/id_ed25519", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/keys/known_hosts", "-o", "StrictHostKeyChecking=yes",
        "--", "127.0.0.11", "postqueue", "-j",
    ]  # fmt: skip
    assert stdin is None
    table = out.getvalue()
    assert table.splitlines()[0].split() == [
        "HOST", "MSGS", "RCPTS", "SIZE", "OLDEST", "BOUNCES", "FLAGS",
    ]  # fmt: skip
    assert table.splitlines()[1].split() == ["mx1", "6", "7", "108.9K", "1d1h", "1", "ok"]
    assert "top senders: web@shop.example (3)" in table


def test_json_output_flags_and_unreachable_host(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": many("spam@shop.example", 60)}, fail={"127.0.0.12"})
    out = io.StringIO()
    assert queue_cli.run(cli(tmp_path, "--json"), runner=ssh, out=out) == queue_cli.EXIT_FLAGGED
    data = json.loads(out.getvalue())
    mx1, mx2 = data["hosts"]
    assert mx1["triage"]["flags"][0]["kind"] == "mass_mailing"
    assert mx2["triage"] is None and "ssh failed (exit 255)" in mx2["error"]


def test_unreachable_host_alone_is_unknown(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": []}, fail={"127.0.0.12"})
    out = io.StringIO()
    assert queue_cli.run(cli(tmp_path), runner=ssh, out=out) == queue_cli.EXIT_UNKNOWN
    assert "UNKNOWN: ssh failed" in out.getvalue()


def test_hold_sends_exactly_that_senders_ids_on_stdin(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": realistic_queue(), "127.0.0.12": many("web@shop.example", 2)})
    out = io.StringIO()
    code = queue_cli.run(cli(tmp_path, "--hold", "web@shop.example"), runner=ssh, out=out)
    assert code == 0
    postsuper = [(argv, stdin) for argv, stdin in ssh.calls if "postsuper" in argv]
    assert sorted((argv[-4], argv[-3:], stdin) for argv, stdin in postsuper) == [
        ("127.0.0.11", ["postsuper", "-h", "-"], b"4F2A21C0B3\n5A1B2C3D4E\n6B2C3D4E5F\n"),
        ("127.0.0.12", ["postsuper", "-h", "-"], b"M000000000\nM000000001\n"),
    ]
    assert "held 3 messages from web@shop.example" in out.getvalue()


def test_delete_needs_yes_and_never_deletes_without_it(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": realistic_queue()})
    out = io.StringIO()
    args = cli(tmp_path, "--host", "mx1", "--delete", "web@shop.example")
    assert queue_cli.run(args, runner=ssh, out=out) == queue_cli.EXIT_USAGE
    assert not [argv for argv, _ in ssh.calls if "postsuper" in argv]
    assert "would delete 3 messages" in out.getvalue()

    args = cli(tmp_path, "--host", "mx1", "--delete", "web@shop.example", "--yes")
    assert queue_cli.run(args, runner=ssh, out=io.StringIO()) == 0
    [(argv, stdin)] = [(a, s) for a, s in ssh.calls if "postsuper" in a]
    assert argv[-3:] == ["postsuper", "-d", "-"]
    assert stdin == b"4F2A21C0B3\n5A1B2C3D4E\n6B2C3D4E5F\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--yes"],
        ["--hold", "a@example.com", "--delete", "a@example.com", "--yes"],
        ["--hold", "a@example.com\nb"],
        ["--host", "nope"],
        ["--mass-share", "2"],
        # an empty shell variable (or a bounce spelling) must never mean "every bounce"
        ["--hold", ""],
        ["--delete", "", "--yes"],
        ["--hold", "<>"],
        ["--hold", "MAILER-DAEMON"],
        ["--delete", "mailer-daemon", "--yes"],
        ["--hold"],
        ["--hold", "a@example.com", "--bounces"],
        ["--bounces"],
        ["--json", "--format", "table"],
    ],
)
def test_usage_errors(tmp_path: Path, argv: list[str]) -> None:
    ssh = FakeSsh({})
    assert queue_cli.run(cli(tmp_path, *argv), runner=ssh, out=io.StringIO()) == 2
    assert ssh.calls == []


# -- bounces as the real Postfix 3.7 shows them -------------------------------------------

#: ``postqueue -j`` of a sandbox host with three queued bounces and one held message
#: (tests/fixtures/README.md says how it was made).
REAL_BOUNCES = Path(__file__).resolve().parents[1] / "fixtures" / "postqueue-j-bounces.jsonl"


def real_queue() -> list[str]:
    return REAL_BOUNCES.read_text().splitlines()


def test_postfix_37_bounces_are_bounces() -> None:
    messages = q.parse_queue(real_queue())
    assert [m.is_bounce for m in messages] == [True, True, True, False]
    t = q.triage(messages, now=1795979400, thresholds=q.Thresholds(bounce_count=3))
    assert t.bounces == 3
    assert ("MAILER-DAEMON", 3) in t.top_senders
    assert [(f.kind, f.sender) for f in t.flags] == [("backscatter", "MAILER-DAEMON")]
    assert q.queue_ids_for_sender(messages, q.BOUNCES) == [
        "665FD20E03E", "6851120E036", "6575020E038",
    ]  # fmt: skip


def test_hold_bounces_needs_the_explicit_flag(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": real_queue()})
    out = io.StringIO()
    args = cli(tmp_path, "--host", "mx1", "--hold", "--bounces")
    assert queue_cli.run(args, runner=ssh, out=out) == 0
    [(argv, stdin)] = [(a, s) for a, s in ssh.calls if "postsuper" in a]
    assert argv[-3:] == ["postsuper", "-h", "-"]
    assert stdin == b"665FD20E03E\n6851120E036\n6575020E038\n"
    assert "held 3 messages from bounces (MAILER-DAEMON)" in out.getvalue()
    assert out.getvalue().splitlines()[1].split()[5] == "3"  # the BOUNCES column


def test_delete_bounces_needs_yes(tmp_path: Path) -> None:
    ssh = FakeSsh({"127.0.0.11": real_queue()})
    args = cli(tmp_path, "--host", "mx1", "--delete", "--bounces")
    assert queue_cli.run(args, runner=ssh, out=io.StringIO()) == queue_cli.EXIT_USAGE
    assert not [a for a, _ in ssh.calls if "postsuper" in a]


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "-1", "soon"])
def test_timeout_must_be_finite_and_positive(
    tmp_path: Path, timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(tmp_path, "--timeout", timeout)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--timeout" in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("argv", "deprecated"), [(["--format", "json"], False), (["--json"], True)]
)
def test_format_json_and_the_deprecated_alias(
    tmp_path: Path, argv: list[str], deprecated: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    ssh = FakeSsh({"127.0.0.11": real_queue()})
    out = io.StringIO()
    queue_cli.run(cli(tmp_path, "--host", "mx1", *argv), runner=ssh, out=out)
    assert json.loads(out.getvalue())["hosts"][0]["triage"]["bounces"] == 3
    assert ("--json is deprecated" in capsys.readouterr().err) is deprecated


def test_format_table_is_the_default(tmp_path: Path) -> None:
    for argv in ([], ["--format", "table"]):
        out = io.StringIO()
        queue_cli.run(cli(tmp_path, "--host", "mx1", *argv), runner=FakeSsh({}), out=out)
        assert out.getvalue().startswith("HOST")
