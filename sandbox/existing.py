"""Sandbox hosts that start as servers someone already set up, not as empty VPSes.

Each *setup* is an image built like the base images (cached, a recipe version in the cache
key): Debian's own packages installed with their debconf questions answered, then
configured with the real tools (``postconf -e``, ``postconf -M``/``-P``, ``doveadm``,
``opendkim-genkey``, exim4-config's debconf answers and ``update-exim4.conf``), the way an
admin does it. What depends on the running sandbox (the host's loopback address, the relay
password) is applied at boot by ``/usr/local/sbin/sandbox-boot`` in the image, run over SSH
once the host is up, from ``/root/sandbox-boot.env`` written into the host's overlay.

* ``mailserver``: Postfix "Internet Site" with a virtual mailbox domain (``oldco.example``)
  delivered to Dovecot over LMTP; submission on 587 with Dovecot SASL (STARTTLS, snakeoil);
  custom ``smtpd_*`` restrictions (a commented, multi-line block) and ``header_checks``. It is
  also the smarthost of ``relay`` (Dovecot user ``relay@oldco.example``).
* ``relay``: Postfix "Satellite system" through ``[smarthost.sink.test]:587`` with SASL
  credentials in ``/etc/postfix/sasl/sasl_passwd`` (a web app's relay).
* ``exim``: Debian's default MTA, exim4-daemon-light, "mail sent by smarthost; no local
  mail", with a smarthost and relay domains in ``update-exim4.conf.conf``.
* ``dkim``: Postfix + OpenDKIM signing ``signed.example`` with its key in Debian's
  ``/etc/dkimkeys/default.private`` (``Domain``/``Selector``/``KeyFile`` in opendkim.conf),
  selector ``default``, while the fleet file names another one (``news2026``): the admin's
  selector is the one that must be published and checked.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from sandbox import image

RECIPE_VERSION = "1"  # bump when a recipe changes: its cached image is rebuilt
BOOT = "/usr/local/sbin/sandbox-boot"
BOOT_ENV = "root/sandbox-boot.env"  # relative to the host's root
SMARTHOST = "smarthost.sink.test"  # A record -> the mailserver host (scenario extra record)
#: The Dovecot user the relay host authenticates as on the mailserver's submission port.
RELAY_USER = "relay@oldco.example"
MAILBOX_USER = "alice@oldco.example"


@dataclass(frozen=True)
class Setup:
    name: str
    fqdn: str
    domain: str  # the domain it sends for
    selector: str  # the DKIM selector the fleet names for it
    packages: tuple[str, ...]
    preseed: str
    configure: str  # shell, run chrooted in the image after the install
    boot: str  # shell, run on the host at boot (sources /root/sandbox-boot.env)
    suites: tuple[str, ...] = ("bookworm",)
    #: the selector of the DKIM key it already signs with ("" when it signs with none)
    signs_with: str = ""


_LISTEN_ON_ADDR = r"""
# Sandbox hosts share one loopback: Postfix's inet services listen on the host's address.
sed -i -E "s/^(smtp|submission)([[:space:]]+inet)/$ADDR:\1\2/" /etc/postfix/master.cf
"""

_MAILSERVER_CONFIGURE = r"""
postconf -e 'myhostname = mail.oldco.example' 'mydestination = $myhostname, localhost' \
    'virtual_mailbox_domains = oldco.example' \
    'virtual_transport = lmtp:unix:private/dovecot-lmtp' \
    'smtpd_sasl_type = dovecot' 'smtpd_sasl_path = private/auth' \
    'smtpd_helo_required = yes' \
    'header_checks = regexp:/etc/postfix/header_checks' \
    'maillog_file = /var/log/mail.log'
cat >> /etc/postfix/main.cf <<'EOF'

# Local policy (ops, 2021): mail clients authenticate on 587; nobody relays otherwise.
smtpd_helo_restrictions = permit_mynetworks,
    permit_sasl_authenticated,
    reject_invalid_helo_hostname
smtpd_recipient_restrictions =
    reject_non_fqdn_recipient,
    # ours first, then the usual
    permit_mynetworks,
    permit_sasl_authenticated,
    reject_unauth_destination
