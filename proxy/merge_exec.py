"""Runs reads whose rows the proxy merges (plans whose merge is not Concat).

Units run in parallel, each on its own connection; units that share a connection (inside a
transaction, where each backend has one pinned connection) run in turn, and a unit whose rows
are still needed when the next one must start is read ahead into memory. Rows are read lazily,
one packet at a time, decoded only where the merge looks at them (sort and group keys,
aggregates) and fed to router.merge. A merge that only picks and orders rows (merge sort,
DISTINCT, LIMIT) sends each chosen row as the shard's own bytes, cut to the client's columns
(proxy.rows); one that computes values (aggregates) encodes its rows for the client.

The column definitions the client sees are the units' own (first unit) for its visible
columns: MySQL computed them for exactly these expressions (SUM of an INT is a DECIMAL, COUNT a
BIGINT, AVG's scale...), and the values the proxy computes are formatted to match them.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal

from proxy import packets as p
from proxy import rows
from proxy.backend import BackendConnection
from proxy.channel import ClientChannel
from proxy.executor import Outcome, ResultReader, Sender, send_query
from proxy.names import NameMap
from router.errors import NotSupported, ProxyError
from router.merge import Budget, ColumnInfo, Merger
from router.plan import (
    Aggregate,
    Col,
    Concat,
    CountDistinct,
    Distinct,
    Filter,
    GroupConcat,
    Key,
    Merge,
    MergeSort,
    MinMax,
    Op,
    Project,
    QueryPlan,
    Sort,
    SortKey,
    Unit,
)
from router.values import UnsignedInt, format_decimal, format_double

DEFAULT_MAX_MERGE_ROWS = 1_000_000

# Column types (protocol "Column Types").
_INTEGERS = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0D})
_DECIMALS = frozenset({0x00, 0xF6})
_FLOAT, _DOUBLE = 0x04, 0x05
_TIME = 0x0B
_TEMPORAL = frozenset({0x07, 0x0A, 0x0C, 0x0E})
_BIT = 0x10
_NOT_FIXED_DEC = 31
_SINGLE = struct.Struct("<f")  # decimals of a DOUBLE printed with as many digits as it needs
UNSIGNED_FLAG = 0x20
ZEROFILL_FLAG = 0x40


# --- values that keep their original text -------------------------------------------------------


class RawFloat(float):
    """A FLOAT/DOUBLE as a backend sent it: compared as a number, sent back byte for byte."""

    __slots__ = ("raw",)
    raw: bytes


class RawInt(UnsignedInt):
    """A ZEROFILL or BIT integer: compared as a number, sent back as the backend wrote it."""

    raw: bytes


class TimeValue(int):
    """A TIME value as signed microseconds, with its original encoding."""

    raw: bytes


def column_info(payload: bytes) -> ColumnInfo:
    """The merge's view of a column definition payload."""
    pos = 0
    for _ in range(6):
        length, pos = p.read_lenenc_int(payload, pos)
        pos += length or 0
    pos += 1  # length of the fixed fields (0x0c)
    collation, length, kind, flags, decimals = struct.unpack_from("<HIBHB", payload, pos)
    return ColumnInfo(kind, collation, flags, decimals, length)


# --- text protocol --------------------------------------------------------------------------


def decode_text(raw: bytes, info: ColumnInfo) -> object:
    """A text-protocol value as the merge compares and computes with it."""
    kind = info.type
    if kind in _INTEGERS:
        if info.flags & ZEROFILL_FLAG:
            value = RawInt(int(raw))
            value.raw = raw
            return value
        return UnsignedInt(int(raw)) if info.flags & UNSIGNED_FLAG else int(raw)
    if kind in _DECIMALS:
        return Decimal(raw.decode("ascii"))
    if kind in (_FLOAT, _DOUBLE):
        value = float(raw)
        if kind == _FLOAT:  # the single-precision value MySQL computes with, not its text
            value = _SINGLE.unpack(_SINGLE.pack(value))[0]
        number = RawFloat(value)
        number.raw = raw
        return number
    if kind == _TIME:
        text = raw.decode("ascii")
        negative = text.startswith("-")
        hours, minutes, seconds = text.lstrip("-").split(":")
        whole, _, fraction = seconds.partition(".")
        micros = ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000
        micros += int((fraction + "000000")[:6]) if fraction else 0
        value = TimeValue(-micros if negative else micros)
        value.raw = raw
        return value
    if kind == _BIT:
        value = RawInt(int.from_bytes(raw, "big"))
        value.raw = raw
        return value
    return raw  # strings, temporal values (fixed-width text: compares in time order), JSON


