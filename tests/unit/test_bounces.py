"""mailmend.hygiene.bounces: log parsing, hard-bounce records, admin lists, table formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailmend.hygiene import bounces as b

REF = datetime(2026, 12, 1, tzinfo=UTC)

ISO = "2026-11-28T12:00:01.123456+00:00"
SYSLOG = "Nov 28 12:00:01"

HARD_511 = (
    "{ts} mx1 postfix/smtp[4711]: 4F2A21C0B3: to=<Gone@Example.COM>, "
    "relay=mx.example.com[192.0.2.10]:25, delay=1.2, delays=0.1/0.01/0.6/0.5, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.10] said: 550 5.1.1 <gone@example.com>: "
    "Recipient address rejected: User unknown in virtual mailbox table "
    "(in reply to RCPT TO command))"
)
HARD_512_ORIG_TO = (
    "{ts} mx1 postfix/smtp[4712]: 5A1B2C3D4E: to=<x@no-such-domain.example>, "
    "orig_to=<alias@example.org>, relay=none, delay=0.3, delays=0.2/0/0.1/0, dsn=5.4.4, "
    "status=bounced (Host or domain name not found. Name service error for "
    "name=no-such-domain.example type=AAAA: Host not found)"
)
DISABLED_521 = (
    "{ts} mx1 postfix/smtp[4713]: 6B2C3D4E5F: to=<old@example.net>, "
    "relay=mx.example.net[198.51.100.5]:25, delay=2, delays=0.1/0/1/0.9, dsn=5.2.1, "
    "status=bounced (host mx.example.net[198.51.100.5] said: 550 5.2.1 The email account "
    "that you tried to reach is disabled. (in reply to end of DATA command))"
)
SOFT_BOUNCED_4XX = (
    "{ts} mx1 postfix/smtp[4714]: 7C3D4E5F6A: to=<full@example.net>, relay=mx.example.net"
    "[198.51.100.5]:25, delay=3, delays=0.1/0/1/1.9, dsn=4.2.2, status=bounced "
    "(host mx.example.net[198.51.100.5] said: 452 4.2.2 Mailbox full)"
)
DEFERRED = (
    "{ts} mx1 postfix/smtp[4715]: 8D4E5F6A7B: to=<later@example.org>, "
    "relay=mx.example.org[203.0.113.9]:25, delay=30, delays=0.1/0/30/0, dsn=4.4.1, "
    "status=deferred (connect to mx.example.org[203.0.113.9]:25: Connection timed out)"
)
GREYLISTED = (
    "{ts} mx1 postfix/smtp[4716]: 9E5F6A7B8C: to=<grey@example.org>, "
    "relay=mx.example.org[203.0.113.9]:25, delay=1, delays=0.1/0/0.5/0.4, dsn=4.7.1, "
    "status=deferred (host mx.example.org[203.0.113.9] said: 450 4.7.1 <grey@example.org>: "
    "Recipient address rejected: Greylisted (in reply to RCPT TO command))"
)
SENT = (
    "{ts} mx1 postfix/smtp[4717]: AF6A7B8C9D: to=<ok@example.com>, "
    "relay=mx.example.com[192.0.2.10]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok: queued as 4Nq1x2y3z4)"
)
EXPIRED = (
    "{ts} mx1 postfix/qmgr[812]: 8D4E5F6A7B: from=<web@example.com>, status=expired, "
    "returned to sender"
)
CONNECT = "{ts} mx1 postfix/smtpd[900]: connect from localhost[127.0.0.1]"
OWN_ERROR = (
    "{ts} mx1 postfix/error[4718]: B07B8C9DAE: to=<gone@example.com>, relay=none, delay=0.01, "
    "delays=0/0/0/0, dsn=5.1.1, status=bounced (suppressed by mailmend: hard bounce 5.1.1 "
    "on 2026-11-20)"
)
ALL = [HARD_511, HARD_512_ORIG_TO, DISABLED_521, SOFT_BOUNCED_4XX, DEFERRED, GREYLISTED, SENT,
       EXPIRED, CONNECT, OWN_ERROR]  # fmt: skip


def lines(ts: str) -> list[str]:
    return [template.format(ts=ts) for template in ALL]


@pytest.mark.parametrize("ts", [ISO, SYSLOG, "2026-11-28T12:00:01+0000"])
def test_parser_reads_delivery_lines_in_every_timestamp_form(ts: str) -> None:
    events = b.parse_lines(lines(ts), reference=REF)
    by_status = sorted((e.address, e.dsn, e.status) for e in events)
    assert by_status == [
        ("full@example.net", "4.2.2", "bounced"),
        ("gone@example.com", "5.1.1", "bounced"),
        ("gone@example.com", "5.1.1", "bounced"),
        ("grey@example.org", "4.7.1", "deferred"),
        ("later@example.org", "4.4.1", "deferred"),
        ("ok@example.com", "2.0.0", "sent"),
        ("old@example.net", "5.2.1", "bounced"),
        ("x@no-such-domain.example", "5.4.4", "bounced"),
    ]
    first = events[0]
    assert first.timestamp == datetime(2026, 11, 28, 12, 0, 1, first.timestamp.microsecond, UTC)
    assert first.queue_id == "4F2A21C0B3"
    assert first.program == "postfix/smtp"
    assert first.text.startswith("host mx.example.com[192.0.2.10] said: 550 5.1.1")
    assert first.text.endswith("(in reply to RCPT TO command)")


def test_hard_bounces_only_5xx_bounced_and_not_our_own_error_lines() -> None:
    records = b.hard_bounces(b.parse_lines(lines(ISO), reference=REF))
    assert sorted(records) == ["gone@example.com", "old@example.net", "x@no-such-domain.example"]
    gone = records["gone@example.com"]
    assert gone.count == 1  # the postfix/error line is mailmend's own suppression
    assert gone.dsn == "5.1.1"
    assert "User unknown" in gone.text


def test_records_keep_first_last_count_and_latest_dsn() -> None:
    text = [
        HARD_511.format(ts="2026-11-20T08:00:00+00:00"),
        HARD_511.format(ts="2026-11-28T09:30:00+00:00").replace("4F2A21C0B3", "1111111111"),
        DISABLED_521.format(ts="2026-11-25T10:00:00+00:00")
        .replace("old@example.net", "GONE@example.com")
        .replace("6B2C3D4E5F", "2222222222"),
    ]
    record = b.hard_bounces(b.parse_lines(text, reference=REF))["gone@example.com"]
    assert record.first_seen == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert record.last_seen == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert record.count == 3
    assert record.dsn == "5.1.1"  # from the latest bounce, not the last line read


def test_same_event_from_file_and_journal_counts_once() -> None:
    from_file = HARD_511.format(ts="2026-11-28T12:00:01.123456+00:00")
    from_journal = HARD_511.format(ts="2026-11-28T12:00:01+0000")
    records = b.hard_bounces(b.parse_lines([from_file, from_journal], reference=REF))
    assert records["gone@example.com"].count == 1


def test_syslog_stamp_without_year_takes_the_year_before_when_in_the_future() -> None:
    early_january = datetime(2027, 1, 2, tzinfo=UTC)
    assert b.parse_timestamp("Dec 31 23:59:59", reference=early_january).year == 2026
    assert b.parse_timestamp("Jan  1 00:00:01", reference=early_january).year == 2027


def test_garbage_and_impossible_dates_are_not_events() -> None:
    assert b.parse_line(HARD_511.format(ts="Feb 30 12:00:01")) is None
    assert b.parse_line("not a log line at all") is None
    assert b.parse_line("") is None


def test_long_remote_text_is_trimmed_to_one_line() -> None:
    line = HARD_511.format(ts=ISO).replace("User unknown", "x\ty " * 200)
    event = b.parse_line(line, reference=REF)
    assert event is not None
    assert len(event.text) == b.MAX_TEXT_LENGTH
    assert "\t" not in event.text and event.text.endswith("...")


# -- admin lists ---------------------------------------------------------------------------


def test_address_list_comments_and_case() -> None:
    text = "# header\n\nCEO@Example.com   # migration\nbilling+x#1@example.com\n  #indented\n"
    assert b.parse_address_list(text) == {"ceo@example.com", "billing+x#1@example.com"}


def test_address_list_reports_every_bad_line() -> None:
    with pytest.raises(b.AddressListError) as err:
        b.parse_address_list("ok@example.com\nnot-an-address\nbad\x00@example.com\n", "deny.txt")
    assert [p.split(":")[1] for p in err.value.problems] == ["2", "3"]
    assert "deny.txt:3" in str(err.value)


def test_shipped_lists_are_empty() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "suppression"
    assert b.parse_address_list((root / "allow.txt").read_text()) == frozenset()
    assert b.parse_address_list((root / "deny.txt").read_text()) == frozenset()


def record(address: str, dsn: str = "5.1.1", day: int = 28) -> b.BounceRecord:
    stamp = datetime(2026, 11, day, 12, tzinfo=UTC)
    return b.BounceRecord(address, stamp, stamp, 1, dsn, "550 5.1.1 User unknown")


def test_allow_wins_over_bounce_and_deny_always_suppresses() -> None:
    result = b.build_suppression(
        [record("gone@example.com"), record("ceo@example.com")],
        allow=frozenset({"ceo@example.com"}),
        deny=frozenset({"trap@example.net"}),
    )
    assert [(e.address, e.source) for e in result.entries] == [
        ("gone@example.com", "bounce"),
        ("trap@example.net", "deny"),
    ]
    assert result.allowed == ("ceo@example.com",)


def test_address_on_both_lists_is_refused() -> None:
    with pytest.raises(b.ListConflictError) as err:
        b.build_suppression(
            [], allow=frozenset({"a@example.com"}), deny=frozenset({"a@example.com"})
        )
    assert err.value.addresses == ["a@example.com"]


def test_tables_have_the_postfix_formats() -> None:
    result = b.build_suppression(
        [record("gone@example.com"), record("x@no-such-domain.example", "5.4.4", 27)],
        allow=frozenset(),
        deny=frozenset({"trap@example.net"}),
    )
    assert b.access_table(result.entries).splitlines() == [
        b.TABLE_HEADER.rstrip("\n"),
        "gone@example.com REJECT 5.1.1 suppressed by mailmend: hard bounce 5.1.1 on 2026-11-28",
        "trap@example.net REJECT 5.7.1 suppressed by mailmend: on the deny list",
        "x@no-such-domain.example REJECT 5.4.4 suppressed by mailmend: hard bounce 5.4.4 "
        "on 2026-11-27",
    ]
    assert b.transport_table(result.entries).splitlines()[1:] == [
        "gone@example.com error:5.1.1 suppressed by mailmend: hard bounce 5.1.1 on 2026-11-28",
        "trap@example.net error:5.7.1 suppressed by mailmend: on the deny list",
        "x@no-such-domain.example error:5.4.4 suppressed by mailmend: hard bounce 5.4.4 "
        "on 2026-11-27",
    ]


@pytest.mark.parametrize(
    "address",
    ["o'brien+news@example.com", "a.b-c_d=e/f{g}|h~!$%&*?^`@example.com", "x#y@example.com"],
)
def test_odd_but_legal_local_parts_stay_one_table_line(address: str) -> None:
    result = b.build_suppression([record(address)], allow=frozenset(), deny=frozenset())
    table = b.access_table(result.entries)
    assert b.table_addresses(table) == {address}
    assert table.splitlines()[1].split(" ", 1)[0] == address


@pytest.mark.parametrize(
    "address",
    ['"john doe"@example.com', "tab\there@example.com", "nl\n@example.com", "#hash@example.com",
     "zero\u200bwidth@example.com", "cr\r@example.com"],
)  # fmt: skip
def test_addresses_that_would_break_a_table_are_refused(address: str) -> None:
    result = b.build_suppression([record(address)], allow=frozenset(), deny=frozenset())
    assert result.entries == ()
    assert [a for a, _ in result.refused] == [address]
    with pytest.raises(ValueError, match=r"^'"):
        b.access_table([b.Suppression(address, "5.1.1", "x", "bounce")])


def test_quoted_local_part_with_space_in_a_real_log_line_is_refused_not_split() -> None:
    line = HARD_511.format(ts=ISO).replace("Gone@Example.COM", '"john doe"@example.com')
    records = b.hard_bounces(b.parse_lines([line], reference=REF))
    assert list(records) == ['"john doe"@example.com']
    result = b.build_suppression(records.values(), allow=frozenset(), deny=frozenset())
    assert result.entries == () and result.refused[0][0] == '"john doe"@example.com'


def test_diff_reports_newly_and_no_longer_suppressed() -> None:
    old = b.build_suppression(
        [record("gone@example.com"), record("back@example.com")],
        allow=frozenset(),
        deny=frozenset(),
    )
    new = b.build_suppression(
        [record("gone@example.com"), record("back@example.com"), record("new@example.org")],
        allow=frozenset({"back@example.com"}),
        deny=frozenset(),
    )
    diff = b.diff_tables(b.access_table(old.entries), new.entries)
    assert diff == b.TableDiff(added=("new@example.org",), removed=("back@example.com",))
    assert b.diff_tables("", new.entries).added == ("gone@example.com", "new@example.org")


def test_merge_records_across_hosts() -> None:
    early = datetime(2026, 11, 20, tzinfo=UTC)
    late = datetime(2026, 11, 28, tzinfo=UTC)
    mx1 = {"a@example.com": b.BounceRecord("a@example.com", early, early, 2, "5.1.1", "old")}
    mx2 = {
        "a@example.com": b.BounceRecord("a@example.com", late, late, 1, "5.2.1", "new"),
        "b@example.com": b.BounceRecord("b@example.com", late, late, 1, "5.1.1", "x"),
    }
    merged = b.merge_records(mx1, mx2)
    assert merged["a@example.com"] == b.BounceRecord(
        "a@example.com", early, late, 3, "5.2.1", "new"
    )
    assert sorted(merged) == ["a@example.com", "b@example.com"]
