"""Bring the sandbox fleet up, report its status, take it down.

State lives in one directory (``.sandbox/`` by default): the generated fleet file, the SSH
key pyinfra uses, known_hosts, DNS zones, the receiver's mail, and ``sandbox.json`` with
the pid of every process. Each process is the ``unshare`` wrapper of its own PID namespace;
``down`` kills them and with them every daemon and mount the sandbox made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sandbox import existing, image, proc
from sandbox.dns import SandboxDns, system_upstreams
from sandbox.mailbox import IMAPS_PORT, SMTP_PORT, MailboxProvider, mailbox_root
from sandbox.pdns import API_PORT, SandboxPowerDns, copied_zones
from sandbox.receiver import Receiver
from sandbox.scenario import (
    BLOCK_ENV,
    SSH_PORT,
    Net,
    SandboxHost,
    Scenario,
    default_scenario,
)

HOST_INIT = Path(__file__).with_name("host-init.sh")


class SandboxError(RuntimeError):
    pass


@dataclass
class Status:
    hosts: dict[str, bool] = field(default_factory=dict)  # name -> sshd answering
    services: dict[str, bool] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.hosts) and all(self.hosts.values()) and all(self.services.values())


def _log(msg: str) -> None:
    print(f"sandbox: {msg}", file=sys.stderr, flush=True)


class Sandbox:
    def __init__(self, state: Path, net: Net | None = None) -> None:
        self.state = state.resolve()
        self.meta = self.state / "sandbox.json"
        self.net = net or self._saved_net() or Net(int(os.environ.get(BLOCK_ENV, "0")))
        self.dns = SandboxDns(self.state, self.net)
        self.pdns = SandboxPowerDns(self.state, self.net)
        self.receiver = Receiver(self.state)
        self.mailbox = MailboxProvider(self.state, self.net)
        self.key = self.state / "ssh" / "id_ed25519"
        self.known_hosts = self.state / "ssh" / "known_hosts"
        self.fleet_file = self.state / "fleet.toml"

    # -- metadata --------------------------------------------------------------------
    def _load(self) -> dict[str, object]:
        if not self.meta.exists():
            return {}
        data: dict[str, object] = json.loads(self.meta.read_text())
        return data

    def _saved_net(self) -> Net | None:
        block = self._load().get("net_block")
        return Net(int(block)) if isinstance(block, int) else None

    def _save(self, data: dict[str, object]) -> None:
        data["net_block"] = self.net.block
        pids = data.get("pids")
        if isinstance(pids, dict):  # who each pid is, so `down` never kills a stranger
            known = self._identities()
            data["identities"] = {
                name: known.get(name) or proc.identity(pid) for name, pid in pids.items()
            }
        self.meta.write_text(json.dumps(data, indent=2) + "\n")

    def hosts(self) -> list[SandboxHost]:
        raw = self._load().get("hosts", [])
        assert isinstance(raw, list)
        return [SandboxHost(**h) for h in raw]

    def pids(self) -> dict[str, int]:
        """The sandbox's processes still running: a pid that is now another process (the
        state file outlived a reboot, or the process exited and its pid was reused) is left
        out, so nothing here ever signals an unrelated process."""
        raw = self._load().get("pids", {})
        assert isinstance(raw, dict)
        who = self._identities()
        return {
            str(k): int(v)
            for k, v in raw.items()
            if proc.alive(int(v)) and proc.is_ours(int(v), who.get(str(k)))
        }

    def recorded_pids(self) -> dict[str, int]:
        """Every pid in ``sandbox.json``, ours or not any more."""
        raw = self._load().get("pids", {})
        assert isinstance(raw, dict)
        return {str(k): int(v) for k, v in raw.items()}

    def _identities(self) -> dict[str, proc.Identity]:
        raw = self._load().get("identities", {})
        return (
            {str(k): v for k, v in raw.items() if isinstance(v, dict)}
            if isinstance(raw, dict)
            else {}
        )

    def scenario(self) -> Scenario:
        """The running scenario: the saved hosts (empty and existing) with the default lists."""
        hosts = self.hosts()
        plain = sum(1 for h in hosts if not h.setup)
        return replace(default_scenario(plain, self.net), hosts=tuple(hosts))

    @property
    def passwords_file(self) -> Path:
        """The mail users' passwords of the existing-server hosts (made at ``up``)."""
        return self.state / "existing" / "passwords.json"

    def passwords(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.passwords_file.read_text())
        return data

    # -- up ----------------------------------------------------------------------------
    def up(self, n_hosts: int, scenario: Scenario | None = None) -> None:
        if n_hosts < 1 or n_hosts > 200:
            raise SandboxError("--hosts must be between 1 and 200")
        if any(proc.alive(p) for p in self.pids().values()):
            raise SandboxError(f"a sandbox is already running in {self.state}; run down first")
        scn = scenario or default_scenario(n_hosts, self.net)
        roots = {h.name: self._root_of(h) for h in scn.hosts}
        provider_root = mailbox_root()
        self.state.mkdir(parents=True, exist_ok=True)
        self._ssh_key()
        self._passwords(scn.hosts)
        self._save({"hosts": [asdict(h) for h in scn.hosts], "pids": {}})
        pids: dict[str, int] = {}
        try:
            pids.update(self._start_services(scn))
            for h in scn.hosts:
                pids[h.name] = self._start_host(roots[h.name], h)
                self._save({"hosts": [asdict(h) for h in scn.hosts], "pids": pids})
            pids.update(self._start_mailbox(provider_root, scn))
            self._save({"hosts": [asdict(h) for h in scn.hosts], "pids": pids})
            self._write_known_hosts(
                {**roots, "mailbox": provider_root}, (*scn.hosts, self.mailbox.host())
            )
            self._write_fleet(scn.hosts)
            self._wait_ready(scn.hosts)
            self._boot_existing(scn.hosts)
        except BaseException:
            self._save({"hosts": [asdict(h) for h in scn.hosts], "pids": pids})
            self.down()
            raise
        _log(f"{len(scn.hosts)} host(s) up; fleet file {self.fleet_file}")

    @staticmethod
    def _root_of(h: SandboxHost) -> Path:
        """The image host ``h`` is an overlay of: its suite's base, or its existing setup's."""
        if h.setup:
            return existing.setup_root(h.setup, h.suite)
        return image.base_root(h.suite)

    def _passwords(self, hosts: tuple[SandboxHost, ...]) -> None:
        if not any(h.setup for h in hosts):
            return
        self.passwords_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.passwords_file.write_text(json.dumps(existing.new_passwords()) + "\n")
        self.passwords_file.chmod(0o600)

    def _boot_existing(self, hosts: tuple[SandboxHost, ...]) -> None:
        """Adapt each existing server to its sandbox address and start its services."""
        for h in hosts:
            if h.setup:
                # Daemons keep no descriptor of the SSH session (it would never end).
                log = "/var/log/sandbox-boot.log"
                self.ssh(
                    h,
                    f"{existing.BOOT} >{log} 2>&1 </dev/null || {{ cat {log} >&2; exit 1; }}",
                    timeout=120,
                )

    def _ssh_key(self) -> None:
        if self.key.exists():
            return
        self.key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "mailmend-sandbox",
                "-f",
                str(self.key),
            ],
            check=True,
        )

    def _start_services(self, scn: Scenario) -> dict[str, int]:
        zones = self.dns.configure(scn)
        logs = self.state / "logs"
        # Knot refuses to start over a pid file left by a killed run (its pid is 1 again).
        (self.dns.dir / "run" / "knot.pid").unlink(missing_ok=True)
        pids = {"knot": proc.spawn(self.dns.knot_argv(), logs / "knot.log")}
        serial = int((self.dns.dir / "serial").read_text())
        self.pdns.configure(copied_zones(zones, {h.domain for h in scn.hosts}), serial)
        pids["pdns"] = proc.spawn(self.pdns.argv(), logs / "pdns.log")
        upstreams = system_upstreams()
        pids["dnsmasq"] = proc.spawn(self.dns.dnsmasq_argv(upstreams), logs / "dnsmasq.log")
        self.receiver.messages.mkdir(parents=True, exist_ok=True)
        pids["receiver"] = proc.spawn(
            [sys.executable, "-m", "sandbox.receiver", str(self.state), self.net.sink],
            logs / "receiver.log",
        )
        return pids

    def _start_mailbox(self, root: Path, scn: Scenario) -> dict[str, int]:
        """The receiving provider's host and its SMTP front (see sandbox/mailbox.py)."""
        host = self.mailbox.host()
        upper = self._host_upper(host)
        peers = {h.ssh_addr: h.public_ipv4 for h in scn.hosts}
        self.mailbox.prepare(upper, scn.mailbox_users, peers)
        pids = {"mailbox": self._start_host(root, host, share=self.mailbox.share)}
        pids["mxproxy"] = proc.spawn(
            [sys.executable, "-m", "sandbox.mxproxy", str(self.state), self.net.mailbox],
            self.state / "logs" / "mxproxy.log",
        )
        return pids

    def _host_upper(self, h: SandboxHost) -> Path:
        hdir = self.state / "hosts" / h.name
        for d in ("upper", "work", "root"):
            (hdir / d).mkdir(parents=True, exist_ok=True)
        return hdir / "upper"

    def _start_host(self, base: Path, h: SandboxHost, share: Path | None = None) -> int:
        upper = self._host_upper(h)
        hdir = upper.parent
        work, root = hdir / "work", hdir / "root"
        ssh_dir = upper / "root" / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        ssh_dir.chmod(0o700)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(self.key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        (upper / "etc").mkdir(exist_ok=True)
        (upper / "etc" / "resolv.conf").write_text(f"nameserver {self.net.resolver}\n")
        if h.setup:
            env = upper / existing.BOOT_ENV
            env.write_text(existing.boot_env(h.ssh_addr, self.passwords()))
            env.chmod(0o600)
        argv = [
            "sh",
            str(HOST_INIT),
            str(base),
            str(upper),
            str(work),
            str(root),
            h.fqdn,
            h.ssh_addr,
            str(SSH_PORT),
            *([str(share)] if share else []),
        ]
        return proc.spawn(argv, self.state / "logs" / f"{h.name}.log", namespaces=("uts", "mount"))

    def _write_known_hosts(self, roots: dict[str, Path], hosts: tuple[SandboxHost, ...]) -> None:
        lines = []
        for h in hosts:  # each suite's base image has its own host key
            pub = (roots[h.name] / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[{h.ssh_addr}]:{SSH_PORT} {pub[0]} {pub[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _write_fleet(self, hosts: tuple[SandboxHost, ...]) -> None:
        self.fleet_file.write_text(self.fleet_text())

    def fleet_text(
        self,
        defaults: dict[str, object] | None = None,
        hosts: dict[str, dict[str, object]] | None = None,
        extra_hosts: dict[str, dict[str, object]] | None = None,
    ) -> str:
        """The sandbox fleet file; tests add defaults, per-host keys or extra hosts."""
        all_hosts = self.hosts()
        domains = sorted({h.domain for h in all_hosts})
        out = [
            "# Generated by `python -m sandbox up`: the local sandbox fleet. Do not edit.",
            "[fleet]",
            "sandbox = true",
            f'dmarc_report_address = "dmarc-reports@{domains[0]}"',
            f'nameservers = ["{self.net.dns}"]',
            "",
            "[defaults]",
            'ssh_user = "root"',
            f"ssh_port = {SSH_PORT}",
            f'ssh_key = "{self.key}"',
            f'ssh_known_hosts_file = "{self.known_hosts}"',
            *_toml_keys(defaults or {}),
        ]
        for h in all_hosts:
            out += [
                "",
                f"[hosts.{h.name}]",
                f'ssh_host = "{h.ssh_addr}"',
                f'hostname = "{h.fqdn}"',
                f'public_ipv4 = "{h.public_ipv4}"',
                f'listen_address = "{h.ssh_addr}"',
                f'bind_address = "{h.ssh_addr}"',
                f'domains = [{{ name = "{h.domain}", selector = "{h.selector}" }}]',
                *_toml_keys((hosts or {}).get(h.name, {})),
            ]
        for name, keys in (extra_hosts or {}).items():
            out += ["", f"[hosts.{name}]", *_toml_keys(keys)]
        return "\n".join(out) + "\n"

    def _wait_ready(self, hosts: tuple[SandboxHost, ...]) -> None:
        # Knot answers on port 53 before its control socket (knotc reload) exists.
        if not proc.wait_path(self.dns.control_socket, timeout=30):
            log = self.state / "logs" / "knot.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise SandboxError(
                f"knot did not open its control socket {self.dns.control_socket} (is another "
                f"sandbox using block {self.net.block}? set {BLOCK_ENV})\n{tail}"
            )
        checks = [(self.net.dns, 53, "knot", 30), (self.net.sink, 25, "receiver", 30)]
        checks += [(self.net.pdns, 53, "pdns", 30), (self.net.pdns, API_PORT, "pdns", 30)]
        checks += [(h.ssh_addr, SSH_PORT, h.name, 30) for h in hosts]
        # The provider's sshd starts once its services are up (spamd loads its rules first).
        checks += [
            (self.net.mailbox, SSH_PORT, "mailbox", 180),
            (self.net.mailbox, IMAPS_PORT, "mailbox", 10),
            (self.net.mailbox, SMTP_PORT, "mxproxy", 10),
        ]
        for addr, port, what, timeout in checks:
            if not proc.wait_port(addr, port, timeout=timeout):
                log = self.state / "logs" / f"{what}.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise SandboxError(f"{what} did not come up on {addr}:{port}\n{tail}")

    def ssh(self, host: SandboxHost, command: str, timeout: float = 120) -> str:
        """Run ``command`` on a sandbox host as root over SSH; return stdout or raise."""
        argv = [
            "ssh", "-i", str(self.key), "-p", str(SSH_PORT),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", f"root@{host.ssh_addr}", command,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise SandboxError(f"{host.name}: {command!r} exited {done.returncode}: {done.stderr}")
        return done.stdout

    # -- a DNS outage (tests) ------------------------------------------------------------
    def stop_dns(self) -> None:
        """Stop Knot: every sandbox name stops answering; :meth:`start_dns` brings it back."""
        pid = self.pids().get("knot")
        if pid is not None:
            proc.stop(pid)

    def start_dns(self, timeout: float = 30) -> None:
        """Start Knot again on the zones it served, and wait until it answers."""
        (self.dns.dir / "run" / "knot.pid").unlink(missing_ok=True)
        data = self._load()
        pids = dict(self.pids())
        pids["knot"] = proc.spawn(self.dns.knot_argv(), self.state / "logs" / "knot.log")
        identities = data.get("identities")
        if isinstance(identities, dict):  # forget the old Knot's; _save records the new one's
            identities.pop("knot", None)
            self.meta.write_text(json.dumps(data, indent=2) + "\n")
        data["pids"] = pids
        self._save(data)
        if not self.dns.answering(timeout):
            raise SandboxError(f"knot did not answer on {self.net.dns} within {timeout:g} s")

    # -- status / down -----------------------------------------------------------------
    def status(self) -> Status:
        st = Status()
        pids = self.pids()
        for h in self.hosts():
            pid = pids.get(h.name)
            st.hosts[h.name] = bool(pid and proc.alive(pid)) and proc.wait_port(
                h.ssh_addr, SSH_PORT, timeout=1
            )
        for svc, (addr, port) in {
            "knot": (self.net.dns, 53),
            "pdns": (self.net.pdns, API_PORT),
            "dnsmasq": (self.net.resolver, 53),
            "receiver": (self.net.sink, 25),
            "mailbox": (self.net.mailbox, IMAPS_PORT),
            "mxproxy": (self.net.mailbox, SMTP_PORT),
        }.items():
            pid = pids.get(svc)
            up = bool(pid and proc.alive(pid))
            if up and svc != "dnsmasq":
                up = proc.wait_port(addr, port, timeout=1)
            st.services[svc] = up
        return st

    def down(self) -> None:
        pids = self.pids()
        for name, pid in self.recorded_pids().items():
            if name not in pids and proc.alive(pid):
                _log(f"{name}: pid {pid} is no longer the sandbox's (a stale {self.meta.name}, "
                     "e.g. after a reboot): left alone")  # fmt: skip
        for name, pid in pids.items():
            proc.stop(pid)
            if proc.alive(pid):
                raise SandboxError(f"{name} (pid {pid}) did not stop")
        data = self._load()
        if data:
            data["pids"] = {}
            self._save(data)
        # Overlay upper dirs hold each host's changes; keep them only while up.
        shutil.rmtree(self.state / "hosts", ignore_errors=True)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is JSON-compatible for our values


def _toml_keys(keys: dict[str, object]) -> list[str]:
    return [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
