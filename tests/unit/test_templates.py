"""Templates rendered with validated values, then checked by the REAL Postfix and OpenDKIM.

The tools are never installed on this machine: they run inside the tools root (a Debian 12
root with postfix and opendkim), ``MAILMEND_TOOLS_ROOT`` or ``sandbox.image.tools_root()``,
through ``chroot``. Without one, these checks skip, except as root in CI where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailmend.deploys import contexts, hostname, hygiene, opendkim, postfix
from mailmend.deploys.staged import swap_command
from mailmend.hygiene import bounces

# -- host data ------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    **hostname.DEFAULTS,
    **postfix.DEFAULTS,
    **opendkim.DEFAULTS,
    "hostname": "mx1.example.com",
    "public_ipv4": "192.0.2.10",
    "public_ipv6": None,
    "domains": [{"name": "example.com", "selector": "mx1"}],
    "rate_limit_per_minute": 5,
    "recipient_limit": None,
    "relay_host": None,
    "relay_credentials": None,
    "receives_mail": False,
    "listen_address": None,
    "bind_address": None,
    "postfix_main_cf": {},
}
SECRETS = {"RELAY_SECRET": "mailer:s3cret:with:colons"}

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "relay": {"relay_host": "[smtp.relay.example]:587", "relay_credentials": "env:RELAY_SECRET"},
    "relay-no-auth": {"relay_host": "relay.example:2525"},
    "receives-mail-ipv6": {"receives_mail": True, "public_ipv6": "2001:db8::10"},
    "sandbox": {
        "listen_address": "127.0.10.3",
        "bind_address": "127.0.10.3",
        "rate_limit_per_minute": 30,
    },
    "extra-settings": {
        "recipient_limit": 50,
        "rate_limit_per_minute": 7,
        "postfix_main_cf": {"smtp_destination_recipient_limit": 1, "disable_vrfy_command": True},
    },
    "two-domains": {
        "domains": [
            {"name": "example.com", "selector": "mx1"},
            {"name": "Example.ORG", "selector": "s2026"},
        ]
    },
}  # fmt: skip


def host_data(variant: str) -> dict[str, Any]:
    return {**BASE, **VARIANTS[variant]}


def render_main_cf(data: Mapping[str, Any]) -> str:
    ctx = contexts.postfix_context("mx1", data, environ=SECRETS)
    return contexts.render_template("postfix/main.cf.j2", postfix=ctx)


def main_cf_settings(text: str) -> list[tuple[str, str]]:
    return [
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if key.strip() and not key.startswith("#")
    ]


# -- the tools root -------------------------------------------------------------------------


_BUILD_ERROR: list[str] = []


def _find_tools_root() -> Path | None:
    env = os.environ.get("MAILMEND_TOOLS_ROOT")
    if env:
        return Path(env)
    from sandbox.image import tools_root

    try:
        return tools_root()
    except (OSError, subprocess.CalledProcessError) as err:
        _BUILD_ERROR.append(f"building the tools root failed: {err}")
        return None


@pytest.fixture(scope="session")
def tools_root() -> Path:
    root = _find_tools_root() if os.geteuid() == 0 else None
    usable = root is not None and (root / "usr/sbin/postconf").exists()
    if root is None or not usable:
        reason = (
            "no tools root (set MAILMEND_TOOLS_ROOT or build sandbox.image.tools_root()) "
            + " ".join(_BUILD_ERROR)
            if os.geteuid() == 0
            else "checking configs with the real tools needs root (chroot into the tools root)"
        )
        if os.geteuid() == 0 and os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert root is not None
    return root


@pytest.fixture
def scratch(tools_root: Path) -> Iterator[tuple[Path, str]]:
    """A private directory inside the tools root: (path outside, path inside the chroot)."""
    outside = Path(tempfile.mkdtemp(prefix="mailmend-test-", dir=tools_root / "tmp"))
    try:
        yield outside, "/" + str(outside.relative_to(tools_root))
    finally:
        shutil.rmtree(outside)


def in_root(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )  # fmt: skip


def postfix_checks(root: Path, inside: str) -> None:
    """``postconf -n`` (no warning at all), the postmap probe and ``postfix check``."""
    conf = in_root(root, f"postconf -c {inside} -n")
    assert conf.returncode == 0 and conf.stderr == "", conf.stderr
    probe = in_root(root, f"postmap -c {inside} -q mailmend texthash:/dev/null")
    assert probe.stderr == "", probe.stderr
    check = in_root(root, f"postfix -c {inside} check")
    assert check.returncode == 0, check.stderr


# -- main.cf --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_main_cf_passes_postconf_and_postfix_check(
    variant: str, tools_root: Path, scratch: tuple[Path, str]
) -> None:
    outside, inside = scratch
    data = host_data(variant)
    (outside / "main.cf").write_text(render_main_cf(data))
    ctx = contexts.postfix_context("mx1", data, environ=SECRETS)
    if ctx.smtpd_listen:
        (outside / "master.cf").write_text(
            contexts.render_template("postfix/master.cf.j2", postfix=ctx)
        )
    else:
        shutil.copy(tools_root / "etc/postfix/master.cf", outside / "master.cf")
    postfix_checks(tools_root, inside)
    shown = dict(main_cf_settings(in_root(tools_root, f"postconf -c {inside} -n").stdout))
    assert shown["myhostname"] == "mx1.example.com"
    assert shown["smtp_helo_name"] == "$myhostname"
    assert shown["milter_default_action"] == "accept"
    assert shown["non_smtpd_milters"] == "$smtpd_milters"
    assert shown["smtpd_milters"] == "unix:opendkim/opendkim.sock"
    assert shown["maillog_file"] == "/var/log/postfix.log"
    assert shown["mynetworks"] == "127.0.0.0/8 [::1]/128"
    # Exactly one pacing knob, whatever the variant.
    assert [k for k in shown if k.endswith("_rate_delay")] == ["smtp_transport_rate_delay"]


def test_main_cf_identity_network_and_tls_per_variant() -> None:
    plain = dict(main_cf_settings(render_main_cf(host_data("plain"))))
    assert plain["inet_interfaces"] == "loopback-only"
    assert plain["inet_protocols"] == "ipv4"
    assert plain["smtp_tls_security_level"] == "may"
    assert plain["relayhost"] == ""
    assert plain["smtp_transport_rate_delay"] == "12s"
    assert "smtp_sasl_auth_enable" not in plain
    assert "smtpd_recipient_limit" not in plain

    relay = dict(main_cf_settings(render_main_cf(host_data("relay"))))
    assert relay["relayhost"] == "[smtp.relay.example]:587"
    assert relay["smtp_tls_security_level"] == "encrypt"
    assert relay["smtp_sasl_auth_enable"] == "yes"
    assert relay["smtp_sasl_password_maps"] == "hash:/etc/postfix/sasl_passwd"
    assert relay["smtp_sasl_security_options"] == "noanonymous"
    assert "s3cret" not in render_main_cf(host_data("relay"))

    no_auth = dict(main_cf_settings(render_main_cf(host_data("relay-no-auth"))))
    assert no_auth["relayhost"] == "relay.example:2525"
    assert "smtp_sasl_auth_enable" not in no_auth

    inbound = dict(main_cf_settings(render_main_cf(host_data("receives-mail-ipv6"))))
    assert inbound["inet_interfaces"] == "all"
    assert inbound["inet_protocols"] == "all"

    sandbox = dict(main_cf_settings(render_main_cf(host_data("sandbox"))))
    # Not an interface address: Postfix would refuse it in inet_interfaces; master.cf binds it.
    assert sandbox["inet_interfaces"] == "loopback-only"
    ctx = contexts.postfix_context("mx1", host_data("sandbox"))
    master = contexts.render_template("postfix/master.cf.j2", postfix=ctx)
    assert "127.0.10.3:smtp inet n - y - - smtpd\n" in master
    assert not re.search(r"^smtp\s+inet", master, re.M)
    assert sandbox["smtp_bind_address"] == "127.0.10.3"
    assert sandbox["smtp_transport_rate_delay"] == "2s"


def test_extra_settings_come_last_in_their_order() -> None:
    settings = main_cf_settings(render_main_cf(host_data("extra-settings")))
    assert settings[-2:] == [
        ("smtp_destination_recipient_limit", "1"),
        ("disable_vrfy_command", "yes"),
    ]
    assert dict(settings)["smtpd_recipient_limit"] == "50"
    assert dict(settings)["smtp_transport_rate_delay"] == "9s"
    keys = [key for key, _ in settings]
    assert len(keys) == len(set(keys)), "a parameter is defined twice"


# -- pacing and refused values --------------------------------------------------------------


@pytest.mark.parametrize(("rate", "delay"), [(5, 12), (7, 9), (30, 2), (60, 1), (1, 60), (61, 1)])
def test_pacing_delay_rounds_up(rate: int, delay: int) -> None:
    assert contexts.pacing_delay(rate) == delay
    assert 60 / delay <= rate  # never faster than the provider's limit


@pytest.mark.parametrize("rate", [0, -5, True])
def test_pacing_refuses_nonsense_rates(rate: int) -> None:
    with pytest.raises((ValueError, contexts.DeployValueError)):
        contexts.postfix_context("mx1", {**BASE, "rate_limit_per_minute": rate})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("hostname", "mx1.example.com\nrelayhost = evil.example"),
        ("hostname", "mx1.example.com'"),
        ("hostname", "mx1"),
        ("public_ipv4", "192.0.2.10\n"),
        ("public_ipv4", "2001:db8::1"),
        ("relay_host", "[relay.example]:587\nsmtp_tls_security_level = none"),
        ("relay_host", 'relay.example"'),
        ("listen_address", "127.0.10.3\r"),
        ("bind_address", "all"),
        ("postfix_main_cf", {"disable_vrfy_command": "yes\nrelayhost = evil"}),
        ("postfix_main_cf", {"smtpd_banner": 'x" y'}),
        ("postfix_main_cf", {"smtpd_banner": "tab\there"}),
        ("postfix_main_cf", {"bad key": "1"}),
        ("postfix_main_cf", {"key\n": "1"}),
    ],
)
def test_unsafe_values_are_refused_before_any_template(field: str, bad: object) -> None:
    with pytest.raises(contexts.DeployValueError) as err:
        contexts.postfix_context("mx1", {**BASE, field: bad}, environ=SECRETS)
    assert "host mx1" in str(err.value)
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("domains", [{"name": "example.com\n", "selector": "mx1"}]),
        ("domains", [{"name": "example.com", "selector": "mx1; rm -rf /"}]),
        ("domains", [{"name": "example.com", "selector": "mx1\n"}]),
        ("domains", [{"name": "a.example", "selector": "a"}] * 2),
        ("domains", "example.com"),
        ("opendkim_key_bits", 512),
        ("opendkim_key_dir", "keys/relative"),
    ],
)  # fmt: skip
def test_unsafe_dkim_values_are_refused(field: str, bad: object) -> None:
    with pytest.raises(contexts.DeployValueError, match=re.escape(field.split("_")[0])):
        contexts.opendkim_context("mx1", {**BASE, field: bad})


@pytest.mark.parametrize("key", sorted(contexts.MANAGED_POSTFIX_KEYS))
def test_managed_keys_cannot_be_overridden(key: str) -> None:
    with pytest.raises(contexts.DeployValueError, match="managed by mailmend"):
        contexts.extra_settings("mx1", {key: "x"})


@pytest.mark.parametrize("key", ["default_destination_rate_delay", "relay_transport_rate_delay"])
def test_a_second_pacing_knob_is_refused(key: str) -> None:
    with pytest.raises(contexts.DeployValueError, match="one knob"):
        contexts.extra_settings("mx1", {key: "1s"})


def test_every_setting_the_template_renders_is_managed() -> None:
    rendered = {key for key, _ in main_cf_settings(render_main_cf(host_data("relay")))}
    inbound = {key for key, _ in main_cf_settings(render_main_cf(host_data("sandbox")))}
    unmanaged = (rendered | inbound) - set(contexts.MANAGED_POSTFIX_KEYS)
    # Cosmetic or TLS defaults the admin may tune are not "managed"; anything else must be.
    assert unmanaged <= {
        "biff", "append_dot_mydomain", "readme_directory", "smtpd_banner", "smtp_tls_CApath",
        "smtp_tls_session_cache_database", "smtp_tls_loglevel", "smtp_transport_rate_delay",
    }, unmanaged  # fmt: skip
    with pytest.raises(contexts.DeployValueError):
        contexts.extra_settings("mx1", {"smtp_transport_rate_delay": "1s"})


def test_relay_credentials_are_read_locally_and_never_echoed(tmp_path: Path) -> None:
    secret_file = tmp_path / "relay"
    secret_file.write_text("mailer:pa ss:word\n")
    assert contexts.read_relay_credentials("mx1", f"file:{secret_file}") == "mailer:pa ss:word"
    assert contexts.read_relay_credentials("mx1", "env:X", environ={"X": "u:p"}) == "u:p"
    for ref, environ in [("env:MISSING", {}), ("env:X", {"X": "no-colon-secret"}),
                         ("env:X", {"X": "u:p\nrelayhost = evil"}), ("vault:x", {}),
                         (f"file:{tmp_path / 'absent'}", {})]:  # fmt: skip
        with pytest.raises(contexts.DeployValueError) as err:
            contexts.read_relay_credentials("mx1", ref, environ=environ)
        assert "secret" not in str(err.value).replace("the secret in", "")
        assert "evil" not in str(err.value) and "no-colon" not in str(err.value)


# -- the staged validate-swap, run for real in the tools root -------------------------------


def _swap_script(config_dir: str, staged: str) -> str:
    staging = staged.rsplit("/", 1)[0]
    validate = postfix.validate_command(config_dir, staging, copy_master=True).get_raw_value()
    swap = swap_command(staged, f"{config_dir}/main.cf", "644").get_raw_value()
    return f"{validate} && {swap}"


def test_validate_swap_keeps_the_live_main_cf_when_postfix_refuses(
    tools_root: Path, scratch: tuple[Path, str]
) -> None:
    outside, inside = scratch
    live, staging = outside / "live", outside / "live" / "mailmend-staging"
    staging.mkdir(parents=True)
    shutil.copy(tools_root / "etc/postfix/master.cf", live / "master.cf")
    good = render_main_cf(host_data("plain"))
    (live / "main.cf").write_text(good)
    bad = render_main_cf(
        {**host_data("plain"), "postfix_main_cf": {"default_process_limit": "lots"}}
    )
    (staging / "main.cf").write_text(bad)
    result = in_root(
        tools_root, _swap_script(f"{inside}/live", f"{inside}/live/mailmend-staging/main.cf")
    )
    assert result.returncode != 0
    assert "default_process_limit" in result.stderr
    assert "live main.cf is unchanged" in result.stderr
    assert (live / "main.cf").read_text() == good
    assert not list(live.glob("main.cf.mailmend-*"))

    # An unknown parameter (a typo) is refused too: postconf warns "unused parameter".
    (staging / "main.cf").write_text(good + "smtp_trasport_rate_delay = 1s\n")
    result = in_root(
        tools_root, _swap_script(f"{inside}/live", f"{inside}/live/mailmend-staging/main.cf")
    )
    assert result.returncode != 0 and "unused parameter" in result.stderr
    assert (live / "main.cf").read_text() == good


def test_validate_swap_backs_up_then_renames(tools_root: Path, scratch: tuple[Path, str]) -> None:
    outside, inside = scratch
    live, staging = outside / "live", outside / "live" / "mailmend-staging"
    staging.mkdir(parents=True)
    shutil.copy(tools_root / "etc/postfix/master.cf", live / "master.cf")
    (live / "main.cf").write_text("# hand-edited\nmyhostname = old.example.com\n")
    new = render_main_cf(host_data("sandbox"))
    (staging / "main.cf").write_text(new)
    result = in_root(
        tools_root, _swap_script(f"{inside}/live", f"{inside}/live/mailmend-staging/main.cf")
    )
    assert result.returncode == 0, result.stderr
    assert (live / "main.cf").read_text() == new
    assert oct((live / "main.cf").stat().st_mode & 0o777) == "0o644"
    backups = list(live.glob("main.cf.mailmend-*"))
    assert len(backups) == 1
    assert re.fullmatch(r"main\.cf\.mailmend-\d{8}T\d{6}Z", backups[0].name)
    assert backups[0].read_text().startswith("# hand-edited")
    assert not (staging / "main.cf").exists()


# -- OpenDKIM -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["plain", "two-domains", "receives-mail-ipv6", "sandbox"])
def test_opendkim_conf_and_tables_pass_opendkim_n(
    variant: str, tools_root: Path, scratch: tuple[Path, str]
) -> None:
    outside, inside = scratch
    data = {
        **host_data(variant),
        "opendkim_table_dir": inside,
        "opendkim_key_dir": f"{inside}/keys",
    }
    ctx = contexts.opendkim_context("mx1", data)
    for name in ("KeyTable", "SigningTable", "TrustedHosts"):
        (outside / name).write_text(contexts.render_template(f"opendkim/{name}.j2", opendkim=ctx))
    conf = contexts.render_template("opendkim/opendkim.conf.j2", opendkim=ctx)
    (outside / "opendkim.conf").write_text(conf)
    result = in_root(tools_root, f"opendkim -n -x {inside}/opendkim.conf")
    assert result.returncode == 0, result.stderr
    assert "Socket\t\t\tlocal:/var/spool/postfix/opendkim/opendkim.sock" in conf
    assert "UMask\t\t\t007" in conf
    signing = (outside / "SigningTable").read_text()
    for domain in ctx.domains:
        assert f"*@{domain.name} {domain.selector}._domainkey.{domain.name}\n" in signing
    assert "127.0.0.0/8" in (outside / "TrustedHosts").read_text()

    (outside / "opendkim.conf").write_text(conf + "NoSuchOption yes\n")
    refused = in_root(tools_root, f"opendkim -n -x {inside}/opendkim.conf")
    assert refused.returncode != 0 and "unrecognized parameter" in refused.stderr


def test_two_domains_get_their_own_keys() -> None:
    ctx = contexts.opendkim_context("mx1", host_data("two-domains"))
    assert [(d.name, d.selector, d.private_key) for d in ctx.domains] == [
        ("example.com", "mx1", "/etc/opendkim/keys/example.com/mx1.private"),
        ("example.org", "s2026", "/etc/opendkim/keys/example.org/s2026.private"),
    ]
    keytable = contexts.render_template("opendkim/KeyTable.j2", opendkim=ctx)
    assert "s2026._domainkey.example.org example.org:s2026:" in keytable


# -- hostname files -------------------------------------------------------------------------


def test_hosts_and_mailname() -> None:
    names = contexts.hostname_context("mx1", host_data("receives-mail-ipv6"))
    hosts = [
        line.split() for line in contexts.render_template("hosts.j2", names=names).splitlines()
    ]
    assert ["127.0.0.1", "localhost"] in hosts
    assert ["192.0.2.10", "mx1.example.com", "mx1"] in hosts
    assert ["2001:db8::10", "mx1.example.com", "mx1"] in hosts
    assert contexts.render_template("mailname.j2", names=names) == "mx1.example.com\n"


def test_templates_render_from_the_package_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert contexts.TEMPLATES_DIR.is_absolute()
    assert render_main_cf(host_data("plain")).startswith("# Managed by mailmend")


# -- sending hygiene ------------------------------------------------------------------------

HYGIENE_DATA: dict[str, Any] = {**BASE, **hygiene.DEFAULTS}


def test_recipient_restrictions_suppress_then_rate_limit_before_mynetworks() -> None:
    settings = dict(main_cf_settings(render_main_cf(host_data("plain"))))
    steps = [s.strip() for s in settings["smtpd_recipient_restrictions"].split(",")]
    assert steps == [
        "check_recipient_access hash:/etc/postfix/mailmend/suppress_recipients",
        "check_policy_service { unix:ratelimit/policy",
        "default_action=DUNNO }",
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "reject_unauth_destination",
    ]
    assert settings["transport_maps"] == "hash:/etc/postfix/mailmend/suppress_transport"


def test_suppression_tables_pass_postmap_and_main_cf_reads_them(
    tools_root: Path, scratch: tuple[Path, str]
) -> None:
    """Real postmap indexes both tables; Postfix's own lookups answer as smtpd will."""
    outside, inside = scratch
    record = bounces.BounceRecord(
        "gone@example.net", datetime(2026, 11, 28, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC),
        1, "5.1.1", "550 5.1.1 User unknown",
    )  # fmt: skip
    result = bounces.build_suppression(
        [record], allow=frozenset(), deny=frozenset({"trap+x@example.org"})
    )
    (outside / "access").write_text(bounces.access_table(result.entries))
    (outside / "transport").write_text(bounces.transport_table(result.entries))
    (outside / "empty").write_text(bounces.access_table(()))
    for name in ("access", "transport", "empty"):
        done = in_root(tools_root, f"postmap hash:{inside}/{name}")
        assert done.returncode == 0 and done.stderr == "", done.stderr
    access = in_root(tools_root, f"postmap -q Gone@Example.NET hash:{inside}/access").stdout
    assert access == "REJECT 5.1.1 suppressed by mailmend: hard bounce 5.1.1 on 2026-11-28\n"
    transport = in_root(tools_root, f"postmap -q trap+x@example.org hash:{inside}/transport")
    assert transport.stdout == "error:5.7.1 suppressed by mailmend: on the deny list\n"
    assert in_root(tools_root, f"postmap -q x@example.net hash:{inside}/empty").returncode == 1


