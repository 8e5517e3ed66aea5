"""``mailmend queue``: triage every fleet host's Postfix queue over SSH; hold or delete a sender.

A subcommand of :mod:`mailmend.cli.main` (:func:`add_arguments`, :func:`run`). Reads each host's
queue with ``ssh ... postqueue -j`` (the fleet's ssh_* fields, see :mod:`mailmend.ssh`) and
prints a table, or JSON with ``--format json`` (as ``mailmend check``; ``--json`` is a
deprecated alias).

- ``--hold SENDER``: ``postsuper -h`` on exactly that sender's queue ids (exact, case-insensitive
  match). Reversible with ``postsuper -H``.
- ``--delete SENDER --yes``: ``postsuper -d`` on exactly that sender's queue ids. Without
  ``--yes`` nothing is deleted: the command says what it would delete and exits 2.
- Bounces (the null sender) only with ``--bounces``: ``--hold --bounces``, ``--delete --bounces
  --yes``. An empty SENDER (``--hold "$UNSET"``), ``<>`` or ``MAILER-DAEMON`` is refused.

Queue ids are validated and sent on postsuper's stdin (``postsuper -h -``), never through a
shell. Exit codes: 0 nothing flagged (or the action succeeded everywhere), 1 a host is flagged
(or an action failed), 2 usage error, 3 some host could not be read and none is flagged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO

from mailmend.checks.escape import visible
from mailmend.cli.errors import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    UsageError,
    usage_errors,
)
from mailmend.cli.options import add_fleet_argument, load_fleet_file, seconds, select_hosts
from mailmend.fleet import HostSpec
from mailmend.hygiene import queue as q
from mailmend.ssh import ssh_argv

EXIT_FLAGGED = EXIT_FAIL
FORMATS = ("table", "json")
#: ``--hold`` / ``--delete`` given without a SENDER (only valid with ``--bounces``).
_NO_SENDER = "\x00no sender"
SSH_FAILED = 255

#: argv, stdin, timeout -> the finished process (tests pass a fake).
Runner = Callable[[Sequence[str], bytes | None, float], "subprocess.CompletedProcess[bytes]"]


@dataclass
class HostResult:
    host: str
    triage: q.QueueTriage | None = None
    error: str | None = None
    action: str | None = None
    action_ids: tuple[str, ...] = ()
    action_error: str | None = None
    applied: bool = False


def _subprocess_runner(
    argv: Sequence[str], stdin: bytes | None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_argument_group("which hosts")
    add_fleet_argument(which)
    which.add_argument(
        "--host", metavar="NAME", action="append", default=[], help="only this host (repeatable)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="output format (default table)"
    )
    parser.add_argument("--json", action="store_true", help="deprecated: use --format json")
    act = parser.add_argument_group("acting on one sender (exact address) or on bounces")
    act.add_argument("--hold", metavar="SENDER", nargs="?", const=_NO_SENDER,
                     help="put that sender's queued mail on hold")  # fmt: skip
    act.add_argument("--delete", metavar="SENDER", nargs="?", const=_NO_SENDER,
                     help="delete that sender's queued mail")  # fmt: skip
    act.add_argument("--bounces", action="store_true",
                     help="act on bounces (the null sender) instead of a SENDER: "
                     "--hold --bounces, --delete --bounces --yes")  # fmt: skip
    act.add_argument("--yes", action="store_true", help="confirm --delete (required)")
    flags = parser.add_argument_group("flag thresholds")
    t = q.Thresholds()
    flags.add_argument(
        "--mass-count",
        type=int,
        default=t.sender_count,
        metavar="N",
        help=f"flag a sender with >= N queued messages (default {t.sender_count})",
    )
    flags.add_argument(
        "--mass-share",
        type=float,
        default=t.sender_share,
        metavar="F",
        help=f"... or >= F of the queue (default {t.sender_share})",
    )
    flags.add_argument(
        "--min-queue",
        type=int,
        default=t.min_queue,
        metavar="N",
        help=f"share rules apply from N messages (default {t.min_queue})",
    )
    flags.add_argument(
        "--bounce-count",
        type=int,
        default=t.bounce_count,
        metavar="N",
        help=f"flag >= N queued bounces (default {t.bounce_count})",
    )
    flags.add_argument(
        "--bounce-share",
        type=float,
        default=t.bounce_share,
        metavar="F",
        help=f"... or a bounce share >= F (default {t.bounce_share})",
    )
    parser.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                        help="per-host SSH timeout (default 60)")  # fmt: skip


def _thresholds(args: argparse.Namespace) -> q.Thresholds:
    try:
        return q.Thresholds(
            sender_count=args.mass_count,
            sender_share=args.mass_share,
            min_queue=args.min_queue,
            bounce_count=args.bounce_count,
            bounce_share=args.bounce_share,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def _action(args: argparse.Namespace) -> tuple[str, str | q.Bounces] | None:
    """("hold" | "delete", sender or q.BOUNCES) or None; refuses unsafe combinations."""
    if args.hold is not None and args.delete is not None:
        raise UsageError("give --hold or --delete, not both")
    if args.yes and args.delete is None:
        raise UsageError("--yes only confirms --delete SENDER")
    verb, value = ("hold", args.hold) if args.hold is not None else ("delete", args.delete)
    if value is None:
        if args.bounces:
            raise UsageError("--bounces selects what --hold or --delete acts on; give one")
        return None
    if args.bounces:
        if value != _NO_SENDER:
            raise UsageError(f"give --{verb} SENDER or --{verb} --bounces, not both")
        return verb, q.BOUNCES
    if value == _NO_SENDER:
        raise UsageError(f"--{verb} needs a SENDER address (or --bounces for bounces)")
    return verb, _sender(value, verb)


def _sender(value: str, verb: str) -> str:
    if value.strip() in ("", "<>") or value.upper() == q.BOUNCE_SENDER:
        raise UsageError(
            f"--{verb} {value!r}: an empty or bounce sender is not an address; "
            f"to act on bounces say so: --{verb} --bounces"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise UsageError(f"{value!r} is not a sender address")
    return value


def _format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json (deprecated) means --format json, not --format {args.format}")
    if args.json:
        print("mailmend queue: --json is deprecated; use --format json", file=sys.stderr)
        return "json"
    return str(args.format or "table")


def _hosts(args: argparse.Namespace) -> list[HostSpec]:
    return select_hosts(load_fleet_file(args.fleet, "queue"), args.host)


def _read_queue(
    spec: HostSpec, runner: Runner, timeout: float
) -> tuple[list[q.QueuedMessage] | None, str | None]:
    try:
        done = runner(ssh_argv(spec, ["postqueue", "-j"]), None, timeout)
    except subprocess.TimeoutExpired:
        return None, f"no answer in {timeout:g} s"
    except OSError as err:
        return None, f"cannot run ssh: {err.strerror}"
    if done.returncode != 0:
        what = "ssh failed" if done.returncode == SSH_FAILED else "postqueue -j failed"
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"{what} (exit {done.returncode}): {detail[-1] if detail else ''}".strip()
    try:
        return q.parse_queue(done.stdout.decode("utf-8", "replace").splitlines()), None
    except q.QueueParseError as err:
        return None, f"unreadable postqueue -j output: {err}"


def _apply(
    spec: HostSpec, verb: str, ids: Sequence[str], runner: Runner, timeout: float
) -> str | None:
    """Run ``postsuper -h -`` / ``-d -`` with the ids on stdin; the error text or None."""
    flag = "-h" if verb == "hold" else "-d"
    stdin = "".join(f"{queue_id}\n" for queue_id in ids).encode("ascii")
    try:
        done = runner(ssh_argv(spec, ["postsuper", flag, "-"]), stdin, timeout)
    except subprocess.TimeoutExpired:
        return f"postsuper: no answer in {timeout:g} s"
    except OSError as err:
        return f"cannot run ssh: {err.strerror}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"postsuper {flag} failed (exit {done.returncode}): {detail[-1] if detail else ''}"
    return None


def _one_host(
    spec: HostSpec,
    action: tuple[str, str | q.Bounces] | None,
    *,
    thresholds: q.Thresholds,
    runner: Runner,
    timeout: float,
    confirmed: bool,
) -> HostResult:
    result = HostResult(spec.name)
    messages, result.error = _read_queue(spec, runner, timeout)
    if messages is None:
        return result
    result.triage = q.triage(messages, now=time.time(), thresholds=thresholds)
    if action is None:
        return result
    verb, sender = action
    ids = q.queue_ids_for_sender(messages, sender, skip_held=verb == "hold")
    result.action, result.action_ids = verb, tuple(ids)
    if ids and (verb == "hold" or confirmed):
        result.action_error = _apply(spec, verb, ids, runner, timeout)
        result.applied = result.action_error is None
    return result


def collect(
    hosts: Sequence[HostSpec],
    action: tuple[str, str | q.Bounces] | None,
    *,
    thresholds: q.Thresholds,
    runner: Runner = _subprocess_runner,
    timeout: float = 60.0,
    confirmed: bool = False,
) -> list[HostResult]:
    """Read (and act on) every host in parallel; results in fleet order."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        futures = [
            pool.submit(
                _one_host, h, action, thresholds=thresholds, runner=runner,
                timeout=timeout, confirmed=confirmed,
            )
            for h in hosts
        ]  # fmt: skip
        return [f.result() for f in futures]


