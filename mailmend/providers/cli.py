"""``mailmend ptr --fleet F [--host H] [--apply]``: set each host's PTR through its provider.

Exit codes (docs/ptr.md):

- 0: every PTR names its host (nothing to do, or set and seen in DNS)
- 1: a provider refused, failed or did not answer in time (per host: "not changed", or "it
  may have been set" when the PTR call went unanswered), a host's forward record is missing
  (blocked), a PTR must be set by hand (no ``vps_provider``), or DNS did not answer
- 2: usage or input error (bad option, unreadable fleet file or credential reference)
- 3: set at the provider but not yet in DNS when the deadline passed ("pending at the
  provider"): run ``mailmend ptr`` again later to check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import Sequence

from mailmend.checks.engine import Engine, EngineConfig
from mailmend.checks.names import normalize_name, reverse_name
from mailmend.checks.nameservers import Nameserver, parse_nameserver, system_nameservers
from mailmend.cli.errors import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNKNOWN,
    UsageError,
    say,
)
from mailmend.cli.options import add_fleet_argument, load_fleet_file, seconds, select_hosts
from mailmend.fleet import Fleet, HostSpec
from mailmend.providers.ptr import (
    PtrOutcome,
    PtrPlan,
    State,
    Summary,
    plan_fleet,
    render,
    wait_for_ptr,
)

EXIT_PENDING = EXIT_UNKNOWN  # set at the provider, not yet seen in DNS
DEFAULT_DEADLINE = 300.0  # seconds for all the hosts' provider calls and DNS polls
PARALLEL = 16  # hosts asked at once
MAYBE_SET = "it may have been set: run mailmend ptr again to see"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fleet_argument(parser)
    parser.add_argument(
        "--host", metavar="NAME", action="append", default=[], help="only this host (repeatable)"
    )
    parser.add_argument(
        "--apply", action="store_true", help="ask the providers to set the PTRs (default: plan)"
    )
    parser.add_argument(
        "--rename-droplet", action="store_true",
        help="DigitalOcean: rename the droplet to the host's FQDN (its PTR follows the name)",
    )  # fmt: skip
    parser.add_argument(
        "--nameserver", metavar="IP[:PORT]", action="append", default=[],
        help="resolver to read PTR and A records from (default: the fleet's, else the system's)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=seconds, default=10.0, metavar="SECONDS",
        help="per DNS query and per provider API request (10)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=seconds, default=120.0, metavar="SECONDS",
        help="how long to poll DNS for a new PTR before calling it pending (120)",
    )  # fmt: skip
    parser.add_argument(
        "--deadline", type=seconds, default=DEFAULT_DEADLINE, metavar="SECONDS",
        help="every host's provider calls and DNS polling end by then; a host still at it "
        f"says how far it got ({DEFAULT_DEADLINE:g})",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true",
        help="log the provider clients' requests on stderr (secrets shown as ***)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("table", "json"), default="table",
        help="stdout: the plan as a table (default), or plan and outcomes as one JSON "
        "document at the end (docs/ptr.md)",
    )  # fmt: skip


def _say(line: str) -> None:
    from mailmend.providers.secrets import redact

    say("ptr", redact(line))


def run(args: argparse.Namespace) -> int:
    """``mailmend ptr`` (a :class:`UsageError` is reported by :func:`mailmend.cli.main.main`)."""
    fleet = load_fleet_file(args.fleet, "ptr")
    hosts = select_hosts(fleet, args.host)
    readers = _readers(args, fleet)
    plans = asyncio.run(_plan(readers, args.timeout, hosts))
    if args.format == "table":
        print("PTR records (from DNS) and what to set:")
        for plan in plans:
            print(render(plan))
    outcomes: list[PtrOutcome] = []
    code = _decide(args, plans, hosts, readers, outcomes)
    if args.format == "json":
        print(json.dumps(_json_doc(args, plans, outcomes, code), indent=2))
    return code


def _decide(
    args: argparse.Namespace,
    plans: Sequence[PtrPlan],
    hosts: Sequence[HostSpec],
    readers: Sequence[Nameserver],
    outcomes: list[PtrOutcome],
) -> int:
    """Apply what the plan says (with --apply); ``outcomes`` gets each host's; the exit code."""
    todo = [
        p
        for p in plans
        if p.state is State.SET or (p.state is State.RENAME and args.rename_droplet)
    ]
    stuck = [p for p in plans if p.state in (State.BLOCKED, State.MANUAL, State.UNKNOWN)]
    stuck += [p for p in plans if p.state is State.RENAME and not args.rename_droplet]
    if not args.apply:
        if todo:
            _say(f"dry run: {len(todo)} PTR(s) not set; add --apply")
        return EXIT_FAIL if stuck else EXIT_OK
    if not todo:
        _say("nothing to set" if not stuck else f"nothing set: {len(stuck)} PTR(s) need you first")
        return EXIT_FAIL if stuck else EXIT_OK
    from mailmend.providers.secrets import debug_logging

    debug_logging(args.debug)
    by_name = {h.name: h for h in hosts}
    runs = [_HostRun(p, by_name[p.host]) for p in todo]
    try:
        summary = Summary(_apply_all(runs, readers, args))
    except KeyboardInterrupt:  # each host says how far it got: what may have been set
        outcomes += [run.outcome or run.cut_short("before Ctrl-C") for run in runs]
        for outcome in outcomes:
            _say(_outcome_line(outcome))
        _say("interrupted (Ctrl-C): run mailmend ptr again to see and finish")
        return EXIT_INTERRUPTED
    outcomes += summary.outcomes
    for outcome in summary.outcomes:
        _say(_outcome_line(outcome))
    if summary.failed or stuck:
        return EXIT_FAIL
    return EXIT_PENDING if summary.pending else EXIT_OK


