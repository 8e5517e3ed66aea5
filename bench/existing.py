"""Deploy wall time on an existing server vs an empty VPS: first run and idempotent rerun.

    sudo .venv/bin/python bench/existing.py [--repeats 2] [--out docs/bench-existing.md]

Each repeat gets a fresh sandbox with one empty host (``mx1``) and one full mail server
(``mailserver``: Postfix with a virtual domain, Dovecot, submission; sandbox/existing.py).
Each host is deployed alone (``--limit``), the empty one first, then rerun; so the figures
show what the existing-server discovery (main.cf read and merged, DKIM keys looked for,
another MTA looked for) adds, beside the package installs both need.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _common
from bench._common import in_own_namespace, machine, today
from sandbox.control import Sandbox
from sandbox.scenario import Net, default_scenario

REPO = Path(__file__).resolve().parent.parent
HOSTS = ("mx1", "mailserver")


def timed_deploy(fleet: Path, limit: str) -> float:
    return _common.timed_deploy(REPO, fleet, "--limit", limit)


def measure(block: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mailmend-bench-") as tmp:
        net = Net(block)
        sb = Sandbox(Path(tmp), net)
        sb.up(1, default_scenario(1, net, existing=("mailserver",)))
        try:
            for name in HOSTS:
                first = timed_deploy(sb.fleet_file, name)
                rows[name] = {"first": first, "rerun": timed_deploy(sb.fleet_file, name)}
        finally:
            sb.down()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--block", type=int, default=int(os.environ.get("MAILMEND_SANDBOX_BLOCK", "5")),
        help="sandbox address block (default $MAILMEND_SANDBOX_BLOCK or 5)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=REPO / "docs" / "bench-existing.md")
    args = p.parse_args()
    in_own_namespace()
    runs = []
    for i in range(args.repeats):
        runs.append(measure(block=args.block))
        print(f"run {i + 1}: {runs[-1]}", flush=True)
    lines = [
        "# Benchmark: deploy on an existing server vs an empty VPS",
        "",
        f"Measured {today()} on {machine()}, with `sudo .venv/bin/python bench/existing.py`.",
        "One fresh sandbox per run: `mx1` (empty Debian 12) and `mailserver` (Postfix, Dovecot,",
        "a virtual domain, submission: `sandbox/existing.py`), each deployed alone, then rerun.",
        "",
        "| run | host | first deploy | idempotent rerun |",
        "|---:|---|---:|---:|",
    ]
    for i, rows in enumerate(runs, start=1):
        for name in HOSTS:
            r = rows[name]
            lines.append(f"| {i} | {name} | {r['first']:.1f} s | {r['rerun']:.1f} s |")
    _common.write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
