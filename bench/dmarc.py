"""DMARC reports: import throughput and peak memory, then ``mailmend dmarc sources`` time.

One command; writes docs/bench-dmarc.md::

    .venv/bin/python bench/dmarc.py                       # 10,000 reports, ~1M records
    .venv/bin/python bench/dmarc.py --reports 500 --out /tmp/x.md   # a quick look

Generates RFC 7489 appendix C reports (tests/dmarc_reports.py) in a temp dir: 20 domains,
8 reporting organisations, 100 records each (a third of the files XML, a third zip, a third
gzip), sources drawn from each domain's fleet hosts, an included mail service's range and a
crowd of unknown IPs. Then times, as an admin runs them, ``mailmend dmarc import DIR`` (peak
RSS of that process) and ``mailmend dmarc sources --format json`` (SPF and PTR answered by
Knot on 127.0.0.1 serving the domains' SPF records and reverse zones; nothing leaves
loopback; ``apt-get install knot``), plus the database query alone. The temp dir is deleted
afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine, today  # noqa: E402
from bench.dnsbl import free_port, start_knot  # noqa: E402
from mailmend.dmarc.db import open_dmarc_db, source_stats, totals  # noqa: E402
from tests.dmarc_reports import Row, gzipped, report_xml, zipped  # noqa: E402

MAILMEND = Path(sys.executable).with_name("mailmend")
DOMAINS = [f"d{i:02d}.example" for i in range(20)]
ORGS = ["google.com", "Yahoo", "Outlook.com", "Mail.Ru", "web.de", "GMX", "Fastmail", "Comcast"]
SERVICE_NET = "198.51.100"
DAY = 86_400


def fleet_ip(domain_index: int, n: int) -> str:
    return f"192.0.2.{domain_index * 3 + n + 1}"


def pools(rng: random.Random) -> dict[str, list[tuple[str, int]]]:
    """Per domain: (ip, weight) - 3 fleet hosts, 30 service IPs, 60 unknown IPs."""
    out: dict[str, list[tuple[str, int]]] = {}
    for i, domain in enumerate(DOMAINS):
        ips = [(fleet_ip(i, n), 50) for n in range(3)]
        ips += [(f"{SERVICE_NET}.{rng.randrange(1, 255)}", 10) for _ in range(30)]
        ips += [(f"203.0.113.{rng.randrange(1, 255)}", 1) for _ in range(30)]
        ips += [(f"100.64.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}", 1) for _ in range(30)]
        out[domain] = ips
    return out


def write_reports(directory: Path, count: int, per_report: int, seed: int = 7489) -> int:
    """``count`` report files; returns the number of records written."""
    rng = random.Random(seed)
    sources = pools(rng)
    now = int(time.time())
    records = 0
    for n in range(count):
        domain = DOMAINS[n % len(DOMAINS)]
        org = ORGS[(n // len(DOMAINS)) % len(ORGS)]
        ips, weights = zip(*sources[domain], strict=True)
        rows = []
        for ip in rng.choices(ips, weights, k=per_report):
            known = not ip.startswith(("203.", "100.64."))
            ok = "pass" if known or rng.random() < 0.1 else "fail"
            rows.append(Row(ip, rng.randrange(1, 50), domain, dkim=ok, spf=ok if known else "fail"))
        records += len(rows)
        begin = now - (1 + n % 28) * DAY
        xml = report_xml(org, f"{org}-{n}", domain, rows, begin=begin, end=begin + DAY - 1)
        base = f"{org}!{domain}!{begin}!{begin + DAY - 1}!{n}"
        if n % 3 == 0:
            (directory / f"{base}.xml").write_bytes(xml)
        elif n % 3 == 1:
            (directory / f"{base}.zip").write_bytes(zipped(xml, f"{base}.xml"))
        else:
            (directory / f"{base}.xml.gz").write_bytes(gzipped(xml))
    return records


def write_zones(directory: Path) -> list[str]:
    """Zone files for Knot: each domain's SPF, the mail service's, and reverse zones for the
    unknown sources (one PTR; NXDOMAIN for the rest). Returns the zone names."""
    zones: dict[str, list[str]] = {}
    for i, domain in enumerate(DOMAINS):
        fleet = " ".join(f"ip4:{fleet_ip(i, n)}" for n in range(3))
        zones[domain] = [f'@ TXT "v=spf1 {fleet} include:_spf.mailservice.test ~all"']
    zones["mailservice.test"] = [f'_spf TXT "v=spf1 ip4:{SERVICE_NET}.0/24 -all"']
    zones["113.0.203.in-addr.arpa"] = ["7 PTR mail.forgotten.test."]
    zones["64.100.in-addr.arpa"] = []
    for zone, records in zones.items():
        head = [f"$ORIGIN {zone}.", "$TTL 300", f"@ SOA ns.{zone}. h.{zone}. 1 3600 600 86400 300",
                "@ NS ns.bench.test.", f"probe.{zone}. A 127.0.0.1"]  # fmt: skip
        (directory / f"{zone}.zone").write_text("\n".join(head + records) + "\n")
    return list(zones)


def write_fleet(path: Path, nameserver: str) -> None:
    lines = ["[fleet]", "sandbox = true", f'nameservers = ["{nameserver}"]', ""]
    for i, domain in enumerate(DOMAINS):
        for n in range(3):
            name = f"mx{i * 3 + n + 1}"
            lines += [
                f"[hosts.{name}]",
                f'ssh_host = "127.0.0.{i * 3 + n + 1}"',
                f'hostname = "{name}.{domain}"',
                f'public_ipv4 = "{fleet_ip(i, n)}"',
                f'domains = [{{ name = "{domain}", selector = "{name}" }}]',
                "",
            ]
    path.write_text("\n".join(lines))


@dataclass(frozen=True)
class Timed:
    seconds: float  # wall clock
    cpu: float  # user + system seconds of the child
    peak_kib: int  # max RSS of the children so far (the first child: its own)
    load: float  # 1-minute load average when it started (2 cores shared with others)
    proc: subprocess.CompletedProcess[str]


def timed(argv: list[str], env: dict[str, str]) -> Timed:
    """One child process, timed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(seconds, cpu, after.ru_maxrss, load, proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=100, help="records per report")
    parser.add_argument("--runs", type=int, default=3, help="runs of sources (median)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench-dmarc.md"))
    args = parser.parse_args()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("MAILMEND_FLEET", None)
    with tempfile.TemporaryDirectory(prefix="mailmend-bench-dmarc-") as tmpdir:
        tmp = Path(tmpdir)
        reports = tmp / "reports"
        reports.mkdir()
        started = time.perf_counter()
        records = write_reports(reports, args.reports, args.records)
        generated = time.perf_counter() - started
        size = sum(p.stat().st_size for p in reports.iterdir())
        db = tmp / "state" / "watch.db"
        imported = timed([str(MAILMEND), "dmarc", "import", "--db", str(db), str(reports)], env)
        print(imported.proc.stdout.strip(), file=sys.stderr)
        conn = open_dmarc_db(db)
        kept = totals(conn)
        since = int(time.time()) - 30 * DAY
        query = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            pairs = len(source_stats(conn, since))
            query.append(time.perf_counter() - t0)
        conn.close()
        zones = tmp / "zones"
        (zones / "db").mkdir(parents=True)
        names = write_zones(zones)
        port = free_port()
        knot = start_knot(zones, port, names, probe=f"probe.{names[0]}.")
        try:
            fleet = tmp / "fleet.toml"
            write_fleet(fleet, "127.0.0.1")
            runs = []
            for _ in range(args.runs):
                argv = [str(MAILMEND), "dmarc", "sources", "--db", str(db), "--fleet",
                        str(fleet), "--nameserver", f"127.0.0.1:{port}", "--format",
                        "json"]  # fmt: skip
                runs.append(timed(argv, env))
            data = json.loads(runs[-1].proc.stdout)
        finally:
            knot.terminate()
            knot.wait()
        classes: dict[str, int] = {}
        for domain in data["domains"]:
            for source in domain["sources"]:
                classes[source["class"]] = classes.get(source["class"], 0) + 1
        db_mb = db.stat().st_size / 1e6
    text = render(
        args, records, size, generated, imported, kept, db_mb, pairs, query, runs, classes
    )
    Path(args.out).write_text(text)
    print(text)
    return 0


