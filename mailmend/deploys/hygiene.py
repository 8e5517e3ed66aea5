"""Sending hygiene: suppression of hard-bounced recipients, per-sender quotas, queue triage.

1. **Suppression, fleet-wide.** The ``HardBounces`` fact runs on EVERY active host of the
   run (only matching log lines cross the network) and the ``SuppressionTable`` fact reads
   each host's current table; both are gathered once per run, when the first host's deploy
   is planned (:func:`fleet_suppression`). One host's hard bounce therefore protects every
   host. Suppression is sticky: an address already in some host's table stays suppressed
   after the log line that put it there has been rotated away; only the allow list
   (``suppression/allow.txt``) lifts it. The deny list always suppresses (5.7.1).
   Each host gets two tables, ``check_recipient_access`` (SMTP submitters see the 5.1.1 at
   RCPT) and ``transport_maps`` (``error:``, for ``sendmail`` submissions), each ``postmap``-ed
   when it changed or its ``.db`` is older than its text. The Postfix deploy creates both
   (empty) before main.cf names them.
2. **Per-sender quotas**: Debian's ``policyd-rate-limit`` (pulls in python3 and python3-yaml),
   configured from ``templates/postfix/policyd-rate-limit.yaml.j2``, validated by the daemon
   itself on a staged copy, restarted through ``/etc/init.d`` when the file is newer than the
   running daemon (:mod:`deploys.live`).
3. **Queue triage**: one line per host from ``postqueue -j`` (``MailQueue`` fact); never a change.

The allow/deny lists are read on the admin's machine; a bad line or an address on both lists
stops the deploy before any operation is added (``DeployValueError``).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from io import StringIO
from typing import Any, TypeVar

import gevent  # type: ignore[import-untyped]
import gevent.lock  # type: ignore[import-untyped]
from pyinfra.api.command import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.host import Host
from pyinfra.api.operation import operation
from pyinfra.context import ctx_config, ctx_host, host, state
from pyinfra.facts.files import Sha1File
from pyinfra.operations import apt, server

from mailmend.deploys import contexts, live
from mailmend.deploys.facts import installed_packages
from mailmend.deploys.facts_hygiene import HardBounces, MailQueue, SuppressionTable
from mailmend.deploys.postfix import reload_when_newer
from mailmend.deploys.staged import sha1_text, staged_config
from mailmend.hygiene import bounces
from mailmend.hygiene import queue as mailqueue

DEFAULTS: dict[str, Any] = {
    **contexts.SHARED_DEFAULTS,
    "postfix_maillog_file": "/var/log/postfix.log",
    "hygiene_allow_file": None,  # default: the repository's suppression/allow.txt
    "hygiene_deny_file": None,  # default: the repository's suppression/deny.txt
    "hygiene_sender_limits": None,  # default: [[rate_limit_per_minute, 60], [1000, 86400]]
    "hygiene_limited_networks": ["127.0.0.0/8", "::1/128"],
    "hygiene_policy_config": "/etc/policyd-rate-limit.yaml",
    "hygiene_policy_staging_dir": "/etc/mailmend-staging-policyd",
    "hygiene_apt_cache_time": 3600,
}

POLICY_PACKAGE = "policyd-rate-limit"
#: As rendered in templates/postfix/policyd-rate-limit.yaml.j2 (the package's default).
POLICY_PIDFILE = "/var/run/policyd-rate-limit/policyd-rate-limit.pid"
_NONINTERACTIVE = {"DEBIAN_FRONTEND": "noninteractive"}


@dataclass(frozen=True)
class FleetSuppression:
    """What every host's tables hold, and where it came from."""

    result: bounces.SuppressionResult
    #: inventory host name -> the addresses its own log shows hard-bouncing
    bounced_on: Mapping[str, frozenset[str]]
    #: inventory host name -> its access table's text before this run
    tables: Mapping[str, str]


#: One computation per pyinfra run (keyed by the State object and the scan arguments).
_FLEET: dict[tuple[int, str, str, str], FleetSuppression] = {}
_FLEET_LOCK = gevent.lock.Semaphore()
T = TypeVar("T")


