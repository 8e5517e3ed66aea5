"""Files mailmend shares with the admin (``/etc/hosts``, OpenDKIM's ``TrustedHosts``).

mailmend owns one marked block at the top of such a file and rewrites only that block; every
line outside it, the admin's, is kept as it is, below the block. The file still goes live
through :func:`deploys.staged.staged_config`, so the previous version is backed up too.

A file written by an earlier mailmend (no markers, first line ``# Managed by mailmend``) was
entirely mailmend's: it is replaced by the block (the backup keeps it).
"""

from __future__ import annotations

from collections.abc import Sequence

BEGIN = "# BEGIN mailmend"
END = "# END mailmend"
#: The first line of files earlier versions of mailmend owned entirely.
LEGACY_HEADER = "# Managed by mailmend"


def admin_lines(live: Sequence[str] | None) -> list[str]:
    """The lines of the live file outside mailmend's block (none for a legacy file).

    >>> admin_lines(["# BEGIN mailmend x", "1.2.3.4 a", "# END mailmend", "10.0.0.9 nas"])
    ['10.0.0.9 nas']
    >>> admin_lines(["# Managed by mailmend (templates/hosts.j2).", "127.0.0.1 localhost"])
    []
    """
    lines = list(live or [])
    if not any(line.startswith(BEGIN) for line in lines):
        return [] if lines and lines[0].startswith(LEGACY_HEADER) else lines
    kept: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(BEGIN):
            inside = True
        elif line.startswith(END) and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


def with_admin_lines(block: str, live: Sequence[str] | None) -> str:
    """mailmend's rendered ``block`` (``BEGIN`` ... ``END`` lines), then the admin's lines.

    >>> with_admin_lines("# BEGIN mailmend\\n1.2.3.4 a\\n# END mailmend\\n",
    ...                  ["# BEGIN mailmend", "old", "# END mailmend", "10.0.0.9 nas"])
    '# BEGIN mailmend\\n1.2.3.4 a\\n# END mailmend\\n10.0.0.9 nas\\n'
    """
    if not block.startswith(BEGIN) or not block.rstrip("\n").splitlines()[-1].startswith(END):
        raise ValueError("a managed block starts with '# BEGIN mailmend' and ends with '# END'")
    kept = admin_lines(live)
    return block.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in kept)
