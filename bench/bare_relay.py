"""A bare byte relay: the ceiling of any Python proxy on the benchmark's machine.

    .venv/bin/python bench/bare_relay.py --port 4000 --to 127.0.0.1:3306

Each client connection gets its own connection to the server and bytes go both ways as they
arrive: no packet is parsed, nothing is routed or pooled. It is issue 6's "bare Python byte
relay" (asyncio Protocols on uvloop, one event loop), which bench/run.py measures next to the
proxy in the same run: about the best a proxy in Python could reach on that machine, since one
does at least these reads and writes per query and a great deal more.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop


class Half(asyncio.Protocol):
    """One side of a relayed connection; what it receives is written to its peer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Half | None = None
        self.early: list[bytes] = []  # received before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _peer_transport(self) -> asyncio.Transport | None:
        return self.peer.transport if self.peer is not None else None

    def data_received(self, data: bytes) -> None:
        peer = self._peer_transport()
        if peer is None:
            self.early.append(data)
        else:
            peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if (peer := self._peer_transport()) is not None:
            peer.close()

    # The peer can't keep up: stop reading from this side until it can.
    def pause_writing(self) -> None:
        if (peer := self._peer_transport()) is not None:
            peer.pause_reading()

    def resume_writing(self) -> None:
        if (peer := self._peer_transport()) is not None:
            peer.resume_reading()


class ClientSide(Half):
    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.target = (host, port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_connection(Half, *self.target)
        except OSError:
            assert self.transport is not None
            self.transport.close()
            return
        server.peer, self.peer = self, server
        for side in (self, server):
            for data in side.early:
                side.peer.transport.write(data)  # type: ignore[union-attr]
            side.early.clear()


async def serve(port: int, host: str, target_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(host, target_port), host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--to", required=True, help="HOST:PORT of the server")
    args = parser.parse_args()
    host, _, target_port = args.to.rpartition(":")
    uvloop.run(serve(args.port, host, int(target_port)))


if __name__ == "__main__":
    main()