# -- output -------------------------------------------------------------------------------


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d{hours}h" if days else f"{hours}h{rest // 60}m" if hours else f"{rest // 60}m"


def _size(num: int) -> str:
    value = float(num)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"


def render_table(results: Sequence[HostResult], sender: str | q.Bounces | None = None) -> str:
    rows = [("HOST", "MSGS", "RCPTS", "SIZE", "OLDEST", "BOUNCES", "FLAGS")]
    details: list[str] = []
    for r in results:
        if r.triage is None:
            rows.append((r.host, "-", "-", "-", "-", "-", f"UNKNOWN: {visible(str(r.error))}"))
            continue
        t = r.triage
        kinds = ",".join(sorted({f.kind for f in t.flags})) or "ok"
        rows.append((r.host, str(t.messages), str(t.recipients), _size(t.size_bytes),
                     _age(t.oldest_age_seconds), str(t.bounces), kinds))  # fmt: skip
        details += _details(r, sender)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]  # fmt: skip
    return "\n".join([*lines, *details]) + "\n"


def _details(r: HostResult, sender: str | q.Bounces | None) -> list[str]:
    t = r.triage
    assert t is not None
    out = [f"\n{r.host}:"] if t.messages or r.action else []
    out += [f"  FLAG {f.kind}: {visible(f.message)}" for f in t.flags]
    if t.top_senders:
        out.append("  top senders: " + ", ".join(f"{visible(s)} ({n})" for s, n in t.top_senders))
    if t.top_recipient_domains:
        pairs = ", ".join(f"{visible(d)} ({n})" for d, n in t.top_recipient_domains)
        out.append("  top recipient domains: " + pairs)
    out += [f"  deferred ({n}): {visible(reason)}" for reason, n in t.deferral_reasons]
    if r.action:
        out.append("  " + _action_line(r, sender))
    return out


