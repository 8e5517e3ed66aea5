"""OpenDKIM: one key per (domain, selector), generated once, never replaced; signing milter.

A key is generated only when ``SELECTOR.private`` is absent (checked by a fact AND by a
``test -e`` guard in the command itself); an existing key is never overwritten, whatever the
data says, because a new key silently breaks the DKIM record already published. Only its
owner and mode are corrected. ``opendkim.conf`` goes live through the same staged validation
as main.cf (``opendkim -n -x``); OpenDKIM restarts only when its configuration changed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Generator
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.context import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from deploys import values
from deploys.staged import staged_config

DEFAULTS: dict[str, Any] = {
    **values.SHARED_DEFAULTS,
    "opendkim_key_bits": 2048,
    "opendkim_key_dir": "/etc/opendkim/keys",
    "opendkim_table_dir": "/etc/opendkim",
    "opendkim_config_file": "/etc/opendkim.conf",
    "opendkim_staging_dir": "/etc/opendkim/mailmend-staging",
    "opendkim_apt_cache_time": 3600,
}

PACKAGES = ["opendkim", "opendkim-tools"]
KEY_OWNER = "opendkim"


def genkey_command(domain: values.DkimDomain, bits: int) -> StringCommand:
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
def dkim_key(domain: values.DkimDomain, bits: int) -> Generator[StringCommand, None, None]:
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
    installed = host.get_fact(DebPackages) or {}
    apt.packages(
        name="Install OpenDKIM",
        packages=PACKAGES,
        update=any(name not in installed for name in PACKAGES),
        cache_time=cache_time,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
    )


def _configure(ctx: values.OpenDkimContext, staging_dir: str) -> list[OperationMeta]:
    changes: list[OperationMeta] = []
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
        changes.append(
            dkim_key(
                name=f"DKIM key {domain.record_name} (only when absent)",
                domain=domain,
                bits=ctx.key_bits,
            )
        )

    for table in ("KeyTable", "SigningTable", "TrustedHosts"):
        changes.append(
            files.template(
                name=f"OpenDKIM {table}",
                src=str(values.TEMPLATES_DIR / "opendkim" / f"{table}.j2"),
                dest=posixpath.join(ctx.table_dir, table),
                mode="644",
                jinja_env_kwargs=dict(values.JINJA_ENV_KWARGS),
                opendkim=ctx,
            )
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

    conf = staged_config(
        name="Install opendkim.conf (staged, validated, backed up, swapped)",
        configs=[
            (ctx.config_file, values.render_template("opendkim/opendkim.conf.j2", opendkim=ctx))
        ],
        staging_dir=staging_dir,
        validate=lambda staging: StringCommand(
            "opendkim -n -x",
            QuoteString(posixpath.join(staging, posixpath.basename(ctx.config_file))),
        ),
    )
    # Tables or keys changed under an unchanged opendkim.conf: check the whole before restart.
    server.shell(
        name="Check the OpenDKIM configuration and tables",
        commands=[StringCommand("opendkim -n -x", QuoteString(ctx.config_file))],  # type: ignore[list-item]
        _if=any_changed(*changes),
    )
    return [conf, *changes]


def _activate(changes: list[OperationMeta]) -> None:
    server.service(
        name="Restart OpenDKIM (configuration changed)",
        service="opendkim",
        restarted=True,
        _if=any_changed(*changes),
    )
    server.service(name="Ensure OpenDKIM is running", service="opendkim", running=True)


@deploy("OpenDKIM", data_defaults=DEFAULTS)
def opendkim_deploy() -> None:
    """Install OpenDKIM, keep one key per (domain, selector), sign via Postfix's milter."""
    ctx = values.opendkim_context(host.name, values.host_data(host.data))
    staging_dir = values.safe_text(
        host.name, "opendkim_staging_dir", host.data.opendkim_staging_dir
    )
    cache_time = values.positive_int(
        host.name, "opendkim_apt_cache_time", host.data.opendkim_apt_cache_time
    )
    _install(cache_time)
    changes = _configure(ctx, staging_dir)
    _activate(changes)
