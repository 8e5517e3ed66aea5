"""`mailmend watch --once` and `mailmend dmarc sources` against a silent nameserver: they end.

The same pattern as tests/unit/test_dead_dns.py: the real CLI as a process, a fake fleet of
loopback hosts, a loopback fault server that never answers, and a guard of deadline + margin.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.dmarc_reports import Row, gzipped, report_xml
from tests.faultdns import FakeDns, aio, drop
from tests.unit.test_dead_dns import MARGIN, _fleet, _mailmend

DEADLINE = 3.0


@aio
async def test_watch_once_ends_with_a_silent_nameserver(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 12)
    db = str(tmp_path / "watch.db")
    async with FakeDns(drop) as server:
        t0 = time.monotonic()
        code, out, _err = await _mailmend(
            "watch", "--once", "--fleet", str(fleet), "--db", db,
            "--nameserver", str(server.nameserver), "--deadline", str(DEADLINE),
            guard=DEADLINE + MARGIN,
        )  # fmt: skip
        took = time.monotonic() - t0
        assert server.udp_queries  # it was asked, and never answered
    assert code == 0  # documented: the run went through, whatever it found
    assert took < DEADLINE + MARGIN
    kinds = {line.split(":", 1)[0] for line in out.splitlines()}
    assert kinds == {"host_unreachable"}  # no answer is no listing (and no delisting)
    code, out, _err = await _mailmend("watch", "status", "--db", db, "--format", "json", guard=30)
    assert code == 0
    status = json.loads(out)
    assert status["last_run"]["results"] == status["last_run"]["unknown"] > 0
    assert status["listings"] == []
    assert len(status["unreachable_hosts"]) == 12
    async with FakeDns(drop) as server:  # the rerun converges: nothing new to say
        code, out, _err = await _mailmend(
            "watch", "--once", "--fleet", str(fleet), "--db", db,
            "--nameserver", str(server.nameserver), "--deadline", str(DEADLINE),
            guard=DEADLINE + MARGIN,
        )  # fmt: skip
    assert (code, out) == (0, "")


@aio
async def test_dmarc_sources_ends_with_a_silent_nameserver(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    today = int(datetime.now(UTC).timestamp())
    rows = [Row(f"198.51.100.{i + 1}", 3) for i in range(12)]
    xml = report_xml("google.com", "g-1", "alpha.example", rows, begin=today)
    (folder / "g.xml.gz").write_bytes(gzipped(xml))
    db = str(tmp_path / "dmarc.db")
    code, _out, err = await _mailmend("dmarc", "import", "--db", db, str(folder), guard=30)
    assert code == 0, err
    async with FakeDns(drop) as server:
        t0 = time.monotonic()
        code, out, err = await _mailmend(
            "dmarc", "sources", "--db", db, "--format", "json",
            "--nameserver", str(server.nameserver), "--timeout", "1", "--deadline", str(DEADLINE),
            guard=DEADLINE + MARGIN,
        )  # fmt: skip
        took = time.monotonic() - t0
        assert server.udp_queries
    assert code == 0, err
    assert took < DEADLINE + MARGIN
    (domain,) = json.loads(out)["domains"]
    assert len(domain["sources"]) == 12
    assert {s["class"] for s in domain["sources"]} == {"unknown"}
    assert all(s["detail"] for s in domain["sources"])  # each says DNS could not tell


@pytest.mark.parametrize(
    "argv",
    [
        ("watch", "--once", "--timeout"),
        ("watch", "--once", "--deadline"),
        ("dmarc", "sources", "--timeout"),
        ("dmarc", "sources", "--deadline"),
        ("dmarc", "fetch", "--imap", "127.0.0.1:9", "--imap-user", "u", "--timeout"),
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
@aio
async def test_timeout_and_deadline_must_be_finite_and_positive(
    tmp_path: Path, argv: tuple[str, ...], value: str
) -> None:
    """Regression (review rv-fault): nan/inf were a traceback (exit 1) in dmarc, and watch
    took any of them (--timeout inf: no per-query bound); now one line, exit 2."""
    db = str(tmp_path / "x.db")
    code, out, err = await _mailmend(*argv, value, "--db", db, guard=MARGIN)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and argv[-1] in err and "Traceback" not in err
    assert not Path(db).exists()
