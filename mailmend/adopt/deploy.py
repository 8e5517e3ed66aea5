"""The deploy's side of adopting an existing server: facts, the other-MTA stop, the merge.

* :func:`other_mta_deploy` runs first on every host: with Exim, Sendmail or OpenSMTPD
  installed and no ``replace_mta = true``, it fails that host (nothing changed there, the
  rest of the fleet goes on) with a message naming what would be removed and, for Exim, its
  ``update-exim4.conf.conf`` settings.
* :func:`main_cf_plan` decides how main.cf is written: mailmend's template (a new host, a
  main.cf mailmend wrote, or ``postfix_config = "replace"``) or a merge into the admin's file
  (:mod:`mailmend.adopt.maincf`), whose changes are logged old -> new.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pyinfra import logger
from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.facts import FactBase
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.operations import server

from mailmend.adopt import dkim_discovery, ipv6, maincf, mta, shown
from mailmend.deploys.facts import installed_packages, once


class FileText(FactBase[Any]):
    """A text file's exact content (base64 on the wire: no whitespace lost), or None."""

    def command(self, path: str) -> StringCommand:
        return StringCommand(
            "if [ -f", QuoteString(path), "]; then base64 -w0 <", QuoteString(path), "; echo;",
            "else echo MAILMEND_NO_FILE; fi",
        )  # fmt: skip

    def process(self, output: list[str]) -> str | None:
        text = "".join(output).strip()
        if text == "MAILMEND_NO_FILE":
            return None
        try:
            return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return None


def _installed() -> list[str]:
    return list(installed_packages())


@deploy("Existing server")
def other_mta_deploy() -> None:
    """Stop this host, before any change, when another MTA is installed and may not go."""
    found = mta.detect(_installed())
    if found is None:
        return
    raw: Any = host.data
    data: Mapping[str, Any] = raw.dict()
    if data.get("replace_mta") is True:
        host.log(
            f"{found.name} ({', '.join(found.packages)}) is replaced by Postfix "
            f"(replace_mta = true); its configuration in {', '.join(found.config_dirs)} is kept",
            logger.warning,
        )
        # Its package scripts do not stop it where no init system runs it (a container):
        # stopped here, or it keeps port 25 and Postfix cannot start.
        server.service(
            name=f"Stop {found.name} before Postfix replaces it (replace_mta = true)",
            service=found.service,
            running=False,
        )
        return
    exim = None
    if found.name == "Exim":
        text = host.get_fact(FileText, path=mta.EXIM_CONFIG)
        exim = mta.parse_exim_conf(text) if text is not None else {}
    lines = mta.stop_message(found, exim, host.name)
    for line in lines:
        host.log(line, logger.error)
    message = StringCommand("printf '%s\\n'", *(QuoteString(line) for line in lines), ">&2; exit 1")
    server.shell(
        name=f"Stop: {found.name} is installed and replace_mta is not set (nothing changed)",
        commands=[message],  # type: ignore[list-item]  # pyinfra runs StringCommands as-is
    )


# -- main.cf ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MainCfPlan:
    merge: bool  # False: mailmend's template
    content: str  # the whole new main.cf
    changes: tuple[maincf.Change, ...] = ()


def main_cf_mode(data: Mapping[str, Any], live: str | None) -> bool:
    """True to merge: the admin's main.cf (not written by mailmend) and no "replace"."""
    if data.get("postfix_config", "merge") == "replace" or live is None:
        return False
    return not live.startswith(maincf.TEMPLATE_MARKER)


def merge_spec(ctx: Any, milter: bool = True) -> maincf.MergeSpec:
    """What mailmend needs in an admin's main.cf, from the deploy's ``PostfixContext``."""
    settings: list[tuple[str, str]] = [
        ("myhostname", ctx.hostname),
        ("smtp_helo_name", "$myhostname"),
        ("smtp_transport_rate_delay", f"{ctx.rate_delay_seconds}s"),
        ("milter_default_action", "accept"),
        ("access_map_reject_code", "550"),
        ("maillog_file", ctx.maillog_file),
    ]
    if ctx.bind_address:
        settings.append(("smtp_bind_address", ctx.bind_address))
    if ctx.bind_address6:
        settings.append(("smtp_bind_address6", ctx.bind_address6))
    if ctx.recipient_limit:
        settings.append(("smtpd_recipient_limit", str(ctx.recipient_limit)))
    if ctx.relay is not None:
        settings.append(("relayhost", ctx.relay.nexthop))
        if ctx.relay.credentials is not None:
            settings += [
                ("smtp_sasl_auth_enable", "yes"),
                ("smtp_sasl_password_maps", f"hash:{ctx.config_dir}/sasl_passwd"),
                ("smtp_sasl_security_options", "noanonymous"),
            ]
    settings += list(ctx.extra_settings)
    if ctx.ipv4_only:
        settings.append(ipv6.SETTING)
    return maincf.MergeSpec(
        settings=tuple(settings),
        recipient_checks=(
            f"check_recipient_access {ctx.suppress_recipients_map}",
            f"check_policy_service {{ {ctx.policy_service}, default_action=DUNNO }}",
        ),
        transport_map=ctx.suppress_transport_map,
        milter=ctx.milter_socket if milter else None,
        tls_level="encrypt" if ctx.relay is not None else "may",
    )


