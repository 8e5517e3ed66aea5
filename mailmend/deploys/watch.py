"""``mailmend watch`` on the fleet's monitor host (``[fleet] monitor_host``), on a timer.

1. **Install**: Debian's ``python3-venv``; a venv in ``watch_dir`` with mailmend from its wheel
   (built on this machine from this checkout) and every library it depends on, in the
   versions installed here (binary wheels for the host's architecture and
   ``watch_python_version``), uploaded as one tar and installed offline (``--no-index``);
   ``/usr/local/bin/mailmend`` links to it. Reinstalled only when the tar changed.
2. **Configure**: the fleet file (``/etc/mailmend/fleet.toml``) and, when
   ``watch_alerts_file`` names one on this machine, the alerts file (secrets stay references:
   ``env:``/``file:`` on the monitor host).
3. **Schedule**: ``mailmend watch --once`` every ``watch_every_minutes``: a systemd timer where
   systemd runs (``/run/systemd/system``), else a cron entry (Debian's ``cron`` installed and
   started). The database is ``watch_db``; ``mailmend watch status --remote`` reads it over SSH.

Every other host gets a no-op. A second run changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import posixpath
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import StringIO
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from pyinfra.api.deploy import deploy
from pyinfra.context import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory, File
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from mailmend.deploys.contexts import DeployValueError

DEFAULTS: dict[str, Any] = {
    "mailmend_monitor_host": None,  # from the fleet file's [fleet] monitor_host
    "mailmend_fleet_file": None,  # the fleet file on this machine (mailmend.inventory)
    "watch_every_minutes": 15,
    "watch_keep": "90d",
    "watch_remind": "24h",
    "watch_alerts_file": None,  # an alerts file on this machine ([[alert]] tables), uploaded
    "watch_metrics_file": None,  # e.g. /var/lib/prometheus/node-exporter/mailmend.prom
    "watch_nameservers": [],  # "IP[:PORT]"; empty: the fleet file's [fleet] nameservers
    "watch_dir": "/opt/mailmend",
    "watch_config_dir": "/etc/mailmend",
    "watch_db": "/var/lib/mailmend/watch.db",
    "watch_log": "/var/log/mailmend-watch.log",
    "watch_apt_cache_time": 3600,
    "watch_python_version": "3.11",  # the monitor host's python3 (Debian 12: 3.11)
}
#: The checkout the wheel is built from: the nearest directory above with a pyproject.toml.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
UNIT = "mailmend-watch"
#: Zip timestamps of the wheel: the same checkout gives the same wheel, byte for byte, so a
#: second deploy uploads and reinstalls nothing.
REPRODUCIBLE_EPOCH = "315532800"
_NOT_SOURCE = (".git", ".venv", ".sandbox", "build", "*.egg-info", "__pycache__", ".mypy_cache",
               ".ruff_cache", ".pytest_cache")  # fmt: skip
CRON_FILE = "/etc/cron.d/mailmend-watch"


@functools.cache
def wheelhouse(arch: str, python: str) -> Path:
    """One tar of wheels for the monitor host (``arch``, CPython ``python`` like "3.11"):
    mailmend's, built from this checkout, and every library it depends on, in the versions
    installed on this machine, built here; a binary wheel that does not fit the host is refused.
    Deterministic: the same checkout and libraries give the same tar, byte for byte."""
    tmp = Path(tempfile.mkdtemp(prefix="mailmend-wheels-"))
    out, source = tmp / "wheels", tmp / "source"
    # A copy of the checkout: building in place would leave build/ and *.egg-info behind.
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    constraints = tmp / "constraints.txt"
    constraints.write_text(
        "".join(
            f"{d.metadata['Name']}=={d.version}\n"
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower() != "mailmend"
        )
    )
    _pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)])
    (mailmend,) = out.glob("mailmend-*.whl")
    # pip wheel, not pip download: some libraries (dkimpy) publish no wheel, only sources.
    _pip(["wheel", "--quiet", "--wheel-dir", str(out), "-c", str(constraints), str(mailmend)])
    supported = _host_tags(arch, python)
    for wheel in out.glob("*.whl"):
        if not parse_wheel_filename(wheel.name)[3] & supported:
            raise DeployValueError(
                host.name, "watch wheels",
                f"{wheel.name} was built for this machine and does not fit the monitor host "
                f"(CPython {python}, {arch}, glibc 2.36): deploy from a machine with the "
                "host's Python and architecture, or set watch_python_version",
            )  # fmt: skip
    tar = tmp / "wheels.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as archive:
        for wheel in sorted(out.glob("*.whl")):
            info = archive.gettarinfo(str(wheel), arcname=wheel.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o644
            with wheel.open("rb") as handle:
                archive.addfile(info, handle)
    return tar


def _host_tags(arch: str, python: str) -> frozenset[Tag]:
    """The wheel tags a Debian 12 host (glibc 2.36) with CPython ``python`` installs."""
    version = tuple(int(p) for p in python.split(".")[:2])
    platforms = [f"manylinux_2_{n}_{arch}" for n in range(36, 16, -1)]
    platforms += [f"manylinux2014_{arch}", f"linux_{arch}"]
    return frozenset(
        [
            *tags.cpython_tags(version, platforms=platforms),
            *tags.compatible_tags(version, platforms=platforms),
        ]
    )


def _pip(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False,
        timeout=600, env={**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH},
    )  # fmt: skip
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeployValueError(host.name, "watch wheels", f"pip {args[0]}: {tail}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _setting(name: str, check: Any) -> Any:
    value = host.data.get(name)
    problem = check(value)
    if problem:
        raise DeployValueError(host.name, name, problem)
    return value


def _safe_word(value: object) -> str | None:
    if (
        not isinstance(value, str)
        or not value
        or not all(c.isalnum() or c in "/._-:[]" for c in value)
    ):
        return f"must be a plain path or word (letters, digits, / . _ - : [ ]), not {value!r}"
    return None


def _minutes(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60:
        return f"must be whole minutes from 1 to 60, not {value!r}"
    return None


def watch_command(data: Any, alerts: bool) -> list[str]:
    """The command the timer runs (checked words only)."""
    argv = [
        "/usr/local/bin/mailmend", "watch", "--once", "--quiet",
        "--fleet", f"{data.watch_config_dir}/fleet.toml", "--db", data.watch_db,
        "--keep", data.watch_keep, "--remind", data.watch_remind,
    ]  # fmt: skip
    if alerts:
        argv += ["--alerts", f"{data.watch_config_dir}/alerts.toml"]
    if data.watch_metrics_file:
        argv += ["--metrics-file", data.watch_metrics_file]
    for server_ in data.watch_nameservers or []:
        argv += ["--nameserver", server_]
    return argv


def _validate() -> bool:
    """Whether this host is the monitor host; every value checked before any operation."""
    monitor = host.data.get("mailmend_monitor_host")
    if not monitor:
        raise DeployValueError(
            host.name, "monitor_host", 'no monitor host: set monitor_host = "NAME" in [fleet]'
        )
    if host.name != monitor:
        return False
    _setting("watch_every_minutes", _minutes)
    for name in ("watch_dir", "watch_config_dir", "watch_db", "watch_log", "watch_keep",
                 "watch_remind"):  # fmt: skip
        _setting(name, _safe_word)
    if host.data.get("watch_metrics_file") is not None:
        _setting("watch_metrics_file", _safe_word)
    for ns in host.data.get("watch_nameservers") or []:
        if _safe_word(ns):
            raise DeployValueError(host.name, "watch_nameservers", _safe_word(ns) or "")
    for name in ("mailmend_fleet_file", "watch_alerts_file"):
        path = host.data.get(name)
        if path is not None and not Path(path).is_file():
            raise DeployValueError(host.name, name, f"{path} is not a file on this machine")
    return True


def _install(data: Any) -> None:
    packages = ["python3-venv"]
    if not _has_systemd():
        packages.append("cron")
    installed = host.get_fact(DebPackages) or {}
    apt.packages(
        name="Install Python's venv" + (" and cron" if "cron" in packages else ""),
        packages=packages,
        update=any(p not in installed for p in packages),
        cache_time=data.watch_apt_cache_time,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
    )
    # The wheels as one tar named by its digest: a changed set is a new file (pyinfra would
    # try to show a text diff of a changed binary file), and the same set is no change.
    arch = str(host.get_fact(Arch) or "x86_64")
    tar = wheelhouse(arch, data.watch_python_version)
    wheel_dir = f"{data.watch_dir}/wheels"
    dest = f"{wheel_dir}/{_digest(tar)}.tar"
    files.directory(name="Wheel directory", path=wheel_dir, mode="755")
    put = files.put(name="Upload the wheels (mailmend and its libraries)", src=str(tar),
                    dest=dest, mode="644")  # fmt: skip
    venv = f"{data.watch_dir}/venv"
    fresh = host.get_fact(File, path=f"{venv}/bin/python") is None
    made = server.shell(
        name="Create the watcher's venv",
        commands=[f"python3 -m venv {shlex.quote(venv)}"],
        _if=lambda: fresh,
    )
    unpacked = shlex.quote(f"{wheel_dir}/current")
    server.shell(
        name="Install mailmend and its libraries from the uploaded wheels (offline)",
        commands=[
            f"rm -rf {unpacked} && mkdir {unpacked} && tar -xf {shlex.quote(dest)} -C {unpacked}",
            f"{shlex.quote(venv)}/bin/pip install --quiet --no-index --no-deps --force-reinstall "
            f"{unpacked}/*.whl",
            f"find {shlex.quote(wheel_dir)} -maxdepth 1 -name '*.tar' "
            f"! -name {shlex.quote(posixpath.basename(dest))} -delete",
        ],
        _if=any_changed(made, put),
    )
    files.link(
        name="mailmend on the PATH", path="/usr/local/bin/mailmend", target=f"{venv}/bin/mailmend"
    )


def _configure(data: Any) -> bool:
    files.directory(name="Config directory", path=data.watch_config_dir, mode="700")
    files.directory(name="State directory", path=str(Path(data.watch_db).parent), mode="700")
    files.put(
        name="The fleet file",
        src=data.mailmend_fleet_file,
        dest=f"{data.watch_config_dir}/fleet.toml",
        mode="600",
    )
    if data.watch_alerts_file:
        files.put(
            name="The alerts file",
            src=data.watch_alerts_file,
            dest=f"{data.watch_config_dir}/alerts.toml",
            mode="600",
        )
    return bool(data.watch_alerts_file)


def _has_systemd() -> bool:
    return bool(host.get_fact(Directory, path="/run/systemd/system"))


def _schedule(data: Any, command: list[str]) -> None:
    line = " ".join(shlex.quote(w) for w in command)
    every = int(data.watch_every_minutes)
    if _has_systemd():
        service = (
            "[Unit]\nDescription=mailmend watch: check the fleet, alert on change\n"
            "After=network-online.target\n\n"
            f"[Service]\nType=oneshot\nExecStart={line}\n"
        )
        timer = (
            f"[Unit]\nDescription=Run mailmend watch every {every} min\n\n"
            f"[Timer]\nOnBootSec=2min\nOnUnitActiveSec={every}min\nRandomizedDelaySec=30s\n\n"
            "[Install]\nWantedBy=timers.target\n"
        )
        units = [
            files.put(name=f"{UNIT}.{kind}", src=StringIO(text),
                      dest=f"/etc/systemd/system/{UNIT}.{kind}", mode="644")
            for kind, text in (("service", service), ("timer", timer))
        ]  # fmt: skip
        systemd.daemon_reload(name="Reload systemd", _if=any_changed(*units))
        systemd.service(name="Start the timer", service=f"{UNIT}.timer", running=True, enabled=True)
        return
    minute = "0" if every == 60 else f"*/{every}"
    cron = (
        "# mailmend watch (deploys/watch.py): check the fleet, alert on change\n"
        "PATH=/usr/local/bin:/usr/bin:/bin\n"
        f"{minute} * * * * root {line} >> {shlex.quote(data.watch_log)} 2>&1\n"
    )
    files.put(name="Cron entry", src=StringIO(cron), dest=CRON_FILE, mode="644")
    server.service(name="Cron is running", service="cron", running=True)


@deploy("mailmend watch", data_defaults=DEFAULTS)
def watch_deploy() -> None:
    if not _validate():
        host.noop(f"{host.name} is not the monitor host ({host.data.mailmend_monitor_host})")
        return
    data = host.data
    _install(data)
    alerts = _configure(data)
    _schedule(data, watch_command(data, alerts))
