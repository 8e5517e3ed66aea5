"""mailmend.cli: one dispatcher, one usage error, one "no fleet file" message, only the chosen
subcommand imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailmend.cli.main import COMMANDS, main
from mailmend.cli.options import NO_FLEET

PROBE = """
import importlib, sys
from mailmend.cli.main import main
importlib.import_module({module!r})  # the subcommand and what it imports itself
before = set(sys.modules)
try:
    main([{command!r}, "--help"])
except SystemExit:
    pass
print(" ".join(sorted(m for m in set(sys.modules) - before if m.startswith("mailmend"))))
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_only_the_chosen_subcommand_is_imported(command: str) -> None:
    """main adds nothing to what the chosen subcommand's module imports by itself."""
    probe = PROBE.format(module=COMMANDS[command].module, command=command)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    others = {c.module for name, c in COMMANDS.items() if name != command}
    assert not set(done.stdout.split()) & others, done.stdout


def test_queue_does_not_load_the_dns_engine() -> None:
    probe = (
        "import sys\nfrom mailmend.cli.main import main\n"
        "try:\n    main(['queue', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('mailmend')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "mailmend.cli.queue" in done.stdout
    assert "mailmend.checks.engine" not in done.stdout and "mailmend.cli.check" not in done.stdout


def test_top_level_help_imports_no_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", ["check", "records", "queue", "ptr"])
def test_no_fleet_file_is_one_message(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILMEND_FLEET", raising=False)
    assert main([command]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"mailmend {command}: {NO_FLEET}")


@pytest.mark.parametrize("command", ["check", "queue"])
def test_unknown_host_is_one_message(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[hosts.mx1]\nssh_host = "198.51.100.7"\nhostname = "mx1.example.com"\n'
        'public_ipv4 = "198.51.100.7"\n'
    )
    assert main([command, "--fleet", str(fleet), "--host", "nope"]) == 2
    err = capsys.readouterr().err.splitlines()  # the fleet's warnings (documentation IP), then
    assert err[-1] == f"mailmend {command}: no host nope in {fleet} (hosts: mx1)"


def test_bad_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["queue", "--timeout", "nan"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--timeout" in err[0] and "finite number of seconds" in err[0]


def test_ctrl_c_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interrupted command says so (it used to exit 130 with nothing on stderr)."""
    import mailmend.cli.queue

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(mailmend.cli.queue, "run", interrupted)
    assert main(["queue"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "mailmend queue: interrupted (Ctrl-C): stopped before the end; run it again"
    ]