def test_policyd_config_is_rendered_from_validated_values() -> None:
    ctx = contexts.hygiene_context("mx1", {**HYGIENE_DATA, "rate_limit_per_minute": 7})
    text = contexts.render_template("postfix/policyd-rate-limit.yaml.j2", hygiene=ctx)
    lines = text.splitlines()
    assert lines[lines.index("limits:") + 1 :][:2] == ["    - [7, 60]", "    - [1000, 86400]"]
    for expected in (
        'SOCKET: "/var/spool/postfix/ratelimit/policy"',
        "limit_by_sender: True",
        "limit_by_ip: True",
        'limited_networks: ["127.0.0.0/8", "::1/128"]',
        'fail_action: "defer_if_permit 4.7.1 Sending quota exceeded, try again later"',
        "debug: False",
    ):
        assert expected in lines
    custom = contexts.hygiene_context(
        "mx1", {**HYGIENE_DATA, "hygiene_sender_limits": [[1000, 86400], [3, 60]]}
    )
    assert custom.sender_limits == ((3, 60), (1000, 86400))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("hygiene_sender_limits", []),
        ("hygiene_sender_limits", [[0, 60]]),
        ("hygiene_sender_limits", [[5, "60"]]),
        ("hygiene_sender_limits", [[5, 60], [9, 60]]),
        ("hygiene_limited_networks", ["127.0.0.0/8\nSOCKET: x"]),
        ("hygiene_limited_networks", ["not-a-net"]),
        ("hygiene_policy_socket", "/run/policy.sock"),
        ("hygiene_suppression_dir", "etc/postfix"),
    ],
)
def test_unsafe_hygiene_values_are_refused(field: str, bad: object) -> None:
    with pytest.raises(contexts.DeployValueError, match=field.split("[")[0]):
        contexts.hygiene_context("mx1", {**HYGIENE_DATA, field: bad})


