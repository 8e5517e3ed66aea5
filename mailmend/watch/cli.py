"""``mailmend watch``: the command line (registered in :mod:`mailmend.cli.main`).

    mailmend watch --once [--db PATH] [--alerts FILE] [--webhook URL] [--metrics-file PATH]
    mailmend watch --every 15m [--serve 127.0.0.1:9211] ...
    mailmend watch history [--host H] [--since 30d] [--format table|json]
    mailmend watch status [--remote] [--format table|json]

Exit codes: 0 the run (or query) went through, whatever it found (alerts say what changed);
2 bad input or an unusable database (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mailmend.cli.errors import EXIT_OK
from mailmend.cli.options import add_fleet_argument, seconds
from mailmend.rules import port_problem
from mailmend.store import StoreError, default_db_path, exclusive

ACTIONS = ("run", "history", "status")
#: Where the deploy (deploys/watch.py) keeps the monitor host's database.
REMOTE_DB = "/var/lib/mailmend/watch.db"
DEADLINE = 120.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``24h``, ``90d``, ``2w`` -> seconds; ValueError says what is wrong."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a duration: give a number and a unit, like 15m, 24h, 90d"
        )
    return float(int(match.group(1)) * _UNITS[match.group(2)])


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:9211`` or ``[::1]:9211`` -> (address, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or port_problem(port):
        raise ValueError(f"{text!r}: give ADDRESS:PORT, like 127.0.0.1:9211")
    return host, int(port)


def _convert(args: argparse.Namespace) -> None:
    """Durations and addresses, checked here to give one line (exit 2), not argparse's usage."""
    from mailmend.cli.errors import UsageError

    for name, parse in (
        ("every", parse_duration),
        ("keep", parse_duration),
        ("remind", parse_duration),
        ("since", parse_duration),
        ("alert_deadline", parse_duration),
        ("serve", parse_address),
    ):
        value = getattr(args, name)
        if isinstance(value, str):
            try:
                setattr(args, name, parse(value))
            except ValueError as err:
                raise UsageError(f"--{name}: {err}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        default="run",
        help="run the checks (default), show the listings' history, or the watcher's status",
    )
    run = parser.add_argument_group("running")
    when = run.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="one run, then exit (for a timer)")
    when.add_argument("--every", metavar="DURATION", help="run in a loop (15m), jittered")
    run.add_argument(
        "--keep", default="90d", metavar="DURATION",
        help="keep this much history (default 90d)",
    )  # fmt: skip
    run.add_argument(
        "--remind", default="24h", metavar="DURATION",
        help="remind of a listing that lasts this long since the last alert (default 24h)",
    )  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="print no event lines")
    alerts = parser.add_argument_group("alerts (on change only)")
    alerts.add_argument("--alerts", metavar="FILE", help="alert channels ([[alert]] tables)")
    alerts.add_argument(
        "--alert-deadline", default="2m", metavar="DURATION",
        help="a run waits this long for its alerts; the rest go with the next run (default 2m)",
    )  # fmt: skip
    alerts.add_argument(
        "--webhook", metavar="URL", action="append", default=[],
        help="POST each event as JSON with a text field (Slack, Mattermost); repeatable",
    )  # fmt: skip
    alerts.add_argument(
        "--alert-command", metavar="CMD", action="append", default=[],
        help="run CMD with each event as JSON on stdin; repeatable",
    )  # fmt: skip
    metrics = parser.add_argument_group("metrics (Prometheus)")
    metrics.add_argument("--metrics-file", metavar="PATH", help="write them here (textfile)")
    metrics.add_argument("--serve", metavar="ADDR:PORT", help="serve /metrics (with --every)")
    what = parser.add_argument_group("what to watch (as mailmend check)")
    add_fleet_argument(what)
    what.add_argument(
        "--host", metavar="NAME", action="append", default=[],
        help="only this host (repeatable); for history: only its listings",
    )  # fmt: skip
    what.add_argument("--nameserver", metavar="IP[:PORT]", action="append", default=[])
    what.add_argument(
        "--dqs-key-file", metavar="FILE", help="Spamhaus DQS key in a file (or $MAILMEND_DQS_KEY)"
    )
    what.add_argument("--dqs-key", metavar="KEY", help="the DQS key itself (visible in ps)")
    what.add_argument("--timeout", type=seconds, metavar="SECONDS", help="per-query timeout")
    what.add_argument(
        "--deadline", type=seconds, default=DEADLINE, metavar="SECONDS",
        help=f"hosts not done by then are unknown (default {DEADLINE:g}; a DNS outage "
        "otherwise makes a run last minutes)",
    )  # fmt: skip
    out = parser.add_argument_group("database and output")
    out.add_argument("--db", metavar="PATH", help=f"the database (default {default_db_path()})")
    out.add_argument(
        "--since", default="30d", metavar="DURATION",
        help="history: listings seen in this period (default 30d)",
    )  # fmt: skip
    out.add_argument("--format", choices=("table", "json"), default="table")
    out.add_argument(
        "--remote", action="store_true", help="status: ask the fleet's monitor host over SSH"
    )


