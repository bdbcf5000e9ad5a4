"""Socket I/O for clients and backends: one asyncio Protocol, one receive buffer, one reader.

asyncio's StreamReader/StreamWriter cost a future, a feed_data and a copy out of its buffer per
read, and the callers here copied once more into their own buffer to cut packets. With this
protocol the bytes the event loop receives are appended to `buffer`, which the reader cuts
packets from directly, and a reader waiting for more gets one future woken by data_received
(measured in docs/decisions.md, "Hot path").

Flow control both ways: reading pauses once more than PAUSE_AT bytes wait unread and nobody
asks for more (a slow client makes a backend's result wait in the backend's socket, not in
memory), and resumes when the reader needs more; `drain()` waits while the transport's write
buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, cast

# Unread bytes above which reading pauses until the reader asks for more.
PAUSE_AT = 256 * 1024


class Stream(asyncio.Protocol):
    """A connected socket: `buffer` holds received bytes not yet taken by the reader."""

    def __init__(self, on_connected: Callable[[Stream], Coroutine[Any, Any, None]] | None = None):
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        # Kept: CPython 3.11's asyncio.get_running_loop() makes a getpid() system call each
        # time (two per statement, seen with strace), and this loop never changes.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.eof = False  # the peer closed its side or the connection is lost
        self._on_connected = on_connected
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.write_paused = False  # the transport's write buffer is above its high-water mark
        self._read_paused = False
        self.lost = False  # connection_lost was called

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._loop = asyncio.get_running_loop()
        if self._on_connected is not None:
            # Kept here so the task isn't collected (asyncio.start_server does the same).
            self._task = self._loop.create_task(self._on_connected(self))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif len(self.buffer) > PAUSE_AT and not self._read_paused:
            assert self.transport is not None
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = True
        self._wake_reader()
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- for the reader and the writer ------------------------------------------------------

    async def receive(self) -> None:
        """Wait until more bytes are appended to `buffer`; ConnectionResetError at EOF."""
        if self.eof:
            raise ConnectionResetError("connection closed by peer")
        if self._read_paused:
            self._read_paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
        if self.eof and not self.buffer:
            raise ConnectionResetError("connection closed by peer")

    async def take(self) -> bytes:
        """Every buffered byte (waiting for some first), emptying `buffer`."""
        buffer = self.buffer
        while not buffer:
            await self.receive()
        data = bytes(buffer)
        buffer.clear()
        return data

    def write(self, data: bytes | bytearray) -> None:
        """Send bytes; the caller must not change `data` afterwards (it may be kept queued)."""
        if self.lost:
            raise ConnectionResetError("connection lost")
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport holds more unsent bytes than its high-water mark."""
        if self.lost:
            raise ConnectionResetError("connection lost")
        while self.write_paused:
            assert self._loop is not None
            waiter = self._loop.create_future()
            self._drain_waiter = waiter
            await waiter
            if self.lost:
                raise ConnectionResetError("connection lost")

    def is_closing(self) -> bool:
        return self.lost or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def get_extra_info(self, name: str) -> Any:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    @classmethod
    def adopt(cls, transport: asyncio.Transport, received: bytes = b"") -> Stream:
        """Take over a transport another protocol opened (aiomysql's, after authentication);
        `received` are bytes it had buffered but not read."""
        stream = cls()
        stream.buffer += received
        transport.set_protocol(stream)
        stream.transport = transport
        stream._loop = asyncio.get_running_loop()
        transport.resume_reading()
        return stream
