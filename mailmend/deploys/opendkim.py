"""OpenDKIM: one key per (domain, selector), generated once, never replaced; signing milter.

A key is generated only when ``SELECTOR.private`` is absent (checked by a fact AND by a
``test -e`` guard in the command itself); an existing key is never overwritten, whatever the
data says, because a new key silently breaks the DKIM record already published. Only its
owner and mode are corrected. ``opendkim.conf`` goes live through the same staged validation
as main.cf (``opendkim -n -x``). OpenDKIM restarts when its configuration, a table or a key
is newer than the running daemon (:mod:`deploys.live`), so a restart that failed or was
interrupted in an earlier run still happens; the restart waits until the new socket exists.
The mail deploy runs this before Postfix's main.cf names that socket.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import apt, files, server

from mailmend.adopt import deploy as adopt
from mailmend.checks.dkim_key import KEY_DIR
from mailmend.deploys import blocks, contexts, live
from mailmend.deploys.facts import MilterSockets, installed_packages
from mailmend.deploys.staged import staged_config

DEFAULTS: dict[str, Any] = {
    **contexts.SHARED_DEFAULTS,
    "opendkim_key_bits": 2048,
    "opendkim_key_dir": KEY_DIR,
    "opendkim_table_dir": "/etc/opendkim",
    "opendkim_config_file": "/etc/opendkim.conf",
    "opendkim_staging_dir": "/etc/opendkim/mailmend-staging",
    "opendkim_apt_cache_time": 3600,
    "opendkim_pidfile": "/run/opendkim/opendkim.pid",  # as in templates/opendkim/opendkim.conf.j2
}

#: How long a restart waits for OpenDKIM's socket (tenths of a second).
SOCKET_WAIT_TENTHS = 100

PACKAGES = ["opendkim", "opendkim-tools"]
TABLES = ("KeyTable", "SigningTable", "TrustedHosts")
#: Shared with the admin: mailmend's block, then the admin's lines (:mod:`deploys.blocks`).
SHARED_TABLE = "TrustedHosts"
KEY_OWNER = "opendkim"


def genkey_command(domain: contexts.DkimDomain, bits: int) -> StringCommand:
    """``opendkim-genkey`` behind a ``test -e`` guard: never run over an existing key."""
    return StringCommand(
        "test -e", QuoteString(domain.private_key), "||",
        "opendkim-genkey", "-b", str(bits), "-d", QuoteString(domain.name),
        "-s", QuoteString(domain.selector), "-D", QuoteString(domain.key_dir),
    )  # fmt: skip


def _key_permissions(path: str) -> StringCommand:
    return StringCommand(
        "chown", f"{KEY_OWNER}:{KEY_OWNER}", QuoteString(path), "&& chmod 600", QuoteString(path)
    )


@operation()
def milter_bridge(socket: str, queue_dir: str) -> Generator[StringCommand, None, None]:
    """
    While Postfix's main.cf still names an older socket of OpenDKIM's (in the same directory),
    make that path a symlink to the socket OpenDKIM now listens on, so mail stays signed
    until Postfix reloads a main.cf naming the new one. The link stays afterwards (harmless).

    + socket: the socket OpenDKIM listens on now
    + queue_dir: Postfix's queue directory (relative milter paths start there)
    """
    todo = [
        (kind, path)
        for kind, path, target in host.get_fact(MilterSockets, queue_dir=queue_dir)
        if path != socket
        and posixpath.dirname(path) == posixpath.dirname(socket)
        and kind in ("none", "socket", "link")
        and not (kind == "link" and target == posixpath.basename(socket))
    ]
    if not todo:
        host.noop("Postfix names no other OpenDKIM socket")
        return
    for _kind, path in todo:  # relative: the chrooted smtpd resolves it too
        yield StringCommand("ln -sfn", QuoteString(posixpath.basename(socket)), QuoteString(path))


@operation()
def dkim_key(domain: contexts.DkimDomain, bits: int) -> Generator[StringCommand, None, None]:
    """
    Generate a DKIM key pair only when absent; fix an existing key's owner and mode only.

    + domain: the domain, selector and key paths
    + bits: RSA key size for a NEW key (an existing key keeps its size)
    """
    key = host.get_fact(File, path=domain.private_key)
    if not key:
        yield genkey_command(domain, bits)
        yield _key_permissions(domain.private_key)
    elif key["user"] != KEY_OWNER or key["mode"] != 600:
        yield _key_permissions(domain.private_key)
    else:
        host.noop(f"DKIM key {domain.private_key} exists (never regenerated)")


def _install(cache_time: int) -> None:
    installed = installed_packages()
    apt.packages(
        name="Install OpenDKIM",
        packages=PACKAGES,
        update=any(name not in installed for name in PACKAGES),
        cache_time=cache_time,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def restart_command(ctx: contexts.OpenDkimContext) -> StringCommand:
    """Check the live configuration, restart, and wait until the socket exists."""
    sock = QuoteString(ctx.socket)
    return StringCommand(
        "opendkim -n -x", QuoteString(ctx.config_file),
        "&& { [ ! -L", sock, "] || rm -f", sock, "; }",  # a bridge link from an earlier move
        "&& service opendkim restart",
        "&& { i=0; while [ ! -S", sock, "] && [ $i -lt", str(SOCKET_WAIT_TENTHS), "];",
        "do sleep 0.1; i=$((i+1)); done; [ -S", sock, "]",
        "|| { echo 'mailmend: OpenDKIM did not open its socket' >&2; exit 1; }; }",
    )  # fmt: skip


def watched_files(ctx: contexts.OpenDkimContext) -> list[str]:
    """Every file OpenDKIM reads when it starts: a newer one means a restart is due."""
    tables = [posixpath.join(ctx.table_dir, t) for t in TABLES]
    return [ctx.config_file, *tables, *(domain.private_key for domain in ctx.domains)]


def _configure(ctx: contexts.OpenDkimContext, staging_dir: str, keep: int) -> None:
    files.directory(name="OpenDKIM table directory", path=ctx.table_dir, mode="755")
    files.directory(
        name="OpenDKIM key directory",
        path=ctx.key_root, user=KEY_OWNER, group=KEY_OWNER, mode="750",
    )  # fmt: skip
    for domain in ctx.domains:
        files.directory(
            name=f"DKIM key directory for {domain.name}",
            path=domain.key_dir, user=KEY_OWNER, group=KEY_OWNER, mode="750",
        )  # fmt: skip
        if domain.adopted:  # an admin's key: never touched; its public half copied for records
            adopt.public_half(
                name=f"Public half of the adopted key {domain.record_name}",
                private_key=domain.private_key,
                selector=domain.selector,
                dest=domain.txt_record,
            )
        else:
            dkim_key(
                name=f"DKIM key {domain.record_name} (only when absent)",
                domain=domain,
                bits=ctx.key_bits,
            )

    trusted = posixpath.join(ctx.table_dir, SHARED_TABLE)
    block = contexts.render_template(f"opendkim/{SHARED_TABLE}.j2", opendkim=ctx)
    staged_config(
        name=f"OpenDKIM {SHARED_TABLE} (mailmend's block; the admin's lines kept; backed up)",
        configs=[
            (trusted, blocks.with_admin_lines(block, host.get_fact(FileContents, path=trusted)))
        ],
        staging_dir=staging_dir,
        validate=lambda staging: StringCommand("true"),  # opendkim -n -x checks it at restart
        keep=keep,
    )
    for table in (t for t in TABLES if t != SHARED_TABLE):
        files.template(
            name=f"OpenDKIM {table}",
            src=str(contexts.TEMPLATES_DIR / "opendkim" / f"{table}.j2"),
            dest=posixpath.join(ctx.table_dir, table),
            mode="644",
            jinja_env_kwargs=dict(contexts.JINJA_ENV_KWARGS),
            opendkim=ctx,
        )

    # The socket's directory, inside Postfix's queue directory; the postfix user reaches it
    # through the opendkim group (UMask 007 gives the socket mode 0770).
    files.directory(
        name="OpenDKIM socket directory",
        path=posixpath.dirname(ctx.socket), user=KEY_OWNER, group=KEY_OWNER, mode="750",
    )  # fmt: skip
    server.user(
        name="Postfix may use the OpenDKIM socket (opendkim group)",
        user="postfix",
        groups=[KEY_OWNER],
        append=True,
    )

    staged_config(
        name="Install opendkim.conf (staged, validated, backed up, swapped)",
        configs=[
            (ctx.config_file, contexts.render_template("opendkim/opendkim.conf.j2", opendkim=ctx))
        ],
        staging_dir=staging_dir,
        validate=lambda staging: StringCommand(
            "opendkim -n -x",
            QuoteString(posixpath.join(staging, posixpath.basename(ctx.config_file))),
        ),
        keep=keep,
    )


def _activate(ctx: contexts.OpenDkimContext, pidfile: str, queue_dir: str) -> None:
    live.daemon_current(
        name="Restart OpenDKIM (when its configuration, tables or keys are newer than it)",
        service="OpenDKIM",
        configs=watched_files(ctx),
        pidfile=pidfile,
        process="opendkim",
        command=restart_command(ctx),
    )
    server.service(name="Ensure OpenDKIM is running", service="opendkim", running=True)
    milter_bridge(
        name="Keep the socket Postfix still names pointing at OpenDKIM (until Postfix reloads)",
        socket=ctx.socket,
        queue_dir=queue_dir,
    )


@deploy("OpenDKIM", data_defaults=DEFAULTS)
def opendkim_deploy() -> None:
    """Install OpenDKIM, keep one key per (domain, selector), sign via Postfix's milter."""
    data = contexts.host_data(host.data)
    ctx = contexts.opendkim_context(host.name, data)
    wanted, why = adopt.opendkim_wanted(data)
    if not wanted:  # rspamd or amavis signs: a second signer is not added unless asked
        host.log(why)
        return
    ctx = adopt.adopt_dkim(ctx, contexts.adopted_dkim_domain(ctx.key_root))
    staging_dir = contexts.safe_text(
        host.name, "opendkim_staging_dir", host.data.opendkim_staging_dir
    )
    cache_time = contexts.positive_int(
        host.name, "opendkim_apt_cache_time", host.data.opendkim_apt_cache_time
    )
    pidfile = contexts.safe_text(host.name, "opendkim_pidfile", host.data.opendkim_pidfile)
    _install(cache_time)
    queue_dir = contexts.safe_text(host.name, "postfix_queue_dir", data["postfix_queue_dir"])
    _configure(ctx, staging_dir, contexts.backups_keep(host.name, data))
    _activate(ctx, pidfile, queue_dir)
