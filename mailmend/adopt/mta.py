"""Another MTA on a host: which one (from the installed Debian packages) and, for Exim, what
its Debian configuration says, so the admin can carry it into the fleet file.

Installing Postfix removes Exim, Sendmail or OpenSMTPD (they all provide
``mail-transport-agent``): mailmend never does that unless the fleet file says so.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from mailmend.adopt import shown

#: The Debian packages that provide ``mail-transport-agent`` (what installing Postfix
#: removes), by MTA. Exim's -base and -config stay behind after a replacement.
MTA_PACKAGES: dict[str, tuple[str, ...]] = {
    "Exim": ("exim4-daemon-light", "exim4-daemon-heavy"),
    "Sendmail": ("sendmail-bin",),
    "OpenSMTPD": ("opensmtpd",),
}
EXIM_CONFIG = "/etc/exim4/update-exim4.conf.conf"
#: What ``update-exim4.conf.conf``'s keys mean, in the order they are shown.
EXIM_SETTINGS: dict[str, str] = {
    "dc_eximconfig_configtype": "configuration type",
    "dc_smarthost": "smarthost",
    "dc_relay_domains": "relay domains",
    "dc_relay_nets": "relay networks",
    "dc_other_hostnames": "other destinations (local domains)",
    "dc_local_interfaces": "listens on",
    "dc_readhost": "visible domain (rewritten sender)",
    "dc_hide_mailname": "hide local mail name",
}
_CONFIGTYPES = {
    "internet": "internet site: mail sent and received directly by SMTP",
    "smarthost": "mail sent by smarthost; received via SMTP or fetchmail",
    "satellite": "mail sent by smarthost; no local mail",
    "local": "local delivery only",
    "none": "no configuration",
}


@dataclass(frozen=True)
class OtherMta:
    name: str  # Exim, Sendmail, OpenSMTPD
    packages: tuple[str, ...]  # its installed packages (what installing Postfix removes)
    config_dirs: tuple[str, ...]
    service: str  # its init script / unit, stopped before Postfix replaces it


_CONFIG_DIRS = {"Exim": ("/etc/exim4",), "Sendmail": ("/etc/mail",), "OpenSMTPD": ("/etc/smtpd",)}
_SERVICES = {"Exim": "exim4", "Sendmail": "sendmail", "OpenSMTPD": "opensmtpd"}


def detect(installed: Iterable[str]) -> OtherMta | None:
    """The other MTA among the installed packages (names, e.g. pyinfra's DebPackages keys)."""
    names = set(installed)
    if "postfix" in names:  # both cannot be installed: Postfix is what runs
        return None
    for mta, packages in MTA_PACKAGES.items():
        found = tuple(p for p in packages if p in names)
        if found:
            return OtherMta(mta, found, _CONFIG_DIRS[mta], _SERVICES[mta])
    return None


def parse_exim_conf(text: str) -> dict[str, str]:
    """``update-exim4.conf.conf``: shell assignments ``dc_key='value'`` (comments ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            continue
        out[key.strip()] = " ".join(words)
    return out


def exim_settings(settings: dict[str, str]) -> list[tuple[str, str]]:
    """(meaning, value) for the keys an admin carries over, in a stable order; empty ones out."""
    out = []
    for key, meaning in EXIM_SETTINGS.items():
        value = settings.get(key, "")
        if key == "dc_eximconfig_configtype":
            value = _CONFIGTYPES.get(value, value)
        if value:
            out.append((f"{meaning} ({key})", value))
    return out


def smarthost_relay_host(smarthost: str) -> str | None:
    """Exim's first smarthost (``host::port``, ``host``; lists by ``:`` or ``;``) as mailmend's
    ``relay_host`` (``host:port``, ``[host]``), or None.

    >>> smarthost_relay_host("smarthost.example.net::587")
    'smarthost.example.net:587'
    >>> smarthost_relay_host("relay.example")
    'relay.example'
    """
    first = smarthost.replace(";", " ").split()
    if not first:
        return None
    head = first[0]
    if "::" in head:
        host, _, port = head.partition("::")
        return f"{host}:{port}" if host and port.isdigit() else None
    host = head.split(":", 1)[0]
    return host or None


def stop_message(mta: OtherMta, exim: dict[str, str] | None, host: str) -> list[str]:
    """The lines that explain why the deploy stops on ``host`` and how to go on."""
    lines = [
        f"host {host}: {mta.name} is installed ({', '.join(mta.packages)}); installing Postfix "
        f"would remove it, so mailmend changed nothing on this host.",
    ]
    if exim is not None:
        settings_shown = exim_settings(exim)
        if settings_shown:
            lines.append(f"  {mta.name}'s settings ({EXIM_CONFIG}):")
            lines += [f"    {meaning}: {shown(value)}" for meaning, value in settings_shown]
        relay = smarthost_relay_host(exim.get("dc_smarthost", ""))
        if relay:
            lines.append(
                f'  To keep its smarthost, set relay_host = "{shown(relay)}" for this host (and '
                "relay_credentials if it authenticates: Exim keeps them in "
                "/etc/exim4/passwd.client)."
            )
    lines.append(
        "  To replace it with Postfix (its configuration files in "
        f"{', '.join(mta.config_dirs)} are kept), set replace_mta = true for this host."
    )
    return lines
