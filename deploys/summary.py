"""What the admin must publish: each host's DKIM TXT records, in zone-file form.

Printed in pyinfra's output once the keys exist, and kept in :data:`DKIM_RECORDS` (by
inventory host name) for later steps in the same run. The summary reads public keys only
and runs no command on the host, so it never counts as a change.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host, state

from deploys import opendkim, values
from deploys.facts import DkimPublicKey

#: A DNS TXT character-string holds at most 255 bytes.
MAX_TXT_STRING = 255
DKIM_PREFIX = "v=DKIM1; k=rsa; "


@dataclass(frozen=True)
class DkimRecord:
    name: str  # absolute, with the trailing dot
    strings: tuple[str, ...]  # each <= 255 bytes

    @property
    def value(self) -> str:
        return "".join(self.strings)

    def zone_line(self) -> str:
        quoted = " ".join(f'"{s}"' for s in self.strings)
        return f"{self.name} IN TXT ( {quoted} )"


#: Filled while the deploy executes: inventory host name -> its DKIM records.
DKIM_RECORDS: dict[str, tuple[DkimRecord, ...]] = {}


def txt_strings(value: str, limit: int = MAX_TXT_STRING) -> tuple[str, ...]:
    """Split an ASCII TXT value into strings of at most ``limit`` bytes."""
    return tuple(value[i : i + limit] for i in range(0, len(value), limit)) or ("",)


def dkim_record(domain: values.DkimDomain, public_key: str) -> DkimRecord:
    """``SELECTOR._domainkey.DOMAIN.`` with ``v=DKIM1; k=rsa; `` and ``p=`` in <=255-byte strings.

    >>> dkim_record(values.DkimDomain("example.com", "mx1", "", "", ""), "AB" * 200).strings[0]
    'v=DKIM1; k=rsa; '
    """
    return DkimRecord(
        name=f"{domain.record_name}.",
        strings=(DKIM_PREFIX, *txt_strings("p=" + public_key)),
    )


@operation()
def dkim_summary(ctx: values.OpenDkimContext) -> Generator[StringCommand, None, None]:
    """
    Print and store this host's DKIM records (reads the public keys; never a change).

    + ctx: the host's validated OpenDKIM context
    """
    if not state.is_executing:  # the keys may not exist before the deploy runs
        host.noop("DKIM records are printed once the keys exist")
        return
    records: list[DkimRecord] = []
    for domain in ctx.domains:
        key = host.get_fact(DkimPublicKey, txt=domain.txt_record, private_key=domain.private_key)
        if key is None:
            host.log(f"no DKIM public key for {domain.record_name} yet ({domain.txt_record})")
            continue
        records.append(dkim_record(domain, key))
    DKIM_RECORDS[host.name] = tuple(records)
    for record in records:
        host.log(f"publish: {record.zone_line()}")
    host.noop(f"{len(records)} DKIM record(s) to publish")
    yield from ()


@deploy("Summary", data_defaults=opendkim.DEFAULTS)
def summary_deploy() -> None:
    """Print the DNS records this host needs published (DKIM), and keep them for later steps."""
    ctx = values.opendkim_context(host.name, values.host_data(host.data))
    dkim_summary(name="DKIM records to publish", ctx=ctx)