def encode_text_value(value: object, info: ColumnInfo) -> bytes | None:
    """A merged value as the text protocol writes it for this column (None: NULL)."""
    if value is None or isinstance(value, bytes):
        return value  # type: ignore[return-value]
    raw = getattr(value, "raw", None)
    if raw is not None:
        return raw
    if isinstance(value, float):
        if info.type in (_FLOAT, _DOUBLE) and info.decimals < _NOT_FIXED_DEC:
            return f"{value:.{info.decimals}f}".encode()
        return format_double(value)
    if isinstance(value, Decimal):
        if info.type in _INTEGERS:
            return str(int(value)).encode()
        return format_decimal(value, info.decimals)
    if isinstance(value, int):
        if info.type in _DECIMALS and info.decimals:
            return format_decimal(value, info.decimals)
        if info.type in (_FLOAT, _DOUBLE):
            return format_double(float(value))
        return str(value).encode()
    raise NotSupported(f"sending a merged value of type {type(value).__name__}")


def encode_text_row(values: Sequence[object], infos: Sequence[ColumnInfo]) -> bytes:
    """A text-protocol row payload: the one place merged rows are encoded for the client.

    (A binary-protocol encoder for prepared statements would sit beside this one.)
    """
    parts = []
    for value, info in zip(values, infos, strict=False):
        data = encode_text_value(value, info)
        parts.append(b"\xfb" if data is None else p.lenenc_str(data))
    return b"".join(parts)


def decode_text_row(
    payload: bytes, width: int, infos: Sequence[ColumnInfo], needed: Sequence[bool]
) -> tuple[object, ...]:
    values: list[object] = []
    pos = 0
    for i in range(width):
        length, pos = p.read_lenenc_int(payload, pos)
        if length is None:
            values.append(None)
            continue
        raw = payload[pos : pos + length]
        pos += length
        values.append(decode_text(raw, infos[i]) if needed[i] else raw)
    return tuple(values)


# --- binary protocol (prepared statements) --------------------------------------------------

_BINARY_INTS = {0x01: ("<b", "<B"), 0x02: ("<h", "<H"), 0x0D: ("<h", "<H"), 0x03: ("<i", "<I")}
_BINARY_INTS |= {0x09: ("<i", "<I"), 0x08: ("<q", "<Q")}


