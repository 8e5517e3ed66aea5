"""The sandbox's receiving mail provider, end to end: a deployed host's message arrives in
IMAP with the provider's Authentication-Results; GTUBE goes to Junk; mailboxes can be added.
"""

from __future__ import annotations

import email
import email.policy
import secrets
from pathlib import Path

import pytest

from mailmend import imap
from sandbox.control import Sandbox
from sandbox.scenario import MAILBOX_HOST, SandboxHost
from tests.e2e.mailflow import (
    deploy_mail,
    mail_records,
    publish,
    sendmail,
    wait_for_subject,
)

pytestmark = pytest.mark.end_to_end

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _send(sb: Sandbox, h: SandboxHost, subject: str, body: str) -> None:
    sender = f"app@{h.domain}"
    to = sb.mailbox.address_of("tester")
    sendmail(sb, h, f"From: {sender}\nTo: {to}\nSubject: {subject}\n\n{body}\n", sender)


def test_deployed_host_message_lands_in_imap_authenticated(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    h = sandbox.hosts()[0]
    deploy_mail(sandbox, tmp_path, [h])
    publish(sandbox, {h.domain: mail_records(sandbox, h)})
    token = secrets.token_hex(6)
    _send(sandbox, h, f"smoke {token}", "hello")
    folder, raw = wait_for_subject(sandbox, token)
    assert folder == "INBOX"
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    results = " ".join(" ".join(v.split()) for v in msg.get_all("Authentication-Results", []))
    # policyd-spf, OpenDKIM and OpenDMARC each wrote theirs (real output of each).
    assert f"{MAILBOX_HOST}; spf=pass (sender SPF authorized) smtp.mailfrom={h.domain}" in results
    assert f"client-ip={h.public_ipv4}; helo={h.fqdn};" in results
    assert (
        f"{MAILBOX_HOST}; dkim=pass (2048-bit key; unprotected) header.d={h.domain} "
        f"header.i=@{h.domain} header.a=rsa-sha256 header.s={h.selector}"
    ) in results
    assert f"{MAILBOX_HOST}; dmarc=pass (p=none dis=none) header.from={h.domain}" in results
    # The front handed Postfix the host's public IP; the hop was TLS.
    hops = [" ".join(v.split()) for v in msg.get_all("Received", [])]
    received = next(hop for hop in hops if f"by {MAILBOX_HOST} (Postfix)" in hop)
    assert received.startswith(f"from {h.fqdn} ({h.fqdn} [{h.public_ipv4}])"), received
    assert "using TLSv1.3" in received
    assert msg["X-Spam-Status"].startswith("No, score=0.0 required=5.0 tests=none")

    spam = secrets.token_hex(6)
    _send(sandbox, h, f"spam {spam}", GTUBE)
    folder, raw = wait_for_subject(sandbox, spam)
    assert folder == "Junk"
    junk = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert junk["X-Spam-Flag"] == "YES"
    assert "GTUBE" in junk["X-Spam-Status"]


def test_a_mailbox_added_while_running_can_log_in(sandbox: Sandbox) -> None:
    name = f"extra{secrets.token_hex(3)}"
    password = sandbox.mailbox.add_user(name)
    assert sandbox.mailbox.password_file(name).stat().st_mode & 0o777 == 0o600
    mb = sandbox.mailbox
    client = imap.connect(
        mb.address, 993, mb.address_of(name), password, cafile=mb.ca_file, timeout=10
    )
    assert [kind for _name, kind in imap.folders(client)][:2] == ["inbox", "junk"]
    client.logout()
    with pytest.raises(imap.ImapError, match="failed: wrong user or password"):
        imap.connect(mb.address, 993, mb.address_of(name), "wrong", cafile=mb.ca_file, timeout=10)
    # Without the sandbox CA the certificate is not trusted.
    with pytest.raises(imap.ImapError, match="TLS certificate not trusted"):
        imap.connect(mb.address, 993, mb.address_of(name), password, timeout=10)
