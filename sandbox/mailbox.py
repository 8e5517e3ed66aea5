"""The sandbox's receiving mail provider: one more Debian host, MX of ``inbox.test``.

Debian's own packages, as a small provider runs them: Postfix receiving, OpenDKIM (verify),
OpenDMARC and postfix-policyd-spf-python writing ``Authentication-Results``, SpamAssassin
(spamd + spamass-milter, local rules only) and Dovecot (IMAPS, LMTP, a sieve rule filing
spam into ``Junk``). TLS comes from a CA made per sandbox (``STATE/mailbox/ca.pem``), which
only tests are told to trust.

The packages are installed once into a cached image (like the tools root); everything that
depends on the sandbox is configured when the host starts (``mailbox-start.sh``). Mailboxes
are listed in ``STATE/mailbox/share/users`` (salted hashes, shown read-only inside the host,
re-read by Dovecot at every login) and their passwords in ``STATE/mailbox/passwords/USER``.
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
from pathlib import Path

from sandbox import image
from sandbox.scenario import MAILBOX_DOMAIN, MAILBOX_HOST, Net, SandboxHost

IMAGE_VERSION = "1"  # bump when PACKAGES change: the cached image is rebuilt
PACKAGES = (
    "postfix", "opendkim", "opendmarc", "postfix-policyd-spf-python", "spamassassin",
    "spamd", "spamc", "spamass-milter", "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve",
)  # fmt: skip
#: opendmarc's package would otherwise try to create a MySQL database for its reports.
PRESEED = "opendmarc opendmarc/dbconfig-install boolean false\n"
START_SCRIPT = Path(__file__).with_name("mailbox-start.sh")
IMAPS_PORT = 993
SMTP_PORT = 25
POSTFIX_PORT = 2525  # Postfix itself, behind the SMTP front (PROXY protocol)
_USER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")


class MailboxError(RuntimeError):
    pass


def _build(root: Path) -> None:
    image.install_packages(root, PACKAGES, "receiving mail provider image", preseed=PRESEED)


def mailbox_root() -> Path:
    """The cached Debian 12 root with the provider's packages (built or restored on demand)."""
    return image.cached_root(f"{image.SUITE}-mailbox", _build, version=IMAGE_VERSION)


def ssha256(password: str, salt: bytes | None = None) -> str:
    """Dovecot's ``{SSHA256}`` scheme: base64(sha256(password + salt) + salt)."""
    salt = salt if salt is not None else secrets.token_bytes(8)
    digest = hashlib.sha256(password.encode() + salt).digest()
    return "{SSHA256}" + base64.b64encode(digest + salt).decode()