def render(
    args: argparse.Namespace,
    records: int,
    size: int,
    generated: float,
    imported: Timed,
    kept: tuple[int, int],
    db_mb: float,
    pairs: int,
    query: list[float],
    runs: list[Timed],
    classes: dict[str, int],
) -> str:
    q = statistics.median(query)
    s = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    by_class = ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
    wall = imported.seconds
    rows = [
        ("`mailmend dmarc import DIR` (one process: read, unpack, parse, store)",
         f"{wall:.1f} s wall, {imported.cpu:.1f} s CPU (load {imported.load:.1f} at the start): "
         f"{records / wall:,.0f} records/s, {args.reports / wall:,.0f} reports/s"),
        ("peak memory (max RSS) of that process", f"{imported.peak_kib / 1024:.0f} MiB"),
        ("kept", f"{kept[0]:,} reports, {kept[1]:,} records; database {db_mb:.0f} MB"),
        (f"the sources query alone ({pairs:,} domain x source pairs), median of {len(query)}",
         f"{q * 1000:.0f} ms"),
        ("`mailmend dmarc sources --format json` (process start, query, SPF and PTR of each "
         f"source from Knot on loopback), median of {len(runs)}",
         f"{s.seconds:.2f} s wall, {s.cpu:.2f} s CPU (load {s.load:.1f} at the start)"),
        ("sources by class", by_class),
    ]  # fmt: skip
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return f"""# DMARC reports benchmark

`.venv/bin/python bench/dmarc.py` on {machine()}, {today()}.

Input: {args.reports:,} report files ({records:,} records; {size / 1e6:.0f} MB on disk, a third
each XML, zip and gzip), 20 domains, 8 organisations, generated in {generated:.1f} s (not
counted).

| step | figure |
|---|---|
{table}
"""


if __name__ == "__main__":
    sys.exit(main())
