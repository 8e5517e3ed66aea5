"""Find the DKIM key that already signs for a domain on a host, and any other active signer.

Sources, in the order they are trusted:

1. OpenDKIM's own configuration: ``KeyTable`` + ``SigningTable`` (``file:`` / ``refile:``
   or a plain path), or the single-key form ``Domain`` / ``Selector`` / ``KeyFile``;
2. rspamd's ``dkim_signing.conf`` (``local.d`` or ``override.d``): ``path`` and
   ``selector``, globally or per domain in a ``domain { NAME { ... } }`` block;
3. amavis' ``dkim_key('domain', 'selector', '/path')`` lines;
4. a key file anywhere mailmend looked whose public half is the one published at a selector
   (the caller compares public halves; see :func:`match_published`).

Only paths, domains and selectors are read here, never a private key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OPENDKIM_CONF = "/etc/opendkim.conf"
RSPAMD_DKIM_CONFS = (
    "/etc/rspamd/local.d/dkim_signing.conf",
    "/etc/rspamd/override.d/dkim_signing.conf",
)
AMAVIS_CONF_DIR = "/etc/amavis/conf.d"


@dataclass(frozen=True)
class FoundKey:
    domain: str
    selector: str
    key_file: str
    source: str  # "opendkim KeyTable", "opendkim.conf KeyFile", "rspamd", "amavis", "published"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def parse_opendkim_conf(text: str) -> dict[str, str]:
    """``Key value`` lines of opendkim.conf (first word the key, the rest the value)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ") if " " in line else line.partition("\t")
        out[key.strip()] = value.strip()
    return out


def table_path(value: str) -> tuple[str, str]:
    """(kind, path) of an OpenDKIM dataset: ``file:/x``, ``refile:/x`` or a bare ``/x``."""
    kind, sep, rest = value.partition(":")
    if sep and kind in ("file", "refile", "csl", "db"):
        return kind, rest
    return "file", value


def _table_lines(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append(line.split(None, 1))
    return rows


def _domain_matches(pattern: str, domain: str, regex: bool) -> bool:
    """A SigningTable key against mail from ``anyone@domain`` (refile: ``*`` wildcards)."""
    pattern = pattern.lower()
    if not regex:
        return pattern in (domain, f"@{domain}") or pattern.endswith(f"@{domain}")
    expr = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return any(re.fullmatch(expr, probe) for probe in (f"anyone@{domain}", domain))


def opendkim_keys(
    conf: str, keytable: str | None, signingtable: str | None, domain: str
) -> list[FoundKey]:
    """Keys OpenDKIM signs ``domain`` with, per its configuration and tables."""
    domain = domain.lower().rstrip(".")
    settings = parse_opendkim_conf(conf)
    found: list[FoundKey] = []
    if keytable is not None:
        keys: dict[str, tuple[str, str, str]] = {}
        for row in _table_lines(keytable):
            if len(row) == 2 and row[1].count(":") >= 2:
                d, sel, path = row[1].split(":", 2)
                keys[row[0]] = (d.lower(), sel, path)
        regex = table_path(settings.get("SigningTable", ""))[0] == "refile"
        names: list[str] = []
        if signingtable is not None:
            for row in _table_lines(signingtable):
                if len(row) == 2 and _domain_matches(row[0], domain, regex):
                    names.append(row[1].strip())
        else:
            names = [n for n, (d, _s, _p) in keys.items() if d == domain]
        for name in dict.fromkeys(names):
            if name in keys:
                d, sel, path = keys[name]
                if d in (domain, "%"):
                    found.append(FoundKey(domain, sel, path, "opendkim KeyTable"))
    single = [settings.get(k) for k in ("Domain", "Selector", "KeyFile")]
    if all(single):
        domains = {d.strip().lower() for d in re.split(r"[,\s]+", str(single[0])) if d}
        if domain in domains:
            found.append(FoundKey(domain, str(single[1]), str(single[2]), "opendkim.conf KeyFile"))
    return found


_UCL_PAIR = re.compile(r'(\w+)\s*=\s*"?([^";\n]*)"?\s*;?')


def rspamd_keys(text: str, domain: str) -> list[FoundKey]:
    """rspamd ``dkim_signing.conf``: a per-domain block wins over the global path/selector.

    ``$domain`` and ``$selector`` in a path are substituted as rspamd does.
    """
    domain = domain.lower()
    block = re.search(
        r"domain\s*\{.*?\b" + re.escape(domain) + r'"?\s*\{([^}]*)\}', text, re.DOTALL
    )
    scope = block.group(1) if block else re.sub(r"domain\s*\{.*\}", "", text, flags=re.DOTALL)
    pairs = {k: v.strip() for k, v in _UCL_PAIR.findall(scope)}
    selector = pairs.get("selector", "dkim" if not block else "")
    path = pairs.get("path", "/var/lib/rspamd/dkim/$domain.$selector.key" if not block else "")
    if not selector or not path:
        return []
    path = path.replace("$domain", domain).replace("$selector", selector)
    return [FoundKey(domain, selector, path, "rspamd")]


_AMAVIS_KEY = re.compile(r"dkim_key\s*\(\s*'([^']+)'\s*,\s*'([^']+)'\s*,\s*'([^']+)'")


def amavis_keys(texts: Iterable[str], domain: str) -> list[FoundKey]:
    out = []
    for text in texts:
        for d, sel, path in _AMAVIS_KEY.findall(text):
            if d.lower() == domain.lower():
                out.append(FoundKey(domain.lower(), sel, path, "amavis"))
    return out


def amavis_signs(texts: Iterable[str]) -> bool:
    """True when amavis' configuration turns DKIM signing on (``$enable_dkim_signing = 1``)."""
    on = False
    for text in texts:
        for m in re.finditer(r"^\s*\$enable_dkim_signing\s*=\s*(\w+)", text, re.MULTILINE):
            on = m.group(1) not in ("0", "undef")
    return on


def other_signers(
    installed: Iterable[str], rspamd_conf: str | None, amavis_confs: Iterable[str]
) -> list[str]:
    """Active DKIM signers other than OpenDKIM: rspamd (signs by default once installed,
    unless its dkim_signing is disabled) and amavis (when ``$enable_dkim_signing`` is on)."""
    names = set(installed)
    out = []
    if "rspamd" in names and not re.search(
        r"^\s*enabled\s*=\s*false", rspamd_conf or "", re.MULTILINE
    ):
        out.append("rspamd")
    if {"amavisd-new", "amavis"} & names and amavis_signs(amavis_confs):
        out.append("amavis")
    return out


def match_published(
    candidates: Mapping[str, str], published: Mapping[str, str], domain: str
) -> list[FoundKey]:
    """Key files whose public half (``candidates``: path -> base64 ``p=``) is published at a
    selector (``published``: selector -> base64 ``p=``)."""
    out = []
    for selector, pub in published.items():
        for path, key in candidates.items():
            if key and key == pub:
                out.append(FoundKey(domain.lower(), selector, path, "published"))
    return out
