"""proxy/stream.py: the receive buffer, wake-ups, EOF and flow control in both directions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from proxy.stream import PAUSE_AT, Stream


class FakeTransport:
    """Records what the stream asks of its transport."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.written: list[bytes] = []
        self.closing = False

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A test body run on its own event loop (the suite has no async test plugin)."""

    def wrapper() -> None:
        asyncio.run(test())

    return wrapper


def connected() -> tuple[Stream, FakeTransport]:
    stream = Stream()
    transport = FakeTransport()
    stream.connection_made(transport)  # type: ignore[arg-type]
    return stream, transport


@run
async def test_a_waiting_reader_is_woken_by_data_and_gets_it_in_the_buffer() -> None:
    stream, _ = connected()
    waiting = asyncio.ensure_future(stream.receive())
    await asyncio.sleep(0)
    assert not waiting.done()
    stream.data_received(b"abc")
    await waiting
    stream.data_received(b"def")
    assert stream.buffer == b"abcdef"
    assert await stream.take() == b"abcdef"
    assert stream.buffer == b""


@run
async def test_reading_pauses_when_unread_bytes_pile_up_and_resumes_when_asked_for_more() -> None:
    stream, transport = connected()
    stream.data_received(b"x" * PAUSE_AT)
    assert transport.calls == []
    stream.data_received(b"x")
    assert transport.calls == ["pause"]
    stream.data_received(b"x")  # paused once, not again
    assert transport.calls == ["pause"]
    stream.buffer.clear()
    waiting = asyncio.ensure_future(stream.receive())
    await asyncio.sleep(0)
    assert transport.calls == ["pause", "resume"]
    stream.data_received(b"more")
    await waiting
    assert stream.buffer == b"more"


@run
async def test_eof_ends_a_wait_but_not_before_buffered_bytes_are_read() -> None:
    stream, _ = connected()
    waiting = asyncio.ensure_future(stream.take())
    await asyncio.sleep(0)
    stream.data_received(b"last")
    stream.eof_received()
    assert await waiting == b"last"
    with pytest.raises(ConnectionResetError):
        await stream.receive()


@run
async def test_drain_waits_while_the_transport_is_above_its_high_water_mark() -> None:
    stream, transport = connected()
    stream.write(b"a")
    await stream.drain()  # not paused: returns at once
    stream.pause_writing()
    draining = asyncio.ensure_future(stream.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    stream.resume_writing()
    await draining
    assert transport.written == [b"a"]


@run
async def test_a_lost_connection_fails_waiting_drains_and_later_writes() -> None:
    stream, _ = connected()
    stream.pause_writing()
    draining = asyncio.ensure_future(stream.drain())
    await asyncio.sleep(0)
    stream.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        await draining
    with pytest.raises(ConnectionResetError):
        stream.write(b"late")
    assert stream.is_closing()