class MailboxProvider:
    """Files of one sandbox's provider (under ``STATE/mailbox``); used by the sandbox and tests."""

    def __init__(self, state: Path, net: Net) -> None:
        self.net = net
        self.dir = state / "mailbox"
        self.share = self.dir / "share"  # /mnt/sandbox inside the host
        self.users_file = self.share / "users"
        self.passwords = self.dir / "passwords"
        self.ca_file = self.dir / "ca.pem"
        self.peers_file = self.dir / "peers.json"

    @property
    def address(self) -> str:
        return self.net.mailbox

    def host(self) -> SandboxHost:
        """The provider as a sandbox host (for ``Sandbox.ssh``): sshd on its address."""
        return SandboxHost(
            index=0,
            name="mailbox",
            fqdn=MAILBOX_HOST,
            domain=MAILBOX_DOMAIN,
            selector="",
            public_ipv4=self.net.mailbox,
            ssh_addr=self.net.mailbox,
        )

    # -- mailboxes -------------------------------------------------------------------------
    def password_file(self, user: str) -> Path:
        """``file:`` reference target holding ``user``'s password (for --imap-password)."""
        return self.passwords / user

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def address_of(self, user: str) -> str:
        return f"{user}@{MAILBOX_DOMAIN}"

    def users(self) -> list[str]:
        if not self.users_file.exists():
            return []
        return [line.split("@", 1)[0] for line in self.users_file.read_text().splitlines()]

    def add_user(self, user: str, *, running: bool = True) -> str:
        """Create mailbox ``user@inbox.test``; return its password.

        Dovecot re-reads the list by itself, within a few seconds: with ``running`` (the
        provider is up), wait until the new mailbox can log in over IMAPS.
        """
        if not _USER.match(user):
            raise MailboxError(f"{user!r} is not a mailbox name (a-z, 0-9, '.', '_', '-')")
        self.passwords.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.share.mkdir(parents=True, exist_ok=True)
        pw_file = self.password_file(user)
        if not pw_file.exists():
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(18) + "\n")
        password = self.password(user)
        lines = [
            line
            for line in (self.users_file.read_text() if self.users_file.exists() else "").split(
                "\n"
            )
            if line and line.split(":", 1)[0] != self.address_of(user)
        ]
        lines.append(f"{self.address_of(user)}:{ssha256(password)}")
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)  # Dovecot's auth process reads it; salted hashes only
        tmp.rename(self.users_file)
        if running:
            self.wait_login(user, password)
        return password

    def wait_login(self, user: str, password: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        while True:
            try:
                with imaplib.IMAP4_SSL(self.address, IMAPS_PORT, ssl_context=ctx, timeout=5) as c:
                    c.login(self.address_of(user), password)
                    return
            except (OSError, imaplib.IMAP4.error) as err:
                if time.monotonic() > deadline:
                    raise MailboxError(f"{user}: cannot log in over IMAPS: {err}") from None
                time.sleep(0.5)

    # -- TLS ---------------------------------------------------------------------------------
    def make_tls(self, dest: Path) -> None:
        """A CA (kept in ``ca.pem``) and a server certificate for the provider under ``dest``."""
        work = self.dir / "tls"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        ext = work / "ext.cnf"
        ext.write_text(
            f"subjectAltName = DNS:{MAILBOX_HOST}, IP:{self.address}\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
        )
        ca_key, key, csr, cert = (work / n for n in ("ca.key", "key.pem", "csr.pem", "cert.pem"))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        steps = [
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(ca_key), "-out", str(self.ca_file), "-days", "30",
             "-subj", "/CN=mailmend sandbox CA"],
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={MAILBOX_HOST}"],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey",
             str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "30", "-extfile",
             str(ext)],
        ]  # fmt: skip
        for argv in steps:
            done = subprocess.run(argv, check=False, **quiet)  # type: ignore[call-overload]
            if done.returncode != 0:
                raise MailboxError(f"openssl failed: {done.stderr.decode(errors='replace')}")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, dest / "cert.pem")
        shutil.copy(key, dest / "key.pem")
        (dest / "key.pem").chmod(0o600)
        ca_key.unlink()

    # -- the host's overlay ------------------------------------------------------------------
    def prepare(self, upper: Path, users: tuple[str, ...], peers: dict[str, str]) -> None:
        """Write what the host needs in its overlay's upper dir, before it starts."""
        for user in users:
            self.add_user(user, running=False)
        self.write_peers(peers)
        self.make_tls(upper / "etc/ssl/mailbox")
        env = {
            "ADDR": self.address,
            "MX_HOST": MAILBOX_HOST,
            "DOMAIN": MAILBOX_DOMAIN,
            "USERS_FILE": "/mnt/sandbox/users",
            "RESOLVER": self.net.resolver,
        }
        (upper / "etc/mailmend-sandbox.env").write_text(
            "".join(f"{k}={v}\n" for k, v in env.items())
        )
        sbin = upper / "usr/local/sbin"
        sbin.mkdir(parents=True, exist_ok=True)
        shutil.copy(START_SCRIPT, sbin / "sandbox-start")
        (sbin / "sandbox-start").chmod(0o755)

    def write_peers(self, peers: dict[str, str]) -> None:
        """Loopback address of each sending host -> its public IP, for the SMTP front."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.peers_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(peers, indent=1, sort_keys=True) + "\n")
        tmp.rename(self.peers_file)
