"""Postfix: installed without Debian's questions, paced to the provider's limit, validated live.

``main.cf`` is rendered from ``templates/postfix/main.cf.j2`` and goes live only through
:func:`deploys.staged.staged_config`: staged beside the live file, checked by ``postconf -n``
(any warning, such as an unused parameter, refuses it), a ``postmap`` probe (Postfix's typed
parameter checks, which print their message even without a terminal, unlike ``postfix check``)
and ``postfix check``; only then backed up and renamed over the live file. Postfix is reloaded
when main.cf or master.cf is newer than the configuration it runs (:mod:`deploys.live`: this
run's swap, or an earlier run that failed or was interrupted before its reload), and started
when it is not running. The relay credentials' index is rebuilt whenever it is older than
``sasl_passwd``.

Pacing is ONE knob, ``smtp_transport_rate_delay = ceil(60 / rate)s``; relayed mail leaves
through the same smtp transport (``relayhost``), so the knob covers it too.
"""

from __future__ import annotations

import posixpath
from typing import Any

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from mailmend.adopt import deploy as adopt
from mailmend.deploys import contexts, live
from mailmend.deploys.facts import installed_packages
from mailmend.deploys.staged import secret_file, staged_config
from mailmend.hygiene import bounces

DEFAULTS: dict[str, Any] = {
    **contexts.SHARED_DEFAULTS,
    "postfix_config_dir": "/etc/postfix",
    "postfix_staging_dir": "/etc/postfix/mailmend-staging",
    "postfix_maillog_file": "/var/log/postfix.log",
    "postfix_apt_cache_time": 3600,
}

#: Touched before a ``postfix reload`` that then succeeded: ``postfix reload`` keeps the
#: master process, so its start time alone does not say which main.cf it runs.
RELOAD_STAMP = "/var/lib/mailmend/postfix.reloaded"

_NONINTERACTIVE = {"DEBIAN_FRONTEND": "noninteractive"}


def validate_command(config_dir: str, staging_dir: str, copy_master: bool) -> StringCommand:
    """Check a staged main.cf (with the staged or a copy of the live master.cf) with Postfix."""
    staging = QuoteString(staging_dir)
    master = QuoteString(posixpath.join(config_dir, "master.cf"))
    copy = ["cp -p", master, staging, "&&"] if copy_master else []
    return StringCommand(
        *copy, "err=$(postconf -c", staging, "-n 2>&1 >/dev/null) && [ -z \"$err\" ]",
        "&& err=$(postmap -c", staging, "-q mailmend texthash:/dev/null 2>&1 >/dev/null || true)",
        "&& [ -z \"$err\" ] && postfix -c", staging, "check",
        "|| { echo \"$err\" >&2;",
        "echo 'mailmend: the new Postfix configuration was refused;",
        "the live main.cf is unchanged' >&2; exit 1; }",
    )  # fmt: skip


def _missing(packages: list[str]) -> bool:
    installed = installed_packages()
    return any(name not in installed for name in packages)


def _install(ctx: contexts.PostfixContext, cache_time: int) -> None:
    missing = _missing(["postfix"])
    if missing:
        # Only before the first install: afterwards Debian never asks again and mailmend
        # owns main.cf. "No configuration": Debian writes no main.cf of its own.
        preseed = StringCommand(
            "printf '%s\\n'",
            QuoteString("postfix postfix/main_mailer_type select No configuration"),
            QuoteString(f"postfix postfix/mailname string {ctx.hostname}"),
            "| debconf-set-selections",
        )
        server.shell(
            name="Preseed Postfix's debconf answers",
            commands=[preseed],  # type: ignore[list-item]  # pyinfra runs StringCommands as-is
        )
    apt.packages(
        name="Install Postfix",
        packages=["postfix"],
        # A converged host never runs apt-get update (no change on a second run).
        update=missing,
        cache_time=cache_time,
        _env=_NONINTERACTIVE,
    )


def _ensure_lookup_tables(ctx: contexts.PostfixContext) -> None:
    """main.cf names the suppression tables: make sure each exists (indexed) BEFORE it goes live.

    Only a missing ``.db`` triggers anything: an empty table (the header comment) is created
    if there is no text file, then indexed. Their content is the Hygiene deploy's business.
    """
    # Before the first main.cf (Debian's "No configuration" writes none) postmap needs one:
    # an empty main.cf in a throwaway directory (built-in defaults) will do.
    first = not host.get_fact(File, path=posixpath.join(ctx.config_dir, "main.cf"))
    for lookup in (ctx.suppress_recipients_map, ctx.suppress_transport_map):
        path = lookup.removeprefix("hash:")
        if host.get_fact(File, path=f"{path}.db"):
            continue
        postmap = (
            ['d=$(mktemp -d) && : > "$d/main.cf" && postmap -c "$d"', QuoteString(lookup),
             '; rc=$?; rm -rf "$d"; [ $rc -eq 0 ]']
            if first
            else ["postmap", QuoteString(lookup)]
        )  # fmt: skip
        create = StringCommand(
            "mkdir -p", QuoteString(posixpath.dirname(path)),
            "&& { [ -e", QuoteString(path), "] || printf '%s'", QuoteString(bounces.TABLE_HEADER),
            ">", QuoteString(path), "; } &&", *postmap,
        )  # fmt: skip
        server.shell(
            name=f"Create the lookup table {path} (empty until the Hygiene deploy fills it)",
            commands=[create],  # type: ignore[list-item]  # pyinfra runs StringCommands as-is
        )


