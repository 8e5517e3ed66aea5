"""mailmend records: bad options are one line, exit 2, before any DNS server is contacted."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmend.cli.main import main

FLEET = """\
[fleet]
dmarc_report_address = "dmarc@alpha.example"
[hosts.mx1]
ssh_host = "127.0.0.1"
hostname = "mx1.alpha.example"
public_ipv4 = "192.0.2.10"
domains = [{ name = "alpha.example", selector = "mx1" }]
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    return path


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket, socket.socket]]:
    """A loopback UDP socket and TCP listener on one port: anything sent to it is seen."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        udp.setblocking(False)
        tcp.setblocking(False)
        yield f"127.0.0.1:{port}", udp, tcp
        udp.close()
        tcp.close()
        return
    raise OSError("no free port")


def contacted(udp: socket.socket, tcp: socket.socket) -> bool:
    try:
        udp.recv(4096)
        return True
    except BlockingIOError:
        pass
    try:
        tcp.accept()[0].close()
        return True
    except BlockingIOError:
        return False


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--ttl", "99999999999"], "--ttl 99999999999: must be from 60 to 2147483647 seconds"),
        (["--ttl", "2147483648"], "--ttl 2147483648: must be from 60 to 2147483647 seconds"),
        (["--ttl", "59"], "--ttl 59: must be from 60 to 2147483647 seconds"),
        (["--zone", "a..b"], "--zone: 'a..b' is not a valid FQDN (empty label)"),
        (["--zone", "a" * 70 + ".example"], "is 70 characters, the limit is 63"),
        (["--timeout", "nan"], "--timeout: 'nan' must be a finite number of seconds above 0"),
        (["--ttl", "abc"], "--ttl: invalid int value: 'abc'"),
    ],
)
def test_bad_option_is_one_line_exit_2_nothing_contacted(
    option: list[str],
    message: str,
    fleet: Path,
    listener: tuple[str, socket.socket, socket.socket],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, udp, tcp = listener
    key = tmp_path / "k.key"
    key.write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0"; };\n')
    key.chmod(0o600)
    argv = ["records", "--fleet", str(fleet), "--nameserver", server, "--server", server]
    argv += ["--tsig-key", str(key), "--apply", "--timeout", "0.3", *option]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("mailmend records: "), err
    assert message in err
    assert not contacted(udp, tcp)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("fifo", "--dkim-txt: {path} is not a regular file"),  # was read for ever
        ("big", "--dkim-txt: {path} is over 64 KiB: not a key file"),
    ],
)
def test_dkim_txt_file_is_read_as_check_reads_a_key_file(
    kind: str,
    message: str,
    fleet: Path,
    listener: tuple[str, socket.socket, socket.socket],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--dkim-txt`` refuses what ``check --dkim-key`` refuses (one reader of key files)."""
    server, udp, tcp = listener
    path = tmp_path / "mx1.txt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("x" * (65 * 1024))
    argv = ["records", "--fleet", str(fleet), "--nameserver", server, "--timeout", "0.3"]
    assert main([*argv, "--dkim-txt", f"alpha.example:mx1={path}"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == f"mailmend records: {message.format(path=path)}"
    assert not contacted(udp, tcp)


def test_without_nameserver_records_asks_the_fleets_nameservers(
    tmp_path: Path,
    listener: tuple[str, socket.socket, socket.socket],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fleet that names its DNS server is read from it (as `check` does), never from this
    machine's resolver: a sandbox fleet planned with the system resolver's answers before."""
    server, udp, tcp = listener
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET.replace("[fleet]\n", f'[fleet]\nnameservers = ["{server}"]\n'))
    argv = ["records", "--fleet", str(path), "--timeout", "0.2", "--deadline", "1"]
    assert main(argv) == 1  # the listener never answers
    assert contacted(udp, tcp)
    assert f"nameserver {server} does not answer" in capsys.readouterr().err
