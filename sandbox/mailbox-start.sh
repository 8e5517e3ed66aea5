#!/bin/sh
# The receiving mail provider's services, configured and started inside its sandbox host
# (run by host-init.sh as /usr/local/sbin/sandbox-start, in the host's chroot, before sshd).
# The packages come from the cached image (sandbox/mailbox.py); everything that depends on
# the sandbox (its address, names, TLS certificate, mailboxes) is configured here.
#
# Mail path: the sandbox's SMTP front (sandbox/mxproxy.py) on ADDR:25 -> Postfix on
# ADDR:2525 (PROXY protocol: the client is the sending host's public IP) -> policyd-spf
# (RCPT) -> milters OpenDKIM (verify), OpenDMARC, spamass-milter/spamd -> Dovecot LMTP with
# a sieve rule filing X-Spam-Flag: YES into Junk. IMAPS on ADDR:993.
set -eu
. /etc/mailmend-sandbox.env   # ADDR, MX_HOST, DOMAIN, USERS_FILE, RESOLVER

# -- Postfix ------------------------------------------------------------------------------
postconf -e \
    "myhostname = $MX_HOST" \
    "mydomain = $DOMAIN" \
    "myorigin = \$mydomain" \
    "mydestination = localhost" \
    "inet_interfaces = loopback-only" \
    "inet_protocols = ipv4" \
    "mynetworks = 127.0.0.0/8" \
    "maillog_file = /var/log/postfix.log" \
    "virtual_mailbox_domains = $DOMAIN" \
    "virtual_mailbox_maps = regexp:/etc/postfix/vmailbox.regexp" \
    "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
    "smtpd_tls_cert_file = /etc/ssl/mailbox/cert.pem" \
    "smtpd_tls_key_file = /etc/ssl/mailbox/key.pem" \
    "smtpd_tls_security_level = may" \
    "smtpd_tls_received_header = yes" \
    "smtpd_tls_loglevel = 1" \
    "smtpd_helo_required = yes" \
    "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/policyd-spf" \
    "policyd-spf_time_limit = 3600" \
    "smtpd_milters = unix:/run/opendkim/opendkim.sock, unix:/run/opendmarc/opendmarc.sock, unix:/run/spamass/spamass.sock" \
    "non_smtpd_milters =" \
    "milter_default_action = tempfail" \
    "milter_protocol = 6"
printf '/@%s$/ ok\n' "$(printf %s "$DOMAIN" | sed 's/\./\\./g')" > /etc/postfix/vmailbox.regexp
# No chroot (the milter sockets live in /run); the public port is the front's, Postfix
# listens beside it and reads the real client from the PROXY header. (inet_interfaces
# cannot name 127.B.9.26: Postfix refuses an address that is not on an interface.)
postconf -F '*/*/chroot = n'
postconf -MX smtp/inet
postconf -M "$ADDR:2525/inet = $ADDR:2525 inet n - n - - smtpd -o smtpd_upstream_proxy_protocol=haproxy"
postconf -M "policyd-spf/unix = policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf"
id policyd-spf >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin policyd-spf

# -- SPF: an Authentication-Results header, never a rejection ------------------------------
cat > /etc/postfix-policyd-spf-python/policyd-spf.conf <<EOF
debugLevel = 1
TestOnly = 1
HELO_reject = False
Mail_From_reject = False
PermError_reject = False
TempError_Defer = False
skip_addresses = 127.0.0.0/8
Header_Type = AR
Authserv_Id = $MX_HOST
EOF

# -- OpenDKIM: verify only ------------------------------------------------------------------
cat > /etc/opendkim.conf <<EOF
Mode v
AuthservID $MX_HOST
AlwaysAddARHeader yes
# Debian's OpenDKIM resolves with libunbound, which recurses from the root by itself unless
# told where to ask: the sandbox's resolver, as every other daemon here uses.
Nameservers $RESOLVER
Socket local:/run/opendkim/opendkim.sock
PidFile /run/opendkim/opendkim.pid
UserID opendkim
UMask 000
Syslog no
EOF