def test_sticky_suppression_keeps_earlier_bounces_unless_allowed() -> None:
    old = bounces.build_suppression(
        [bounces.BounceRecord("old@example.net", datetime(2026, 1, 2, tzinfo=UTC),
                              datetime(2026, 1, 2, tzinfo=UTC), 1, "5.1.2", "no domain")],
        allow=frozenset(), deny=frozenset({"trap@example.org"}),
    )  # fmt: skip
    previous = hygiene.table_entries(bounces.access_table(old.entries))
    assert [e.address for e in previous] == ["old@example.net"]  # deny entries are recomputed
    fresh = bounces.build_suppression([], allow=frozenset(), deny=frozenset())
    kept = hygiene.merge_suppression(fresh, previous)
    assert bounces.access_table(kept.entries) == bounces.access_table(
        [e for e in old.entries if e.source == "bounce"]
    )
    lifted = hygiene.merge_suppression(
        bounces.SuppressionResult(entries=(), allowed=("old@example.net",)), previous
    )
    assert lifted.entries == ()


def test_the_allow_list_lifts_a_sticky_suppression_whose_bounce_left_the_logs() -> None:
    """Issue 15 item 10: the bounce line rotated away, the address is on the allow list."""
    old = bounces.build_suppression(
        [bounces.BounceRecord("Old@example.net", datetime(2026, 1, 2, tzinfo=UTC),
                              datetime(2026, 1, 2, tzinfo=UTC), 1, "5.1.1", "no such user")],
        allow=frozenset(), deny=frozenset(),
    )  # fmt: skip
    previous = hygiene.table_entries(bounces.access_table(old.entries))
    allow = frozenset({"old@example.net"})
    fresh = bounces.build_suppression([], allow=allow, deny=frozenset())  # nothing in the logs
    assert fresh.allowed == ()
    assert hygiene.merge_suppression(fresh, previous, allow).entries == ()
