"""What each fleet host signs DKIM with, read over ssh: the selector and its public half.

``mailmend records --dkim-from-hosts`` and ``mailmend check --dkim-from-hosts`` use it. One
read-only ssh command a host (``cat``/``base64`` of ``/etc/opendkim.conf``, the ``KeyTable``
and ``SigningTable`` it names, and the ``SELECTOR.txt`` files under ``KEY_DIR/DOMAIN/``;
never a private key), hosts in parallel, each ending by its deadline.

The selector is the one the host's OpenDKIM signs the domain with
(:func:`mailmend.adopt.dkim_discovery.opendkim_keys`): after a deploy, mailmend's own tables,
which name an adopted key under the admin's selector (``mailmend/adopt/deploy.py``); before
one, the admin's OpenDKIM configuration. When the host's OpenDKIM names none, the fleet's
selector. A host that cannot be read, or that has no public half for that selector, gets a
:attr:`HostKeys.problem`: one line that names it and says what to do next; the other hosts
are not affected.

Everything read from a host is hostile: a selector must be a valid one, and text shown to the
admin goes through :func:`mailmend.checks.escape.visible`.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailmend.adopt import dkim_discovery
from mailmend.checks.dkim_key import (
    KEY_DIR,
    DkimPublicKey,
    DkimRecordError,
    key_files,
    parse_key_text,
)
from mailmend.checks.escape import visible
from mailmend.fleet import HostSpec
from mailmend.rules import selector_problem
from mailmend.ssh import ssh_argv

#: Hosts read at once.
WORKERS = 32
SSH_FAILED = 255
FLEET = "fleet"  # HostDomainKey.source when the host's OpenDKIM names no selector

#: argv, timeout -> the finished process (tests pass a fake).
Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[bytes]"]


def _subprocess_runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)


#: How ssh is run (tests replace it with a fake host).
RUNNER: Runner = _subprocess_runner


@dataclass(frozen=True)
class HostDomainKey:
    """One (host, domain): the selector to publish and check, where it came from, its key."""

    host: str
    domain: str
    selector: str
    fleet_selector: str
    source: str  # dkim_discovery.FoundKey.source, or FLEET
    key: DkimPublicKey | None = None
    txt_path: str = ""

    @property
    def from_host(self) -> bool:
        """True when the host signs under another selector than the fleet file names."""
        return self.source != FLEET and self.selector != self.fleet_selector

    def origin(self) -> str:
        """What the plan says about a selector that came from the host ("" when it did not)."""
        if not self.from_host:
            return ""
        return (
            f"selector {self.selector} is the one {self.host} signs with (from its "
            f"{self.source}); the fleet file names {self.fleet_selector}"
        )


@dataclass(frozen=True)
class HostKeys:
    host: str
    domains: tuple[HostDomainKey, ...]
    #: one line: which host, what is missing, what to do (the caller says what it did instead)
    problem: str | None = None

    def missing(self) -> tuple[HostDomainKey, ...]:
        return tuple(d for d in self.domains if d.key is None)


def remote_command(domains: Sequence[str], conf: str, key_dir: str = KEY_DIR) -> str:
    """The read-only shell command: one ``TAG PATH BASE64`` line per file found."""
    dirs = " ".join(shlex.quote(key_files(d, "x", key_dir)[0]) for d in domains)
    return (
        'show() { if [ -f "$2" ] && [ -r "$2" ]; then printf \'%s %s \' "$1" "$2"; '
        'base64 -w0 < "$2"; echo; fi; }; '
        f'conf={shlex.quote(conf)}; show conf "$conf"; '
        'if [ -r "$conf" ]; then for t in KeyTable SigningTable; do '
        "p=$(awk -v k=\"$t\" '$1 == k { print $2; exit }' \"$conf\" | sed 's/^[a-z]*://'); "
        'case "$p" in /*) show "$t" "$p";; esac; done; fi; '
        f'for d in {dirs}; do for f in "$d"/*.txt; do show txt "$f"; done; done; true'
    )


def parse_output(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(tag -> text for conf/KeyTable/SigningTable, path -> text for the .txt files)."""
    files: dict[str, str] = {}
    txts: dict[str, str] = {}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        path, _, b64 = rest.rpartition(" ")
        try:
            content = base64.b64decode(b64, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            continue
        if tag == "txt":
            txts[path] = content
        elif tag in ("conf", "KeyTable", "SigningTable"):
            files[tag] = content
    return files, txts


def host_keys(
    spec: HostSpec, output: str, key_dir: str = KEY_DIR, conf: str = dkim_discovery.OPENDKIM_CONF
) -> HostKeys:
    """Each fleet domain of ``spec``: the selector its OpenDKIM signs with and the public half
    kept under ``key_dir`` (from :func:`remote_command`'s ``output``)."""
    files, txts = parse_output(output)
    out: list[HostDomainKey] = []
    for domain in spec.domains:
        selector, source = _signing_selector(files, domain.name, domain.selector)
        txt = key_files(domain.name, selector, key_dir)[2]
        key = None
        if txt in txts:
            try:
                key = parse_key_text(txts[txt], domain.name, selector)
            except DkimRecordError:
                key = None
        out.append(
            HostDomainKey(spec.name, domain.name, selector, domain.selector, source, key, txt)
        )
    keys = HostKeys(spec.name, tuple(out))
    if keys.missing():
        return HostKeys(spec.name, keys.domains, _missing_line(keys, txts))
    return keys


def _signing_selector(files: dict[str, str], domain: str, fleet_selector: str) -> tuple[str, str]:
    """(selector, source): the fleet's when the host's OpenDKIM signs with it (or names none),
    else the first one it signs ``domain`` with."""
    conf, keytable, signingtable = (files.get(k) for k in ("conf", "KeyTable", "SigningTable"))
    found = [
        k
        for k in dkim_discovery.opendkim_keys(conf or "", keytable, signingtable, domain)
        if selector_problem(k.selector) is None
    ]
    chosen = next((k for k in found if k.selector == fleet_selector), None)
    chosen = chosen or next(iter(found), None)
    return (chosen.selector, chosen.source) if chosen else (fleet_selector, FLEET)


def _missing_line(keys: HostKeys, txts: dict[str, str]) -> str:
    what = "; ".join(
        f"{'an unreadable' if d.txt_path in txts else 'no'} DKIM public key for {d.domain} "
        f"({visible(d.txt_path)})"
        for d in keys.missing()
    )
    return (
        f"host {keys.host}: {what}: deploy it (pyinfra inventory.py deploys/mail.py --limit "
        f"{keys.host}) or give {_dkim_txt_hint(keys.missing())}"
    )


def _dkim_txt_hint(missing: Sequence[HostDomainKey]) -> str:
    return " ".join(f"--dkim-txt {d.domain}:{d.selector}=FILE" for d in missing)


def unreadable(spec: HostSpec, why: str) -> HostKeys:
    """A host that did not answer: the fleet's selectors, no keys, one line saying why."""
    domains = tuple(
        HostDomainKey(spec.name, d.name, d.selector, d.selector, FLEET) for d in spec.domains
    )
    hint = _dkim_txt_hint(domains)
    return HostKeys(
        spec.name,
        domains,
        f"host {spec.name}: cannot read its DKIM keys over ssh ({visible(why)}): check that it "
        f"is up and reachable, or give {hint}",
    )


def read_host(spec: HostSpec, timeout: float, runner: Runner | None = None) -> HostKeys:
    """One host's keys; a host that does not answer within ``timeout`` seconds is a problem."""
    runner = runner or RUNNER
    if not spec.domains:
        return HostKeys(spec.name, ())
    command = remote_command([d.name for d in spec.domains], dkim_discovery.OPENDKIM_CONF)
    connect = max(1, min(int(timeout), 10))
    try:
        done = runner(ssh_argv(spec, command, connect_timeout=connect), timeout)
    except subprocess.TimeoutExpired:
        return unreadable(spec, f"no answer within {timeout:g}s")
    except OSError as err:
        return unreadable(spec, f"cannot run ssh: {err.strerror}")
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"ssh exited {done.returncode}"
        return unreadable(spec, why)
    return host_keys(spec, done.stdout.decode("utf-8", errors="replace"))


def read_hosts(
    hosts: Sequence[HostSpec], timeout: float, runner: Runner | None = None
) -> list[HostKeys]:
    """Every host's keys, in ``hosts`` order; hosts are read :data:`WORKERS` at a time, each
    ending within ``timeout`` seconds (the CLI's ``--ssh-timeout``)."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(hosts))) as pool:
        return list(pool.map(lambda spec: read_host(spec, timeout, runner), hosts))
