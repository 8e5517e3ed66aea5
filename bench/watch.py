"""``mailmend watch``: what the database costs a run, how big it grows, how fast history is.

One command (root: it runs as PID 1 of its own namespace and starts the sandbox's Knot)::

    .venv/bin/python bench/watch.py          # ~2 min; --runs N, --out FILE

1. One ``mailmend watch --once`` over a fleet of 1,000 check-only hosts (one IPv4 each, in
   198.18.0.0/15, the benchmarking range, PTR and A served) x the 22 lists of
   checks/blocklists.toml, against the sandbox's Knot on 127.B.9.53 (B = $MAILMEND_SANDBOX_BLOCK,
   default 1): the first run (every key new) and four more; wall time of the process, and the
   time spent in the database as the watcher records it (``runs.db_seconds``).
2. 1,000 runs of 50 hosts (the checks' results made here, with listings that come and go)
   through the real run path (``runner.run_once``): the database's size, and a run's database time.
3. ``watch history`` on that database: the query and rendering in-process, and the CLI's wall
   time (a Python start included).

Writes docs/bench-watch.md. Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import in_own_namespace, machine, today

ROOT = Path(__file__).resolve().parent.parent
MAILMEND = Path(sys.executable).with_name("mailmend")
DOMAIN = "bench.example"


def ips(n: int) -> list[str]:
    return [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(n)]


def start_dns(state: Path, n: int) -> str:
    from sandbox import proc
    from sandbox.dns import SandboxDns
    from sandbox.scenario import BLOCK_ENV, Net, Scenario

    net = Net(int(os.environ.get(BLOCK_ENV, "1")))
    addresses = ips(n)
    listings: dict[str, dict[str, str]] = {"bl.spamcop.net": {}, "b.barracudacentral.org": {}}
    for ip in addresses[::20]:  # 5 % listed somewhere
        listings["bl.spamcop.net"][ip] = "127.0.0.2"
    forward = [(f"h{i}.{DOMAIN}.", "A", ip) for i, ip in enumerate(addresses)]
    forward += [("@", "TXT", '"v=spf1 ip4:198.18.0.0/15 -all"')]
    forward += [("_dmarc", "TXT", f'"v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}"')]
    reverse = [
        (".".join(reversed(ip.split(".")[2:])), "PTR", f"h{i}.{DOMAIN}.")
        for i, ip in enumerate(addresses)
    ]
    scenario = Scenario(
        hosts=(),
        net=net,
        listings=listings,
        extra_records={DOMAIN: tuple(forward), "18.198.in-addr.arpa": tuple(reverse)},
    )
    dns = SandboxDns(state, net)
    dns.configure(scenario)
    proc.spawn(dns.knot_argv(), state / "knot.log")
    if not dns.answering(30):
        raise SystemExit(
            f"bench: Knot did not answer on {net.dns}: {(state / 'knot.log').read_text()[-800:]}"
        )
    return net.dns


def fleet_file(path: Path, nameserver: str, n: int) -> Path:
    lines = ["[fleet]", "sandbox = true", f'nameservers = ["{nameserver}"]', "", "[defaults]"]
    lines += ['ssh_user = "root"']
    for i, ip in enumerate(ips(n)):
        lines += [
            "",
            f"[hosts.h{i}]",
            f'ssh_host = "{ip}"',
            f'hostname = "h{i}.{DOMAIN}"',
            f'public_ipv4 = "{ip}"',
            f'domains = [{{ name = "{DOMAIN}", selector = "h{i}" }}]',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_fleet_run(fleet: Path, db: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [str(MAILMEND), "watch", "--once", "--quiet", "--fleet", str(fleet), "--db", str(db)],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: mailmend watch failed: {done.stderr}")
    conn = sqlite3.connect(db)
    started, finished, db_seconds, db_cpu, results, unknown = conn.execute(
        "SELECT started, finished, db_seconds, db_cpu_seconds, results, unknown FROM runs "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "wall": wall,
        "cpu": cpu,
        "db_cpu": db_cpu,
        "checks": finished - started,
        "db": db_seconds,
        "results": results,
        "unknown": unknown,
    }


def check_only_run(fleet: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(MAILMEND), "check", "--fleet", str(fleet), "--format", "json"],
        capture_output=True, check=False, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


# --- 1,000 runs of 50 hosts ----------------------------------------------------------------------


def synthetic_reports(hosts: int, rng: random.Random, listed: set[tuple[int, str]]) -> list[Any]:
    from mailmend.checks.blocklists import load_blocklists
    from mailmend.checks.host import HostReport
    from mailmend.checks.result import CheckResult, Status

    lists = [bl for bl in load_blocklists() if bl.target.value == "ip"]
    for _ in range(2):  # listings come and go
        if rng.random() < 0.5:
            listed.add((rng.randrange(hosts), rng.choice(lists).zone))
        if listed and rng.random() < 0.5:
            listed.discard(rng.choice(sorted(listed)))
    reports = []
    for i, ip in enumerate(ips(hosts)):
        results = [
            CheckResult("ptr", Status.PASS, ip, f"PTR of {ip} is h{i}.{DOMAIN}"),
            CheckResult("fcrdns", Status.PASS, ip, f"{ip} <-> h{i}.{DOMAIN} confirmed"),
            CheckResult("spf", Status.PASS, DOMAIN, f"SPF of {DOMAIN} authorises {ip}"),
            CheckResult("dkim", Status.PASS, f"h{i}._domainkey.{DOMAIN}", "DKIM key published"),
            CheckResult("dmarc", Status.WARN, f"_dmarc.{DOMAIN}", "p=none"),
        ]
        for bl in lists:
            on = (i, bl.zone) in listed
            status = (
                Status.UNKNOWN if rng.random() < 0.001 else (Status.FAIL if on else Status.PASS)
            )
            summary = (
                f"{ip} is listed on {bl.name}: x" if on else f"{ip} is not listed on {bl.name}"
            )
            extra = {"zone": bl.zone, "listed": on, "codes": ["127.0.0.2"] if on else [],
                     "list_kind": "block"}  # fmt: skip
            results.append(CheckResult("dnsbl", status, ip, summary, extra=extra))
        reports.append(HostReport(f"h{i}", ip, f"h{i}.{DOMAIN}", results, (ip,)))
    return reports


def many_runs(db_path: Path, runs: int, hosts: int) -> dict[str, float]:
    from mailmend.checks.host import FleetReport
    from mailmend.watch.runner import Settings, run_once
    from mailmend.watch.state import WatchDb

    rng = random.Random(7)
    listed: set[tuple[int, str]] = set()
    db = WatchDb.open(db_path)
    settings = Settings(keep=None, remind=86400.0, quiet=True)
    db_times = []
    for n in range(runs):
        reports = synthetic_reports(hosts, rng, listed)
        outcome = run_once(lambda r=reports: FleetReport(r), db, settings)
        db_times.append(outcome.db_seconds)
        if n % 100 == 99:
            print(f"bench: {n + 1} runs of {hosts} hosts recorded", file=sys.stderr, flush=True)
    results = db.conn.execute("SELECT sum(results) FROM runs").fetchone()[0]
    result_rows = db.conn.execute("SELECT count(*) FROM results").fetchone()[0]
    listings = db.conn.execute("SELECT count(*) FROM listings").fetchone()[0]
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {
        "size": db_path.stat().st_size,
        "results": results,
        "result_rows": result_rows,
        "listings": listings,
        "db_median": statistics.median(db_times),
        "db_p95": statistics.quantiles(db_times, n=20)[-1],
        "db_max": max(db_times),
    }


def history_times(db_path: Path) -> dict[str, float]:
    from mailmend.watch.history import render_history
    from mailmend.watch.state import WatchDb

    db = WatchDb.open(db_path)
    inproc = []
    for _ in range(5):
        start = time.perf_counter()
        now = time.time()
        text = render_history(db.listings(None, now - 30 * 86400), now, "table")
        inproc.append(time.perf_counter() - start)
    db.close()
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(
            [str(MAILMEND), "watch", "history", "--db", str(db_path), "--since", "30d"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        cli.append(time.perf_counter() - start)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - start
    return {
        "inproc": statistics.median(inproc),
        "cli": statistics.median(cli),
        "python": python,
        "lines": float(text.count("\n")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ips", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench-watch.md")
    args = parser.parse_args()
    in_own_namespace()
    tmp = Path(tempfile.mkdtemp(prefix="mailmend-bench-watch-"))
    nameserver = start_dns(tmp / "state", args.ips)
    fleet = fleet_file(tmp / "fleet.toml", nameserver, args.ips)
    check_alone = [check_only_run(fleet) for _ in range(2)]
    fleet_runs = [one_fleet_run(fleet, tmp / "fleet.db") for _ in range(5)]
    print(f"bench: fleet runs {fleet_runs}", file=sys.stderr)
    many = many_runs(tmp / "many.db", args.runs, args.hosts)
    history = history_times(tmp / "many.db")
    write(args, check_alone, fleet_runs, many, history)
    return 0


def write(
    args: argparse.Namespace,
    check_alone: list[float],
    fleet_runs: list[dict[str, float]],
    many: dict[str, float],
    history: dict[str, float],
) -> None:
    rows = []
    for n, run in enumerate(fleet_runs, 1):
        share = run["db"] / (run["checks"] + run["db"])
        first = " (every key new)" if n == 1 else ""
        rows.append(
            f"| {n}{first} | {run['wall']:.2f} s | {run['checks']:.2f} s | {run['db']:.3f} s | "
            f"{share:.1%} | {run['cpu']:.2f} s | {run['db_cpu']:.3f} s | "
            f"{run['db_cpu'] / run['cpu']:.1%} |"
        )
    header = (
        "| `watch --once` run | wall: process | checks | database | share "
        "| CPU: process | database | share |\n|---|---|---|---|---|---|---|---|"
    )
    results = f"{int(fleet_runs[0]['results']):,} results ({int(fleet_runs[0]['unknown'])} unknown)"
    many_row = (
        f"| {many['size'] / 1e6:.1f} MB | {int(many['results']):,} ({int(many['result_rows'])}) | "
        f"{int(many['listings'])} | "
        f"{many['db_median'] * 1000:.1f} ms / {many['db_p95'] * 1000:.1f} ms / "
        f"{many['db_max'] * 1000:.0f} ms |"
    )
    history_row = (
        f"| {history['inproc'] * 1000:.1f} ms ({int(history['lines'])} lines) | "
        f"{history['cli'] * 1000:.0f} ms | {history['python'] * 1000:.0f} ms |"
    )
    text = f"""# Benchmark: `mailmend watch`

