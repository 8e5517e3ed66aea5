"""``ssh`` to a fleet host the way pyinfra connects: the fleet's user, port, key, known_hosts.

Used by the CLI commands that read a host directly (``mailmend records --dkim-from-hosts``
reads a DKIM public key, ``mailmend queue`` reads and holds the queue). Never prompts:
``BatchMode``; host keys are checked strictly against the fleet's ``ssh_known_hosts_file``
when it names one, else new hosts are accepted as pyinfra does by default (``accept-new``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailmend.fleet import HostSpec

CONNECT_TIMEOUT = 10


def ssh_argv(
    spec: HostSpec, remote_command: str | Sequence[str], connect_timeout: int = CONNECT_TIMEOUT
) -> list[str]:
    """argv for ``ssh``; ``remote_command`` is one shell string or fixed program words."""
    words = [remote_command] if isinstance(remote_command, str) else list(remote_command)
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
    argv += ["-p", str(spec.ssh_port), "-l", spec.ssh_user]
    if spec.ssh_key:
        argv += ["-i", str(Path(spec.ssh_key).expanduser()), "-o", "IdentitiesOnly=yes"]
    if spec.ssh_known_hosts_file:
        known = Path(spec.ssh_known_hosts_file).expanduser()
        argv += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
    else:
        argv += ["-o", "StrictHostKeyChecking=accept-new"]
    return [*argv, "--", spec.ssh_host, *words]