def main_cf_plan(ctx: Any, data: Mapping[str, Any], template: str) -> MainCfPlan:
    """How main.cf is written on this host; a merge's changes are logged (old -> new)."""
    live = host.get_fact(FileText, path=posixpath.join(ctx.config_dir, "main.cf"))
    if not main_cf_mode(data, live):
        return MainCfPlan(merge=False, content=template)
    assert live is not None
    try:
        merged = maincf.merge(live, merge_spec(ctx, milter=opendkim_wanted(data)[0]))
    except maincf.MainCfError as err:
        raise ValueError(f"host {host.name}: main.cf: {err}") from None
    name, value = ipv6.SETTING
    if not ctx.ipv4_only and merged.get(name) == value and data.get("public_ipv6"):
        merged.set(name, "any")  # the PTR is right now: both again (Postfix's default)
    if merged.changes:
        host.log(
            'main.cf was not written by mailmend: merging (postfix_config = "replace" for '
            "the whole-file template); parameters that change:",
            logger.info,
        )
        for change in merged.changes:
            logger.info("    %s", change)
    return MainCfPlan(merge=True, content=merged.render(), changes=tuple(merged.changes))


def merge_validate_command(config_dir: str, staging_dir: str) -> StringCommand:
    """Validate a merged main.cf (with a copy of the live master.cf) with Postfix itself.

    Like the template's check, but warnings the live file already gives (an admin's unused
    parameter, say) are not held against the merge: only new ones refuse it.
    """
    staging = QuoteString(staging_dir)
    live = QuoteString(config_dir)
    master = QuoteString(posixpath.join(config_dir, "master.cf"))
    sed = StringCommand(QuoteString(f"s|{staging_dir}|{config_dir}|g"))
    return StringCommand(
        "cp -p", master, staging,
        "&& old=$(postconf -c", live, "-n 2>&1 >/dev/null | sort)",
        "; new=$(postconf -c", staging, "-n 2>&1 >/dev/null | sed", sed, "| sort)",
        "; err=$(printf '%s\\n' \"$new\" | grep -vxF -e \"$old\" -e '' || true)",
        "; [ -z \"$err\" ]",
        "&& err=$(postmap -c", staging, "-q mailmend texthash:/dev/null 2>&1 >/dev/null || true)",
        "&& [ -z \"$err\" ] && postfix -c", staging, "check",
        "|| { echo \"$err\" >&2;",
        "echo 'mailmend: the merged Postfix configuration was refused;",
        "the live main.cf is unchanged' >&2; exit 1; }",
    )  # fmt: skip


# -- DKIM -------------------------------------------------------------------------------


class FilesText(FactBase[Any]):
    """The concatenated text of the files a shell glob matches ("" when none)."""

    def command(self, pattern: str) -> str:
        # The pattern is ours (a constant), never data from the fleet or the host.
        return f"cat {pattern} 2>/dev/null | base64 -w0; echo"

    def process(self, output: list[str]) -> str:
        try:
            return base64.b64decode("".join(output).strip()).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return ""


def _opendkim_tables(conf: str) -> tuple[str | None, str | None]:
    settings = dkim_discovery.parse_opendkim_conf(conf)
    out: list[str | None] = []
    for key in ("KeyTable", "SigningTable"):
        value = settings.get(key)
        path = dkim_discovery.table_path(value)[1] if value else None
        out.append(host.get_fact(FileText, path=path) if path and path.startswith("/") else None)
    return out[0], out[1]


def existing_dkim(ctx: Any) -> tuple[list[dkim_discovery.FoundKey], list[str]]:
    """Keys that already sign for the host's domains outside mailmend's key directory (an
    admin's OpenDKIM, rspamd, amavis), and the other active signers."""
    conf = host.get_fact(FileText, path=ctx.config_file) or ""
    keytable, signingtable = _opendkim_tables(conf) if conf else (None, None)
    installed, rspamd, amavis = _signer_configs()
    root = ctx.key_root.rstrip("/") + "/"
    found: list[dkim_discovery.FoundKey] = []
    for domain in ctx.domains:
        keys = dkim_discovery.opendkim_keys(conf, keytable, signingtable, domain.name)
        if "rspamd" in installed:
            keys += dkim_discovery.rspamd_keys(rspamd, domain.name)
        keys += dkim_discovery.amavis_keys(amavis, domain.name)
        found += [k for k in keys if not k.key_file.startswith(root)][:1]
    return found, dkim_discovery.other_signers(installed, rspamd, amavis)


