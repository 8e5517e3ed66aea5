"""mailmend.adopt: merging into an admin's main.cf, another MTA, existing DKIM keys.

Fed by files and tool output captured from the sandbox's existing-server hosts
(``tests/unit/fixtures/adopt``: ``cat``, ``postconf -n`` and ``dpkg -l`` on the mailserver,
relay, exim and dkim setups of ``sandbox/existing.py``); the merged main.cf is checked by the
real ``postconf`` in the tools root.
"""

from __future__ import annotations

import difflib
import subprocess
from pathlib import Path

import pytest
from pyinfra.facts.deb import DebPackages

from mailmend.adopt import dkim_discovery, maincf, mta, shown
from tests.unit.test_templates import in_root, scratch, tools_root  # noqa: F401  (fixtures)

FIXTURES = Path(__file__).with_name("fixtures") / "adopt"
SUPPRESS = "check_recipient_access hash:/etc/postfix/mailmend/suppress_recipients"
QUOTA = "check_policy_service { unix:ratelimit/policy, default_action=DUNNO }"
SPEC = maincf.MergeSpec(
    settings=(
        ("myhostname", "mail.oldco.example"),
        ("smtp_helo_name", "$myhostname"),
        ("smtp_transport_rate_delay", "12s"),
        ("milter_default_action", "accept"),
        ("access_map_reject_code", "550"),
    ),
    recipient_checks=(SUPPRESS, QUOTA),
    transport_map="hash:/etc/postfix/mailmend/suppress_transport",
    milter="unix:opendkim/opendkim.sock",
    tls_level="may",
)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def added_and_removed(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return [d[2:] for d in diff if d.startswith("+ ")], [d[2:] for d in diff if d[:2] == "- "]


# -- main.cf --------------------------------------------------------------------------------


def test_merge_keeps_every_admin_line_and_inserts_checks_before_permit_mynetworks() -> None:
    text = fixture("mailserver-main.cf")
    merged = maincf.merge(text, SPEC)
    added, removed = added_and_removed(text, merged.render())
    assert removed == []  # every comment, blank line and continuation line kept
    lines = merged.render().splitlines()
    at = lines.index("    permit_mynetworks,")
    assert lines[at - 3 : at] == [
        "    # ours first, then the usual",
        f"    {SUPPRESS},",
        f"    {QUOTA},",
    ]
    assert lines[at - 4] == "    reject_non_fqdn_recipient,"  # the admin's entry stays first
    assert f"    {SUPPRESS}," in added and "smtp_transport_rate_delay = 12s" in added
    assert maincf.list_items(merged.get("smtpd_recipient_restrictions")) == [
        "reject_non_fqdn_recipient", SUPPRESS, QUOTA,
        "permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination",
    ]  # fmt: skip


def test_merge_reports_old_and_new_values() -> None:
    merged = maincf.merge(fixture("mailserver-main.cf"), SPEC)
    shown_changes = {c.name: str(c) for c in merged.changes}
    assert shown_changes["smtp_transport_rate_delay"] == "smtp_transport_rate_delay: (unset) -> 12s"
    assert "myhostname" not in shown_changes  # already the right value: no change
    assert set(shown_changes) == {
        "smtp_helo_name", "smtp_transport_rate_delay", "milter_default_action",
        "access_map_reject_code", "smtpd_recipient_restrictions", "transport_maps",
        "smtpd_milters", "non_smtpd_milters",
    }  # fmt: skip


def test_merge_is_idempotent() -> None:
    once = maincf.merge(fixture("mailserver-main.cf"), SPEC).render()
    again = maincf.merge(once, SPEC)
    assert again.changes == [] and again.render() == once


def test_relay_setup_keeps_its_smarthost_credentials_and_stronger_tls() -> None:
    text = fixture("relay-main.cf")
    merged = maincf.merge(text, SPEC)
    for name in ("relayhost", "smtp_sasl_password_maps", "smtp_sasl_auth_enable"):
        assert merged.get(name) == maincf.MainCf.parse(text).get(name)
    assert merged.get("relayhost") == "[smarthost.sink.test]:587"
    assert merged.get("smtp_tls_security_level") == "encrypt"  # not weakened to "may"
    _added, removed = added_and_removed(text, merged.render())
    assert removed == ["myhostname = sandbox"]  # identity is mailmend's; nothing else goes


def test_tls_level_is_raised_never_lowered() -> None:
    strong = maincf.MergeSpec(**{**SPEC.__dict__, "tls_level": "encrypt"})
    assert (
        maincf.merge("smtp_tls_security_level = may\n", strong).get("smtp_tls_security_level")
        == "encrypt"
    )
    assert (
        maincf.merge("smtp_tls_security_level = dane\n", strong).get("smtp_tls_security_level")
        == "dane"
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, [SUPPRESS, QUOTA]),
        ("reject_unauth_destination", [SUPPRESS, QUOTA, "reject_unauth_destination"]),
        (
            "permit_sasl_authenticated permit_mynetworks reject",
            ["permit_sasl_authenticated", SUPPRESS, QUOTA, "permit_mynetworks", "reject"],
        ),
        (  # ours misplaced after permit_mynetworks: moved, nothing duplicated
            f"permit_mynetworks, {SUPPRESS}, reject_rbl_client zen.spamhaus.org, reject",
            [SUPPRESS, QUOTA, "permit_mynetworks", "reject_rbl_client zen.spamhaus.org", "reject"],
        ),
        (  # an admin's own policy service (another socket) stays where it was
            "check_policy_service{inet:127.0.0.1:10023},permit_mynetworks",
            ["check_policy_service { inet:127.0.0.1:10023 }", SUPPRESS, QUOTA, "permit_mynetworks"],
        ),
    ],
)
def test_merge_restrictions(before: str | None, after: list[str]) -> None:
    assert maincf.merge_restrictions(before, [SUPPRESS, QUOTA]) == after


