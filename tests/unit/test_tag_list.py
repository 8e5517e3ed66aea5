"""The one tag-list parser (RFC 6376 3.2, RFC 7489 6.4) and the two records that use it."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mailmend.checks.tag_list
from mailmend.checks import dkim_key, dmarc
from mailmend.checks.tag_list import FWS, TagListError, parse_tag_list

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    "text",
    [
        "v=DKIM1; k=rsa; p=QUJD",
        "v=DKIM1;k=rsa;p=QUJD",
        "  v = DKIM1 ;\tk\t=\trsa\t; p =QUJD  ",
        "v=DKIM1;\r\n k=rsa;\r\n\tp=QUJD",  # folded across lines
        "v=DKIM1; k=rsa; p=QUJD;",  # empty trailing ';'
        "v=DKIM1; k=rsa; p=QUJD; ; ",
        "v=DKIM1;; k=rsa;;p=QUJD",
    ],
)
def test_folding_white_space_and_empty_parts(text: str) -> None:
    assert parse_tag_list(text) == {"v": "DKIM1", "k": "rsa", "p": "QUJD"}


def test_white_space_inside_a_value_is_kept() -> None:
    assert parse_tag_list("p= QU JD \t; n = two  words ") == {"p": "QU JD", "n": "two  words"}


def test_empty_values_are_values() -> None:
    assert parse_tag_list("v=DKIM1; p=; t= ;") == {"v": "DKIM1", "p": "", "t": ""}


def test_nothing_but_separators_is_no_tags() -> None:
    assert parse_tag_list("") == {}
    assert parse_tag_list(" ; ;\t;") == {}


def test_a_value_may_hold_an_equals_sign() -> None:
    assert parse_tag_list("p=QUJD==; n=a=b") == {"p": "QUJD==", "n": "a=b"}


@pytest.mark.parametrize(
    ("text", "fold_case", "why"),
    [
        ("p=a; p=b", False, "tag p= appears twice"),
        ("p=a; p =b;", False, "tag p= appears twice"),
        ("p=a;\r\n p=a", False, "tag p= appears twice"),
        ("P=a; p=b", True, "tag p= appears twice"),
        ("v=DKIM1; garbage", False, "'garbage' is not tag=value"),
        ("v=DKIM1; =QUJD", False, "'=QUJD' is not tag=value"),
        ("v=DKIM1;  = x ;", True, "'= x' is not tag=value"),
    ],
)
def test_what_is_not_a_tag_list(text: str, fold_case: bool, why: str) -> None:
    with pytest.raises(TagListError) as err:
        parse_tag_list(text, fold_case=fold_case)
    assert str(err.value) == why


def test_tag_names_are_case_sensitive_unless_folded() -> None:
    assert parse_tag_list("P=a; p=b") == {"P": "a", "p": "b"}  # DKIM: two tags
    assert parse_tag_list("V=DMARC1; P=none", fold_case=True) == {"v": "DMARC1", "p": "none"}


def test_only_folding_white_space_is_dropped() -> None:
    # a no-break space is not FWS: it stays part of the name, so this is no p= tag
    assert parse_tag_list("\xa0p=x") == {"\xa0p": "x"}


def test_each_record_keeps_its_own_error() -> None:
    with pytest.raises(dmarc.DmarcRecordError, match=r"^tag p= appears twice$"):
        dmarc.parse_record("v=DMARC1; p=none; P=reject")
    with pytest.raises(dmarc.DmarcRecordError, match="is not tag=value"):
        dmarc.parse_record("v=DMARC1; p=none; =x")
    with pytest.raises(dkim_key.DkimRecordError, match=r"^tag p= appears twice$"):
        dkim_key.parse_record("v=DKIM1; p=QUJD; p=QUJD", "example.com", "mx1")
    with pytest.raises(dkim_key.DkimRecordError, match="'nonsense' is not tag=value"):
        dkim_key.parse_record("v=DKIM1; nonsense; p=QUJD", "example.com", "mx1")


def test_records_read_with_folding_white_space() -> None:
    record = dmarc.parse_record(" V = DMARC1 ;\r\n\tP = Reject ; rua = mailto:d@example.com ;")
    assert record.policy == "reject"
    assert record.addresses("rua") == ["d@example.com"]
    key = dkim_key.parse_record("v = DKIM1 ;\tk = rsa ;\r\n p = QU JD ;", "example.com", "mx1")
    assert key.public_key_b64 == "QUJD"


def test_module_examples() -> None:
    result = doctest.testmod(mailmend.checks.tag_list)
    assert result.attempted and not result.failed


# -- properties --------------------------------------------------------------------------------

# RFC 6376 3.2: tag-name = ALPHA *ALNUMPUNC; tval = 1*VALCHAR (%x21-3A / %x3C-7E)
ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(ALPHA),
    st.text(alphabet=ALPHA + "0123456789_", max_size=6),
)
TVAL = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F) if c != 0x3B], min_size=1, max_size=8)
VALUES = st.lists(TVAL, max_size=3).map(" ".join)
PAD = st.text(alphabet=" \t", max_size=2) | st.sampled_from(["\r\n ", "\r\n\t"])


@SETTINGS
@given(
    tags=st.dictionaries(NAMES, VALUES, max_size=6),
    pads=st.lists(PAD, min_size=24, max_size=24),
    trailing=st.booleans(),
)
def test_any_tag_list_reads_back(tags: dict[str, str], pads: list[str], trailing: bool) -> None:
    pad = iter(pads)
    text = ";".join(f"{next(pad)}{n}{next(pad)}={next(pad)}{v}{next(pad)}" for n, v in tags.items())
    text += ";" if trailing else ""
    assert parse_tag_list(text) == tags


@SETTINGS
@given(tags=st.dictionaries(NAMES, VALUES, min_size=1, max_size=5), data=st.data())
def test_any_repeated_tag_is_refused(tags: dict[str, str], data: st.DataObject) -> None:
    twice = data.draw(st.sampled_from(sorted(tags)))
    text = "; ".join(f"{n}={v}" for n, v in tags.items()) + f"; {twice} = again"
    with pytest.raises(TagListError, match=f"^tag {twice}= appears twice$"):
        parse_tag_list(text)


@SETTINGS
@given(text=st.text(max_size=60), fold_case=st.booleans())
def test_any_text_gives_tags_or_a_tag_list_error(text: str, fold_case: bool) -> None:
    try:
        tags = parse_tag_list(text, fold_case=fold_case)
    except TagListError:
        return
    for name, value in tags.items():
        assert name and name == name.strip(FWS) and "=" not in name and ";" not in name
        assert value == value.strip(FWS) and ";" not in value
        assert not fold_case or name == name.lower()
