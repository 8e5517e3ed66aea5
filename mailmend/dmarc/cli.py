"""``mailmend dmarc``: read aggregate reports (fetch, import) and show who sends (sources).

Exit codes (docs/dmarc.md): 0 done; 1 some input was refused (each named on stderr) and the
rest kept, or the IMAP server stopped answering (``fetch``: one line; what was read is kept);
2 usage or input error (bad option, unreadable path, IMAP login refused, bad ``--since``),
nothing changed.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailmend.cli.errors import EXIT_FAIL, EXIT_OK, UsageError, report_usage_error
from mailmend.cli.options import seconds

# The stage rule's module is light (no XML, no IMAP); the rest is imported when a command runs,
# so building mailmend's parser costs little.
from mailmend.dmarc.stage import StageRule

if TYPE_CHECKING:
    from mailmend.dmarc.ingest import IngestResult

EXIT_REFUSED = EXIT_FAIL
EXIT_NO_ANSWER = EXIT_FAIL  # the IMAP server stopped answering: what was read is kept
FETCH_DEADLINE = 300.0  # seconds for a whole fetch (a rerun goes on where it stopped)
FORMATS = ("table", "json", "html")
_SINCE = re.compile(r"^(\d{1,5})([hdw])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``2w`` ago, or a date ``YYYY-MM-DD`` (UTC)."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(text.strip())
    if match:
        unit = {"h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(
            f"--since {text!r}: give a duration like 30d, 12h or 2w, or a date YYYY-MM-DD"
        ) from None
    return day


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dmarc_action", metavar="ACTION", required=True)
    fetch = sub.add_parser(
        "fetch", help="read report mails from an IMAP folder", description="Read report "
        "mails from an IMAP folder (IMAPS) and keep their reports; a second fetch reads only "
        "new messages.",
    )  # fmt: skip
    fetch.add_argument("--imap", metavar="HOST[:PORT]", required=True, help="IMAPS server")
    fetch.add_argument("--imap-user", metavar="USER", required=True)
    fetch.add_argument(
        "--imap-password", metavar="env:NAME|file:PATH", required=True,
        help="where the password is (never the password itself)",
    )  # fmt: skip
    fetch.add_argument("--folder", default="INBOX", help="folder to read (default INBOX)")
    fetch.add_argument("--move-to", metavar="FOLDER", help="move read report mails there")
    fetch.add_argument("--cafile", metavar="FILE", help="extra CA to trust (a private server)")
    fetch.add_argument(
        "--timeout", type=seconds, default=30.0, metavar="SECONDS",
        help="each wait for the server at most this long (30)",
    )  # fmt: skip
    fetch.add_argument(
        "--deadline", type=seconds, default=FETCH_DEADLINE, metavar="SECONDS",
        help=f"the whole fetch ends by then; what was read is kept ({FETCH_DEADLINE:g})",
    )  # fmt: skip
    _db_argument(fetch)
    imp = sub.add_parser(
        "import", help="read report files (XML, .zip, .gz, mails) and directories",
        description="Keep the reports in files and directories (XML, .zip, .gz, or whole "
        "report mails); each report once.",
    )  # fmt: skip
    imp.add_argument("paths", nargs="+", metavar="PATH", help="file or directory")
    _db_argument(imp)
    src = sub.add_parser(
        "sources", help="who sends as each domain: per source IP, classified",
        description="Per source IP: volume, DKIM and SPF results and alignment, disposition, "
        "reporting organisations, and a class: fleet host, a service the SPF includes, or "
        "unknown (with its PTR).",
    )  # fmt: skip
    src.add_argument("--domain", action="append", default=[], help="only this domain (repeatable)")
    src.add_argument("--since", default="30d", help="reports since (30d, 12h, 2w, YYYY-MM-DD)")
    src.add_argument("--format", choices=FORMATS, default="table")
    src.add_argument("--output", metavar="FILE", help="write there instead of stdout")
    src.add_argument(
        "--fleet", metavar="FILE", help="fleet file (default $MAILMEND_FLEET, ./fleet.toml)"
    )
    src.add_argument(
        "--nameserver", metavar="IP[:PORT]", action="append", default=[],
        help="resolver for SPF and PTR (default: the fleet's, else the system's)",
    )  # fmt: skip
    src.add_argument("--timeout", type=seconds, default=3.0, metavar="SECONDS", help="per query")
    src.add_argument(
        "--deadline", type=seconds, default=10.0, metavar="SECONDS",
        help="classify every source within this long (the rest: unknown)",
    )  # fmt: skip
    _db_argument(src)


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``mailmend records --dmarc-stage auto`` (the staging rule)."""
    rule = StageRule()
    group = parser.add_argument_group(
        "staging by reports (--dmarc-stage auto; docs/dmarc.md)",
        "move none -> quarantine -> reject only when the reports made under the published "
        "policy show every known source aligned and no unknown source with volume",
    )
    group.add_argument(
        "--dmarc-db", metavar="FILE", help="report database (default: that of mailmend dmarc)"
    )
    group.add_argument(
        "--dmarc-days", type=_whole(1, 365), default=rule.days, metavar="N",
        help=f"window: the reports of the last N days ({rule.days})",
    )  # fmt: skip
    group.add_argument(
        "--dmarc-min-reports", type=_whole(1, 100_000), default=rule.min_reports, metavar="M",
        help=f"at least M reports in the window ({rule.min_reports})",
    )  # fmt: skip
    group.add_argument(
        "--dmarc-min-orgs", type=_whole(1, 100), default=rule.min_orgs, metavar="K",
        help=f"from at least K organisations ({rule.min_orgs})",
    )  # fmt: skip
    group.add_argument(
        "--dmarc-aligned", type=_percent, default=rule.min_aligned, metavar="PCT",
        help=f"every known source aligned for at least PCT%% of its mail ({rule.min_aligned:g})",
    )  # fmt: skip
    group.add_argument(
        "--dmarc-unknown-max", type=_whole(0, 10**9), default=rule.unknown_max, metavar="N",
        help=f"no unknown source with more than N messages ({rule.unknown_max})",
    )  # fmt: skip
    group.add_argument(
        "--dmarc-pct-ramp", type=_ramp, default=(), metavar="P1,P2,...,100",
        help="enter each stage at pct=P1 and climb a step per run (e.g. 25,50,100; RFC 9989 "
        "drops pct, so receivers may ignore it)",
    )  # fmt: skip