class BinaryValue:
    """A binary-protocol cell the merge never computes with: kept as its encoded bytes."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        self.raw = raw


def _binary_cell(payload: bytes, pos: int, kind: int) -> tuple[bytes, int]:
    """(the cell's wire bytes, next position) of one non-NULL binary value."""
    if kind in _BINARY_INTS:
        size = struct.calcsize(_BINARY_INTS[kind][0])
        return payload[pos : pos + size], pos + size
    if kind == _FLOAT:
        return payload[pos : pos + 4], pos + 4
    if kind == _DOUBLE:
        return payload[pos : pos + 8], pos + 8
    if kind in _TEMPORAL or kind == _TIME:
        size = payload[pos]
        return payload[pos : pos + 1 + size], pos + 1 + size
    length, start = p.read_lenenc_int(payload, pos)
    return payload[pos : start + (length or 0)], start + (length or 0)


def _decode_binary(cell: bytes, info: ColumnInfo) -> object:
    kind = info.type
    if kind in _BINARY_INTS:
        signed, unsigned = _BINARY_INTS[kind]
        is_unsigned = bool(info.flags & UNSIGNED_FLAG)
        (number,) = struct.unpack(unsigned if is_unsigned else signed, cell)
        value = RawInt(number)
        value.raw = cell
        return value if is_unsigned else _SignedRaw(number, cell)
    if kind in (_FLOAT, _DOUBLE):
        (number,) = struct.unpack("<f" if kind == _FLOAT else "<d", cell)
        value = RawFloat(number)
        value.raw = cell
        return value
    if kind == _TIME:
        size = cell[0]
        body = cell[1:] + bytes(12 - size)
        negative, days, hours, minutes, seconds, micros = struct.unpack("<BIBBBI", body)
        total = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1_000_000 + micros
        value = TimeValue(-total if negative else total)
        value.raw = cell
        return value
    if kind in _TEMPORAL:
        size = cell[0]
        body = cell[1:] + bytes(11 - size)
        year, month, day, hour, minute, second, micros = struct.unpack("<HBBBBBI", body)
        key = (year, month, day, hour, minute, second, micros)
        return _Temporal(key, cell)
    _, start = p.read_lenenc_int(cell, 0)
    data = cell[start:]
    if kind in _DECIMALS:
        return Decimal(data.decode("ascii"))
    if kind == _BIT:
        value = RawInt(int.from_bytes(data, "big"))
        value.raw = cell
        return value
    return _BinaryString(data, cell)


class _SignedRaw(int):
    raw: bytes

    def __new__(cls, number: int, raw: bytes) -> _SignedRaw:
        value = super().__new__(cls, number)
        value.raw = raw
        return value


class _Temporal(tuple):
    """A binary DATE/DATETIME/TIMESTAMP: compared as (year, ..., microsecond)."""

    raw: bytes

    def __new__(cls, key: tuple[int, ...], raw: bytes) -> _Temporal:
        value = super().__new__(cls, key)
        value.raw = raw
        return value


class _BinaryString(bytes):
    """A binary-protocol string: its bytes, plus the length-prefixed cell to send back."""

    raw: bytes

    def __new__(cls, data: bytes, raw: bytes) -> _BinaryString:
        value = super().__new__(cls, data)
        value.raw = raw
        return value


def decode_binary_row(
    payload: bytes, width: int, infos: Sequence[ColumnInfo], needed: Sequence[bool]
) -> tuple[object, ...]:
    null_bytes = (width + 7 + 2) // 8
    bitmap = payload[1 : 1 + null_bytes]
    pos = 1 + null_bytes
    values: list[object] = []
    for i in range(width):
        bit = i + 2
        if bitmap[bit >> 3] & (1 << (bit & 7)):
            values.append(None)
            continue
        cell, pos = _binary_cell(payload, pos, infos[i].type)
        values.append(_decode_binary(cell, infos[i]) if needed[i] else BinaryValue(cell))
    return tuple(values)


def encode_binary_value(value: object, info: ColumnInfo) -> bytes:
    """A merged value as a binary-protocol cell of this column's type."""
    raw = getattr(value, "raw", None)
    if raw is not None:
        return raw
    kind = info.type
    if isinstance(value, bytes):
        return p.lenenc_str(value)
    if kind in _BINARY_INTS:
        signed, unsigned = _BINARY_INTS[kind]
        number = int(value)  # type: ignore[call-overload]
        return struct.pack(
            unsigned if number >= 0 and info.flags & UNSIGNED_FLAG else signed, number
        )
    if kind in (_FLOAT, _DOUBLE):
        return struct.pack("<f" if kind == _FLOAT else "<d", float(value))  # type: ignore[arg-type]
    text = encode_text_value(value, info)
    assert text is not None
    return p.lenenc_str(text)


def encode_binary_row(values: Sequence[object], infos: Sequence[ColumnInfo]) -> bytes:
    """A binary-protocol row payload (prepared statements)."""
    width = len(infos)
    bitmap = bytearray((width + 7 + 2) // 8)
    parts = []
    for i, (value, info) in enumerate(zip(values, infos, strict=False)):
        if value is None:
            bit = i + 2
            bitmap[bit >> 3] |= 1 << (bit & 7)
        else:
            parts.append(encode_binary_value(value, info))
    return b"\x00" + bytes(bitmap) + b"".join(parts)


# --- unit streams ---------------------------------------------------------------------------


class _Lane:
    """One backend connection; the unit currently reading from it."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: _UnitStream | None = None


class _UnitStream:
    """One unit's result: started when first needed, rows read one packet at a time."""

    def __init__(
        self,
        conn: BackendConnection,
        unit: Unit,
        names: NameMap,
        lane: _Lane,
        send: Sender,
        budget: Budget,
    ):
        self.conn = conn
        self.unit = unit
        self.lane = lane
        self.send = send
        self.budget = budget
        self.reader = ResultReader(conn, names)
        self.started = False
        self.ended = False
        self.buffer: list[bytes] = []
        self.warnings = 0

    async def start(self) -> None:
        """Send the unit and read its head (column definitions)."""
        if self.started:
            return
        await self.begin()
        await self.read_head()

    async def begin(self) -> None:
        """Send the unit, once its connection's earlier unit is read ahead."""
        active = self.lane.active
        if active is not None and active is not self:
            await active.read_ahead()
        await self.send(self.conn, self.unit)
        # Only once sent: a unit its backend refused to prepare has no answer to read.
        self.lane.active = self
        self.started = True

    async def read_head(self) -> None:
        """Read the sent unit's head; its error, or NotSupported for an OK, is raised."""
        await self.reader.read_head()
        if self.reader.error is not None:
            self.ended = True
            self._release()
            raise self.reader.error
        if self.reader.ok is not None:
            self.ended = True
            self._release()
            raise NotSupported("merging a statement that returns no rows on some shard")

    async def _read(self) -> bytes | None:
        payload = await self.conn.read_packet()
        if payload[:1] == b"\xfe" and len(payload) < 9:
            self.warnings, _ = p.eof_status(payload)
            self.reader.done = True
            self._release()
            return None
        if payload[:1] == b"\xff":
            self.reader.done = True
            self._release()
            raise self.reader._error(payload)
        return payload

    async def next_rows(self) -> list[bytes] | None:
        """The unit's next row payloads, at least one (what its connection has received,
        or a bounded part of what was read ahead); None at the end."""
        buffer = self.buffer
        if buffer:
            rows = buffer[-_BATCH:]
            del buffer[-_BATCH:]
            rows.reverse()
            self.budget.give(len(rows))
            return rows
        if self.ended:
            return None
        await self.start()
        rows = self.conn.buffered_rows()
        if rows:
            return rows
        payload = await self._read()
        if payload is None:
            self.ended = True
            return None
        rows = self.conn.buffered_rows()
        rows.insert(0, payload)
        return rows

    async def read_ahead(self) -> None:
        """Read the rest of this unit into memory: its connection is needed for another."""
        budget = self.budget
        rows = []
        while not self.ended:
            payload = await self._read()
            if payload is None:
                self.ended = True
                break
            budget.take()
            rows.append(payload)
        rows.reverse()
        self.buffer = rows + self.buffer

    def _release(self) -> None:
        if self.lane.active is self:
            self.lane.active = None


def _needed_columns(plan: Merge, width: int) -> list[bool]:
    """Which columns the merge looks at (the rest stay undecoded bytes)."""
    needed = [False] * width

    def mark(index: int | None) -> None:
        if index is not None:
            needed[index] = True

    def key(k: Key) -> None:
        mark(k.column)
        mark(k.weight)
        mark(k.collation)

    def expr(e: object) -> None:
        if isinstance(e, Col):
            mark(e.index)
        elif isinstance(e, Op):
            for arg in e.args:
                expr(arg)

    node: object = plan
    while node is not None and not isinstance(node, Concat):
        if isinstance(node, MergeSort | Sort):
            for sort_key in node.keys:
                key(sort_key.key)
        elif isinstance(node, Distinct):
            for k in node.keys:
                key(k)
        elif isinstance(node, Aggregate):
            for k in node.group:
                key(k)
            for index, rule in node.rules:
                mark(index)
                if isinstance(rule, MinMax):
                    key(rule.key)
                elif isinstance(rule, CountDistinct):
                    for k in rule.keys:
                        key(k)
                elif isinstance(rule, GroupConcat):
                    mark(rule.max_len)
                elif hasattr(rule, "expr"):
                    expr(rule.expr)
        elif isinstance(node, Filter):
            expr(node.condition)
        node = getattr(node, "source", None)
    return needed


def _hidden(plan: Merge) -> int:
    return plan.hidden if isinstance(plan, Project) else 0


def _picks_rows(plan: Merge) -> bool:
    """Whether the merge only picks and orders the units' rows, never computing a value: its
    rows can go to the client as the shards' own bytes."""
    node: Merge = plan
    while not isinstance(node, Concat | MergeSort):
        if isinstance(node, Aggregate | Filter):
            return False
        node = node.source
    return True


def _from_start(plan: Merge, width: int) -> Merge:
    """A row-picking plan with its column numbers counted from the row's start (a `SELECT *`
    plan counts its hidden columns from the end, where KeyRows puts the client's bytes)."""

    def column(index: int | None) -> int | None:
        return index + width if index is not None and index < 0 else index

    def key(k: Key) -> Key:
        return Key(column(k.column), column(k.weight), column(k.collation))  # type: ignore[arg-type]

    if isinstance(plan, Concat):
        return plan
    if isinstance(plan, MergeSort):
        return MergeSort(tuple(SortKey(key(k.key), k.desc) for k in plan.keys))
    source = _from_start(plan.source, width)  # type: ignore[union-attr]
    if isinstance(plan, Sort):
        return Sort(source, tuple(SortKey(key(k.key), k.desc) for k in plan.keys))
    if isinstance(plan, Distinct):
        return Distinct(source, tuple(key(k) for k in plan.keys))
    return dataclasses.replace(plan, source=source)  # type: ignore[type-var]


# A cell the merge doesn't look at.
_SKIP = object()


class KeyRows:
    """Shard rows for a merge that picks rows: the key columns decoded, the rest kept as bytes.

    A row handed to the merge is a tuple of the shard's width plus one: the values of the
    columns the merge looks at (None elsewhere, never read), then the row's bytes for the
    client, already cut to the visible columns (proxy.rows). Each row's cells are walked in
    one loop, up to the last one needed: this runs for every row of such a merge."""

    def __init__(
        self, infos: Sequence[ColumnInfo], needed: Sequence[bool], visible: int, binary: bool
    ):
        self.width = len(infos)
        self.visible = visible
        keys = [i for i in range(self.width) if needed[i]]
        # Cells to walk: every key cell, and the last visible one when the row is cut.
        cut = visible if visible < self.width else 0
        count = max([i + 1 for i in keys] + [cut])
        self.empty: list[object] = [None] * self.width
        # Per cell up to `count`: how its value is kept (_SKIP: not at all, None: its bytes).
        self.decoders: list[object] = [_SKIP] * count
        for index in keys:
            self.decoders[index] = _key_decoder(infos[index], binary)
        # Binary rows: per cell, its size on the wire (rows.cell_size) and its decoder.
        self.cells = [(rows.cell_size(infos[i].type), self.decoders[i]) for i in range(count)]
        self.nulls = rows.null_bytes(self.width)
        self.visible_nulls = rows.null_bytes(visible)
        self.row: Callable[[bytes], tuple[object, ...]] = (
            self._whole_row if not count else self._binary_row if binary else self._text_row
        )

    def _whole_row(self, payload: bytes) -> tuple[object, ...]:
        """No key to decode, nothing to cut."""
        return (*self.empty, payload)

    def _text_row(self, payload: bytes) -> tuple[object, ...]:
        values = self.empty.copy()
        visible = self.visible
        cut = len(payload)
        pos = 0
        for index, decode in enumerate(self.decoders):
            first = payload[pos]
            if first < 0xFB:
                start = pos + 1
                pos = start + first
            elif first == 0xFB:  # NULL
                start = -1
                pos += 1
            else:
                start = rows.lenenc_start(payload, pos)
                pos = start + int.from_bytes(payload[pos + 1 : start], "little")
            if index + 1 == visible:
                cut = pos
            if decode is _SKIP or start < 0:
                continue
            values[index] = payload[start:pos] if decode is None else decode(payload, start, pos)
        values.append(payload if cut == len(payload) else payload[:cut])
        return tuple(values)

    def _binary_row(self, payload: bytes) -> tuple[object, ...]:
        """The values follow a NULL bitmap (column i is bit i + 2); a NULL has no bytes. A
        row cut to fewer columns gets a bitmap of its own."""
        values = self.empty.copy()
        visible = self.visible
        nulls = self.nulls
        bitmap = int.from_bytes(payload[1 : 1 + nulls], "little") >> 2
        pos = cut = 1 + nulls
        for index, (size, decode) in enumerate(self.cells):
            if bitmap >> index & 1:
                if index + 1 == visible:
                    cut = pos
                continue
            cell = pos
            if size > 0:  # fixed size
                start = pos
                pos += size
            elif not size or payload[pos] < 0xFB:  # a one-byte size or length first
                start = pos + 1
                pos = start + payload[cell]
            else:
                start = rows.lenenc_start(payload, pos)
                pos = start + int.from_bytes(payload[cell + 1 : start], "little")
            if index + 1 == visible:
                cut = pos
            if decode is _SKIP:
                continue
            values[index] = payload[start:pos] if decode is None else decode(payload, cell, pos)
        if visible == self.width:
            values.append(payload)
        else:
            kept = (bitmap & ((1 << visible) - 1)) << 2
            bitmap_bytes = kept.to_bytes(self.visible_nulls, "little")
            values.append(b"\x00" + bitmap_bytes + payload[1 + nulls : cut])
        return tuple(values)


_CellDecoder = Callable[[bytes, int, int], object]


def _key_decoder(info: ColumnInfo, binary: bool) -> _CellDecoder | None:
    """How a key cell becomes the value the merge compares: None for its bytes as they are
    (strings, and text-protocol temporal values, which compare in time order). A decoder gets
    the row, where the cell starts (a binary cell's length prefix included) and where it ends."""
    if binary:
        if info.is_string:
            return None
        return lambda payload, start, end: _decode_binary(payload[start:end], info)
    kind = info.type
    if kind in _INTEGERS or kind in _DECIMALS or kind in (_FLOAT, _DOUBLE, _TIME, _BIT):
        return lambda payload, start, end: decode_text(payload[start:end], info)
    return None


async def merge_reads(
    conns: Sequence[BackendConnection],
    plan: QueryPlan,
    channel: ClientChannel,
    names: NameMap,
    status: int,
    send: Sender = send_query,
    max_rows: int = DEFAULT_MAX_MERGE_ROWS,
) -> Outcome:
    """Run a read plan's units (unit i on conns[i]) and send the merged result."""
    lanes: dict[int, _Lane] = {}
    budget = Budget(max_rows)
    streams = []
    for conn, unit in zip(conns, plan.units, strict=True):
        lane = lanes.setdefault(id(conn), _Lane())
        streams.append(_UnitStream(conn, unit, names, lane, send, budget))
    binary = send is not send_query
    header_sent = False
    sent = 0  # rows, for FOUND_ROWS()
    try:
        # The first unit of every connection starts now: an error on any shard becomes a
        # clean ERR before anything is sent. All are sent, then their heads read in turn: the
        # shards work in parallel all the same, without a task per shard. Every head is read
        # before an error is raised, so _finish finds each connection at a known point.
        firsts = {}
        for stream in streams:
            firsts.setdefault(id(stream.conn), stream)
        failures: list[Exception] = []
        begun = []
        for stream in firsts.values():
            try:
                await stream.begin()
                begun.append(stream)
            except Exception as exc:
                failures.append(exc)
        for stream in begun:
            try:
                await stream.read_head()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        head = streams[0].reader
        try:
            infos = [column_info(payload) for payload in head.columns]
            width = len(infos)
            merge = plan.merge
            visible = width - _hidden(merge)
            if visible <= 0:
                raise NotSupported("this statement's columns across several shards")
            needed = _needed_columns(merge, width)
            decode: Callable[[bytes], tuple[object, ...]]
            encode: Callable[[tuple[object, ...]], bytes]
            if _picks_rows(merge):
                # The merge runs without the Project: each row's last item is its client bytes.
                if isinstance(merge, Project):
                    merge = merge.source
                merge = _from_start(merge, width)
                decode = KeyRows(infos, needed, visible, binary).row
                encode = operator.itemgetter(-1)
            else:
                row_decoder = decode_binary_row if binary else decode_text_row
                row_encoder = encode_binary_row if binary else encode_text_row
                visible_infos = infos[:visible]
                decode = functools.partial(row_decoder, width=width, infos=infos, needed=needed)
                encode = functools.partial(row_encoder, infos=visible_infos)
            merger = Merger(merge, infos, len(streams), budget)
        except _VALUE_ERRORS as error:
            raise _unsupported(error) from error

        def emit(rows: list[tuple[object, ...]]) -> None:
            nonlocal header_sent, sent
            sent += len(rows)
            if not header_sent:
                channel.send(p.lenenc_int(visible))
                for column in head.columns[:visible]:
                    channel.send(column)
                channel.send(p.with_eof_status(head.column_eof, status))
                header_sent = True
            for row in rows:
                channel.send(encode(row))

        while (index := merger.need()) is not None:
            payloads = await streams[index].next_rows()
            try:
                out = merger.feed_many(
                    index, None if payloads is None else list(map(decode, payloads))
                )
                if out:
                    emit(out)
            except _VALUE_ERRORS as error:
                raise _unsupported(error) from error
            if out:
                await channel.flush()
        try:
            out = merger.finish()
        except _VALUE_ERRORS as error:
            raise _unsupported(error) from error
        # Rows that come out at the end (a sort after grouping) go out in bounded batches;
        # the first batch sends the header even when there are no rows.
        for start in range(0, max(len(out), 1), _BATCH):
            try:
                emit(out[start : start + _BATCH])
            except _VALUE_ERRORS as error:
                raise _unsupported(error) from error
            await channel.flush()
        warnings = sum(s.warnings for s in streams)
        channel.send(p.eof_packet(status, warnings))
        return Outcome(warnings=warnings, is_result_set=True, rows=sent)
    except ProxyError as error:
        if not header_sent:
            raise
        channel.send_error(error.code, error.sqlstate, error.message)
        return Outcome(is_result_set=True)
    finally:
        await _finish(streams)


# A value the merge can't handle ends the statement with 1235, never with a guess.
_VALUE_ERRORS = (
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    AttributeError,
    struct.error,
)
# Rows sent between two flushes when a finished merge sends many at once.
_BATCH = 256


def _unsupported(error: Exception) -> NotSupported:
    return NotSupported(f"merging these values across shards ({type(error).__name__}: {error})")


async def _finish(streams: Sequence[_UnitStream]) -> None:
    """Leave every connection clean: read the rest of started units; others never ran."""
    for stream in streams:
        if stream.started and not stream.reader.done and not stream.conn.broken:
            try:
                await stream.reader.drain()
            except ProxyError:
                stream.conn.broken = True


__all__ = [
    "DEFAULT_MAX_MERGE_ROWS",
    "column_info",
    "decode_text",
    "encode_binary_row",
    "encode_text_row",
    "merge_reads",
]