EOF
printf '%s\n' '/^X-Campaign-Id:/ REJECT bulk campaign mail is not accepted here' \
    > /etc/postfix/header_checks
postconf -M submission/inet='submission inet n - y - - smtpd'
postconf -P submission/inet/syslog_name=postfix/submission \
    submission/inet/smtpd_tls_security_level=encrypt \
    submission/inet/smtpd_sasl_auth_enable=yes \
    submission/inet/smtpd_tls_auth_only=yes \
    submission/inet/smtpd_client_restrictions=permit_sasl_authenticated,reject \
    submission/inet/milter_macro_daemon_name=ORIGINATING
useradd --system --uid 5000 --user-group --home-dir /var/vmail --shell /usr/sbin/nologin vmail
install -d -o vmail -g vmail -m 750 /var/vmail
sed -i 's/^!include auth-system.conf.ext/#&/' /etc/dovecot/conf.d/10-auth.conf
cat > /etc/dovecot/local.conf <<'EOF'
protocols = lmtp
mail_location = maildir:/var/vmail/%d/%n
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u /etc/dovecot/users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=/var/vmail/%d/%n
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
: > /etc/dovecot/users
chown root:dovecot /etc/dovecot/users
chmod 640 /etc/dovecot/users
newaliases
rm -f /usr/sbin/policy-rc.d
"""

_MAILSERVER_BOOT = (
    _LISTEN_ON_ADDR
    + r"""
for user in alice@oldco.example relay@oldco.example; do
    var=$(echo "${user%@*}" | tr a-z A-Z)_PASSWORD
    eval "pw=\$$var"
    echo "$user:$(doveadm pw -s SHA512-CRYPT -p "$pw")" >> /etc/dovecot/users
done
service dovecot start
service postfix start
"""
)

_RELAY_CONFIGURE = r"""
postconf -e 'smtp_sasl_auth_enable = yes' \
    'smtp_sasl_password_maps = hash:/etc/postfix/sasl/sasl_passwd' \
    'smtp_sasl_security_options = noanonymous' \
    'smtp_tls_security_level = encrypt' \
    'maillog_file = /var/log/mail.log'
newaliases
rm -f /usr/sbin/policy-rc.d
"""

_RELAY_BOOT = (
    _LISTEN_ON_ADDR
    + r"""
umask 077
echo "[smarthost.sink.test]:587 relay@oldco.example:$RELAY_PASSWORD" > /etc/postfix/sasl/sasl_passwd
postmap hash:/etc/postfix/sasl/sasl_passwd
service postfix start
"""
)

_EXIM_CONFIGURE = r"""
rm -f /usr/sbin/policy-rc.d
"""

_EXIM_BOOT = r"""
sed -i "s/^dc_local_interfaces=.*/dc_local_interfaces='$ADDR'/" \
    /etc/exim4/update-exim4.conf.conf
update-exim4.conf
service exim4 start
"""

_DKIM_CONFIGURE = r"""
opendkim-genkey -b 2048 -d signed.example -s default -D /etc/dkimkeys
chown opendkim:opendkim /etc/dkimkeys/default.private
sed -i -E \
    -e 's|^#?Domain[[:space:]].*|Domain\t\t\tsigned.example|' \
    -e 's|^#?Selector[[:space:]].*|Selector\t\tdefault|' \
    -e 's|^#?KeyFile[[:space:]].*|KeyFile\t\t/etc/dkimkeys/default.private|' \
    -e 's|^Socket[[:space:]].*|Socket\t\t\tlocal:/var/spool/postfix/opendkim/opendkim.sock|' \
    /etc/opendkim.conf
install -d -o opendkim -g opendkim -m 750 /var/spool/postfix/opendkim
adduser postfix opendkim
postconf -e 'myhostname = mail.signed.example' \
    'smtpd_milters = unix:opendkim/opendkim.sock' 'non_smtpd_milters = $smtpd_milters' \
    'milter_default_action = accept' 'maillog_file = /var/log/mail.log'
newaliases
rm -f /usr/sbin/policy-rc.d
"""

_DKIM_BOOT = (
    _LISTEN_ON_ADDR
    + r"""
