"""The client side of one connection: reading commands and writing sequenced packets."""

from __future__ import annotations

import asyncio

from proxy import packets as p

# Flush to the socket once this much is buffered, so large results stream with bounded memory.
HIGH_WATER = 256 * 1024


class ClientClosed(Exception):
    """The client went away (EOF or reset)."""


class ProtocolViolation(Exception):
    """The client sent bytes that are not a valid MySQL packet sequence."""


class ClientChannel:
    """Frames outgoing payloads with the right sequence ids; reads whole incoming packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self.max_packet = 1 << 30
        # Outgoing bytes collect here and go out in one write per response (a write per
        # packet costs a system call each, which dominated the profile of a point select).
        self._out = bytearray()

    async def read_packet(self) -> bytes:
        """One logical packet; its sequence id must be the expected one."""
        parts = []
        total = 0
        while True:
            try:
                header = await self.reader.readexactly(4)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise ClientClosed() from exc
            length = header[0] | header[1] << 8 | header[2] << 16
            if header[3] != self.seq & 0xFF:
                raise ProtocolViolation(f"packet sequence {header[3]}, expected {self.seq & 0xFF}")
            self.seq += 1
            total += length
            if total > self.max_packet:
                raise ProtocolViolation("packet larger than max_allowed_packet")
            try:
                parts.append(await self.reader.readexactly(length))
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise ClientClosed() from exc
            if length < p.MAX_PAYLOAD:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_command(self) -> bytes:
        """The next command packet; a command always starts a new sequence."""
        self.seq = 0
        return await self.read_packet()

    def send(self, payload: bytes) -> None:
        data, self.seq = p.frame(payload, self.seq)
        self._out += data

    def send_frame(self, frame: bytes) -> None:
        """Relay a backend frame (header included) with this channel's sequence id."""
        out = self._out
        out += frame
        out[len(out) - len(frame) + 3] = self.seq & 0xFF
        self.seq += 1

    def send_error(self, code: int, sqlstate: str, message: str) -> None:
        self.send(p.err_packet(code, sqlstate, message))

    async def flush(self) -> None:
        """Write and wait for the socket only when a lot is buffered (cheap on the hot path)."""
        if len(self._out) > HIGH_WATER:
            await self.drain()

    async def drain(self) -> None:
        """Write everything buffered and wait until the socket takes it."""
        if self._out:
            self.writer.write(bytes(self._out))
            self._out.clear()
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()
