"""Merged reads against backends replaying fixed results: what reaches the client, and how
much of it the proxy holds before writing it out."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from proxy import packets as p
from proxy.backend import BackendError
from proxy.channel import HIGH_WATER, ClientChannel
from proxy.merge_exec import merge_reads
from proxy.names import NameMap
from proxy.stream import Stream
from router.plan import (
    Concat,
    Key,
    MergeSort,
    Project,
    QueryPlan,
    Route,
    Sort,
    SortKey,
    Unit,
)

LONG, VARCHAR = 3, 253
ROWS_PER_SHARD = 3000
TEXT = b"x" * 200


class ReplayBackend:
    """A backend connection that answers with one prepared result set (binary protocol)."""

    broken = False

    def __init__(self, payloads: list[bytes]):
        self.frames = deque(p.frame(payload, seq)[0] for seq, payload in enumerate(payloads, 1))

    def buffered_frame(self) -> bytes | None:
        return self.frames.popleft() if self.frames else None

    async def read_frame(self) -> bytes:
        return self.frames.popleft()

    def buffered_packet(self) -> bytes | None:
        return self.frames.popleft()[4:] if self.frames else None

    def buffered_rows(self) -> list[bytes]:
        """Up to 50 rows at a time, as a real connection hands over a received chunk."""
        rows = []
        while self.frames and len(rows) < 50:
            payload = self.frames[0][4:]
            if payload[0] == 0xFF or (payload[0] == 0xFE and len(payload) < 9):
                break
            rows.append(self.frames.popleft()[4:])
        return rows

    async def read_packet(self) -> bytes:
        return (await self.read_frame())[4:]


class CountingTransport(asyncio.Transport):
    """Takes what the client channel writes and remembers it all."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


class MeasuredChannel(ClientChannel):
    """A client channel that records the most bytes it held unwritten at any time."""

    def __init__(self) -> None:
        self.sink = CountingTransport()
        stream = Stream()
        stream.connection_made(self.sink)
        super().__init__(stream)
        self.most_held = 0

    def send(self, payload: bytes) -> None:
        super().send(payload)
        self.most_held = max(self.most_held, len(self._out))


def shard_result(ids: range) -> list[bytes]:
    """`SELECT id, c, id AS k ...` in the binary protocol: two visible columns, one hidden key."""
    columns = [
        p.column_definition("id", LONG),
        p.column_definition("c", VARCHAR),
        p.column_definition("k", LONG),
    ]
    rows = []
    for i in ids:
        cell = i.to_bytes(4, "little")
        rows.append(b"\x00\x00" + cell + p.lenenc_str(TEXT) + cell)
    return [p.lenenc_int(3), *columns, p.eof_packet(), *rows, p.eof_packet()]


async def no_send(conn: Any, unit: Unit) -> None:
    """Stands in for sending a prepared statement: the replayed answer is already queued."""


def client_rows(written: bytes) -> list[bytes]:
    """Row payloads of one binary result set the client received (header and EOF left out)."""
    payloads = []
    pos = 0
    while pos < len(written):
        length = int.from_bytes(written[pos : pos + 3], "little")
        payloads.append(written[pos + 4 : pos + 4 + length])
        pos += 4 + length
    count = payloads[0][0]
    return payloads[count + 2 : -1]


@pytest.mark.parametrize(
    "merge",
    [
        Project(MergeSort((SortKey(Key(2)),)), 1),
        # A sort in the proxy: every row comes out at once when the input ends.
        Project(Sort(Concat(), (SortKey(Key(2)),)), 1),
    ],
    ids=["merge sort", "sort"],
)
def test_merged_rows_reach_the_client_with_bounded_buffering(merge: Any) -> None:
    shards = [range(0, 2 * ROWS_PER_SHARD, 2), range(1, 2 * ROWS_PER_SHARD, 2)]
    conns = [ReplayBackend(shard_result(ids)) for ids in shards]
    plan = QueryPlan((Unit("ds0", "q"), Unit("ds1", "q")), Route.SCATTER, merge=merge)

    async def run() -> MeasuredChannel:
        channel = MeasuredChannel()  # its stream needs the running loop
        await merge_reads(conns, plan, channel, NameMap({}, {}), 2, no_send)  # type: ignore[arg-type]
        await channel.drain()
        return channel

    channel = asyncio.run(run())
    rows = client_rows(bytes(channel.sink.data))
    # The client's rows are the shards' own, the hidden column cut off, in key order.
    expected = [b"\x00\x00" + i.to_bytes(4, "little") + p.lenenc_str(TEXT) for i in range(6000)]
    assert rows == expected
    assert len(channel.sink.data) > 4 * HIGH_WATER
    assert channel.most_held < 2 * HIGH_WATER


class SilentBackend(ReplayBackend):
    """A backend with nothing to answer: reading from it waits, as a real one's socket does."""

    async def read_frame(self) -> bytes:
        if not self.frames:
            await asyncio.Event().wait()
        return self.frames.popleft()


@pytest.mark.timeout(30)  # the bug this guards against is a hang
@pytest.mark.parametrize("refused", [1, 2], ids=["first unit of its connection", "second"])
def test_a_unit_its_backend_refuses_to_prepare_ends_the_merge_with_that_error(
    refused: int,
) -> None:
    """The sender fails before the unit goes out (COM_STMT_PREPARE answered ERR): the merge
    ends with that error, never waiting for an answer to a command that was not sent."""
    first, refusing = ReplayBackend(shard_result(range(3))), SilentBackend([])
    conns = [first, refusing, refusing] if refused == 2 else [first, refusing]
    if refused == 2:  # its connection's first unit answers; the second is refused
        refusing.frames.extend(ReplayBackend(shard_result(range(3, 6))).frames)
    units = tuple(Unit(f"ds{i}", "q") for i in range(len(conns)))
    plan = QueryPlan(units, Route.SCATTER, merge=Project(MergeSort((SortKey(Key(2)),)), 1))
    sends = 0

    async def send(conn: Any, unit: Unit) -> None:
        nonlocal sends
        sends += 1
        if sends == refused + 1:  # the refusing connection's first or second unit
            raise BackendError("Table 'shop.users' doesn't exist", 1146, "42S02")

    async def run() -> None:
        channel = MeasuredChannel()
        await merge_reads(conns, plan, channel, NameMap({}, {}), 2, send)  # type: ignore[arg-type]

    with pytest.raises(BackendError) as error:
        asyncio.run(run())
    assert error.value.code == 1146
