"""``mailmend dmarc`` and ``records --dmarc-stage auto`` on the command line: exit codes, one-line
errors, nothing changed on bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailmend.cli.errors import UsageError
from mailmend.cli.main import main
from mailmend.dmarc.cli import parse_since
from tests.dmarc_reports import BOMB, Row, gzipped, report_xml

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_parse_since() -> None:
    assert parse_since("30d", NOW) == datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    assert parse_since("12h", NOW) == datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    assert parse_since("2w", NOW) == datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    for bad in ("yesterday", "30", "-3d", "2026-13-01", ""):
        with pytest.raises(UsageError, match="give a duration like 30d"):
            parse_since(bad, NOW)


def reports(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    today = int(datetime.now(UTC).timestamp())
    xml = report_xml("google.com", "g-1", "alpha.example", [Row("192.0.2.11", 7)], begin=today)
    (folder / "g.xml.gz").write_bytes(gzipped(xml))
    return folder


def test_import_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "db" / "watch.db")
    folder = reports(tmp_path)
    assert main(["dmarc", "import", "--db", db, str(folder)]) == 0
    assert capsys.readouterr().out == (
        "1 new report(s) (1 records), 0 already kept, 0 refused, from 1 input(s)\n"
    )
    (folder / "bomb.xml").write_bytes(BOMB)
    assert main(["dmarc", "import", "--db", db, str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == "0 new report(s) (0 records), 1 already kept, 1 refused, from 2 input(s)\n"
    assert err.endswith("bomb.xml: XML entity declaration 'a' refused (entity expansion)\n")


def test_bad_input_is_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db" / "watch.db"
    folder = reports(tmp_path)
    cases = [
        ["dmarc", "import", "--db", str(db), str(folder), str(tmp_path / "missing")],
        ["dmarc", "sources", "--db", str(db), "--since", "last week"],
        ["dmarc", "fetch", "--imap", "bad host:99999", "--imap-user", "u", "--imap-password",
         "env:X", "--db", str(db)],
        ["records", "--fleet", str(tmp_path / "nofleet.toml"), "--dmarc-stage", "auto"],
    ]  # fmt: skip
    for argv in cases:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1, (argv, err)
    assert not db.exists()  # the first case read nothing: one path was missing


def test_records_auto_needs_a_report_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[fleet]\n[hosts.mx1]\nssh_host = "192.0.2.11"\nhostname = "mx1.example.com"\n'
        'public_ipv4 = "192.0.2.11"\ndomains = [{ name = "example.com", selector = "mx1" }]\n'
    )
    missing = tmp_path / "none.db"
    argv = ["records", "--fleet", str(fleet), "--dmarc-stage", "auto", "--dmarc-db", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no report database at {missing}: import reports first" in err
    assert not missing.exists()
    # Regression: the shared database of mailmend watch alone got the dmarc tables, and the
    # plan then staged on no reports at all.
    from mailmend.store import schema_version
    from mailmend.watch.state import WatchDb

    watch_only = tmp_path / "watch.db"
    WatchDb.open(watch_only).close()
    argv[-1] = str(watch_only)
    assert main(argv) == 2
    assert f"no report database at {watch_only}: import reports first" in capsys.readouterr().err
    db = WatchDb.open(watch_only)
    try:
        assert schema_version(db.conn, "dmarc") == 0  # nothing created
    finally:
        db.close()


def test_sources_json_without_dns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "db" / "watch.db")
    assert main(["dmarc", "import", "--db", db, str(reports(tmp_path))]) == 0
    capsys.readouterr()
    argv = ["dmarc", "sources", "--db", db, "--format", "json", "--nameserver", "127.0.0.1:9",
            "--timeout", "0.2", "--deadline", "0.5"]  # fmt: skip
    assert main(argv) == 0
    (domain,) = json.loads(capsys.readouterr().out)["domains"]
    (source,) = domain["sources"]
    assert (source["ip"], source["class"], source["messages"]) == ("192.0.2.11", "unknown", 7)
    assert source["detail"]  # says why DNS could not tell


class _CtrlC:
    """An Engine that is interrupted as it opens (Ctrl-C before any DMARC decision)."""

    def __init__(self, *args: object) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("way_out", ["ctrl-c", "bad nameserver"])
def test_records_auto_closes_the_report_database_on_every_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    way_out: str,
) -> None:  # fmt: skip
    import sqlite3

    import mailmend.dmarc.db

    db = tmp_path / "reports.db"
    assert main(["dmarc", "import", "--db", str(db), str(reports(tmp_path))]) == 0
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[fleet]\n[hosts.mx1]\nssh_host = "192.0.2.11"\nhostname = "mx1.alpha.example"\n'
        'public_ipv4 = "192.0.2.11"\ndomains = [{ name = "alpha.example", selector = "mx1" }]\n'
    )
    opened: list[sqlite3.Connection] = []
    real_open = mailmend.dmarc.db.open_dmarc_db_if_present

    def recording_open(path: Path) -> sqlite3.Connection | None:
        conn = real_open(path)
        if conn is not None:
            opened.append(conn)
        return conn

    monkeypatch.setattr(mailmend.dmarc.db, "open_dmarc_db_if_present", recording_open)
    argv = ["records", "--fleet", str(fleet), "--dmarc-stage", "auto", "--dmarc-db", str(db)]
    if way_out == "ctrl-c":
        monkeypatch.setattr("mailmend.cli.records.Engine", _CtrlC)
        assert main([*argv, "--nameserver", "127.0.0.1:9"]) == 130
        assert opened  # it was open when Ctrl-C came
    else:
        assert main([*argv, "--nameserver", "not-an-ip"]) == 2
    capsys.readouterr()
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            conn.execute("SELECT 1")