def _configure(ctx: contexts.PostfixContext, staging_dir: str, keep: int) -> None:
    # The admin's main.cf (an existing server) is merged into, not replaced: mailmend/adopt.
    plan = adopt.main_cf_plan(
        ctx,
        contexts.host_data(host.data),
        contexts.render_template("postfix/main.cf.j2", postfix=ctx),
    )
    sasl = posixpath.join(ctx.config_dir, "sasl_passwd")
    relay = ctx.relay
    if relay is not None and relay.credentials is not None:
        line = f"{relay.nexthop} {relay.credentials}\n"
        secret_file(
            name="Install the relay credentials (sasl_passwd, mode 0600)",
            secret=lambda: line,
            dest=sasl,
        )
        source, index = live.table_index(f"hash:{sasl}")
        live.index_current(
            name="Index the relay credentials (postmap, when the .db is older than sasl_passwd)",
            source=source,
            index=index,
            command=StringCommand(
                "postmap", QuoteString(f"hash:{sasl}"), "&& chmod 600", QuoteString(index)
            ),
        )
    elif not plan.merge:  # a merged main.cf may name the admin's own sasl_passwd
        for path in (sasl, f"{sasl}.db"):
            files.file(name=f"Remove unused relay credentials {path}", path=path, present=False)

    _ensure_lookup_tables(ctx)
    configs = [(posixpath.join(ctx.config_dir, "main.cf"), plan.content)]
    if ctx.smtpd_listen is not None and not plan.merge:  # a merge keeps master.cf as it is
        configs.append(
            (
                posixpath.join(ctx.config_dir, "master.cf"),
                contexts.render_template("postfix/master.cf.j2", postfix=ctx),
            )
        )
    staged_config(
        name="Install main.cf (staged, validated, backed up, swapped)",
        configs=configs,
        staging_dir=staging_dir,
        validate=lambda staging: (
            adopt.merge_validate_command(ctx.config_dir, staging)
            if plan.merge
            else validate_command(ctx.config_dir, staging, copy_master=ctx.smtpd_listen is None)
        ),
        keep=keep,
    )

    if not host.get_fact(File, path="/etc/aliases.db"):
        server.shell(
            name="Create the aliases database",
            commands=[
                "test -e /etc/aliases || echo 'postmaster: root' > /etc/aliases",
                "newaliases",
            ],
        )


def reload_when_newer(name: str, configs: list[str], pidfile: str) -> None:
    """``postfix reload`` when one of ``configs`` is newer than the configuration Postfix runs."""
    live.daemon_current(
        name=name,
        service="Postfix",
        configs=configs,
        pidfile=pidfile,
        process="master",
        command=StringCommand("postfix reload"),
        stamp=RELOAD_STAMP,
    )


def _activate(ctx: contexts.PostfixContext, pidfile: str) -> None:
    reload_when_newer(
        "Reload Postfix (when main.cf or master.cf is newer than what it runs)",
        [posixpath.join(ctx.config_dir, name) for name in ("main.cf", "master.cf")],
        pidfile,
    )
    server.service(name="Ensure Postfix is running", service="postfix", running=True)


@deploy("Postfix", data_defaults=DEFAULTS)
def postfix_install_deploy() -> None:
    """Install Postfix (before OpenDKIM, whose socket lives in Postfix's queue directory)."""
    ctx = contexts.postfix_context(host.name, contexts.host_data(host.data))
    cache_time = contexts.positive_int(
        host.name, "postfix_apt_cache_time", host.data.postfix_apt_cache_time
    )
    _install(ctx, cache_time)


@deploy("Postfix", data_defaults=DEFAULTS)
def postfix_deploy() -> None:
    """Configure (staged and validated) and run Postfix, paced to the provider's limit.

    Runs after the OpenDKIM deploy: OpenDKIM already listens on the socket a new main.cf
    names when Postfix reloads, so mail never leaves unsigned because of the order.
    """
    ctx = contexts.postfix_context(host.name, contexts.host_data(host.data))
    ctx = adopt.ipv4_only(ctx, contexts.host_data(host.data))  # IPv6 without PTR: IPv4 only
    staging_dir = contexts.safe_text(
        host.name, "postfix_staging_dir", host.data.postfix_staging_dir
    )
    pidfile = contexts.safe_text(host.name, "postfix_pidfile", host.data.postfix_pidfile)
    _configure(ctx, staging_dir, contexts.backups_keep(host.name, contexts.host_data(host.data)))
    _activate(ctx, pidfile)
