"""The Debian base images every sandbox host is an overlay copy of: 12 (bookworm) and 13 (trixie).

Built once per suite with ``debootstrap --variant=minbase`` (plus openssh-server), archived
as ``tar.zst`` in the cache and reused; the extracted root is kept beside the archive.
A second root, the *tools root*, adds postfix and opendkim so tests can check rendered
configs with the real ``postconf`` and ``opendkim`` without installing them on this machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sandbox.paths import cache_dir

SUITE = "bookworm"  # the default suite; the mirror is looked up under this name
#: Debian releases a sandbox host can run (``sandbox up --suite``, ``SandboxHost.suite``).
SUITES = ("bookworm", "trixie")
IMAGE_VERSION = "2"  # bump when the base recipe changes: the cache is rebuilt
#: Per-suite base recipe versions (trixie's diverts systemctl, below).
BASE_VERSIONS = {"bookworm": IMAGE_VERSION, "trixie": "3"}
BASE_PACKAGES = ("openssh-server", "ca-certificates")
TOOLS_PACKAGES = ("postfix", "opendkim", "opendkim-tools")

SSHD_DROPIN = """\
# mailmend sandbox: root by key only, as an admin reaches a VPS
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 50
"""


def _log(msg: str) -> None:
    print(f"sandbox: {msg}", file=sys.stderr, flush=True)


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses for ``bookworm`` itself.

    Reads deb822 stanzas (``URIs:`` with ``Suites:``) and one-line ``deb URI SUITE ...``
    entries; other repositories (security, updates, third-party lists) are skipped.
    """
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for src in candidates:
        if not src.is_file() or src.suffix not in ("", ".list", ".sources"):
            continue
        for uri in _mirrors_in(src.read_text()):
            return uri
    return "http://deb.debian.org/debian"


def _mirrors_in(text: str) -> list[str]:
    found = []
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "#")):
                fields[key.strip().lower()] = value.split()
        if SUITE in fields.get("suites", []) and "deb" in fields.get("types", ["deb"]):
            found += fields.get("uris", [])[:1]
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] == ["deb"]:
            rest = [w for w in words[1:] if not w.startswith("[")]
            if len(rest) >= 2 and rest[1] == SUITE:
                found.append(rest[0])
    return found


def _run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]


def _extract(archive: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["tar", "--zstd", "-xpf", str(archive), "-C", str(tmp), "--numeric-owner"])
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _archive(root: Path, archive: Path) -> None:
    tmp = archive.with_name(archive.name + ".tmp")
    _run(["tar", "--zstd", "-cpf", str(tmp), "-C", str(root), "--numeric-owner", "."])
    tmp.rename(archive)


def _configure_base(root: Path, suite: str = SUITE) -> None:
    (root / "etc/ssh/sshd_config.d/mailmend.conf").write_text(SSHD_DROPIN)
    if suite != "bookworm":
        # Trixie's minbase brings systemd (openssh-server pulls it in), but no sandbox host
        # runs it as PID 1: without the divert pyinfra would drive services with systemctl,
        # which does nothing there. Diverted, services run from their init scripts, as on
        # bookworm (and on any VPS without systemd as init).
        _run(
            ["chroot", str(root), "dpkg-divert", "--local", "--rename", "--divert",
             "/usr/bin/systemctl.mailmend-sandbox", "--add", "/usr/bin/systemctl"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    # Each host gets its own resolv.conf (its sandbox's dnsmasq) in its overlay.
    (root / "etc/resolv.conf").write_text("")
    (root / "etc/hostname").write_text("sandbox\n")
    apt_conf = root / "etc/apt/apt.conf.d/80mailmend"
    apt_conf.write_text('Acquire::Retries "3";\nAPT::Install-Recommends "false";\n')
    for stale in (root / "var/cache/apt/archives").glob("*.deb"):
        stale.unlink()


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise ValueError(f"unknown Debian suite {suite!r} (known: {', '.join(SUITES)})")
    return suite


def _debootstrap(root: Path, suite: str) -> None:
    shutil.rmtree(root, ignore_errors=True)
    mirror = apt_mirror()
    _log(f"debootstrap {suite} minbase from {mirror} (about 30-40 s; once, then cached)")
    include = ",".join(BASE_PACKAGES)
    _run(
        ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(root), mirror],
        stdout=subprocess.DEVNULL,
    )
    _configure_base(root, suite)


def cached_root(name: str, build: object, version: str = IMAGE_VERSION) -> Path:
    """Return the extracted root ``name``, restoring it from its archive or building it.

    ``version`` names the recipe: a new one builds a new root beside the old.
    """
    base = cache_dir()
    root = base / f"{name}-v{version}"
    stamp = root / ".mailmend-image"
    if stamp.exists():
        return root
    base.mkdir(parents=True, exist_ok=True)
    # Two sandboxes starting at once (parallel test workers) build or restore an image once:
    # the second waits for the first, then finds the stamp.
    with (base / f"{name}-v{version}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _build_or_restore(name, build, version, root, stamp)
    return root


def _build_or_restore(name: str, build: object, version: str, root: Path, stamp: Path) -> None:
    base = root.parent
    archive = base / f"{name}-v{version}.tar.zst"
    if archive.exists():
        _log(f"restoring {archive.name}")
        _extract(archive, root)
    else:
        building = root.with_name(root.name + ".build")
        build(building)  # type: ignore[operator]
        _log(f"archiving {archive.name}")
        _archive(building, archive)
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
    stamp.write_text(version + "\n")


def base_root(suite: str = SUITE) -> Path:
    """The extracted minbase + openssh-server root of ``suite`` (built or restored on demand)."""
    check_suite(suite)
    return cached_root(
        f"{suite}-minbase", lambda root: _debootstrap(root, suite), version=BASE_VERSIONS[suite]
    )


def install_packages(
    root: Path,
    packages: tuple[str, ...],
    what: str,
    preseed: str = "",
    suite: str = SUITE,
    script: str = "",
) -> None:
    """Make ``root`` a copy of the base image with ``packages`` installed (no service started).

    ``preseed``: debconf selections (``debconf-set-selections`` lines) given before installing;
    ``script``: shell commands run in the root (chrooted) after the install, to configure it.
    """
    shutil.rmtree(root, ignore_errors=True)
    _run(["cp", "-a", str(base_root(suite)), str(root)])
    (root / ".mailmend-image").unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    words = " ".join(packages)
    (root / "tmp/mailmend.preseed").write_text(preseed)
    (root / "tmp/mailmend.configure").write_text("set -eu\n" + script)
    run = (
        f"mount -t proc proc {root}/proc && "
        f"chroot {root} sh -c 'debconf-set-selections /tmp/mailmend.preseed && "
        "apt-get update -qq && "
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {words} && "
        "sh /tmp/mailmend.configure'"
    )
    _log(f"building the {what} ({words})")
    # A private mount namespace: the /proc mount disappears with it.
    _run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", run],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    (root / "etc/resolv.conf").write_text("")
    (root / "tmp/mailmend.preseed").unlink()
    (root / "tmp/mailmend.configure").unlink()
    for stale in (root / "var/cache/apt/archives").glob("*.deb"):
        stale.unlink()


def tools_root(suite: str = SUITE) -> Path:
    """A root of ``suite`` with postfix and opendkim, for checking rendered configs."""
    check_suite(suite)
    return cached_root(
        f"{suite}-tools",
        lambda root: install_packages(root, TOOLS_PACKAGES, f"{suite} tools root", suite=suite),
    )
