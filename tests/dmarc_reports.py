"""DMARC aggregate reports made by the tests, per RFC 7489 appendix C (and 7.2.1.1 for mail).

Used by the unit tests, the sandbox end-to-end test and ``bench/dmarc.py``.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Row:
    ip: str
    count: int = 1
    header_from: str = "alpha.example"
    disposition: str = "none"
    dkim: str = "pass"  # policy_evaluated (aligned)
    spf: str = "pass"
    dkim_domain: str | None = None  # auth_results; None: the header_from domain
    dkim_result: str | None = None  # None: same as ``dkim``
    spf_domain: str | None = None
    spf_result: str | None = None


def _row(row: Row) -> str:
    dkim_domain = row.dkim_domain or row.header_from
    spf_domain = row.spf_domain or row.header_from
    return (
        "  <record>\n"
        "    <row>\n"
        f"      <source_ip>{escape(row.ip)}</source_ip>\n"
        f"      <count>{row.count}</count>\n"
        "      <policy_evaluated>\n"
        f"        <disposition>{escape(row.disposition)}</disposition>\n"
        f"        <dkim>{escape(row.dkim)}</dkim>\n"
        f"        <spf>{escape(row.spf)}</spf>\n"
        "      </policy_evaluated>\n"
        "    </row>\n"
        "    <identifiers>\n"
        f"      <header_from>{escape(row.header_from)}</header_from>\n"
        "    </identifiers>\n"
        "    <auth_results>\n"
        "      <dkim>\n"
        f"        <domain>{escape(dkim_domain)}</domain>\n"
        f"        <result>{escape(row.dkim_result or row.dkim)}</result>\n"
        "        <selector>s1</selector>\n"
        "      </dkim>\n"
        "      <spf>\n"
        f"        <domain>{escape(spf_domain)}</domain>\n"
        f"        <result>{escape(row.spf_result or row.spf)}</result>\n"
        "      </spf>\n"
        "    </auth_results>\n"
        "  </record>\n"
    )


def report_xml(
    org: str,
    report_id: str,
    domain: str,
    rows: list[Row],
    *,
    begin: int = 1_700_000_000,
    end: int | None = None,
    p: str = "none",
    pct: int | None = None,
    email: str = "noreply-dmarc@reporter.test",
) -> bytes:
    """One ``feedback`` document as the appendix C schema lays it out."""
    pct_line = f"    <pct>{pct}</pct>\n" if pct is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        "<feedback>\n"
        "  <report_metadata>\n"
        f"    <org_name>{escape(org)}</org_name>\n"
        f"    <email>{escape(email)}</email>\n"
        f"    <report_id>{escape(report_id)}</report_id>\n"
        "    <date_range>\n"
        f"      <begin>{begin}</begin>\n"
        f"      <end>{end if end is not None else begin + 86_399}</end>\n"
        "    </date_range>\n"
        "  </report_metadata>\n"
        "  <policy_published>\n"
        f"    <domain>{escape(domain)}</domain>\n"
        "    <adkim>r</adkim>\n"
        "    <aspf>r</aspf>\n"
        f"    <p>{escape(p)}</p>\n"
        f"    <sp>{escape(p)}</sp>\n"
        f"{pct_line}"
        "  </policy_published>\n" + "".join(_row(r) for r in rows) + "</feedback>\n"
    ).encode()


def file_name(org: str, domain: str, begin: int, end: int, report_id: str, ext: str) -> str:
    """RFC 7489 7.2.1.1: receiver!policy-domain!begin!end[!unique-id].ext"""
    return f"{org}!{domain}!{begin}!{end}!{report_id}.{ext}"


def zipped(xml: bytes, name: str = "report.xml") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, xml)
    return buffer.getvalue()


def gzipped(xml: bytes) -> bytes:
    return gzip.compress(xml, mtime=0)


def report_mail(
    payload: bytes,
    filename: str,
    *,
    org: str,
    domain: str,
    report_id: str,
    to: str = "dmarc-reports@alpha.example",
) -> bytes:
    """A report mail as receivers send it: a short text part and the report attached."""
    message = EmailMessage()
    message["From"] = f"noreply-dmarc@{org.lower().replace(' ', '-')}.test"
    message["To"] = to
    message["Subject"] = f"Report Domain: {domain} Submitter: {org} Report-ID: <{report_id}>"
    message["Message-ID"] = f"<{report_id}@{org.lower().replace(' ', '-')}.test>"
    message.set_content(f"This is an aggregate report from {org}.\n")
    if filename.endswith(".zip"):
        maintype, subtype = "application", "zip"
    elif filename.endswith(".gz"):
        maintype, subtype = "application", "gzip"
    else:
        maintype, subtype = "text", "xml"
    message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE feedback [\n <!ENTITY a "aaaaaaaaaa">\n'
    + b"".join(
        f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n'.encode() for i in range(9)
    )
    + b"]>\n<feedback><report_metadata><org_name>&j;</org_name></report_metadata></feedback>\n"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE feedback [\n'
    b' <!ENTITY secret SYSTEM "file:///etc/hostname">\n]>\n'
    b"<feedback><report_metadata><org_name>&secret;</org_name></report_metadata></feedback>\n"
)
