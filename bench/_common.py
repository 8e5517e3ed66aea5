"""Helpers shared by the benchmarks: a namespace to run in, and the machine's description."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
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
