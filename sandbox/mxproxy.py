"""The receiving provider's SMTP front: where the sandbox plays "the internet".

Every sandbox host shares this machine's loopback, so a message from ``mx1`` arrives from
``127.B.10.1``, not from its public address ``192.0.2.11`` that its SPF record and PTR name.
This front accepts on the provider's port 25 and hands each connection to the provider's
Postfix with a PROXY protocol (v1) header giving the sending host's public IP, as a load
balancer in front of a real provider does; Postfix (``smtpd_upstream_proxy_protocol =
haproxy``), policyd-spf, OpenDMARC and the Received header then see the public IP. An
address that is no sandbox host's is passed on as it is.

Run: ``python -m sandbox.mxproxy STATE_DIR ADDR`` (the sandbox starts it). The map is
``STATE/mailbox/peers.json``, re-read for every connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from sandbox.mailbox import POSTFIX_PORT, SMTP_PORT

IDLE_TIMEOUT = 300.0  # seconds without a byte either way: the connection is dropped
CONNECT_TIMEOUT = 10.0


def proxy_header(client: str, client_port: int, server: str, server_port: int) -> bytes:
    """The PROXY protocol v1 line (IPv4)."""
    return f"PROXY TCP4 {client} {server} {client_port} {server_port}\r\n".encode("ascii")


def public_address(peers_file: Path, peer: str) -> str:
    try:
        peers = json.loads(peers_file.read_text())
    except (OSError, ValueError):
        return peer
    mapped = peers.get(peer, peer) if isinstance(peers, dict) else peer
    return str(mapped)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


class Front:
    def __init__(self, state: Path, addr: str) -> None:
        self.peers_file = state / "mailbox" / "peers.json"
        self.addr = addr

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_ip, peer_port = writer.get_extra_info("peername")[:2]
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(self.addr, POSTFIX_PORT), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            writer.write(b"421 4.3.2 sandbox provider: Postfix is not answering\r\n")
            writer.close()
            return
        client = public_address(self.peers_file, peer_ip)
        up_w.write(proxy_header(client, peer_port, self.addr, SMTP_PORT))
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))

    async def serve(self) -> None:
        server = await asyncio.start_server(self.handle, self.addr, SMTP_PORT)
        print(f"mxproxy: listening on {self.addr}:{SMTP_PORT}", flush=True)
        async with server:
            await server.serve_forever()


def main(argv: list[str]) -> int:
    asyncio.run(Front(Path(argv[0]), argv[1]).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
