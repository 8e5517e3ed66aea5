"""The host's name, everywhere a receiving server looks: hostname, /etc/hosts, /etc/mailname.

Postfix's ``myhostname`` and ``smtp_helo_name`` come from the same validated FQDN (in the
Postfix deploy's main.cf), so the HELO name, the PTR target and the hostname agree.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.operations import files, server

from deploys import values

DEFAULTS: dict[str, Any] = {
    "hostname_hosts_file": "/etc/hosts",
    "hostname_mailname_file": "/etc/mailname",
}


def _configure(names: values.HostnameContext, hosts_file: str, mailname_file: str) -> None:
    # hostnamectl when present, else `hostname NAME` plus /etc/hostname.
    server.hostname(name="Set the hostname", hostname=names.fqdn)
    for template, dest in (("hosts.j2", hosts_file), ("mailname.j2", mailname_file)):
        files.template(
            name=f"Render {dest}",
            src=str(values.TEMPLATES_DIR / template),
            dest=dest,
            mode="644",
            jinja_env_kwargs=dict(values.JINJA_ENV_KWARGS),
            names=names,
        )


@deploy("Hostname", data_defaults=DEFAULTS)
def hostname_deploy() -> None:
    """Give the host its FQDN: running hostname, /etc/hostname, /etc/hosts, /etc/mailname."""
    data = values.host_data(host.data)
    names = values.hostname_context(host.name, data)
    hosts_file = values.safe_text(host.name, "hostname_hosts_file", data["hostname_hosts_file"])
    mailname = values.safe_text(host.name, "hostname_mailname_file", data["hostname_mailname_file"])
    _configure(names, hosts_file, mailname)
