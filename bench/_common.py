"""Helpers shared by the benchmarks: a namespace to run in, and the machine's description."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def in_own_namespace() -> None:
    """Re-run this script as PID 1 of a PID + mount namespace: whatever it starts dies with it."""
    if os.getpid() == 1:
        return
    argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation",
            "private", "--mount-proc", "--", sys.executable, *sys.argv]  # fmt: skip
    sys.exit(subprocess.call(argv))


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


NOTES = "## Notes"


def write_results(out: Path, lines: list[str]) -> None:
    """Write a results page, keeping its hand-written ``## Notes`` part across runs."""
    old = out.read_text() if out.exists() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    out.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))
    print(f"written to {out}")


def timed_deploy(repo: Path, fleet: Path, *args: str) -> float:
    """Wall time of ``pyinfra -y inventory.py ARGS deploys/mail.py``; a failure ends the run."""
    pyinfra = Path(sys.executable).with_name("pyinfra")
    env = {**os.environ, "MAILMEND_FLEET": str(fleet)}
    start = time.monotonic()
    proc = subprocess.run(
        [str(pyinfra), "-y", "inventory.py", *args, "deploys/mail.py"],
        cwd=repo, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"deploy {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return elapsed
