"""Starting and stopping the sandbox's long-running processes.

Every daemon runs under ``unshare --pid --fork --kill-child``: killing the ``unshare``
process kills the daemon's whole PID namespace, so nothing it started survives.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

# Popen objects of the daemons this process started: kept so they are reaped on stop (and
# not garbage-collected while running); ``up`` in one process and ``down`` in another works
# too, by pid.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], log: Path, *, namespaces: tuple[str, ...] = ()) -> int:
    """Start ``argv`` as PID 1 of a new PID namespace (plus ``namespaces``); return the pid."""
    wrapper = [*WRAPPER, *(f"--{ns}" for ns in namespaces)]
    if "mount" in namespaces:
        wrapper += ["--propagation", "private"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*wrapper, "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _STARTED[proc.pid] = proc
    return proc.pid


#: What identifies a process across pid reuse and reboots (``sandbox.json`` keeps it).
Identity = dict[str, object]
#: The wrapper every sandbox process runs in (see :func:`spawn`).
WRAPPER = ("unshare", "--pid", "--fork", "--kill-child")


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def identity(pid: int) -> Identity | None:
    """The boot and start time (clock ticks since boot) of a live ``pid``, or None.

    Together with the pid they name one process for good (unlike its argv, which changes at
    exec: right after ``Popen`` the child may still show the parent's).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 22 (starttime), counted from after the ")" that closes the command name (field 2).
    return {"boot_id": _boot_id(), "start": int(stat.rsplit(")", 1)[1].split()[19])}


def _argv(pid: int) -> tuple[str, ...]:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ()
    return tuple(arg.decode("utf-8", "replace") for arg in cmdline.split(b"\0")[:-1])


def is_ours(pid: int, recorded: Identity | None) -> bool:
    """Whether ``pid`` is still the process recorded when the sandbox started it.

    After a reboot (or once it exited) the pid may belong to any other process: the boot id
    and start time must match. A state file from before identities were recorded: the
    process must at least be an ``unshare`` wrapper as :func:`spawn` starts them.
    """
    now = identity(pid)
    if now is None:
        return False
    if recorded is None:
        return _argv(pid)[: len(WRAPPER)] == WRAPPER
    return all(now[key] == recorded.get(key) for key in ("boot_id", "start"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(k) for k in task.read_text().split()]
        except FileNotFoundError:
            continue
    return kids


def stop(pid: int, timeout: float = 5.0) -> None:
    """Kill the namespace's init (the kernel then kills everything in it), then the wrapper.

    ``--kill-child`` alone is not enough: a daemon that changes credentials (dnsmasq does)
    loses its parent-death signal.
    """
    for init in _children(pid):
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    started = _STARTED.get(pid)
    if started is not None:
        if started.poll() is not None:
            del _STARTED[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_port(host: str, port: int, timeout: float, proto: str = "tcp") -> bool:
    """True once something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def wait_path(path: Path, timeout: float) -> bool:
    """True once ``path`` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False