def stage_rule(args: argparse.Namespace) -> StageRule:
    return StageRule(
        days=args.dmarc_days,
        min_reports=args.dmarc_min_reports,
        min_orgs=args.dmarc_min_orgs,
        min_aligned=args.dmarc_aligned,
        unknown_max=args.dmarc_unknown_max,
        ramp=args.dmarc_pct_ramp,
    )


def stage_db(args: argparse.Namespace) -> Any:
    """The report database for ``--dmarc-stage auto``; UsageError if it cannot be opened."""
    from mailmend.dmarc.db import open_dmarc_db_if_present
    from mailmend.store import StoreError, default_db_path

    path = Path(args.dmarc_db) if args.dmarc_db else default_db_path()
    try:
        conn = open_dmarc_db_if_present(path)
    except StoreError as err:
        raise UsageError(str(err)) from None
    if conn is None:
        raise UsageError(
            f"--dmarc-stage auto: no report database at {path}: import reports first "
            "(mailmend dmarc fetch / import), or give --dmarc-db FILE"
        )
    return conn


def check_db(args: argparse.Namespace) -> Any:
    """``mailmend check --format html``: the report database (``--dmarc-db``, or mailmend
    dmarc's when it exists), opened once; None when there is none (nothing is created)."""
    from mailmend.dmarc.db import open_dmarc_db_if_present
    from mailmend.store import StoreError, default_db_path

    path = Path(args.dmarc_db) if args.dmarc_db else default_db_path()
    try:
        conn = open_dmarc_db_if_present(path)
    except StoreError as err:
        raise UsageError(str(err)) from None
    if conn is None and args.dmarc_db:
        raise UsageError(f"--dmarc-db: no DMARC reports in {path} (mailmend dmarc import)")
    return conn


