"""Runs query plans on backend connections and streams the answers to the client.

A single-unit result is relayed frame by frame (sequence ids renumbered, final status patched,
column metadata made logical); rows are never decoded. Several read units are concatenated as
they stream. Writes over several units run grouped by backend; the session wraps them in an XA
transaction so they commit everywhere or nowhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from proxy import packets as p
from proxy.backend import BackendConnection, BackendError, OkResult, mark_unfinished
from proxy.channel import ClientChannel
from proxy.diagnostics import Condition, fetch_conditions
from proxy.names import NameMap
from router.errors import BackendUnavailable, NotSupported, ProxyError
from router.plan import Unit

# Sends one unit's command to its connection: a text query, or a backend prepared statement.
Sender = Callable[[BackendConnection, Unit], Awaitable[None]]


async def send_query(conn: BackendConnection, unit: Unit) -> None:
    conn.send_command(p.COM_QUERY, unit.sql.encode("utf-8", "surrogateescape"))


# MySQL's optimizer hint in the client's text: /*+ ... MAX_EXECUTION_TIME(ms) ... */
_HINT = re.compile(r"/\*\+[^*]*?\bMAX_EXECUTION_TIME\s*\(\s*(\d+)\s*\)", re.IGNORECASE)
_SELECT = re.compile(r"^\s*(\(\s*)*SELECT\b", re.IGNORECASE)


def time_limit(statement: str, session_limit: int) -> int:
    """MySQL's time limit in milliseconds for a read (0: none): the statement's
    MAX_EXECUTION_TIME hint, else the session's max_execution_time."""
    if "/*+" not in statement:  # the common case, without a regex search
        return session_limit
    match = _HINT.search(statement)
    return int(match.group(1)) if match is not None else session_limit


def with_time_limit(send: Sender, milliseconds: int) -> Sender:
    """A sender whose statements stop after `milliseconds` on the backend itself.

    MariaDB has no max_execution_time; its max_statement_time, set for one statement with
    SET STATEMENT ... FOR, stops it the same way (error 1969, the connection stays usable).
    MySQL backends get the optimizer hint. Each shard's statement gets the whole limit: they
    run in parallel."""

    async def limited(conn: BackendConnection, unit: Unit) -> None:
        if "mariadb" in conn.server_version.lower():
            sql = f"SET STATEMENT max_statement_time={milliseconds / 1000:.3f} FOR {unit.sql}"
        else:
            hint = f" /*+ MAX_EXECUTION_TIME({milliseconds}) */"
            sql = _SELECT.sub(lambda m: m.group(0) + hint, unit.sql, count=1)
        await send(conn, dataclasses.replace(unit, sql=sql))

    return limited


@dataclass
class Outcome:
    """What the client was told, for the session's ROW_COUNT/LAST_INSERT_ID bookkeeping."""

    affected_rows: int = 0
    last_insert_id: int = 0
    warnings: int = 0
    is_result_set: bool = False
    rows: int = 0  # rows sent, for FOUND_ROWS()


