"""The built wheel, as a new user gets it (issue 9): one top-level import name, everything the
product needs inside, no sandbox/bench/tests; installed in a fresh virtualenv (its dependencies
from the local package index), its ``mailmend`` runs against the sandbox fleet and prints what
the checkout's prints, and a deploy file of the user's own reuses the packaged deploy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.control import Sandbox
from tests.conftest import CLI_ENV, REPO, run_mailmend

pytestmark = pytest.mark.end_to_end

#: Files the product reads at run time (importlib.resources), by path in the wheel.
DATA = (
    "mailmend/checks/blocklists.toml",
    "mailmend/checks/report.html.j2",
    "mailmend/suppression/allow.txt",
    "mailmend/suppression/deny.txt",
    "mailmend/templates/hosts.j2",
    "mailmend/templates/mailname.j2",
    "mailmend/templates/postfix/main.cf.j2",
    "mailmend/templates/postfix/master.cf.j2",
    "mailmend/templates/opendkim/opendkim.conf.j2",
    "mailmend/templates/opendkim/KeyTable.j2",
)
#: Not the checkout: no PYTHONPATH, no fleet file, no colour.
VENV_ENV = {k: v for k, v in CLI_ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(
    argv: list[str], cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env={**VENV_ENV, **env}, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps`` from a copy of the checkout (the build leaves nothing in it)."""
    src = tmp_path_factory.mktemp("src") / "mailmend"
    skip = shutil.ignore_patterns(
        ".git", ".venv", ".sandbox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
    )
    shutil.copytree(REPO, src, symlinks=True, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    done = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), "."], src)
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("mailmend-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the wheel and its dependencies installed; its bin/."""
    root = tmp_path_factory.mktemp("venv") / "v"
    done = _run([sys.executable, "-m", "venv", str(root)], root.parent)
    assert done.returncode == 0, done.stderr
    done = _run([str(root / "bin" / "pip"), "install", "-q", str(wheel)], root.parent, timeout=600)
    assert done.returncode == 0, done.stderr
    yield root / "bin"


def test_wheel_holds_one_import_name_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert tops == {"mailmend"}
    assert all(path in names for path in DATA), [p for p in DATA if p not in names]
    assert "mailmend/cli/main.py" in names and "mailmend/deploys/mail.py" in names
    assert not [n for n in names if n.split("/")[1] in ("sandbox", "bench", "tests")]


def test_installed_top_level_names(venv: Path, tmp_path: Path) -> None:
    """What the installed distribution put in site-packages, by its RECORD."""
    probe = (
        "from importlib.metadata import distribution\n"
        "files = distribution('mailmend').files or []\n"
        "print(sorted({f.parts[0] for f in files if not f.parts[0].endswith('.dist-info')"
        " and f.parts[0] != '..'}))\n"
    )
    done = _run([str(venv / "python"), "-c", probe], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['mailmend']"


@pytest.mark.parametrize("command", ["check", "records", "queue"])
def test_subcommand_help(venv: Path, tmp_path: Path, command: str) -> None:
    done = _run([str(venv / "mailmend"), command, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: mailmend {command} ")
    assert "--fleet FILE" in done.stdout


def test_check_from_the_wheel_is_the_checkouts(
    venv: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """``mailmend check --fleet`` from the wheel's venv, against the sandbox DNS: the same
    report and exit code as the checkout's (templates and blocklists found in the wheel)."""
    argv = ["check", "--fleet", str(sandbox.fleet_file)]
    installed = _run([str(venv / "mailmend"), *argv], tmp_path, timeout=120)
    checkout = run_mailmend(*argv, timeout=120)
    assert installed.returncode == checkout.returncode != 2, installed.stderr
    assert installed.stdout == checkout.stdout
    assert "hosts:" in installed.stdout.splitlines()[-1]
    html = tmp_path / "report.html"
    done = _run([str(venv / "mailmend"), *argv, "--format", "html", "--output", str(html)],
                tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == checkout.returncode, done.stderr
    assert html.read_text().startswith("<!DOCTYPE html>")


def test_own_deploy_file_reuses_the_packaged_deploy(
    venv: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """README "From your own pyinfra project": two files of the user's, outside the checkout."""
    (tmp_path / "my_inventory.py").write_text(
        "from mailmend.inventory import pyinfra_groups\n\nglobals().update(pyinfra_groups())\n"
    )
    (tmp_path / "my_deploy.py").write_text(
        "from mailmend.deploys import mail_deploy\n\nmail_deploy()\n"
    )
    done = _run(
        [str(venv / "pyinfra"), "my_inventory.py", "my_deploy.py", "--dry"],
        tmp_path, timeout=600, MAILMEND_FLEET=str(sandbox.fleet_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert all(f"[{h}]" in out for h in ("mx1", "mx2", "mx3")), out[-3000:]
    assert "Postfix" in out and "OpenDKIM" in out, out[-3000:]
