"""Wall time of the first deploy and of the idempotent rerun on 1, 3 and 10 sandbox hosts.

    sudo .venv/bin/python bench/deploy.py [--sizes 1 3 10] [--out docs/bench-deploy.md]

Each size gets a fresh sandbox (fresh overlays: Postfix and OpenDKIM are installed from the
Debian mirror every time). A second fresh sandbox of the same size times the package
installation alone (the same apt commands the deploy runs, over SSH, all hosts in parallel),
so the share of the first deploy spent installing packages can be stated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common
from bench._common import in_own_namespace, machine, today
from sandbox.control import Sandbox
from sandbox.scenario import Net

REPO = Path(__file__).resolve().parent.parent
# The packages the deploy installs (deploys/postfix.py, opendkim.py, hygiene.py).
INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    "postfix opendkim opendkim-tools policyd-rate-limit >/dev/null"
)


def timed_deploy(fleet: Path) -> float:
    return _common.timed_deploy(REPO, fleet)


def timed_install(sb: Sandbox) -> float:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(sb.hosts())) as pool:
        list(pool.map(lambda h: sb.ssh(h, INSTALL, timeout=900), sb.hosts()))
    return time.monotonic() - start


def measure(n: int, block: int) -> dict[str, float]:
    row: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mailmend-bench-") as tmp:
        sb = Sandbox(Path(tmp) / "a", Net(block))
        sb.up(n)
        try:
            row["first"] = timed_deploy(sb.fleet_file)
            row["rerun"] = timed_deploy(sb.fleet_file)
        finally:
            sb.down()
        sb = Sandbox(Path(tmp) / "b", Net(block))
        sb.up(n)
        try:
            row["install"] = timed_install(sb)
        finally:
            sb.down()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "bench-deploy.md")
    args = p.parse_args()
    in_own_namespace()
    rows = {}
    for n in args.sizes:
        rows[n] = measure(n, block=5)
        print(f"{n:>3} hosts: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[n].items()),
              flush=True)  # fmt: skip
    base = rows[min(rows)]["rerun"]
    lines = [
        "# Benchmark: deploy wall time on the sandbox fleet",
        "",
        f"Measured {today()} on {machine()}, with `sudo .venv/bin/python bench/deploy.py`.",
        "Each size on a fresh sandbox; packages come from the Debian mirror each time.",
        "",
        "| hosts | first deploy | idempotent rerun | rerun vs 1 host | package install alone |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['first']:.1f} s | {r['rerun']:.1f} s | "
                     f"{r['rerun'] / base:.2f}x | {r['install']:.1f} s "
                     f"({100 * r['install'] / r['first']:.0f}% of the first deploy) |")  # fmt: skip
    _common.write_results(args.out, lines)  # the hand-written notes below the table are kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