class ResultReader:
    """Reads one backend response in stages: head, column definitions, then row frames."""

    def __init__(self, conn: BackendConnection, names: NameMap):
        self.conn = conn
        self.names = names
        self.head: bytes = b""  # first frame
        self.ok: OkResult | None = None
        self.error: ProxyError | None = None
        self.columns: list[bytes] = []  # column definition payloads (logical names)
        self.column_eof: bytes = b""
        self.final_warnings = 0
        self.final_status = 0
        self.rows = 0  # rows relayed
        self.done = False
        self.sent = False  # whether its command went out (else there is nothing to drain)

    async def read_head(self) -> None:
        conn = self.conn
        frame = conn.buffered_frame() or await conn.read_frame()
        self.head = frame
        kind = frame[4] if len(frame) > 4 else 0
        if kind == 0x00:
            self.ok = OkResult(*p.parse_ok(frame[4:]))
            self.done = True
        elif kind == 0xFF:
            self.error = self._error(frame[4:])
            self.done = True
        elif kind == 0xFB:
            # LOCAL INFILE request: answer with an empty file, then report the refusal.
            self.conn.send_raw(b"\x00\x00\x00\x02")
            await self.conn.read_packet()
            self.error = NotSupported("LOAD DATA LOCAL INFILE")
            self.done = True
        else:
            count, _ = p.read_lenenc_int(frame, 4)
            column_definition = self.names.column_definition
            for _ in range(count or 0):
                payload = conn.buffered_packet()
                if payload is None:
                    payload = await conn.read_packet()
                self.columns.append(column_definition(payload))
            payload = conn.buffered_packet()
            self.column_eof = payload if payload is not None else await conn.read_packet()

    def _error(self, payload: bytes) -> ProxyError:
        code, sqlstate, message = p.parse_err(payload)
        return BackendError(self.names.message(message), code, sqlstate)

    async def relay_rows(self, channel: ClientChannel) -> None:
        """Relay row frames to the client until the terminating EOF or ERR (not sent)."""
        conn = self.conn
        continuation = False
        rows = 0
        while True:
            # The common case: whole row frames already received, relayed in one call.
            frames = None if continuation else conn.buffered_rows(frames=True)
            if frames:
                last = frames[-1]
                ended = last[4] == 0xFF or (last[4] == 0xFE and len(last) < 13)
                if ended:
                    frames.pop()
                channel.send_frames(frames)
                rows += len(frames)
                if ended:
                    self._end(last[4:], rows)
                    return
                if channel.full:
                    await channel.drain()
                continue
            frame = conn.buffered_frame() or await conn.read_frame()
            length = len(frame) - 4
            if not continuation:
                kind = frame[4] if length else 0
                if kind == 0xFF or (kind == 0xFE and length < 9):
                    self._end(frame[4:], rows)
                    return
                rows += 1
            channel.send_frame(frame)
            continuation = length == p.MAX_PAYLOAD
            if channel.full:
                await channel.drain()

    def _end(self, payload: bytes, rows: int) -> None:
        """The EOF or ERR after `rows` rows."""
        self.done = True
        if payload[0] == 0xFF:
            self.error = self._error(payload)
            return
        self.final_warnings, self.final_status = p.eof_status(payload)
        self.rows = rows

    async def drain(self) -> None:
        """Consume the rest of this response so the connection is clean again."""
        if self.done:
            return
        if not self.head:
            await self.read_head()
            if self.done:
                return
        continuation = False
        while True:
            frame = await self.conn.read_frame()
            length = len(frame) - 4
            if (
                not continuation
                and length
                and (frame[4] == 0xFF or (frame[4] == 0xFE and length < 9))
            ):
                self.done = True
                return
            continuation = length == p.MAX_PAYLOAD


def send_ok(channel: ClientChannel, ok: OkResult, status: int) -> None:
    channel.send(p.ok_packet(ok.affected_rows, ok.last_insert_id, status, ok.warnings))


async def relay_single(
    conn: BackendConnection,
    unit: Unit,
    channel: ClientChannel,
    names: NameMap,
    status: int,
    send: Sender = send_query,
    insert_id: int = 0,
) -> Outcome:
    """Run one unit and relay its answer; raises ProxyError (nothing sent) on ERR.

    A nonzero `insert_id` (the proxy generated the keys) replaces the OK's last insert id."""
    await send(conn, unit)
    reader = ResultReader(conn, names)
    await reader.read_head()
    if reader.error is not None:
        raise reader.error
    if reader.ok is not None:
        ok = reader.ok
        if insert_id:
            ok = dataclasses.replace(ok, last_insert_id=insert_id)
        send_ok(channel, ok, status)
        return Outcome(ok.affected_rows, ok.last_insert_id, ok.warnings)
    channel.send_frame(reader.head)  # the column count, relayed as it came
    for column in reader.columns:
        channel.send(column)
    channel.send(p.with_eof_status(reader.column_eof, status))
    await reader.relay_rows(channel)
    if reader.error is not None:
        channel.send_error(reader.error.code, reader.error.sqlstate, reader.error.message)
        return Outcome(is_result_set=True)
    channel.send(p.eof_packet(status, reader.final_warnings))
    return Outcome(warnings=reader.final_warnings, is_result_set=True, rows=reader.rows)