# -- OpenDMARC: reads the SPF and DKIM results above -----------------------------------------
cat > /etc/opendmarc.conf <<EOF
AuthservID $MX_HOST
TrustedAuthservIDs $MX_HOST
Socket local:/run/opendmarc/opendmarc.sock
PidFile /run/opendmarc/opendmarc.pid
UserID opendmarc
UMask 000
Syslog false
IgnoreHosts /etc/opendmarc/ignore.hosts
RejectFailures false
SPFIgnoreResults false
SPFSelfValidate false
RequiredHeaders false
FailureReports false
EOF
mkdir -p /etc/opendmarc
: > /etc/opendmarc/ignore.hosts

# -- SpamAssassin: local rules only, the report in a header ---------------------------------
cat > /etc/spamassassin/local.cf <<EOF
required_score 5.0
report_safe 0
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
add_header all Report _REPORT_
# The sandbox's "public" addresses are documentation ranges (RFC 5737), which this rule
# scores as forged; a real provider would see a routable address.
score RCVD_ILLEGAL_IP 0
EOF

# -- Dovecot: IMAPS and LMTP with a sieve rule filing spam into Junk -------------------------
mkdir -p /etc/dovecot/sieve
cat > /etc/dovecot/sieve/junk.sieve <<'EOF'
require ["fileinto", "mailbox"];
if header :contains "X-Spam-Flag" "YES" {
    fileinto :create "Junk";
    stop;
}
EOF
cat > /etc/dovecot/dovecot.conf <<EOF
protocols = imap lmtp
listen = $ADDR
log_path = /var/log/dovecot.log
ssl = required
ssl_cert = </etc/ssl/mailbox/cert.pem
ssl_key = </etc/ssl/mailbox/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
mail_location = maildir:/var/mail/vhosts/%d/%n
first_valid_uid = 8
passdb {
  driver = passwd-file
  args = scheme=SSHA256 $USERS_FILE
}
userdb {
  driver = static
  args = uid=mail gid=mail home=/var/mail/vhosts/%d/%n
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 993
    ssl = yes
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
  postmaster_address = postmaster@$DOMAIN
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
}
plugin {
  sieve_before = /etc/dovecot/sieve/junk.sieve
}
EOF
sievec /etc/dovecot/sieve/junk.sieve
mkdir -p /var/mail/vhosts
chown mail:mail /var/mail/vhosts

# -- start, in the order mail flows back to front -------------------------------------------
mkdir -p /run/opendkim /run/opendmarc /run/spamass
chown opendkim:opendkim /run/opendkim
chown opendmarc:opendmarc /run/opendmarc
spamd --daemonize --local --max-children 2 --min-children 1 --syslog=/var/log/spamd.log \
    --socketpath=/run/spamd.sock --socketmode=0666 --pidfile=/run/spamd.pid \
    --username=debian-spamd --nouser-config
(umask 000 && spamass-milter -f -m -p /run/spamass/spamass.sock -P /run/spamass/pid -- -U /run/spamd.sock)
opendkim -x /etc/opendkim.conf
opendmarc -c /etc/opendmarc.conf
dovecot
postfix start || { echo "sandbox-start: postfix start failed (postfix check?)" >&2; exit 1; }

# Up only when every socket is there (spamd loads its rules first: a few seconds).
for i in $(seq 1 600); do
    ready=yes
    for s in /run/spamd.sock /run/spamass/spamass.sock /run/opendkim/opendkim.sock \
             /run/opendmarc/opendmarc.sock /var/spool/postfix/private/dovecot-lmtp \
             /var/spool/postfix/public/pickup; do
        [ -S "$s" ] || [ -p "$s" ] || ready=no
    done
    [ "$ready" = yes ] && exit 0
    sleep 0.1
done
echo "sandbox-start: a service did not come up; see /var/log/{postfix,dovecot,spamd}.log" >&2
exit 1
