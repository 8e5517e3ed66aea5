"""Wall time of ``mailmend mail-test`` on 1, 3 and 10 sandbox hosts, and where it goes.

    sudo .venv/bin/python bench/mailtest.py [--sizes 1 3 10] [--repeats 2]
                                            [--out docs/bench-mailtest.md]

Each size gets a fresh sandbox (its receiving provider included), every host deployed at the
default pacing (5 messages per minute) with its SPF, DKIM and DMARC records published; then
``mail-test`` runs ``--repeats`` times against the provider's mailbox. Per message, the JSON
report gives the submission time (SSH + sendmail) and the wait until the message was found;
the host's Postfix log (``delays=a/b/c/d``) splits the wait into the time in the host's queue
(``a+b``: pickup, queue manager, pacing), the delivery (``c+d``: connection, TLS, transfer to
the provider, its milters included) and the rest (the provider's LMTP and sieve, and the
2-second IMAP polling). Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import in_own_namespace, machine, today
from sandbox.control import Sandbox
from sandbox.scenario import Net
from tests.e2e.mailflow import deploy_mail, mail_records, publish

MAILMEND = Path(sys.executable).with_name("mailmend")
_DELAYS = re.compile(r"to=<([^>]+)>.*delays=([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+)")


def host_delays(sb: Sandbox, to: str) -> list[tuple[float, float, float, float]]:
    """``delays=a/b/c/d`` of the last delivery to ``to`` on each host."""
    out = []
    for h in sb.hosts():
        log = sb.ssh(h, "grep 'status=sent' /var/log/postfix.log || true")
        found = [m for m in _DELAYS.finditer(log) if m[1] == to]
        if found:
            last = found[-1]
            out.append((float(last[2]), float(last[3]), float(last[4]), float(last[5])))
    return out


def run_once(sb: Sandbox, fleet: Path) -> dict[str, float]:
    mb = sb.mailbox
    to = mb.address_of("tester")
    argv = [
        str(MAILMEND), "mail-test", "--fleet", str(fleet), "--to", to, "--imap", mb.address,
        "--imap-user", to, "--imap-password", f"file:{mb.password_file('tester')}",
        "--imap-cafile", str(mb.ca_file), "--timeout", "120", "--format", "json",
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    doc = json.loads(proc.stdout)
    messages = doc["messages"]
    if not all(m["arrived"] for m in messages):
        raise SystemExit(f"a message did not arrive:\n{proc.stdout[-3000:]}")
    delays = host_delays(sb, to)
    submit = statistics.mean(m["timings"]["submit"] for m in messages)
    wait = statistics.mean(m["timings"]["wait"] for m in messages)
    queue = statistics.mean(a + b for a, b, _c, _d in delays)
    delivery = statistics.mean(c + d for _a, _b, c, d in delays)
    return {
        "wall": wall,
        "submit": submit,
        "wait": wait,
        "queue": queue,
        "delivery": delivery,
        "rest": wait - queue - delivery,
        "max_wait": max(m["timings"]["wait"] for m in messages),
        "status_pass": sum(m["status"] == "pass" for m in messages),
        "messages": len(messages),
    }


def measure(n: int, block: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mailmend-bench-") as tmp:
        sb = Sandbox(Path(tmp) / "sb", Net(block))
        t0 = time.monotonic()
        sb.up(n)
        up = time.monotonic() - t0
        try:
            hosts = sb.hosts()
            fleet = deploy_mail(sb, Path(tmp), hosts, rate=5)
            publish(sb, {h.domain: mail_records(sb, h) for h in hosts})
            runs = [run_once(sb, fleet) for _ in range(repeats)]
        finally:
            sb.down()
    row = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    row["up"] = up
    row["walls"] = [round(r["wall"], 1) for r in runs]  # type: ignore[assignment]
    return row


def render(rows: dict[int, dict[str, float]], repeats: int) -> str:
    lines = [
        "# `mailmend mail-test` benchmark",
        "",
        f"Machine: {machine()}. Date: {today()}.",
        "Command: `sudo .venv/bin/python bench/mailtest.py --out docs/bench-mailtest.md`.",
        f"Medians of {repeats} runs per size, each host sending one message (one domain) at the",
        "default pacing (5 per minute), to the sandbox's receiving provider; hosts in parallel.",
        "",
        "| hosts | wall time | runs | submit (SSH + sendmail) | wait until found "
        "| in the host's queue | delivery to the provider | provider + IMAP polling "
        "| passed | vs 1 host |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = rows[min(rows)]["wall"]
    for n, r in sorted(rows.items()):
        lines.append(
            f"| {n} | {r['wall']:.1f} s | {r['walls']} | {r['submit']:.2f} s | {r['wait']:.1f} s "
            f"(max {r['max_wait']:.1f}) | {r['queue']:.2f} s | {r['delivery']:.2f} s | "
            f"{r['rest']:.1f} s | {int(r['status_pass'])}/{int(r['messages'])} | "
            f"{r['wall'] / base:.2f}x |"
        )
    starts = ", ".join(f"{n} hosts {r['up']:.1f} s" for n, r in sorted(rows.items()))
    lines += ["", f"Sandbox start (provider included, images cached): {starts}", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--block", type=int, default=7, help="sandbox block (127.B.x.x)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    in_own_namespace()
    rows = {n: measure(n, args.block, args.repeats) for n in args.sizes}
    text = render(rows, args.repeats)
    print(text)
    if args.out:
        notes = ""
        if args.out.exists() and "## Notes" in args.out.read_text():
            notes = "\n## Notes" + args.out.read_text().split("## Notes", 1)[1]
        args.out.write_text(text + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
