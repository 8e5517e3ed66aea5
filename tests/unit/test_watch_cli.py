"""``mailmend watch``'s command line: bad input is one line and exit 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmend.cli.main import main
from mailmend.watch.cli import parse_address, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("90d", 7776000), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15", "0m", "-1h", "1.5h", "15 minutes", "m", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:9211") == ("127.0.0.1", 9211)
    assert parse_address("[::1]:9211") == ("::1", 9211)
    with pytest.raises(ValueError, match="give ADDRESS:PORT"):
        parse_address("127.0.0.1")
    with pytest.raises(ValueError, match="give ADDRESS:PORT"):
        parse_address("127.0.0.1:²")  # a digit int() does not read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --once (for a timer or cron) or --every DURATION (a loop)"),
        (["--once", "--serve", "127.0.0.1:9211"], "--serve needs a running watcher"),
        (["--every", "1h", "--keep", "forever"], "--keep: 'forever' is not a duration"),
        (["--once", "--serve", "9211"], "--serve: '9211': give ADDRESS:PORT"),
        (["--once", "--alert-command", "'unclosed"], "--alert-command: No closing quotation"),
        (["history"], "no watch database at"),
        (["status"], "no watch database at"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state" / "watch.db"
    assert main(["watch", *args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailmend watch: ") and message in err and err.count("\n") == 1
    assert not db.parent.exists()  # nothing created


@pytest.mark.parametrize("action", ["history", "status"])
def test_a_database_of_dmarc_reports_only_is_no_watch_database(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: the shared database made by ``mailmend dmarc`` alone got the watch tables
    from a read-only query, which then showed an empty history or status."""
    from mailmend.dmarc.db import open_dmarc_db
    from mailmend.store import schema_version

    db = tmp_path / "watch.db"
    open_dmarc_db(db).close()
    assert main(["watch", action, "--db", str(db)]) == 2
    assert f"no watch database at {db}" in capsys.readouterr().err
    conn = open_dmarc_db(db)
    try:
        assert schema_version(conn, "watch") == 0  # nothing created
    finally:
        conn.close()