async def concat_reads(
    conns: Sequence[BackendConnection],
    units: Sequence[Unit],
    channel: ClientChannel,
    names: NameMap,
    status: int,
    send: Sender = send_query,
) -> Outcome:
    """Run read units in parallel and stream their rows one unit after another.

    Every unit's head is read before anything is sent, so an error on any shard becomes a
    clean ERR for the client instead of a half-sent result.
    """
    readers = [ResultReader(conn, names) for conn in conns]
    try:
        for reader, unit in zip(readers, units, strict=True):
            await send(reader.conn, unit)
            reader.sent = True
        # Every unit is already sent: reading the heads in turn waits no longer than for the
        # slowest shard, and needs no task per shard.
        for reader in readers:
            await reader.read_head()
        for reader in readers:
            if reader.error is not None:
                raise reader.error
        first = next((r for r in readers if r.ok is None), None)
        if first is None:
            # No unit returned rows (a statement classified as read that answers OK).
            total = sum(r.ok.affected_rows for r in readers if r.ok)
            ok = OkResult(total, 0, status, sum(r.ok.warnings for r in readers if r.ok))
            send_ok(channel, ok, status)
            return Outcome(affected_rows=total, warnings=ok.warnings)
        channel.send(first.head[4:])
        for column in first.columns:
            channel.send(column)
        channel.send(p.with_eof_status(first.column_eof, status))
        warnings = rows = 0
        for reader in readers:
            if reader.ok is not None:
                continue
            await reader.relay_rows(channel)
            if reader.error is not None:
                channel.send_error(reader.error.code, reader.error.sqlstate, reader.error.message)
                return Outcome(is_result_set=True)
            warnings += reader.final_warnings
            rows += reader.rows
        channel.send(p.eof_packet(status, warnings))
        return Outcome(warnings=warnings, is_result_set=True, rows=rows)
    finally:
        await _drain_all(readers)


async def _drain_all(readers: Sequence[ResultReader]) -> None:
    for reader in readers:
        if reader.sent and not reader.done and not reader.conn.broken:
            try:
                await reader.drain()
            except ProxyError:
                reader.conn.broken = True


async def run_writes(
    conns: Sequence[BackendConnection],
    groups: Sequence[Sequence[Unit]],
    conditions: list[Condition] | None = None,
) -> OkResult:
    """Run write units grouped by connection and sum their OK packets.

    Each connection runs its group one unit after another; connections run in parallel. The
    caller owns the transaction around them and rolls back on any error raised here. The
    warnings of units that report some are added to `conditions` (read before the connection
    runs its next unit, which would replace them).
    """
    results = await asyncio.gather(
        *(_run_group(c, g, conditions) for c, g in zip(conns, groups, strict=True)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for conn, result in zip(conns, results, strict=True):
            if isinstance(result, BaseException):
                mark_unfinished((conn,), result)  # e.g. an answer it could not parse
        first = errors[0]
        if isinstance(first, ProxyError):
            raise first
        raise BackendUnavailable(f"write failed on a backend: {first}") from first
    oks = [r for r in results if isinstance(r, OkResult)]
    insert_ids = [ok.last_insert_id for ok in oks if ok.last_insert_id]
    return OkResult(
        sum(ok.affected_rows for ok in oks),
        min(insert_ids) if insert_ids else 0,
        0,
        sum(ok.warnings for ok in oks),
    )


async def _run_group(
    conn: BackendConnection, units: Sequence[Unit], conditions: list[Condition] | None
) -> OkResult:
    affected = warnings = insert_id = 0
    for unit in units:
        ok = await conn.execute(unit.sql)
        if ok.warnings and conditions is not None:
            conditions += await fetch_conditions(conn)
        affected += ok.affected_rows
        warnings += ok.warnings
        insert_id = insert_id or ok.last_insert_id
    return OkResult(affected, insert_id, 0, warnings)