RSPAMD_CONFS = dkim_discovery.RSPAMD_DKIM_CONFS


def _signer_configs() -> tuple[list[str], str, list[str]]:
    """Installed packages, rspamd's dkim_signing configuration, amavis' configuration."""
    result: tuple[list[str], str, list[str]] = once("signer_configs", _read_signer_configs)
    return result


def _read_signer_configs() -> tuple[list[str], str, list[str]]:
    installed = _installed()
    rspamd = "\n".join(host.get_fact(FileText, path=p) or "" for p in RSPAMD_CONFS)
    amavis = (
        [host.get_fact(FilesText, pattern="/etc/amavis/conf.d/*")]
        if ({"amavisd-new", "amavis"} & set(installed))
        else []
    )
    return installed, rspamd, amavis


def opendkim_wanted(data: Mapping[str, Any]) -> tuple[bool, str]:
    """False (and why) when rspamd or amavis already signs here and the fleet did not ask
    for OpenDKIM anyway (``dkim_signer = "opendkim"``): two signers would add two
    signatures, one of them under a key nobody published."""
    others = dkim_discovery.other_signers(*_signer_configs())
    if not others or data.get("dkim_signer") == "opendkim":
        return True, ""
    return False, (
        f"{' and '.join(others)} already signs DKIM on this host: OpenDKIM is not added "
        '(dkim_signer = "opendkim" adds it anyway)'
    )


def adopt_dkim(ctx: Any, make_domain: Any) -> Any:
    """``ctx`` with each domain that already has a key elsewhere signing with THAT key (its
    selector, its file: never moved, regenerated or re-permissioned); the rest unchanged.

    ``make_domain(name, selector, private_key, adopted=True)`` builds a context entry. Asked
    again for the same ``ctx`` on the same host (the summary after OpenDKIM), the first
    answer: the host is not read again and the adoption is logged once.
    """
    return once(("adopt_dkim", ctx), lambda: _adopt_dkim(ctx, make_domain))


def _adopt_dkim(ctx: Any, make_domain: Any) -> Any:
    found, others = existing_dkim(ctx)
    by_domain = {k.domain: k for k in found}
    domains = []
    for domain in ctx.domains:
        key = by_domain.get(domain.name)
        if key is None:
            domains.append(domain)
            continue
        host.log(
            f"DKIM for {domain.name}: adopting the existing key {key.record_name} "
            f"({shown(key.key_file)}, from {key.source}) instead of a new {domain.selector} key",
            logger.info,
        )
        if key.selector != domain.selector:
            host.log(
                f"  it signs under selector {shown(key.selector)}, not the fleet's "
                f"{domain.selector}: `mailmend records --dkim-from-hosts` and `mailmend check "
                f"--dkim-from-hosts` use {shown(key.selector)} (read from this host); without "
                f'--dkim-from-hosts, set selector = "{shown(key.selector)}" for {domain.name} '
                "in the fleet file",
                logger.warning,
            )
        domains.append(make_domain(domain.name, key.selector, key.key_file))
    for signer in others:
        host.log(f"DKIM: {signer} is also active on this host and may sign too", logger.warning)
    return replace(ctx, domains=tuple(domains))


@operation()
def public_half(private_key: str, selector: str, dest: str) -> Generator[StringCommand, None, None]:
    """
    Write the public half of an adopted key as ``opendkim-genkey``'s ``SELECTOR.txt`` (the
    file ``mailmend records --dkim-from-hosts`` reads), once; the private key is read on the
    host by ``openssl`` and never moved or changed.

    + private_key: the adopted key file (left exactly as it is)
    + selector: its selector
    + dest: the copy of its public half, in mailmend's key directory
    """
    if host.get_fact(File, path=dest):
        host.noop(f"{dest} exists")
        return
    yield StringCommand(
        "umask 022 && p=$(openssl pkey -in", QuoteString(private_key),
        "-pubout -outform DER | base64 -w0) && [ -n \"$p\" ] && printf",
        QuoteString('%s._domainkey\tIN\tTXT\t( "v=DKIM1; k=rsa; p=%s" )\n'),
        QuoteString(selector), '"$p" >', QuoteString(dest + ".tmp"),
        "&& mv -f", QuoteString(dest + ".tmp"), QuoteString(dest),
    )  # fmt: skip


def ipv4_only(ctx: Any, data: Mapping[str, Any]) -> Any:
    """``ctx`` with ``ipv4_only`` decided (IPv6 FCrDNS asked from here); the plan says why."""
    decision = ipv6.ipv6_decision(data, ctx.hostname)
    if decision.ipv4_only:
        host.log(f"{shown(decision.reason)}: smtp_address_preference = ipv4", logger.warning)
    elif data.get("public_ipv6"):
        host.log("IPv6 PTR confirmed: sending over IPv4 and IPv6", logger.info)
    return replace(ctx, ipv4_only=decision.ipv4_only)