def table_entries(text: str) -> list[bounces.Suppression]:
    """The hard-bounce lines of an existing access table, to keep them (sticky suppression).

    >>> table_entries(bounces.TABLE_HEADER + "a@x.example REJECT 5.1.1 suppressed by mailmend: "
    ...     "hard bounce 5.1.1 on 2026-11-28\\n")[0].dsn
    '5.1.1'
    """
    out = []
    for line in text.splitlines():
        words = line.split(None, 3)
        if len(words) < 4 or line.startswith("#") or words[1] != "REJECT":
            continue
        address, _, dsn, reason = words
        if reason.startswith(f"{bounces.MARKER}: hard bounce") and not bounces.address_problem(
            address
        ):
            out.append(bounces.Suppression(address.lower(), dsn, reason, "bounce"))
    return out


def merge_suppression(
    fresh: bounces.SuppressionResult,
    previous: Iterable[bounces.Suppression],
    allow: frozenset[str] = frozenset(),
) -> bounces.SuppressionResult:
    """``fresh`` (bounces in the logs + deny list) plus earlier bounce entries it lacks.

    An address on the allow list is never kept, whether or not its bounce is still in the
    logs (``fresh.allowed`` holds only those still there): the allow list lifts a sticky
    suppression after the log lines have rotated away.
    """
    entries = {entry.address: entry for entry in fresh.entries}
    allowed = set(fresh.allowed) | {address.lower() for address in allow}
    for entry in previous:
        if entry.address not in entries and entry.address not in allowed:
            entries[entry.address] = entry
    return bounces.SuppressionResult(
        entries=tuple(entries[a] for a in sorted(entries)),
        allowed=fresh.allowed,
        refused=fresh.refused,
    )


def read_lists(ctx: contexts.HygieneContext) -> tuple[frozenset[str], frozenset[str]]:
    """The allow and deny lists (admin's machine); problems as ``DeployValueError``."""
    lists = []
    for field, path in (
        ("hygiene_allow_file", ctx.allow_file),
        ("hygiene_deny_file", ctx.deny_file),
    ):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        except OSError as err:
            raise contexts.DeployValueError(host.name, field, f"{path}: {err.strerror}") from None
        try:
            lists.append(bounces.parse_address_list(text, str(path)))
        except bounces.AddressListError as err:
            raise contexts.DeployValueError(host.name, field, str(err)) from None
    return lists[0], lists[1]


def _on_every_host(read: Callable[[], T]) -> dict[Host, T]:
    """``read()`` in each active host's context, in parallel (hosts that failed are not active).

    Plain greenlets, not pyinfra's pool: the deploy itself runs inside that pool's greenlets,
    which may fill it.
    """
    real_state = host.state

    def one(target: Host) -> T:  # as pyinfra prepares a host: its own config and host context
        with ctx_config.use(real_state.config.copy()), ctx_host.use(target):
            return read()

    jobs = {target: gevent.spawn(one, target) for target in real_state.inventory.get_active_hosts()}
    gevent.joinall(list(jobs.values()), raise_error=True)
    return {target: job.get() for target, job in jobs.items()}


def fleet_suppression(ctx: contexts.HygieneContext) -> FleetSuppression:
    """Hard bounces and current tables of every active host, merged ONCE per run.

    Hosts are planned in parallel greenlets: the first one gathers, the others wait for it.
    """
    key = (id(host.state), ctx.maillog_file, str(ctx.allow_file), str(ctx.deny_file))
    with _FLEET_LOCK:
        if key not in _FLEET:
            _FLEET[key] = _gather(ctx)
        return _FLEET[key]


def _gather(ctx: contexts.HygieneContext) -> FleetSuppression:
    allow, deny = read_lists(ctx)
    per_host = _on_every_host(lambda: host.get_fact(HardBounces, log_file=ctx.maillog_file))
    tables = _on_every_host(lambda: host.get_fact(SuppressionTable, path=ctx.recipients_table))
    try:
        fresh = bounces.build_suppression(
            bounces.merge_records(*per_host.values()).values(), allow=allow, deny=deny
        )
    except bounces.ListConflictError as err:
        raise contexts.DeployValueError(host.name, "hygiene_allow_file", str(err)) from None
    previous = [entry for text in tables.values() for entry in table_entries(text)]
    merged = FleetSuppression(
        result=merge_suppression(fresh, previous, allow),
        bounced_on={h.name: frozenset(records) for h, records in per_host.items()},
        tables={h.name: text for h, text in tables.items()},
    )
    return merged


