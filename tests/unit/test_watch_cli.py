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
