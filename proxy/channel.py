"""The client side of one connection: reading commands and writing sequenced packets."""

from __future__ import annotations

import ssl
import struct
from collections.abc import Awaitable

from proxy import packets as p
from proxy.stream import Stream

# Flush to the socket once this much is buffered, so large results stream with bounded memory.
HIGH_WATER = 256 * 1024
# A frame header: 3 bytes of length and the sequence id, as one little-endian word.
_HEADER = struct.Struct("<I")
READ_CHUNK = 256 * 1024


class ClientClosed(Exception):
    """The client went away (EOF or reset)."""


class ProtocolViolation(Exception):
    """The client sent bytes that are not a valid MySQL packet sequence."""


class ClientChannel:
    """Frames outgoing payloads with the right sequence ids; reads whole incoming packets."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.seq = 0
        # Larger than any backend's max_allowed_packet (MariaDB's default is 16 MB), small
        # enough that a client can't make the proxy buffer gigabytes.
        self.max_packet = 64 << 20
        # Outgoing bytes collect here and go out in one write per response (a write per
        # packet costs a system call each, which dominated the profile of a point select).
        self._out = bytearray()
        # Packets are cut from the stream's own receive buffer; under TLS, from the plaintext.
        self._in = stream.buffer
        self._pos = 0
        self._tls: ssl.SSLObject | None = None
        self._tls_in = self._tls_out = ssl.MemoryBIO()
        # MySQL error code -> ERR packets sent (the server's metrics); None: not counted.
        self.error_counts: dict[int, int] | None = None

    async def _fill(self, need: int) -> None:
        """Read until `need` unread bytes are buffered (one await per segment, not per field)."""
        buf = self._in
        while len(buf) - self._pos < need:
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            if self._tls is not None:
                buf += await self._read_tls()
                continue
            try:
                await self.stream.receive()
            except ConnectionError as exc:
                raise ClientClosed() from exc

    async def _read_raw(self) -> bytes:
        try:
            return await self.stream.take()
        except ConnectionError as exc:
            raise ClientClosed() from exc

    async def _read_tls(self) -> bytes:
        """Decrypted bytes, reading more ciphertext from the socket as TLS needs it."""
        assert self._tls is not None
        while True:
            try:
                data = self._tls.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                self._tls_in.write(await self._read_raw())
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLError) as exc:
                raise ClientClosed() from exc
            if not data:
                raise ClientClosed()
            return data

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Switch to TLS after the client's SSLRequest.

        TLS runs over memory buffers, not the event loop's start_tls: the client sends its
        ClientHello right behind the SSLRequest, so those bytes may already sit in our read
        buffer (the handshake hang measured with mysql-mimic under uvloop); here they are
        simply the first bytes fed to TLS."""
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        tls = context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        self._tls_in.write(bytes(self._in[self._pos :]))
        self._in.clear()
        self._in = bytearray()  # plaintext from now on; the stream's buffer holds ciphertext
        self._pos = 0
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush_tls()
                await self._drain_stream()
                self._tls_in.write(await self._read_raw())
            except ssl.SSLError as exc:
                raise ClientClosed() from exc
        self._flush_tls()
        await self._drain_stream()
        self._tls = tls

    def _flush_tls(self) -> None:
        pending = self._tls_out.read()
        if pending:
            self._write(pending)

    def _write(self, data: bytes | bytearray) -> None:
        try:
            self.stream.write(data)
        except ConnectionError as exc:
            raise ClientClosed() from exc

    async def _drain_stream(self) -> None:
        try:
            await self.stream.drain()
        except ConnectionError as exc:
            raise ClientClosed() from exc

    @property
    def secure(self) -> bool:
        return self._tls is not None

    async def read_packet(self) -> bytes:
        """One logical packet; its sequence id must be the expected one."""
        parts = []
        total = 0
        buf = self._in
        while True:
            if len(buf) - self._pos < 4:
                await self._fill(4)
            pos = self._pos
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            if buf[pos + 3] != self.seq & 0xFF:
                raise ProtocolViolation(
                    f"packet sequence {buf[pos + 3]}, expected {self.seq & 0xFF}"
                )
            self.seq += 1
            total += length
            if total > self.max_packet:
                raise ProtocolViolation("packet larger than max_allowed_packet")
            if len(buf) - pos < 4 + length:
                await self._fill(4 + length)
                pos = self._pos
            end = pos + 4 + length
            parts.append(bytes(buf[pos + 4 : end]))
            if end == len(buf):
                buf.clear()
                self._pos = 0
            else:
                self._pos = end
            if length < p.MAX_PAYLOAD:
                return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_command(self) -> Awaitable[bytes]:
        """The next command packet; a command always starts a new sequence.

        A plain function returning read_packet's coroutine: one coroutine less per command."""
        self.seq = 0
        return self.read_packet()

    def send(self, payload: bytes) -> None:
        if len(payload) < p.MAX_PAYLOAD:  # one frame: header and payload appended in place
            out = self._out
            out += _HEADER.pack(len(payload) | (self.seq & 0xFF) << 24)
            out += payload
            self.seq += 1
            return
        data, self.seq = p.frame(payload, self.seq)
        self._out += data

    def send_frame(self, frame: bytes) -> None:
        """Relay a backend frame (header included) with this channel's sequence id."""
        out = self._out
        out += frame
        out[len(out) - len(frame) + 3] = self.seq & 0xFF
        self.seq += 1

    def send_frames(self, frames: list[bytes]) -> None:
        """send_frame of each frame, in order."""
        out = self._out
        seq = self.seq
        for frame in frames:
            out += frame
            out[len(out) - len(frame) + 3] = seq & 0xFF
            seq += 1
        self.seq = seq

    def send_error(self, code: int, sqlstate: str, message: str) -> None:
        counts = self.error_counts
        if counts is not None:
            counts[code] = counts.get(code, 0) + 1
        self.send(p.err_packet(code, sqlstate, message))

    @property
    def full(self) -> bool:
        """Whether enough is buffered that it should go out now (see flush)."""
        return len(self._out) > HIGH_WATER

    async def flush(self) -> None:
        """Write and wait for the socket only when a lot is buffered (cheap on the hot path)."""
        if len(self._out) > HIGH_WATER:
            await self.drain()

    async def drain(self) -> None:
        """Write everything buffered and wait until the socket takes it."""
        out = self._out
        if out:
            if self._tls is not None:
                self._tls.write(out)
                out.clear()
                self._flush_tls()
            else:
                # The transport may keep the buffer queued: hand it over, start a new one.
                self._out = bytearray()
                self._write(out)
        if self.stream.write_paused or self.stream.lost:
            await self._drain_stream()

    def close(self) -> None:
        self.stream.close()