# -- operations -----------------------------------------------------------------------------


@operation()
def lookup_table(
    path: str, content: str
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """
    Install a Postfix ``hash:`` table and ``postmap`` it when its text changed or its index is
    missing or older than the text.

    + path: the table's text file (the index is ``PATH.db``)
    + content: the table text

    **Example:**

    .. code:: python

        lookup_table(name="Suppressed recipients", path="/etc/postfix/mailmend/suppress_recipients",
                     content=bounces.access_table(entries))
    """
    same = host.get_fact(Sha1File, path=path) == sha1_text(content)
    # The index, not only the text: a postmap that failed or never ran leaves it behind.
    if same and live.index_is_current(path, f"{path}.db"):
        host.noop(f"{path} is up to date")
        return
    if not same:
        yield StringCommand("mkdir -p", QuoteString(posixpath.dirname(path)))
        yield FileUploadCommand(
            StringIO(content), path, remote_temp_filename=host.get_temp_filename(path)
        )
        yield StringCommand("chown 0:0", QuoteString(path), "&& chmod 644", QuoteString(path))
    # postmap writes PATH.db through a temporary file and renames it: never half a table live.
    yield StringCommand("postmap", QuoteString(f"hash:{path}"))


@operation()
def suppression_report(
    added: tuple[str, ...], removed: tuple[str, ...], allowed: tuple[str, ...], total: int
) -> Generator[StringCommand, None, None]:
    """
    Log the newly suppressed (and no longer suppressed) addresses; never a change.

    + added / removed: addresses since this host's previous table
    + allowed: hard-bounced addresses left out because they are on the allow list
    + total: entries in the table
    """
    if state.is_executing:
        for address in added:
            host.log(f"newly suppressed: {address}")
        for address in removed:
            host.log(f"no longer suppressed: {address}")
        for address in allowed:
            host.log(f"hard-bounced but on the allow list, not suppressed: {address}")
    host.noop(f"{total} suppressed address(es), {len(added)} new, {len(removed)} lifted")
    yield from ()


@operation()
def queue_triage(thresholds: mailqueue.Thresholds) -> Generator[StringCommand, None, None]:
    """
    Log one triage line for this host's Postfix queue (``postqueue -j``); never a change.

    + thresholds: when to flag a mass mailing or backscatter
    """
    if not state.is_executing:
        host.noop("the queue is read when the deploy runs")
        return
    triage = mailqueue.triage(host.get_fact(MailQueue), now=time.time(), thresholds=thresholds)
    top = ", ".join(f"{sender} {count}" for sender, count in triage.top_senders[:3]) or "-"
    host.log(
        f"queue: {triage.messages} message(s), {triage.recipients} recipient(s), "
        f"by queue {dict(sorted(triage.by_queue.items())) or '{}'}, top senders: {top}"
    )
    for flag in triage.flags:
        host.log(f"queue flag {flag.kind}: {flag.message} (mailmend queue --hold SENDER)")
    host.noop(f"{triage.messages} queued message(s), {len(triage.flags)} flag(s)")
    yield from ()


def restart_command(pidfile: str = POLICY_PIDFILE) -> StringCommand:
    """Stop the daemon by its pidfile, then start it with the init script.

    Debian 12's ``/etc/init.d/policyd-rate-limit stop`` fails: start-stop-daemon refuses to
    match "only on non-root pidfile" (the daemon writes it after dropping root), so
    ``restart`` never restarts. Measured in the sandbox. The pidfile belongs to the daemon's
    user, so the pid is killed only if it really is policyd-rate-limit (``/proc/PID/cmdline``).
    """
    pid = QuoteString(pidfile)
    return StringCommand(
        "if [ -f", pid, "] && p=$(cat", pid, ") && kill -0 \"$p\" 2>/dev/null",
        "&& grep -qa", POLICY_PACKAGE, "\"/proc/$p/cmdline\"; then",
        "kill \"$p\"; i=0; while kill -0 \"$p\" 2>/dev/null && [ $i -lt 100 ];",
        "do sleep 0.1; i=$((i+1)); done; fi;",
        "/etc/init.d/" + POLICY_PACKAGE, "start",
    )  # fmt: skip


def policy_validate_command(config: str, staging_dir: str) -> StringCommand:
    """The daemon loads the staged YAML and prints its limits (a bad file exits non-zero)."""
    staged = posixpath.join(staging_dir, posixpath.basename(config))
    return StringCommand(
        POLICY_PACKAGE, "--file", QuoteString(staged), "--get-config limits >/dev/null",
        "|| { echo 'mailmend: the new policyd-rate-limit configuration was refused;",
        "the live one is unchanged' >&2; exit 1; }",
    )  # fmt: skip


# -- stages ---------------------------------------------------------------------------------


def _suppress(ctx: contexts.HygieneContext, pidfile: str) -> None:
    fleet = fleet_suppression(ctx)
    result = fleet.result
    previous = fleet.tables.get(host.name, "")
    diff = bounces.diff_tables(previous, result.entries)
    for address, reason in result.refused:
        host.log(f"not suppressed (a table cannot hold it): {address!r}: {reason}")
    lookup_table(
        name="Install the suppressed-recipients table (check_recipient_access)",
        path=ctx.recipients_table,
        content=bounces.access_table(result.entries),
    )
    lookup_table(
        name="Install the suppression transport table (transport_maps, for sendmail)",
        path=ctx.transport_table,
        content=bounces.transport_table(result.entries),
    )
    # trivial-rewrite answers transport_maps over connections cleanup and qmgr keep open
    # (ipc_ttl): it would keep the old answer for a while. smtpd checks the access table itself.
    reload_when_newer(
        "Reload Postfix (when the transport table is newer than what it runs)",
        [f"{ctx.transport_table}.db"],
        pidfile,
    )
    suppression_report(
        name="Suppressed recipients (fleet-wide)",
        added=diff.added,
        removed=diff.removed,
        allowed=tuple(a for a in result.allowed if a in fleet.bounced_on.get(host.name, ())),
        total=len(result.entries),
    )


def _quotas(ctx: contexts.HygieneContext, staging_dir: str, cache_time: int, keep: int) -> None:
    missing = POLICY_PACKAGE not in installed_packages()
    apt.packages(
        name="Install policyd-rate-limit (per-sender quotas; pulls in python3)",
        packages=[POLICY_PACKAGE],
        update=missing,
        cache_time=cache_time,
        _env=_NONINTERACTIVE,
    )
    staged_config(
        name="Install policyd-rate-limit.yaml (staged, validated by the daemon, swapped)",
        configs=[(ctx.policy_config, contexts.render_template(
            "postfix/policyd-rate-limit.yaml.j2", hygiene=ctx
        ))],
        staging_dir=staging_dir,
        validate=lambda staging: policy_validate_command(ctx.policy_config, staging),
        keep=keep,
    )  # fmt: skip
    live.daemon_current(
        name="Restart policyd-rate-limit (when its configuration is newer than it)",
        service=POLICY_PACKAGE,
        configs=[ctx.policy_config],
        pidfile=POLICY_PIDFILE,
        process=POLICY_PACKAGE,
        command=restart_command(),
    )
    server.service(
        name="Ensure policyd-rate-limit is running", service=POLICY_PACKAGE, running=True
    )


@deploy("Hygiene", data_defaults=DEFAULTS)
def hygiene_deploy() -> None:
    """Suppress hard-bounced recipients fleet-wide, enforce per-sender quotas, triage the queue."""
    data = contexts.host_data(host.data)
    ctx = contexts.hygiene_context(host.name, data)
    staging_dir = contexts.safe_text(
        host.name, "hygiene_policy_staging_dir", data["hygiene_policy_staging_dir"]
    )
    cache_time = contexts.positive_int(
        host.name, "hygiene_apt_cache_time", data["hygiene_apt_cache_time"]
    )
    _suppress(ctx, contexts.safe_text(host.name, "postfix_pidfile", data["postfix_pidfile"]))
    _quotas(ctx, staging_dir, cache_time, contexts.backups_keep(host.name, data))
    queue_triage(name="Queue triage", thresholds=mailqueue.Thresholds())
