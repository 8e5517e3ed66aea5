"""Operations that never put a broken or leaked file live.

``staged_config`` is the "never a broken config live" rule as ONE pyinfra operation:

1. compare each rendered file with the LIVE file (``Sha1File`` fact); all equal -> no
   commands, so a converged host reports no change;
2. otherwise upload the set to a staging directory beside the live files (same filesystem),
3. run the caller's validation command against the staged set (the tool's own message
   reaches pyinfra's output and fails the host; the live files are untouched),
4. for each changed file, back the live one up as ``FILE.mailmend-YYYYmmddTHHMMSSZ`` and
   ``mv`` the staged file over it (an atomic rename), then delete all but the newest ``keep``
   backups of that file (the ``backups_keep`` tuning key).

The comparison is with the live file, not the staged one: a live file edited by hand is
re-validated and replaced (the edit survives in the backup) on the next deploy.

``secret_file`` uploads a secret without ever logging it (no diff, no argument in the name).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable, Generator
from io import StringIO

from pyinfra import logger
from pyinfra.api.command import FileUploadCommand, QuoteString, StringCommand
from pyinfra.api.operation import operation
from pyinfra.context import host, state
from pyinfra.facts.files import File, FileContents, Sha1File
from pyinfra.operations.util.files import generate_color_diff

#: ``FILE.mailmend-20260128T120000Z``: the shell computes the time when it swaps.
BACKUP_SUFFIX = ".mailmend-"
_UTC_STAMP = '"$(date -u +%Y%m%dT%H%M%SZ)"'
#: How many backups of each file a swap keeps (the ``backups_keep`` tuning key's default).
DEFAULT_KEEP = 10


def sha1_text(content: str) -> str:
    return hashlib.sha1(content.encode("utf-8"), usedforsecurity=False).hexdigest()


def swap_command(staged: str, dest: str, mode: str, keep: int = DEFAULT_KEEP) -> StringCommand:
    """Back up ``dest`` (if any) with a UTC time suffix, rename ``staged`` over it, and keep
    only the newest ``keep`` backups (the suffix sorts by time)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    backup = StringCommand(QuoteString(dest + BACKUP_SUFFIX), _UTC_STAMP, _separator="")
    backups = StringCommand(QuoteString(dest + BACKUP_SUFFIX), "2*", _separator="")
    return StringCommand(
        "chmod", mode, QuoteString(staged), "&& chown 0:0", QuoteString(staged),
        "&& { if [ -e", QuoteString(dest), "]; then cp -p", QuoteString(dest), backup, "; fi; }",
        "&& mv -f", QuoteString(staged), QuoteString(dest),
        "&& { ls -1d --", backups, "2>/dev/null | sort -r | tail -n +" + str(keep + 1),
        "| while IFS= read -r old; do rm -f -- \"$old\"; done; }",
    )  # fmt: skip


@operation()
def staged_config(
    configs: list[tuple[str, str]],
    staging_dir: str,
    validate: Callable[[str], StringCommand],
    mode: str = "644",
    keep: int = DEFAULT_KEEP,
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """
    Validate rendered config files together on the host, then swap the changed ones in.

    + configs: ``(live path, rendered content)`` pairs, validated as one set
    + staging_dir: a directory on the same filesystem as the live files (created mode 0700)
    + validate: given the staging directory, the command that must succeed before any swap
    + mode: mode of the live files
    + keep: backups kept per file (older ones are deleted after a swap)

    **Example:**

    .. code:: python

        staged_config(
            name="Install opendkim.conf",
            configs=[("/etc/opendkim.conf", rendered)],
            staging_dir="/etc/opendkim/mailmend-staging",
            validate=lambda d: StringCommand("opendkim -n -x", QuoteString(d + "/opendkim.conf")),
        )
    """
    changed: list[str] = []
    chmods: list[str] = []
    exists: dict[str, bool] = {}  # pyinfra does not cache facts: each read is a round trip
    for dest, content in configs:
        live = host.get_fact(File, path=dest)
        exists[dest] = bool(live)
        if not live or host.get_fact(Sha1File, path=dest) != sha1_text(content):
            changed.append(dest)
        elif live["mode"] != int(mode):  # pyinfra's File fact: 0o644 reads as 644
            chmods.append(dest)
    for dest in chmods:
        yield StringCommand("chmod", mode, QuoteString(dest))
    if not changed:
        if not chmods:
            host.noop(f"{', '.join(dest for dest, _ in configs)} up to date")
        return

    for dest, content in configs:
        if dest in changed:
            _show_diff(dest, content, exists=exists[dest])
    yield StringCommand("mkdir -p -m 700", QuoteString(staging_dir))
    for dest, content in configs:
        staged = posixpath.join(staging_dir, posixpath.basename(dest))
        yield FileUploadCommand(
            StringIO(content), staged, remote_temp_filename=host.get_temp_filename(staged)
        )
    yield validate(staging_dir)
    for dest, _ in configs:
        staged = posixpath.join(staging_dir, posixpath.basename(dest))
        if dest in changed:
            yield swap_command(staged, dest, mode, keep)
        else:
            yield StringCommand("rm -f", QuoteString(staged))


def _show_diff(dest: str, content: str, exists: bool) -> None:
    """With pyinfra's diff on (``--dry`` and normal runs, not ``--no-diff``), log the change."""
    if not state.config.DIFF:
        return
    current = host.get_fact(FileContents, path=dest) if exists else None
    current_lines = [line + "\n" for line in current or []]
    host.log(f"Will {'modify' if exists else 'create'} {dest}", logger.info)
    for line in generate_color_diff(current_lines, content.splitlines(keepends=True)):
        logger.info("  %s", line)
    logger.info("")


@operation()
def secret_file(
    secret: Callable[[], str], dest: str, mode: str = "600"
) -> Generator[StringCommand | FileUploadCommand, None, None]:
    """
    Upload a secret file, mode 0600 root-owned, printing neither its content nor a diff.

    + secret: returns the content (a callable so the value is never an operation argument)
    + dest: the remote file
    + mode: its mode
    """
    content = secret()
    live = host.get_fact(File, path=dest)
    if live and host.get_fact(Sha1File, path=dest) == sha1_text(content):
        if live["mode"] != int(mode) or live["user"] != "root":
            yield StringCommand("chown 0:0", QuoteString(dest), "&& chmod", mode, QuoteString(dest))
        else:
            host.noop(f"{dest} is up to date")
        return
    # Created with the right mode before any secret byte is written to it.
    yield StringCommand(
        "umask 077 && : >", QuoteString(dest), "&& chown 0:0", QuoteString(dest),
        "&& chmod", mode, QuoteString(dest),
    )  # fmt: skip
    yield FileUploadCommand(
        StringIO(content), dest, remote_temp_filename=host.get_temp_filename(dest)
    )
    yield StringCommand("chown 0:0", QuoteString(dest), "&& chmod", mode, QuoteString(dest))