service opendkim start
service postfix start
"""
)

SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup(
            name="mailserver",
            fqdn="mail.oldco.example",
            domain="oldco.example",
            selector="mail",
            packages=("postfix", "dovecot-core", "dovecot-lmtpd", "ssl-cert"),
            preseed="postfix postfix/main_mailer_type select Internet Site\n"
            "postfix postfix/mailname string mail.oldco.example\n",
            configure=_MAILSERVER_CONFIGURE,
            boot=_MAILSERVER_BOOT,
        ),
        Setup(
            name="relay",
            fqdn="app.webshop.example",
            domain="webshop.example",
            selector="app",
            packages=("postfix", "libsasl2-modules"),
            preseed="postfix postfix/main_mailer_type select Satellite system\n"
            "postfix postfix/mailname string app.webshop.example\n"
            f"postfix postfix/relayhost string [{SMARTHOST}]:587\n",
            configure=_RELAY_CONFIGURE,
            boot=_RELAY_BOOT,
        ),
        Setup(
            name="exim",
            fqdn="mx.eximhost.example",
            domain="eximhost.example",
            selector="mx",
            packages=("exim4-daemon-light",),
            preseed="exim4-config exim4/dc_eximconfig_configtype select "
            "mail sent by smarthost; no local mail\n"
            f"exim4-config exim4/dc_smarthost string {SMARTHOST}::587\n"
            "exim4-config exim4/dc_relay_domains string partner.example\n"
            "exim4-config exim4/dc_local_interfaces string 127.0.0.1\n"
            "exim4-config exim4/mailname string mx.eximhost.example\n"
            "exim4-config exim4/dc_other_hostnames string eximhost.example\n"
            "exim4-config exim4/use_split_config boolean false\n",
            configure=_EXIM_CONFIGURE,
            boot=_EXIM_BOOT,
        ),
        Setup(
            name="dkim",
            fqdn="mail.signed.example",
            domain="signed.example",
            selector="news2026",
            signs_with="default",
            packages=("postfix", "opendkim", "opendkim-tools"),
            preseed="postfix postfix/main_mailer_type select Internet Site\n"
            "postfix postfix/mailname string mail.signed.example\n",
            configure=_DKIM_CONFIGURE,
            boot=_DKIM_BOOT,
        ),
    )
}


def setup(name: str) -> Setup:
    try:
        return SETUPS[name]
    except KeyError:
        raise ValueError(f"unknown setup {name!r} (known: {', '.join(SETUPS)})") from None


def _build(root: Path, s: Setup, suite: str) -> None:
    script = s.configure + (
        f"printf '%s\\n' '#!/bin/sh' 'set -eu' '. /{BOOT_ENV}' > {BOOT}\n"
        f"cat >> {BOOT} <<'MAILMEND_BOOT'\n{s.boot}\nMAILMEND_BOOT\nchmod 755 {BOOT}\n"
    )
    image.install_packages(
        root, s.packages, f"{suite} {s.name} image", preseed=s.preseed, suite=suite, script=script
    )


def setup_root(name: str, suite: str = image.SUITE) -> Path:
    """The cached root of setup ``name`` on ``suite`` (built or restored on demand)."""
    s = setup(name)
    if suite not in s.suites:
        raise ValueError(f"setup {name} is built for {', '.join(s.suites)}, not {suite}")
    return image.cached_root(
        f"{suite}-{name}", lambda root: _build(root, s, suite), version=RECIPE_VERSION
    )


def boot_env(addr: str, passwords: dict[str, str]) -> str:
    """The boot script's environment: the host's address and the sandbox's passwords."""
    lines = [f"ADDR={shlex.quote(addr)}"]
    lines += [f"{k}={shlex.quote(v)}" for k, v in sorted(passwords.items())]
    return "\n".join(lines) + "\n"


def new_passwords() -> dict[str, str]:
    """Random passwords for the sandbox's mail users, made at ``up`` (never in the repo)."""
    return {
        "ALICE_PASSWORD": secrets.token_urlsafe(12),
        "RELAY_PASSWORD": secrets.token_urlsafe(12),
    }