def _apply_all(
    runs: Sequence[_HostRun], readers: Sequence[Nameserver], args: argparse.Namespace
) -> list[PtrOutcome]:
    """Every host at once (at most :data:`PARALLEL` at a time), each in a daemon thread, all
    ended by ``--deadline``: a host still at it then is cut short and says how far it got."""
    end = time.monotonic() + args.deadline
    gate = threading.BoundedSemaphore(PARALLEL)
    for run in runs:
        threading.Thread(target=run.go, args=(readers, args, end, gate), daemon=True).start()
    for run in runs:
        run.finished.wait(max(0.0, end - time.monotonic()))
    by = f"within the {args.deadline:g} s deadline (--deadline)"
    return [run.outcome or run.cut_short(by) for run in runs]


class _HostRun:
    """One host's PTR change. ``stage`` says how far it got: queued, asking (finding the
    server: nothing changed yet), setting (the PTR call is sent), checking (accepted, DNS
    polled). Once cut short, it sends nothing more."""

    def __init__(self, plan: PtrPlan, host: HostSpec) -> None:
        self.plan, self.host = plan, host
        self.stage = "queued"
        self.outcome: PtrOutcome | None = None
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._cut = False

    def _advance(self, stage: str) -> bool:
        with self._lock:
            if not self._cut:
                self.stage = stage
            return not self._cut

    def go(
        self,
        readers: Sequence[Nameserver],
        args: argparse.Namespace,
        end: float,
        gate: threading.BoundedSemaphore,
    ) -> None:
        with gate:
            try:
                if self._advance("asking"):
                    self.outcome = self._apply(readers, args, end)
            finally:
                self.finished.set()

    def _apply(
        self, readers: Sequence[Nameserver], args: argparse.Namespace, end: float
    ) -> PtrOutcome | None:
        from mailmend.providers.secrets import (
            BadCredentials,
            NoAnswer,
            ProviderError,
            http_deadline,
            resolve,
        )  # fmt: skip
        from mailmend.providers.vps import adapter

        plan, host = self.plan, self.host
        assert host.vps_provider is not None
        timeout = min(args.timeout, max(0.001, end - time.monotonic()))
        try:
            if host.vps_credentials is None:
                raise BadCredentials(f"host {host.name}: no vps_credentials in the fleet")
            secret = resolve(host.vps_credentials, f"host {host.name}: vps_credentials")
            with http_deadline(timeout):
                api = adapter(host.vps_provider, secret, host.vps_endpoint, timeout)
                target = api.find(plan.ip)
                if not self._advance("setting"):
                    return None
                api.set_ptr(target, plan.fqdn)
        except NoAnswer as err:
            if self.stage == "setting":
                return PtrOutcome(plan, "failed", f"{err}: {MAYBE_SET}")
            return PtrOutcome(plan, "failed", f"{err}: not changed")
        except ProviderError as err:
            return PtrOutcome(plan, "failed", f"{err}: not changed")
        self._advance("checking")
        wait = min(args.wait, max(0.0, end - time.monotonic()))
        seen = asyncio.run(
            wait_for_ptr(lambda ip: _ask_ptr(readers, args.timeout, ip), plan.ip, plan.fqdn, wait)
        )
        if seen:
            return PtrOutcome(plan, "done", "", done_at_provider=True)
        return PtrOutcome(plan, "pending", _pending(plan, f"after {wait:g}s"), True)

    def cut_short(self, by: str) -> PtrOutcome:
        """Stop this host; its outcome says how far it got ``by`` then (a deadline, Ctrl-C)."""
        with self._lock:
            self._cut = True
            stage = self.stage
        plan = self.plan
        if stage == "queued":
            return PtrOutcome(plan, "failed", f"not tried {by}: not changed")
        if stage == "asking":
            return PtrOutcome(plan, "failed", f"{plan.provider} did not answer {by}: not changed")
        if stage == "setting":
            return PtrOutcome(
                plan, "failed", f"{plan.provider} did not answer the PTR call {by}: {MAYBE_SET}"
            )
        return PtrOutcome(plan, "pending", _pending(plan, by), True)


