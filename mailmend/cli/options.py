"""Options and inputs shared by the subcommands: seconds, the fleet file, ``--host``."""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mailmend.cli.errors import UsageError

if TYPE_CHECKING:
    from mailmend.fleet import Fleet, HostSpec

#: Seconds a whole DNS run may take (``--deadline``); docs/checks.md states it.
DEFAULT_DEADLINE = 45.0
MAX_SECONDS = 86400.0
FLEET_HELP = "fleet file (default $MAILMEND_FLEET, ./fleet.toml)"
NO_FLEET = "no fleet file: give --fleet FILE, set $MAILMEND_FLEET or create ./fleet.toml"


def seconds(text: str) -> float:
    """An argparse type: seconds above 0, at most a day (no nan, inf, 0 or less)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a finite number of seconds above 0 (at most {MAX_SECONDS:g})"
        )
    return value


#: ``--ssh-timeout``'s default: seconds one host's read over ssh may take (the only default;
#: :func:`mailmend.adopt.host_keys.read_hosts` is always given it).
SSH_TIMEOUT = 20.0


def add_dkim_from_hosts(group: argparse._ActionsContainer, what: str) -> None:
    """``--dkim-from-hosts`` (``what`` it does with the keys) and ``--ssh-timeout``."""
    group.add_argument(
        "--dkim-from-hosts", action="store_true",
        help=f"read over ssh the selector each host signs with and its DKIM public key, {what}",
    )  # fmt: skip
    group.add_argument(
        "--ssh-timeout", type=seconds, default=SSH_TIMEOUT, metavar="SECONDS",
        help=f"--dkim-from-hosts: each host's read ends by then ({SSH_TIMEOUT:g})",
    )  # fmt: skip


def add_fleet_argument(group: argparse._ActionsContainer) -> None:
    """``--fleet FILE``."""
    group.add_argument("--fleet", metavar="FILE", help=FLEET_HELP)


def load_fleet_file(path_text: str | None, command: str, *, otherwise: str = "") -> Fleet:
    """The fleet of ``--fleet`` (else ``$MAILMEND_FLEET``, else ``./fleet.toml``), its warnings
    printed (one line each, as docs/fleet.md promises). No fleet file or an invalid one:
    :class:`UsageError`. ``otherwise`` names another way in ("check one host with ...")."""
    from mailmend.fleet import FleetError, fleet_path_from_env, load_fleet

    try:
        path = Path(path_text) if path_text else fleet_path_from_env()
        if path is None:
            raise UsageError(NO_FLEET + (f", or {otherwise}" if otherwise else ""))
        fleet = load_fleet(path)
    except FleetError as err:
        raise UsageError(str(err)) from None
    for warning in fleet.warnings:
        print(f"mailmend {command}: warning: {warning}", file=sys.stderr)
    return fleet


def select_hosts(fleet: Fleet, names: Sequence[str]) -> list[HostSpec]:
    """The fleet's hosts named by ``--host`` (all when none), in fleet order."""
    hosts = list(fleet.hosts)
    if not names:
        return hosts
    known = {h.name for h in hosts}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"no host {', '.join(unknown)} in {fleet.path} (hosts: {', '.join(sorted(known))})"
        )
    return [h for h in hosts if h.name in names]


def write_output(text: str, output: str | None) -> None:
    """The report on stdout, or in ``--output FILE`` (unwritable: :class:`UsageError`)."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror}") from None


_MAX_KEY_FILE = 64 * 1024


def read_key_file(path: str, option: str) -> bytes:
    """A small key file's bytes; a device, a FIFO (read for ever) or over 64 KiB is refused.

    Raises :class:`UsageError` for those, OSError when the file cannot be read.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise UsageError(f"{option}: {path} is not a regular file")
    with open(path, "rb") as file:
        data = file.read(_MAX_KEY_FILE + 1)
    if len(data) > _MAX_KEY_FILE:
        raise UsageError(f"{option}: {path} is over 64 KiB: not a key file")
    return data