def test_single_line_list_is_rewritten_on_its_line() -> None:
    text = "a = 1\nsmtpd_recipient_restrictions = permit_mynetworks, reject\nb = 2\n"
    out = maincf.merge(text, SPEC).render().splitlines()
    assert out[:3] == [
        "a = 1",
        f"smtpd_recipient_restrictions = {SUPPRESS}, {QUOTA}, permit_mynetworks, reject",
        "b = 2",
    ]


def test_last_definition_wins_and_is_the_one_changed() -> None:
    cf = maincf.MainCf.parse("myhostname = a.example\n# x\nmyhostname = b.example\n")
    assert cf.get("myhostname") == "b.example"
    cf.set("myhostname", "c.example")
    assert cf.render() == "myhostname = a.example\n# x\nmyhostname = c.example\n"
    assert [str(c) for c in cf.changes] == ["myhostname: b.example -> c.example"]


def test_other_milters_are_kept_and_an_old_opendkim_replaced() -> None:
    text = (
        "smtpd_milters = inet:localhost:8891, unix:spamass/spamass.sock\n"
        "non_smtpd_milters = inet:localhost:8891\n"
    )
    cf = maincf.merge(text, SPEC)
    assert cf.get("smtpd_milters") == "unix:spamass/spamass.sock, unix:opendkim/opendkim.sock"
    assert cf.get("non_smtpd_milters") == "unix:opendkim/opendkim.sock"


def test_unbalanced_brace_is_a_clear_error() -> None:
    with pytest.raises(maincf.MainCfError, match="unbalanced"):
        maincf.merge("smtpd_recipient_restrictions = check_policy_service { unix:x\n", SPEC)


def test_changes_shown_escaped() -> None:
    cf = maincf.MainCf.parse("myhostname = evil\x1b[2J.example\n")
    cf.set("myhostname", "mx1.example.com")
    assert "\x1b" not in str(cf.changes[0]) and "\\x1b" in str(cf.changes[0])


def postconf_n(text: str) -> dict[str, str]:
    pairs = (line.partition("=") for line in text.splitlines())
    return {k.strip(): v.strip() for k, _, v in pairs}


def test_merged_main_cf_is_accepted_by_the_real_postconf(
    tools_root: Path,  # noqa: F811
    scratch: tuple[Path, str],  # noqa: F811
) -> None:
    outside, inside = scratch
    before = fixture("mailserver-main.cf")
    (outside / "main.cf").write_text(maincf.merge(before, SPEC).render())
    subprocess.run(["cp", str(tools_root / "etc/postfix/master.cf"), str(outside)], check=True)
    done = in_root(tools_root, f"postconf -c {inside} -n")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    got = postconf_n(done.stdout)
    expected = postconf_n(fixture("mailserver-postconf-n.txt"))
    got.pop("config_directory")  # postconf -c DIR names DIR
    changed = {k for k in {*got, *expected} if got.get(k) != expected.get(k)}
    assert changed == {c.name for c in maincf.merge(before, SPEC).changes}
    assert got["smtpd_recipient_restrictions"].startswith(f"reject_non_fqdn_recipient, {SUPPRESS}")