def _pending(plan: PtrPlan, when: str) -> str:
    return (
        f"accepted by {plan.provider} but not in DNS {when}: pending at the provider (some "
        "take hours); run mailmend ptr again later to check"
    )


def _json_doc(
    args: argparse.Namespace, plans: Sequence[PtrPlan], outcomes: Sequence[PtrOutcome], code: int
) -> dict[str, object]:
    """``--format json``: every PTR of the plan, with its outcome where one was applied.
    DNS text stays as read (JSON escapes it); ``exit`` is the command's exit code."""
    from mailmend.providers.secrets import redact

    by_key = {(o.plan.host, o.plan.ip): o for o in outcomes}
    entries = []
    for plan in plans:
        outcome = by_key.get((plan.host, plan.ip))
        entries.append(
            {
                "host": plan.host,
                "ip": plan.ip,
                "fqdn": plan.fqdn,
                "provider": plan.provider,
                "current": list(plan.current),
                "state": plan.state.value,
                "note": plan.note or None,
                "result": outcome.result if outcome else None,
                "message": redact(_outcome_line(outcome)) if outcome else None,
                "done_at_provider": outcome.done_at_provider if outcome else False,
            }
        )
    return {"apply": bool(args.apply), "ptrs": entries, "exit": code}


def _outcome_line(outcome: PtrOutcome) -> str:
    p = outcome.plan
    head = f"{p.host} {p.ip}"
    if outcome.result == "done" and p.state is State.RENAME:
        return f"{head}: droplet renamed to {p.fqdn}; its PTR follows, seen in DNS (FCrDNS holds)"
    if outcome.result == "done":
        return f"{head}: PTR set to {p.fqdn} through {p.provider}, seen in DNS (FCrDNS holds)"
    return f"{head}: {outcome.message}"


async def _plan(
    readers: Sequence[Nameserver], timeout: float, hosts: Sequence[HostSpec]
) -> list[PtrPlan]:
    async with Engine(EngineConfig(nameservers=tuple(readers), timeout=timeout)) as engine:
        return await plan_fleet(engine, hosts)


async def _ask_ptr(readers: Sequence[Nameserver], timeout: float, ip: str) -> tuple[str, ...]:
    async with Engine(EngineConfig(nameservers=tuple(readers), timeout=timeout)) as engine:
        answer = await engine.query(reverse_name(ip), "PTR")  # a new engine: nothing cached
        return tuple(normalize_name(r) for r in answer.records)


def _readers(args: argparse.Namespace, fleet: Fleet) -> list[Nameserver]:
    texts = args.nameserver or list(fleet.settings.nameservers)
    try:
        return [parse_nameserver(t) for t in texts] if texts else list(system_nameservers())
    except ValueError as err:
        raise UsageError(f"--nameserver: {err}") from None
