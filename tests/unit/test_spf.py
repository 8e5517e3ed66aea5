"""SPF: parsing, RFC 7208 evaluation for the host IP, lookup limits, fixes."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from mailmend.checks.dns import DnsAnswer, Rcode
from mailmend.checks.names import reverse_name
from mailmend.checks.result import CheckResult, Status
from mailmend.checks.spf import (
    Evaluation,
    SPFSyntaxError,
    check_spf,
    evaluate,
    expand_macros,
    parse_mechanism,
    parse_record,
    suggest_record,
    truncate_name,
)
from mailmend.checks.wire import encode_name
from tests.unit.test_ptr import IP, IP6, FakeResolver

D = "example.com"
Zone = dict[tuple[str, str], tuple[str, ...] | Rcode]


def run(zone: Zone, ips: tuple[str, ...] = (IP,)) -> CheckResult:
    return asyncio.run(check_spf(FakeResolver(zone), D, ips))


def spf(record: str, more: dict[str, str] | None = None) -> Zone:
    zone: Zone = {(D, "TXT"): (record, "google-site-verification=abc")}
    for name, text in (more or {}).items():
        zone[(name, "TXT")] = (text,)
    return zone


def test_ip4_pass() -> None:
    result = run(spf(f"v=spf1 ip4:{IP} -all"))
    assert result.status is Status.PASS, result


def test_ip4_network_matches_and_other_network_fails() -> None:
    assert run(spf("v=spf1 ip4:203.0.113.0/24 -all")).status is Status.PASS
    result = run(spf("v=spf1 ip4:198.51.100.0/24 -all"))
    assert result.status is Status.FAIL
    assert result.fix is not None and f"ip4:{IP}" in result.fix
    assert f"v=spf1 ip4:198.51.100.0/24 ip4:{IP} -all" in result.fix


def test_ip6_pass_and_fail() -> None:
    assert run(spf("v=spf1 ip6:2001:db8::/32 -all"), (IP6,)).status is Status.PASS
    result = run(spf(f"v=spf1 ip4:{IP} ~all"), (IP, IP6))
    assert result.status is Status.FAIL
    assert result.fix is not None and f"ip6:{IP6}" in result.fix and f"ip4:{IP} " in result.fix


def test_softfail_all_without_match_fails_saying_add() -> None:
    result = run(spf("v=spf1 mx ~all") | {(D, "MX"): ("10 mail.example.net.",)})
    assert result.status is Status.FAIL
    assert f"does not authorise {IP}" in result.summary
    assert result.fix is not None and result.fix.startswith(f"add ip4:{IP}")


def test_include_chain_pass() -> None:
    zone = spf(
        "v=spf1 include:_spf.example.net -all",
        {
            "_spf.example.net": "v=spf1 include:inner.example.org ~all",
            "inner.example.org": f"v=spf1 ip4:{IP} -all",
        },
    )
    result = run(zone)
    assert result.status is Status.PASS, result
    assert "3 of 10 DNS lookups" not in " ".join(result.details)
    assert "2 of 10 DNS lookups used" in " ".join(result.details)


def test_include_whose_all_is_fail_does_not_match() -> None:
    zone = spf("v=spf1 include:other.example.net -all", {"other.example.net": "v=spf1 -all"})
    assert run(zone).status is Status.FAIL


def test_include_of_domain_without_spf_is_permerror() -> None:
    result = run(spf(f"v=spf1 include:none.example.net ip4:{IP} -all"))
    assert result.status is Status.FAIL
    assert "permerror" in result.summary


def test_redirect_is_followed() -> None:
    zone = spf("v=spf1 redirect=_spf.example.net", {"_spf.example.net": f"v=spf1 ip4:{IP} -all"})
    assert run(zone).status is Status.PASS
    zone = spf(
        "v=spf1 redirect=_spf.example.net", {"_spf.example.net": "v=spf1 ip4:192.0.2.1 -all"}
    )
    assert run(zone).status is Status.FAIL


def test_redirect_is_ignored_when_all_is_present() -> None:
    zone = spf("v=spf1 -all redirect=_spf.example.net", {"_spf.example.net": f"v=spf1 ip4:{IP}"})
    assert run(zone).status is Status.FAIL


def test_a_with_cidr() -> None:
    zone = spf("v=spf1 a:web.example.com/24 -all") | {("web.example.com", "A"): ("203.0.113.200",)}
    assert run(zone).status is Status.PASS
    zone = spf("v=spf1 a:web.example.com -all") | {("web.example.com", "A"): ("203.0.113.200",)}
    assert run(zone).status is Status.FAIL


def test_bare_a_uses_the_domain() -> None:
    zone = spf("v=spf1 a -all") | {(D, "A"): (IP,)}
    assert run(zone).status is Status.PASS


def test_mx_with_ipv6_cidr() -> None:
    zone = spf("v=spf1 mx//64 -all") | {
        (D, "MX"): ("10 mail.example.com.",),
        ("mail.example.com", "AAAA"): ("2001:db8::1",),
    }
    assert run(zone, (IP6,)).status is Status.PASS
    zone = spf("v=spf1 mx -all") | {
        (D, "MX"): ("10 mail.example.com.",),
        ("mail.example.com", "AAAA"): ("2001:db8::1",),
    }
    assert run(zone, (IP6,)).status is Status.FAIL


def test_exists_is_a_dns_term() -> None:
    zone = spf("v=spf1 exists:%{i}.allow.example.com -all")
    zone[(f"{IP}.allow.example.com", "A")] = ("127.0.0.2",)
    assert run(zone).status is Status.PASS


def test_ptr_mechanism_counts_and_is_discouraged() -> None:
    zone = spf("v=spf1 ptr -all") | {
        (reverse_name(IP), "PTR"): ("mx1.example.com.",),
        ("mx1.example.com", "A"): (IP,),
    }
    result = run(zone)
    assert result.status is Status.PASS
    assert any("discouraged" in d for d in result.details)
    assert any("1 of 10" in d for d in result.details)


def test_eleven_lookups_fail() -> None:
    names = [f"i{n}.example.net" for n in range(11)]
    zone = spf("v=spf1 " + " ".join(f"include:{n}" for n in names) + f" ip4:{IP} -all")
    for n in names:
        zone[(n, "TXT")] = ("v=spf1 ip4:192.0.2.1 -all",)
    result = run(zone)
    assert result.status is Status.FAIL
    assert "more than 10 DNS lookups" in result.summary
    assert result.fix is not None


def test_ten_lookups_pass() -> None:
    names = [f"i{n}.example.net" for n in range(10)]
    zone = spf("v=spf1 " + " ".join(f"include:{n}" for n in names) + f" ip4:{IP} -all")
    for n in names:
        zone[(n, "TXT")] = ("v=spf1 ip4:192.0.2.1 -all",)
    assert run(zone).status is Status.PASS


def test_lookups_after_the_match_still_count() -> None:
    names = [f"i{n}.example.net" for n in range(11)]
    zone = spf(f"v=spf1 ip4:{IP} " + " ".join(f"include:{n}" for n in names) + " -all")
    for n in names:
        zone[(n, "TXT")] = ("v=spf1 -all",)
    assert run(zone).status is Status.FAIL


def test_three_void_lookups_fail() -> None:
    zone = spf(f"v=spf1 a:n1.example.com a:n2.example.com mx:n3.example.com ip4:{IP} -all")
    result = run(zone)
    assert result.status is Status.FAIL
    assert "find nothing" in result.summary


def test_two_void_lookups_pass() -> None:
    zone = spf(f"v=spf1 a:n1.example.com a:n2.example.com ip4:{IP} -all")
    assert run(zone).status is Status.PASS


def test_two_records_fail() -> None:
    zone: Zone = {(D, "TXT"): (f"v=spf1 ip4:{IP} -all", "v=spf1 mx -all")}
    result = run(zone)
    assert result.status is Status.FAIL
    assert "2 SPF records" in result.summary
    assert result.fix is not None and "merge" in result.fix


def test_no_record_fails_with_suggestion() -> None:
    result = run({(D, "TXT"): ("some-verification=1",)})
    assert result.status is Status.FAIL
    assert result.fix is not None
    assert result.fix.startswith(f'publish: {D}. TXT "v=spf1 ip4:{IP} ~all"')
    assert "mailmend records" in result.fix


def test_plus_all_fails() -> None:
    result = run(spf(f"v=spf1 ip4:{IP} +all"))
    assert result.status is Status.FAIL
    assert "+all" in result.summary
    assert result.fix is not None and "-all" in result.fix


def test_question_all_warns() -> None:
    result = run(spf(f"v=spf1 ip4:{IP} ?all"))
    assert result.status is Status.WARN
    assert "?all" in result.summary


def test_question_all_without_match_fails() -> None:
    assert run(spf("v=spf1 ip4:192.0.2.1 ?all")).status is Status.FAIL


def test_syntax_error_names_the_term() -> None:
    result = run(spf(f"v=spf1 ip4:{IP} ip4:300.1.2.3 -all"))
    assert result.status is Status.FAIL
    assert "term 2 'ip4:300.1.2.3'" in result.summary
    assert result.fix is not None and "ip4:300.1.2.3" in result.fix


@pytest.mark.parametrize(
    ("record", "position"),
    [
        ("v=spf1 foo -all", 1),
        ("v=spf1 a mx include -all", 3),
        ("v=spf1 a/33 -all", 1),
        ("v=spf1 ip6:192.0.2.1 -all", 1),
        ("v=spf1 -all:x", 1),
        ("v=spf1 a:%{z}.example.com", 1),
        ("v=spf1 redirect=a.example.com redirect=b.example.com", 2),
        ("v=spf1 a:not_a..name", 1),
    ],
)
def test_syntax_errors(record: str, position: int) -> None:
    with pytest.raises(SPFSyntaxError) as info:
        parse_record(record, D)
    assert info.value.position == position


def test_dual_cidr_parse() -> None:
    mech = parse_mechanism("~a:mail.example.com/24//64")
    assert (mech.qualifier, mech.kind, mech.target, mech.cidr4, mech.cidr6) == (
        "~",
        "a",
        "mail.example.com",
        24,
        64,
    )
    assert parse_mechanism("mx//64").cidr6 == 64


def test_temporary_dns_error_is_unknown() -> None:
    zone = spf("v=spf1 include:_spf.example.net -all") | {
        ("_spf.example.net", "TXT"): Rcode.SERVFAIL
    }
    assert run(zone).status is Status.UNKNOWN
    assert run({(D, "TXT"): Rcode.TIMEOUT}).status is Status.UNKNOWN


def test_macro_expansion() -> None:
    ip = ipaddress.ip_address(IP)
    assert expand_macros("%{ir}.%{v}._spf.%{d2}", ip, "mail.example.com") == (
        "7.113.0.203.in-addr._spf.example.com"
    )
    assert expand_macros("%{l}-%%", ip, D) == "postmaster-%"


def test_suggest_adds_before_redirect() -> None:
    assert suggest_record([IP], "v=spf1 mx redirect=x.example.com") == (
        f"v=spf1 mx ip4:{IP} redirect=x.example.com"
    )


# --- issue 14: RFC 7208 defects and sections 5.5 / 7.3 ----------------------------------------


def test_unknown_modifier_is_ignored_not_a_domain() -> None:
    assert run(spf(f"v=spf1 ip4:{IP} ra=postmaster -all")).status is Status.PASS
    record = parse_record("v=spf1 default=pass rp=100 ?all")
    assert [m.kind for m in record.mechanisms] == ["all"]
    with pytest.raises(SPFSyntaxError):
        parse_record("v=spf1 foo=%abc -all")  # its value is still a macro-string


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:192.0.2.1 -all",  # all-numeric top label
        "v=spf1 mx:example.123 -all",
        "v=spf1 ip4:192.0.2.0/024 -all",  # leading zero in a CIDR length
        "v=spf1 a/032 -all",
        "v=spf1 a//0128 -all",
        f"v=spf1 ip4:{IP}\r-all",  # only SP separates terms
        f"v=spf1 ip4:{IP}\t-all",
        "v=spf1 a:%{d0}.example.com -all",  # a digit transformer is nonzero (7.3)
        "v=spf1 a:%{d\u0663}.example.com -all",  # ASCII digits only (Arabic-Indic three)
        "v=spf1 a:%{c}.example.com -all",  # c, r, t only in exp=
    ],
)
def test_records_the_rfc_refuses(record: str) -> None:
    with pytest.raises(SPFSyntaxError):
        parse_record(record)


def test_domain_spec_takes_any_visible_character_before_the_top_label() -> None:
    mech = parse_record("v=spf1 a:foo:bar/baz.example.com/24 -all").mechanisms[0]
    assert (mech.target, mech.cidr4) == ("foo:bar/baz.example.com", 24)
    zone = spf("v=spf1 a:foo:bar/baz.example.com -all") | {("foo:bar/baz.example.com", "A"): (IP,)}
    assert run(zone).status is Status.PASS


def test_ipv4_mapped_ipv6_is_evaluated_as_ipv4() -> None:
    zone = spf(f"v=spf1 ip6:::ffff:0:0/96 ip4:{IP} -all")
    ev = Evaluation(FakeResolver(zone), ipaddress.ip_address(f"::ffff:{IP}"))
    assert ev.ip == ipaddress.ip_address(IP)
    record = parse_record("v=spf1 ip6:::ffff:0:0/96 -all")
    found = asyncio.run(evaluate(ev, D, record))
    assert found is not None and found.result == "fail"


@pytest.mark.parametrize("domain", ["a" * 64 + ".example.com", "a..example.com", "localhost"])
def test_malformed_domain_is_a_clear_result_not_valueerror(domain: str) -> None:
    class EngineLikeResolver(FakeResolver):
        async def query(self, name: str, rdtype: str) -> DnsAnswer:
            encode_name(name)  # the real engine raises ValueError for a name DNS cannot carry
            return await super().query(name, rdtype)

    result = asyncio.run(check_spf(EngineLikeResolver({}), domain, (IP,)))
    assert result.status is Status.FAIL
    assert "not a valid domain name" in result.summary and result.fix is not None


def _eval(zone: Zone, ip: str = IP, record: str | None = None) -> tuple[str, Evaluation]:
    resolver = FakeResolver(zone)
    ev = Evaluation(resolver, ipaddress.ip_address(ip))
    found = asyncio.run(evaluate(ev, D, parse_record(record or zone[(D, "TXT")][0], D)))  # type: ignore[index]
    return (found.result if found else "neutral"), ev


def test_p_macro_is_the_validated_name() -> None:
    zone = spf("v=spf1 exists:%{p}._spf.example.com -all") | {
        (reverse_name(IP), "PTR"): ("other.example.net.", "mail.example.com."),
        ("other.example.net", "A"): ("192.0.2.99",),
        ("mail.example.com", "A"): (IP,),
        ("mail.example.com._spf.example.com", "A"): ("127.0.0.2",),
    }
    assert _eval(zone)[0] == "pass"
    zone[(reverse_name(IP), "PTR")] = ("other.example.net.",)
    assert _eval(zone)[0] == "fail"  # no validated name: %{p} is "unknown"


def test_ptr_when_the_ptr_lookup_fails_is_no_match_not_temperror() -> None:
    # RFC 7208 5.5: a DNS error on the PTR lookup: the mechanism does not match
    zone = spf(f"v=spf1 ptr ip4:{IP} -all") | {(reverse_name(IP), "PTR"): Rcode.SERVFAIL}
    assert _eval(zone)[0] == "pass"
    assert run(zone).status is Status.PASS


def test_ptr_skips_a_name_whose_address_lookup_fails() -> None:
    zone = spf("v=spf1 ptr -all") | {
        (reverse_name(IP), "PTR"): ("broken.example.com.", "mail.example.com."),
        ("broken.example.com", "A"): Rcode.SERVFAIL,
        ("mail.example.com", "A"): (IP,),
    }
    assert _eval(zone)[0] == "pass"
    del zone[("mail.example.com", "A")]
    assert _eval(zone)[0] == "fail"


def test_macros_inside_include_keep_the_sender_and_move_the_domain() -> None:
    # RFC 7208 7.3: %{s} and %{o} are the sender's, %{d} the domain of the current record
    zone = spf("v=spf1 include:inc.example.net -all") | {
        ("inc.example.net", "TXT"): ("v=spf1 exists:%{o}.%{d}.%{l}.chk.example.org -all",),
        ("example.com.inc.example.net.postmaster.chk.example.org", "A"): ("127.0.0.2",),
    }
    assert _eval(zone)[0] == "pass"
    zone = spf("v=spf1 redirect=red.example.net") | {
        ("red.example.net", "TXT"): ("v=spf1 exists:%{s}.%{d}.chk.example.org -all",),
        ("postmaster@example.com.red.example.net.chk.example.org", "A"): ("127.0.0.2",),
    }
    assert _eval(zone)[0] == "pass"


def test_digit_transformer_keeps_right_hand_parts_and_all_when_too_many() -> None:
    ip = ipaddress.ip_address(IP)
    assert expand_macros("%{d2}", ip, "a.b.example.com") == "example.com"
    assert expand_macros("%{d99}", ip, "a.b.example.com") == "a.b.example.com"
    assert expand_macros("%{i2r}", ip, D) == "0.203"  # digits then r (7.1)
    assert expand_macros("%{l-}", ip, D, sender="a-b@x.example") == "a.b"
    assert expand_macros("%{S}", ip, D, sender="a b@x.example") == "a%20b%40x.example"


def test_expanded_name_over_253_characters_loses_labels_on_the_left() -> None:
    long = ".".join(["a" * 60] * 5) + ".example.com"
    assert len(truncate_name(long)) <= 253
    assert truncate_name(long).endswith(".example.com")


def test_record_using_the_sender_says_the_check_assumed_one() -> None:
    zone = spf("v=spf1 exists:%{l}.chk.example.com -all") | {
        ("postmaster.chk.example.com", "A"): ("127.0.0.2",)
    }
    result = run(zone)
    assert result.status is Status.PASS
    assert any("depends on the SMTP sender or HELO" in d for d in result.details)


def test_lookup_limit_explains_the_whole_tree_count() -> None:
    record = "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(11)) + f" ip4:{IP} -all"
    zone = spf(record) | {(f"h{i}.example.com", "A"): ("192.0.2.50",) for i in range(11)}
    result = run(zone)
    assert result.status is Status.FAIL
    assert "counted over the whole record" in result.summary
