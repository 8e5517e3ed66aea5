"""SPF: parsing, RFC 7208 evaluation for the host IP, lookup limits, fixes."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from checks.dns import Rcode
from checks.ptr import reverse_name
from checks.result import CheckResult, Status
from checks.spf import (
    SPFSyntaxError,
    check_spf,
    expand_macros,
    parse_mechanism,
    parse_record,
    suggest_record,
)
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