def _who(sender: str | q.Bounces | None) -> str:
    return "bounces (MAILER-DAEMON)" if isinstance(sender, q.Bounces) else visible(str(sender))


def _action_line(r: HostResult, target: str | q.Bounces | None) -> str:
    sender = _who(target)
    n = len(r.action_ids)
    if not n:
        return f"{r.action}: no queued mail from {sender}"
    if r.action_error:
        return f"{r.action} FAILED for {n} messages from {sender}: {visible(r.action_error)}"
    if not r.applied:
        return f"would {r.action} {n} messages from {sender} (not confirmed with --yes)"
    done = "held" if r.action == "hold" else "deleted"
    return f"{done} {n} messages from {sender}"


def render_json(results: Sequence[HostResult]) -> str:
    hosts: list[dict[str, Any]] = []
    for r in results:
        item: dict[str, Any] = {"host": r.host, "error": r.error}
        item["triage"] = r.triage.to_json() if r.triage else None
        if r.action:
            item["action"] = {
                "verb": r.action,
                "queue_ids": list(r.action_ids),
                "applied": r.applied,
                "error": r.action_error,
            }
        hosts.append(item)
    return json.dumps({"hosts": hosts}, indent=2) + "\n"


def exit_code(results: Sequence[HostResult], *, acting: bool) -> int:
    if acting:
        return EXIT_FLAGGED if any(r.action_error or r.error for r in results) else EXIT_OK
    if any(r.triage and r.triage.flags for r in results):
        return EXIT_FLAGGED
    return EXIT_UNKNOWN if any(r.error for r in results) else EXIT_OK


@usage_errors("queue")
def run(
    args: argparse.Namespace, *, runner: Runner = _subprocess_runner, out: TextIO | None = None
) -> int:
    stdout = out or sys.stdout
    action = _action(args)
    output = _format(args)
    thresholds = _thresholds(args)
    hosts = _hosts(args)
    confirmed = bool(args.yes)
    results = collect(hosts, action, thresholds=thresholds, runner=runner,
                      timeout=args.timeout, confirmed=confirmed)  # fmt: skip
    sender = action[1] if action else None
    stdout.write(render_json(results) if output == "json" else render_table(results, sender))
    if action and action[0] == "delete" and not confirmed:
        total = sum(len(r.action_ids) for r in results)
        print(
            f"mailmend queue: would delete {total} messages from {_who(sender)}; "
            "nothing deleted: add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return exit_code(results, acting=action is not None)
