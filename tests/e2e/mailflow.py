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
from sandbox.mailbox import mailbox_root
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


SPAMASSASSIN_WRAPPER = """#!/bin/sh
# SpamAssassin from the sandbox provider's image, run on a throwaway overlay of it (the
# image stays untouched): what an admin's machine with spamassassin installed runs.
set -eu
work=$(mktemp -d)
mkdir "$work/u" "$work/w" "$work/r"
status=0
unshare --mount --propagation private sh -c '
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/u,workdir=$2/w" "$2/r"
    mount -t proc proc "$2/r/proc"
    mount --bind /dev "$2/r/dev"
    shift 2
    exec chroot "$0" /usr/bin/spamassassin "$@"
' "$work/r" "{image}" "$work" "$@" || status=$?
rm -rf "$work"
exit $status
"""


def spamassassin_on_path(bin_dir: Path) -> dict[str, str]:
    """An environment whose PATH has ``spamassassin`` (the provider image's, see above)."""
    from tests.conftest import CLI_ENV

    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "spamassassin"
    wrapper.write_text(SPAMASSASSIN_WRAPPER.replace("{image}", str(mailbox_root())))
    wrapper.chmod(0o755)
    return {**CLI_ENV, "PATH": f"{bin_dir}:{CLI_ENV.get('PATH', '/usr/bin:/bin')}"}


RESTART_OPENDKIM = """
pid=$(cat /run/opendkim/opendkim.pid)
kill "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
rm -f /run/opendkim/opendkim.sock /run/opendkim/opendkim.pid
opendkim -x /etc/opendkim.conf
for i in $(seq 1 100); do [ -S /run/opendkim/opendkim.sock ] && exit 0; sleep 0.1; done
echo "opendkim did not come back" >&2; exit 1
"""


def forget_dkim_keys(sb: Sandbox) -> None:
    """Restart the provider's OpenDKIM: its resolver (libunbound) caches keys for their TTL
    (60 s), so a test that removes a key right after another test's message used it would
    otherwise still see it. (OpenDMARC and policyd-spf keep no cache.)"""
    sb.ssh(sb.mailbox.host(), RESTART_OPENDKIM)
