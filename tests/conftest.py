"""Shared fixtures: the sandbox fleet for end-to-end tests, and a pyinfra runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.control import Sandbox
from sandbox.scenario import BLOCK_ENV, Net

REPO = Path(__file__).resolve().parent.parent
PYINFRA = Path(sys.executable).with_name("pyinfra")
MAILMEND = Path(sys.executable).with_name("mailmend")
#: The CLI's environment: no colour, no DQS key or fleet file from the caller.
CLI_ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("MAILMEND_DQS_KEY", "MAILMEND_FLEET")},
    "NO_COLOR": "1",
}


def require_root() -> None:
    """End-to-end tests need root; in CI a missing prerequisite is a failure, not a skip."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("end-to-end tests must run as root in CI (namespaces, mounts)")
    pytest.skip("end-to-end tests need root: run scripts/test")


#: Blocks one pytest-xdist worker may use: each module's sandbox takes MAILMEND_SANDBOX_BLOCK +
#: its own offset (0..69) + this stride times the worker's number, so parallel workers never
#: share an address (127.B.x.y, B <= 255: at most three workers).
WORKER_STRIDE = 70


def worker_index() -> int:
    """0 without xdist; N for xdist's worker ``gwN``."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def sandbox_block(offset: int = 0) -> int:
    return int(os.environ.get(BLOCK_ENV, "1")) + offset + WORKER_STRIDE * worker_index()


def sandbox_net(offset: int = 0) -> Net:
    return Net(sandbox_block(offset))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Three sandbox hosts with DNS and the SMTP receiver, for the whole test session."""
    require_root()
    sb = Sandbox(tmp_path_factory.mktemp("sandbox"), sandbox_net())
    sb.up(3)
    try:
        yield sb
    finally:
        sb.down()


def run_pyinfra(
    fleet_file: Path, *args: str, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pyinfra inventory.py ARGS`` from the repository with ``MAILMEND_FLEET=fleet_file``."""
    full_env = {**os.environ, "MAILMEND_FLEET": str(fleet_file), **(env or {})}
    proc = subprocess.run(
        [str(PYINFRA), "inventory.py", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"pyinfra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def run_mailmend(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``mailmend`` console script, as an admin or a monitor would run it."""
    return subprocess.run(
        [str(MAILMEND), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=CLI_ENV,
    )


def genkey_txt(directory: Path, selector: str, bits: int = 2048) -> Path:
    """A fresh RSA key's public half as opendkim-genkey writes ``SELECTOR.txt`` (the records
    tests hand it over with ``--dkim-txt``, without running the mail deploy)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    b64 = "p=" + base64.b64encode(der).decode()
    chunks = " ".join(f'"{b64[i : i + 250]}"' for i in range(0, len(b64), 250))
    path = directory / f"{selector}.txt"
    path.write_text(f'{selector}._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; " {chunks} )\n')
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``scripts/test`` runs ``-n`` workers with ``--dist loadgroup``):
    every end-to-end test runs on one worker, in file order, exactly as without xdist (several
    files build on what earlier files published in the shared sandbox, and some read files of
    the repository that others write); the unit tests spread over the other workers."""
    for item in items:
        if item.get_closest_marker("end_to_end") is not None:
            item.add_marker(pytest.mark.xdist_group(name="end-to-end"))
