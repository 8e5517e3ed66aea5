"""Sandbox PowerDNS: a DNS server with an HTTP API, like the admin's DNS provider.

PowerDNS Authoritative (Debian's ``pdns-server``, sqlite3 backend) on ``127.B.9.55:53``
serves copies of the sandbox's mail zones and reverse zones, and its HTTP API listens on
``127.B.9.55:8081`` (loopback only) with an API key kept in ``STATE/pdns/api-key`` (0600).
``mailmend records --apply --provider powerdns`` writes through that API (dns-lexicon's
powerdns provider) and reads back through its DNS, as it would at a real provider.

Knot keeps the originals: a change made here is not seen by Knot, and the other way round.
Every cache is off, so an API change answers in DNS at once.
"""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
from pathlib import Path

from sandbox.dns import Record, render_zone
from sandbox.scenario import Net

SCHEMA = Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
API_PORT = 8081
#: The server id PowerDNS Authoritative's API knows itself by (``/api/v1/servers/localhost``).
SERVER_ID = "localhost"


class SandboxPowerDns:
    """Config, database and API key of one sandbox's PowerDNS (state under ``STATE/pdns``)."""

    def __init__(self, state: Path, net: Net) -> None:
        self.net = net
        self.dir = state / "pdns"
        self.conf = self.dir / "pdns.conf"
        self.db = self.dir / "pdns.sqlite3"
        self.api_key_file = self.dir / "api-key"

    @property
    def address(self) -> str:
        return self.net.pdns

    @property
    def api_url(self) -> str:
        """The base URL dns-lexicon's ``pdns_server`` option takes."""
        return f"http://{self.address}:{API_PORT}"

    def api_key(self) -> str:
        if not self.api_key_file.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            self.api_key_file.touch(mode=0o600)
            self.api_key_file.write_text(secrets.token_urlsafe(24) + "\n")
        return self.api_key_file.read_text().strip()

    def render_conf(self) -> str:
        run = self.dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        return "\n".join(
            [
                "launch=gsqlite3",
                f"gsqlite3-database={self.db}",
                f"local-address={self.address}",
                "local-port=53",
                "api=yes",
                f"api-key={self.api_key()}",
                "webserver=yes",
                f"webserver-address={self.address}",
                f"webserver-port={API_PORT}",
                "webserver-allow-from=127.0.0.0/8",
                "daemon=no",
                "guardian=no",
                "disable-syslog=yes",
                "log-timestamp=no",
                f"socket-dir={run}",
                "receiver-threads=1",
                "distributor-threads=1",
                "cache-ttl=0",
                "negquery-cache-ttl=0",
                "query-cache-ttl=0",
                "zone-cache-refresh-interval=0",
                "loglevel=4",
                # No "security status" query to secpoll.powerdns.com: nothing leaves loopback.
                "security-poll-suffix=",
                "",
            ]
        )

    def configure(self, zones: dict[str, list[Record]], serial: int) -> None:
        """A fresh database holding ``zones`` (loaded with ``pdnsutil load-zone``)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.render_conf())
        self.conf.chmod(0o600)
        self.db.unlink(missing_ok=True)
        with sqlite3.connect(self.db) as db:
            db.executescript(SCHEMA.read_text())
        db.close()
        files = self.dir / "zones"
        files.mkdir(exist_ok=True)
        for zone, records in zones.items():
            path = files / f"{zone}.zone"
            path.write_text(render_zone(zone, records, serial))
            self.pdnsutil("load-zone", zone, str(path))

    def restore_zones(self) -> None:
        """Every zone back to what :meth:`configure` loaded (the server may be running)."""
        for path in sorted((self.dir / "zones").glob("*.zone")):
            self.pdnsutil("load-zone", path.name.removesuffix(".zone"), str(path))

    def pdnsutil(self, *args: str) -> str:
        proc = subprocess.run(
            ["pdnsutil", f"--config-dir={self.dir}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pdnsutil {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def argv(self) -> list[str]:
        return ["pdns_server", f"--config-dir={self.dir}"]


def copied_zones(zones: dict[str, list[Record]], mail_domains: set[str]) -> dict[str, list[Record]]:
    """The zones PowerDNS serves: the mail domains and the reverse zones."""
    return {
        name: list(records)
        for name, records in zones.items()
        if name in mail_domains or name.endswith(".arpa")
    }