async def check_sections(resolver: Any, conn: Any, targets: Sequence[Any]) -> Any:
    """The DMARC section of each domain of ``targets`` (``checks.host.HostTarget``), from the
    database :func:`check_db` opened, asking DNS through the checks' own ``resolver``."""
    from mailmend.dmarc.render import render_sections
    from mailmend.dmarc.staging import fleet_views

    domains = sorted({d for t in targets for d, _selector in t.domains})
    fleet = {ip: t.name for t in targets for ip in t.ips}
    now = int(datetime.now(UTC).timestamp())
    since = now - 30 * 86_400
    views = await fleet_views(resolver, conn, domains, fleet, StageRule(), now, since)
    return render_sections(views)


def _whole(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (0 to 100)")
    return value


def _ramp(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give percentages like 25,50,100") from None
    try:
        StageRule(ramp=steps)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    return steps


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="FILE", help="database (default $XDG_STATE_HOME/mailmend/watch.db)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.dmarc_action == "import":
            return _import(args)
        if args.dmarc_action == "fetch":
            return _fetch(args)
        return _sources(args)
    except UsageError as err:
        return report_usage_error("dmarc", err)


def _db_path(args: argparse.Namespace) -> Path:
    from mailmend.store import default_db_path

    return Path(args.db) if args.db else default_db_path()


def _open(args: argparse.Namespace) -> Any:
    from mailmend.dmarc.db import open_dmarc_db
    from mailmend.store import StoreError

    try:
        return open_dmarc_db(_db_path(args))
    except StoreError as err:
        raise UsageError(str(err)) from None


def _progress(result: IngestResult) -> None:
    if result.inputs % 100 == 0:
        sys.stderr.write(f"\rread {result.inputs} input(s): {result.new} new report(s)")
        sys.stderr.flush()


def _finish(result: IngestResult, progress: bool) -> int:
    from mailmend.dmarc.render import printable

    if progress and result.inputs >= 100:
        sys.stderr.write("\n")
    for problem in result.problems:
        print(f"mailmend dmarc: refused: {printable(problem, 400)}", file=sys.stderr)
    print(result.summary())
    return EXIT_REFUSED if result.problems else EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from mailmend.dmarc.ingest import Ingester, import_paths, unreadable
    from mailmend.store import StoreError, exclusive

    paths = [Path(p) for p in args.paths]
    for path in paths:
        problem = unreadable(path)
        if problem:
            raise UsageError(problem)
    db = _db_path(args)
    conn = _open(args)
    progress = sys.stderr.isatty()
    try:
        with exclusive(db, "dmarc"):
            result = import_paths(Ingester(conn, progress=_progress if progress else None), paths)
    except StoreError as err:
        raise UsageError(str(err)) from None
    finally:
        conn.close()
    return _finish(result, progress)


def _fetch(args: argparse.Namespace) -> int:
    from mailmend import imap
    from mailmend.dmarc.fetch import fetch_reports
    from mailmend.dmarc.ingest import Ingester
    from mailmend.store import StoreError, exclusive

    deadline = imap.Deadline(args.deadline)
    try:
        host, port = imap.parse_imap_target(args.imap)
    except ValueError as err:
        raise UsageError(f"--imap: {err}") from None
    cafile = Path(args.cafile) if args.cafile else None
    db = _db_path(args)
    conn = _open(args)
    ingester = Ingester(conn)
    try:
        password = imap.resolve_password(args.imap_password)
        mailbox = f"{args.imap_user}@{host}:{port}/{args.folder}"
        with exclusive(db, "dmarc"), imap.session(
            host, port, args.imap_user, password, cafile=cafile, timeout=args.timeout,
            deadline=deadline,
        ) as client:  # fmt: skip
            moved = fetch_reports(client, args.folder, mailbox, ingester, args.move_to)
    except imap.ImapTimeout as err:
        return _timed_out(str(err), ingester.result)
    except (imap.ImapError, StoreError) as err:
        raise UsageError(str(err)) from None
    finally:
        conn.close()
    if args.move_to:
        print(f"moved {len(moved)} message(s) to {args.move_to}", file=sys.stderr)
    return _finish(ingester.result, False)


def _timed_out(reason: str, result: IngestResult) -> int:
    """The server stopped answering: the reports refused so far, then one line; exit 1."""
    from mailmend.dmarc.render import printable

    for problem in result.problems:
        print(f"mailmend dmarc: refused: {printable(problem, 400)}", file=sys.stderr)
    print(
        f"mailmend dmarc: {printable(reason, 300)}; what was read is kept: {result.summary()}; "
        "run it again when the server answers (it reads only what it has not kept)",
        file=sys.stderr,
    )
    return EXIT_NO_ANSWER


def _sources(args: argparse.Namespace) -> int:
    from mailmend.dmarc.db import domain_reports, source_stats
    from mailmend.dmarc.render import DomainView, render_html, render_json, render_table
    from mailmend.dmarc.sources import by_domain

    since = parse_since(args.since)
    if args.timeout <= 0 or args.deadline <= 0:
        raise UsageError("--timeout and --deadline must be positive")
    fleet = _fleet(args.fleet)
    conn = _open(args)
    try:
        domains = [d.lower().rstrip(".") for d in args.domain] or [None]
        stats = []
        reports = {}
        for domain in domains:
            stats += source_stats(conn, int(since.timestamp()), domain)
            reports.update(domain_reports(conn, int(since.timestamp()), domain))
    finally:
        conn.close()
    sources = asyncio.run(_classify(args, fleet, stats))
    grouped = by_domain(sources)
    views = [DomainView(d, reports.get(d), tuple(grouped.get(d, ()))) for d in sorted(reports)]
    if args.format == "json":
        text = render_json(views, since)
    elif args.format == "html":
        text = render_html(views, since)
    else:
        text = render_table(views, since)
    _write(text, args.output)
    return EXIT_OK


def _fleet(path_text: str | None) -> Any:
    """The fleet (for its hosts' IPs and resolvers), or None when there is no fleet file."""
    from mailmend.fleet import FleetError, fleet_path_from_env, load_fleet

    try:
        path = Path(path_text) if path_text else fleet_path_from_env()
        return load_fleet(path) if path is not None else None
    except FleetError as err:
        raise UsageError(str(err)) from None


async def _classify(args: argparse.Namespace, fleet: Any, stats: Sequence[Any]) -> list[Any]:
    from mailmend.checks.engine import Engine, EngineConfig
    from mailmend.checks.nameservers import parse_nameserver, system_nameservers
    from mailmend.dmarc.sources import classify_all, fleet_addresses

    texts = args.nameserver or (list(fleet.settings.nameservers) if fleet else [])
    try:
        servers = tuple(parse_nameserver(t) for t in texts) or system_nameservers()
    except ValueError as err:
        raise UsageError(f"--nameserver: {err}") from None
    addresses = fleet_addresses(fleet.hosts) if fleet else {}
    config = EngineConfig(nameservers=servers, timeout=args.timeout)
    async with Engine(config) as engine:
        return await classify_all(engine, stats, addresses, args.deadline)


def _write(text: str, output: str | None) -> None:
    from mailmend.cli.options import write_output

    write_output(text, output)