Measured {today()} on {machine()}, by `bench/watch.py` (one command; the figures below are
its output). The machine's 2 cores are shared with other work: compare side by side.

## One run over {args.ips:,} IPs x the 22 lists (sandbox Knot on loopback)

A fleet of {args.ips:,} check-only hosts (one IPv4 each, a PTR, one domain with SPF, DMARC, a
DKIM selector), every check of `mailmend check` including the 22 lists of checks/blocklists.toml.
`mailmend check --fleet` on the same fleet took {check_alone[0]:.2f} s and {check_alone[1]:.2f} s
(process wall time, JSON to a pipe).

Each run: {results}.

{header}
{chr(10).join(rows)}

"database" is the time the watcher records for itself (`runs.db_seconds`, `db_cpu_seconds`):
reading the known state, comparing, writing the results, known state, listings, events and flags
in one transaction, and pruning. The wall-clock share is (database) / (checks + database); the
CPU share is the database's CPU time over the whole process's (`getrusage`), which other work
on the machine disturbs less. Goal: under 10 % of a run.

## {args.runs:,} runs of {args.hosts} hosts

{args.hosts} hosts x (ptr, fcrdns, spf, dkim, dmarc and the 19 IP lists), listings coming and going,
recorded through the real run path (`runner.run_once`, results made by the benchmark):

| database size | results kept (rows) | listings | database time per run (median / 95th pct / max) |
|---|---|---|---|
{many_row}

## `watch history` on that database

| in-process (median of 5) | `watch history` process (median of 3) | `python -c pass` |
|---|---|---|
{history_row}

Goal: history answers in under 100 ms (the in-process figure; the process adds Python's start
and imports).
"""
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