def run(args: argparse.Namespace) -> int:
    from mailmend.cli.errors import UsageError

    _convert(args)
    db_path = Path(args.db) if args.db else default_db_path()
    try:
        if args.action == "history":
            return _history(args, db_path)
        if args.action == "status":
            return _status(args, db_path)
        return _run(args, db_path)
    except StoreError as err:
        raise UsageError(str(err)) from None


def _run(args: argparse.Namespace, db_path: Path) -> int:
    from mailmend.checks.host import FleetReport
    from mailmend.cli.check import check_reports, targets_from_args
    from mailmend.cli.errors import UsageError
    from mailmend.watch import runner
    from mailmend.watch.metrics import Metrics
    from mailmend.watch.state import WatchDb

    if not args.once and args.every is None:
        raise UsageError("give --once (for a timer or cron) or --every DURATION (a loop)")
    if args.serve and args.once:
        raise UsageError("--serve needs a running watcher: use it with --every, not --once")
    channels = _channels(args)
    for name, value in (("ip", []), ("hostname", None), ("domain", []), ("dkim_key", [])):
        setattr(args, name, value)
    args.no_dnsbl = False
    targets = targets_from_args(args)
    metrics = Metrics(Path(args.metrics_file) if args.metrics_file else None)
    if args.metrics_file:
        _check_writable(Path(args.metrics_file))
    settings = runner.Settings(
        args.keep, args.remind, channels, metrics, args.quiet, args.alert_deadline
    )
    with exclusive(db_path, "watch"):
        db = WatchDb.open(db_path)
        try:
            if args.serve:
                try:
                    metrics.serve(*args.serve)
                except OSError as err:
                    raise UsageError(
                        f"--serve {args.serve[0]}:{args.serve[1]}: {err.strerror}"
                    ) from None

            def check() -> FleetReport:
                return check_reports(args, targets)

            if args.once:
                runner.run_once(check, db, settings)
            else:
                runner.loop(check, db, settings, args.every)
        finally:
            db.close()
    return EXIT_OK


def _check_writable(path: Path) -> None:
    from mailmend.cli.errors import UsageError

    if not path.parent.is_dir():
        raise UsageError(f"--metrics-file: {path.parent} is not a directory")
    if path.is_dir():
        raise UsageError(f"--metrics-file: {path} is a directory")


def _channels(args: argparse.Namespace) -> list[Any]:
    from mailmend.cli.errors import UsageError
    from mailmend.watch.alerts import AlertConfigError, Command, Webhook, check_url, load_alerts

    try:
        channels: list[Any] = load_alerts(Path(args.alerts)) if args.alerts else []
        channels += [Webhook(check_url(url)) for url in args.webhook]
    except AlertConfigError as err:
        raise UsageError(str(err)) from None
    for text in args.alert_command:
        try:
            argv = shlex.split(text)
        except ValueError as err:
            raise UsageError(f"--alert-command: {err}") from None
        if not argv:
            raise UsageError("--alert-command: empty command")
        channels.append(Command(tuple(argv)))
    return channels


def _open_existing(db_path: Path) -> Any:
    from mailmend.cli.errors import UsageError
    from mailmend.watch.state import WatchDb

    db = WatchDb.open_existing(db_path)
    if db is None:
        raise UsageError(f"no watch database at {db_path}: run `mailmend watch --once` first")
    return db


def _history(args: argparse.Namespace, db_path: Path) -> int:
    from mailmend.watch.history import render_history

    db = _open_existing(db_path)
    try:
        now = time.time()
        items = []
        for host in args.host or [None]:
            items += db.listings(host, now - args.since)
        items.sort(key=lambda i: (i.first_seen, i.host, i.subject, i.zone))
        sys.stdout.write(render_history(items, now, args.format))
    finally:
        db.close()
    return EXIT_OK


def _status(args: argparse.Namespace, db_path: Path) -> int:
    from mailmend.cli.errors import UsageError
    from mailmend.watch.history import render_status, status_json

    if args.remote:
        data, where = _remote_status(args)
    else:
        db = _open_existing(db_path)
        try:
            data, where = status_json(db, time.time()), ""
        finally:
            db.close()
    try:
        sys.stdout.write(render_status(data, args.format, where))
    except (KeyError, TypeError, ValueError, AttributeError):  # a remote answer, not ours
        raise UsageError(f"{where}: the watcher's status has an unexpected shape") from None
    return EXIT_OK


def _remote_status(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``mailmend watch status --format json`` on the fleet's monitor host, over SSH."""
    from mailmend.checks.escape import visible
    from mailmend.cli.errors import UsageError
    from mailmend.cli.options import load_fleet_file
    from mailmend.ssh import ssh_argv

    fleet = load_fleet_file(args.fleet, "watch")
    name = fleet.settings.monitor_host
    if not name:
        raise UsageError(f'{fleet.path}: no monitor host: set monitor_host = "NAME" in [fleet]')
    spec = next(h for h in fleet.hosts if h.name == name)
    remote = ["mailmend", "watch", "status", "--format", "json", "--db", args.db or REMOTE_DB]
    argv = ssh_argv(spec, shlex.join(remote))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{name}: no answer over SSH within 60 s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise UsageError(f"{name}: {visible(last)}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise UsageError(
            f"{name}: the watcher's status is not JSON (is mailmend installed?)"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: unexpected status from the watcher")
    return data, name