# -- another MTA ----------------------------------------------------------------------------


def installed(dpkg_l: str) -> list[str]:
    return list(DebPackages().process(dpkg_l.splitlines()))


def test_exim_detected_from_dpkg_and_its_settings_shown() -> None:
    found = mta.detect(installed(fixture("exim-dpkg-l.txt")))
    assert found is not None and found.name == "Exim"
    assert "exim4-daemon-light" in found.packages
    settings = mta.parse_exim_conf(fixture("exim-update-exim4.conf.conf"))
    assert settings["dc_smarthost"] == "smarthost.sink.test::587"
    assert settings["dc_relay_domains"] == "partner.example"
    message = "\n".join(mta.stop_message(found, settings, "exim"))
    assert "smarthost (dc_smarthost): smarthost.sink.test::587" in message
    assert "relay domains (dc_relay_domains): partner.example" in message
    assert "mail sent by smarthost; no local mail" in message
    assert 'relay_host = "smarthost.sink.test:587"' in message
    assert "replace_mta = true" in message and "/etc/exim4" in message


def test_no_other_mta_on_a_postfix_host() -> None:
    assert mta.detect(installed(fixture("mailserver-dpkg-l.txt"))) is None


def test_exim_settings_from_the_host_are_shown_escaped() -> None:
    settings = mta.parse_exim_conf("dc_smarthost='evil\x1b]0;x\x07::25'\n")
    found = mta.OtherMta("Exim", ("exim4-base",), ("/etc/exim4",), "exim4")
    assert "\x1b" not in "\n".join(mta.stop_message(found, settings, "h"))
    assert shown("a\x07") == "a\\x07"


# -- existing DKIM keys ---------------------------------------------------------------------


def test_opendkim_single_key_form_found() -> None:
    keys = dkim_discovery.opendkim_keys(fixture("dkim-opendkim.conf"), None, None, "signed.example")
    assert [(k.selector, k.key_file, k.source) for k in keys] == [
        ("default", "/etc/dkimkeys/default.private", "opendkim.conf KeyFile")
    ]
    assert (
        dkim_discovery.opendkim_keys(fixture("dkim-opendkim.conf"), None, None, "x.example") == []
    )


def test_opendkim_tables_found() -> None:
    conf = (
        "KeyTable refile:/etc/opendkim/KeyTable\nSigningTable refile:/etc/opendkim/SigningTable\n"
    )
    keytable = "k1 example.com:s2024:/etc/opendkim/keys/example.com/s2024.private\n"
    signing = "*@example.com k1\n*@other.example k2\n"
    keys = dkim_discovery.opendkim_keys(conf, keytable, signing, "Example.com")
    assert [(k.selector, k.key_file) for k in keys] == [
        ("s2024", "/etc/opendkim/keys/example.com/s2024.private")
    ]


def test_rspamd_and_amavis_keys_and_signers() -> None:
    rspamd = 'path = "/var/lib/rspamd/dkim/$domain.$selector.key";\nselector = "dkim";\n'
    assert [k.key_file for k in dkim_discovery.rspamd_keys(rspamd, "example.com")] == [
        "/var/lib/rspamd/dkim/example.com.dkim.key"
    ]
    amavis = (
        "$enable_dkim_signing = 1;\ndkim_key('example.com', 'mail', '/var/db/dkim/example.pem');\n"
    )
    assert [k.selector for k in dkim_discovery.amavis_keys([amavis], "example.com")] == ["mail"]
    assert dkim_discovery.other_signers(["rspamd", "amavisd-new"], rspamd, [amavis]) == [
        "rspamd",
        "amavis",
    ]
    assert dkim_discovery.other_signers(["postfix"], None, []) == []


def test_key_published_at_some_selector() -> None:
    found = dkim_discovery.match_published(
        {"/etc/dkimkeys/default.private": "MIIBk"},
        {"mail": "MIIBx", "default": "MIIBk"},
        "a.example",
    )
    assert [(k.selector, k.key_file) for k in found] == [
        ("default", "/etc/dkimkeys/default.private")
    ]


def test_docstring_examples() -> None:
    import doctest

    import mailmend.adopt

    # dkim_discovery has no examples: testmod of it ran nothing and passed whatever it held
    for module in (mailmend.adopt, maincf, mta):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, (module.__name__, result)
