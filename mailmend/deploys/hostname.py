"""The host's name, everywhere a receiving server looks: hostname, /etc/hosts, /etc/mailname.

``/etc/hosts`` is shared with the admin: mailmend rewrites its own marked block at the top
and keeps every other line (:mod:`deploys.blocks`); the previous file is backed up as
``hosts.mailmend-<UTC time>`` like main.cf (:func:`deploys.staged.staged_config`).

Postfix's ``myhostname`` and ``smtp_helo_name`` come from the same validated FQDN (in the
Postfix deploy's main.cf), so the HELO name, the PTR target and the hostname agree.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.command import StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server

from mailmend.deploys import blocks, contexts
from mailmend.deploys.staged import staged_config

DEFAULTS: dict[str, Any] = {
    "hostname_hosts_file": "/etc/hosts",
    "hostname_mailname_file": "/etc/mailname",
    "hostname_staging_dir": "/etc/mailmend-staging-hosts",
    "backups_keep": contexts.SHARED_DEFAULTS["backups_keep"],
}


def _configure(
    names: contexts.HostnameContext, hosts_file: str, mailname_file: str, staging: str, keep: int
) -> None:
    # hostnamectl when present, else `hostname NAME` plus /etc/hostname.
    server.hostname(name="Set the hostname", hostname=names.fqdn)
    block = contexts.render_template("hosts.j2", names=names)
    staged_config(
        name=f"Render {hosts_file} (mailmend's block; the admin's lines kept; backed up)",
        configs=[(hosts_file, blocks.with_admin_lines(
            block, host.get_fact(FileContents, path=hosts_file)
        ))],
        staging_dir=staging,
        validate=lambda _staging: StringCommand("true"),
        keep=keep,
    )  # fmt: skip
    files.template(
        name=f"Render {mailname_file}",
        src=str(contexts.TEMPLATES_DIR / "mailname.j2"),
        dest=mailname_file,
        mode="644",
        jinja_env_kwargs=dict(contexts.JINJA_ENV_KWARGS),
        names=names,
    )


@deploy("Hostname", data_defaults=DEFAULTS)
def hostname_deploy() -> None:
    """Give the host its FQDN: running hostname, /etc/hostname, /etc/hosts, /etc/mailname."""
    data = contexts.host_data(host.data)
    names = contexts.hostname_context(host.name, data)
    hosts_file = contexts.safe_text(host.name, "hostname_hosts_file", data["hostname_hosts_file"])
    mailname = contexts.safe_text(
        host.name, "hostname_mailname_file", data["hostname_mailname_file"]
    )
    staging = contexts.safe_text(host.name, "hostname_staging_dir", data["hostname_staging_dir"])
    _configure(names, hosts_file, mailname, staging, contexts.backups_keep(host.name, data))
