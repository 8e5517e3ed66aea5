"""What the admin must publish: each host's DKIM TXT records, in zone-file form.

Printed in pyinfra's output once the keys exist, and kept in :data:`DKIM_RECORDS` (by
inventory host name) for later steps in the same run. The summary reads public keys only
and runs no command on the host, so it never counts as a change.
"""

from __future__ import annotations

from collections.abc import Generator

from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host, state

from mailmend.adopt import deploy as adopt
from mailmend.checks.dkim_key import DkimPublicKey, parse_key_text
from mailmend.deploys import contexts, opendkim
from mailmend.deploys.facts import HostDkimPublicKey

#: Filled while the deploy executes: inventory host name -> its DKIM records.
DKIM_RECORDS: dict[str, tuple[DkimPublicKey, ...]] = {}


@operation()
def dkim_summary(ctx: contexts.OpenDkimContext) -> Generator[StringCommand, None, None]:
    """
    Print and store this host's DKIM records (reads the public keys; never a change).

    + ctx: the host's validated OpenDKIM context
    """
    if not state.is_executing:  # the keys may not exist before the deploy runs
        host.noop("DKIM records are printed once the keys exist")
        return
    records: list[DkimPublicKey] = []
    for domain in ctx.domains:
        key = host.get_fact(
            HostDkimPublicKey, txt=domain.txt_record, private_key=domain.private_key
        )
        if key is None:
            host.log(f"no DKIM public key for {domain.record_name} yet ({domain.txt_record})")
            continue
        records.append(parse_key_text(key, domain.name, domain.selector))
    DKIM_RECORDS[host.name] = tuple(records)
    for record in records:
        host.log(f"publish: {record.zone_line()}")
    host.noop(f"{len(records)} DKIM record(s) to publish")
    yield from ()


@deploy("Summary", data_defaults=opendkim.DEFAULTS)
def summary_deploy() -> None:
    """Print the DNS records this host needs published (DKIM), and keep them for later steps."""
    ctx = contexts.opendkim_context(host.name, contexts.host_data(host.data))
    ctx = adopt.adopt_dkim(ctx, contexts.adopted_dkim_domain(ctx.key_root))
    dkim_summary(name="DKIM records to publish", ctx=ctx)
