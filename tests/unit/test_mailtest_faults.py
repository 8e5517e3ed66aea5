"""``mailmend mail-test`` for 12 hosts when the IMAP server stalls in the middle of polling:
the run ends by ``--timeout``, each message is ``unknown`` with one line saying why, exit 3.

The mailbox is a local IMAPS stand-in (tests/imap_standin.py) that answers the login and the
first search of each connection, then never answers another search. Submitting over SSH and
reading the host's queue are replaced (no hosts here: tests/e2e/test_mail_test.py runs them
for real); everything between mail-test and the IMAP server is real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailmend.cli.main import main
from mailmend.mailtest import run
from tests.imap_standin import PASSWORD, USER, ImapStandIn

HOSTS = 12
TIMEOUT = 3.0
SLACK = 2.0  # the run's start, login and threads, on a loaded 2-core machine


def fleet_text(hosts: int) -> str:
    lines = ['[fleet]\nnameservers = ["127.0.0.1:9"]\n']
    for i in range(1, hosts + 1):
        lines.append(
            f'[hosts.mx{i}]\nssh_host = "127.0.0.1"\nssh_port = {2200 + i}\n'
            f'hostname = "mx{i}.alpha.example"\n'
            f'public_ipv4 = "192.0.2.{i}"\ndomains = [{{ name = "alpha.example", '
            f'selector = "mx{i}" }}]\n'
        )
    return "".join(lines)


def test_a_mailbox_that_stalls_mid_poll_ends_by_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run, "_submit", lambda *_a: None)  # "sent"
    monkeypatch.setattr(run, "_queue_note", lambda *_a: None)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(fleet_text(HOSTS))
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD)
    with ImapStandIn(tmp_path, stall={"SEARCH": 1}) as server:
        argv = [
            "mail-test", "--fleet", str(fleet), "--to", "test@inbox.test", "--imap",
            server.address, "--imap-user", USER, "--imap-password", f"file:{secret}",
            "--imap-cafile", str(server.cafile), "--timeout", f"{TIMEOUT:g}",
        ]  # fmt: skip
        code: list[int] = []
        started = time.monotonic()
        worker = threading.Thread(target=lambda: code.append(main(argv)), daemon=True)
        worker.start()
        worker.join(TIMEOUT + 30)  # the harness's own bound: a hang fails, never blocks
        took = time.monotonic() - started
        assert not worker.is_alive(), f"mail-test still running after {took:.1f} s"
        assert server.stalled.is_set()
    out, err = capsys.readouterr()
    assert code == [3], (out, err)
    assert took < TIMEOUT + SLACK, took
    reasons = [line.strip() for line in out.splitlines() if "UNKNOWN  delivery" in line]
    assert len(reasons) == HOSTS, out
    for line in reasons:
        assert line.startswith(f"UNKNOWN  delivery test@inbox.test: IMAP server {server.address}")
        assert line.endswith(f"no answer to search within the {TIMEOUT:g} s deadline (--timeout)")
    assert "Traceback" not in err
