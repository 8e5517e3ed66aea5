"""Helpers for tests where sandbox hosts send real mail to the receiving provider.

Deploy the mail stack on some hosts, publish their SPF, DKIM and DMARC records (or a
chosen broken variant), send with the host's own ``sendmail`` and read the result over
IMAPS from the provider (``sandbox/mailbox.py``), trusting the sandbox's CA.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import imapclient

from mailmend import imap
from mailmend.checks.txt import txt_strings
from sandbox.control import Sandbox
from sandbox.scenario import SandboxHost
from tests.conftest import run_pyinfra

Record = tuple[str, str, str]


def deploy_mail(sb: Sandbox, fleet_dir: Path, hosts: Iterable[SandboxHost], rate: int = 30) -> Path:
    """``deploys/mail.py`` on ``hosts`` (``--limit``); the fleet file it used."""
    fleet = fleet_dir / "fleet.toml"
    fleet.write_text(sb.fleet_text(defaults={"rate_limit_per_minute": rate}))
    limits = [arg for h in hosts for arg in ("--limit", h.name)]
    run_pyinfra(fleet, "-y", *limits, "deploys/mail.py", check=True)
    return fleet


def dkim_value(sb: Sandbox, h: SandboxHost) -> str:
    """The host's DKIM TXT value (``v=DKIM1; ...``), read from the key OpenDKIM signs with."""
    txt = sb.ssh(h, f"cat /etc/opendkim/keys/{h.domain}/{h.selector}.txt")
    return "".join(re.findall(r'"([^"]*)"', txt))


def mail_records(
    sb: Sandbox, h: SandboxHost, *, dkim: bool = True, spf_ip: str | None = None
) -> list[Record]:
    """SPF (``spf_ip``, default the host's public IP), DKIM (unless ``dkim=False``), DMARC."""
    out: list[Record] = [
        ("@", "TXT", f'"v=spf1 ip4:{spf_ip or h.public_ipv4} -all"'),
        ("_dmarc", "TXT", '"v=DMARC1; p=none"'),
    ]
    if dkim:
        out.append((f"{h.selector}._domainkey", "TXT", txt_strings(dkim_value(sb, h))))
    return out


def publish(sb: Sandbox, records: dict[str, list[Record]]) -> None:
    """Serve the scenario plus ``records`` (zone -> records) and wait for Knot's new serial."""
    extra = {zone: tuple(recs) for zone, recs in records.items()}
    sb.dns.serve(replace(sb.scenario(), extra_records=extra))


def sendmail(sb: Sandbox, h: SandboxHost, message: bytes | str, sender: str) -> None:
    """Submit ``message`` on ``h`` through its own Postfix (``sendmail -t -i -f sender``)."""
    text = message.decode() if isinstance(message, bytes) else message
    command = f"/usr/sbin/sendmail -t -i -f {shlex.quote(sender)}"
    sb.ssh(h, f"printf %s {shlex.quote(text)} | {command}")


def mailbox(sb: Sandbox, user: str = "tester") -> imapclient.IMAPClient:
    mb = sb.mailbox
    return imap.connect(
        mb.address, 993, mb.address_of(user), mb.password(user), cafile=mb.ca_file, timeout=10
    )


def wait_for_subject(
    sb: Sandbox, subject: str, user: str = "tester", timeout: float = 90
) -> tuple[str, bytes]:
    """(folder, raw message) of the message whose Subject contains ``subject``."""
    deadline = time.monotonic() + timeout
    client = mailbox(sb, user)
    try:
        while time.monotonic() < deadline:
            hits = imap.search_folders(client, ["SUBJECT", subject], ("inbox", "junk"))
            if hits:
                folder, _kind, uid = hits[0]
                client.select_folder(folder, readonly=True)
                raw = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
                return folder, bytes(raw)
            time.sleep(0.5)
    finally:
        client.logout()
    raise AssertionError(f"no message with subject {subject!r} in {user}'s mailbox")
