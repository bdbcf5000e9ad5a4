"""Backend connections and their pools.

A connection is opened and authenticated by aiomysql (handshake, auth plugins, TLS), then spoken
to packet by packet: the hot path relays result packets to the client without decoding rows.
Control statements (SET, BEGIN, XA, metadata) that need decoded answers use the same packet path
with small decoders, so aiomysql's own result machinery never holds a half-read response.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import aiomysql

from proxy import packets as p
from proxy.stream import Stream
from router.config import Backend
from router.errors import BackendUnavailable, ProxyError

# A one-frame command packet's start: payload length (3 bytes), sequence id 0, command.
_COMMAND_HEAD = struct.Struct("<IB")

CONNECT_TIMEOUT = 5.0
# An idle connection older than this is pinged before use.
PING_AFTER_IDLE = 30.0
# A replica that refused a connection is not tried again for this long.
DOWN_FOR = 5.0

# The state every pooled connection starts in; a session's SETs are applied on top of it.
DEFAULT_STATE: tuple[tuple[str, str], ...] = ()


class BackendError(ProxyError):
    """An ERR packet a backend sent, forwarded with its own code and SQLSTATE."""


@dataclass(frozen=True)
class OkResult:
    affected_rows: int
    last_insert_id: int
    status: int
    warnings: int


class BackendConnection:
    """One authenticated connection to a backend, used one command at a time."""

    def __init__(self, pool: BackendPool, conn: aiomysql.Connection):
        self.pool = pool
        self._conn = conn
        # aiomysql opened and authenticated the socket; from here on it is spoken to through
        # a Stream (no StreamReader future and copy per read), taking over what was received.
        reader = conn._reader
        self._stream = Stream.adopt(conn._writer.transport, bytes(reader._buffer))
        reader._buffer.clear()
        self.state = DEFAULT_STATE
        self.broken = False
        # Who holds it now (a session), so a KILL never targets it once it went back to the pool.
        self.owner: object | None = None
        # KILL QUERYs sent for its thread and not yet answered: until then it is never pooled.
        self.kills_pending = 0
        self.last_used = time.monotonic()
        self.server_version: str = conn.server_version
        self.thread_id: int = conn.server_thread_id[0]
        self._buf = self._stream.buffer
        self._pos = 0
        # Statements prepared on this connection: physical SQL -> backend statement id.
        self.statements: dict[str, int] = {}

    @property
    def backend(self) -> str:
        return self.pool.backend.name

    def send_command(self, command: int, payload: bytes) -> None:
        """Write a command packet (sequence id 0); replies follow from read_packet()."""
        if len(payload) < p.MAX_PAYLOAD - 1:  # one frame: its header and command byte packed
            data = _COMMAND_HEAD.pack(len(payload) + 1, command) + payload
        else:
            data, _ = p.frame(bytes((command,)) + payload, 0)
        if self.is_closed():
            self.broken = True
            raise self._lost(ConnectionResetError())
        try:
            self._stream.write(data)
        except Exception as exc:
            self.broken = True
            raise self._lost(exc) from exc

    def send_raw(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except Exception as exc:
            self.broken = True
            raise self._lost(exc) from exc

    async def _fill(self, need: int) -> None:
        """Wait until `need` unread bytes are buffered.

        Replies arrive as a few packets in one segment: frames are cut from the stream's
        buffer, so a whole reply costs one wake-up, not one per packet (measured: the
        readexactly calls were a top cost of a point select)."""
        buf = self._buf
        while len(buf) - self._pos < need:
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            try:
                await self._stream.receive()
            except OSError as exc:
                self.broken = True
                raise self._lost(exc) from exc

    def buffered_frame(self) -> bytes | None:
        """The next raw wire frame if all of it is buffered, else None: replies usually
        arrive whole, and cutting them without an await per frame is measurably cheaper."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        end = pos + 4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16)
        if len(buf) < end:
            return None
        frame = bytes(buf[pos:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return frame

    def buffered_packet(self) -> bytes | None:
        """The next packet's payload if it is one frame (under 16 MB) buffered whole."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if length == p.MAX_PAYLOAD or len(buf) - pos < 4 + length:
            return None
        frame = self.buffered_frame()
        assert frame is not None
        return frame[4:]

    def buffered_rows(self, frames: bool = False) -> list[bytes]:
        """The payloads of the row packets buffered whole, in order, up to the first packet
        that is not one (EOF or ERR), is not all here or needs reassembly (16 MB frames):
        that one is left for read_packet. With `frames`, whole frames (header included) and
        the EOF or ERR that ends the rows too, when it is buffered. One loop for a whole
        received chunk of a result, where reading row by row costs several calls per row."""
        buf = self._buf
        pos = self._pos
        size = len(buf)
        rows = []
        skip = 0 if frames else 4
        while size - pos > 4:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + length
            if end > size or not length or length == p.MAX_PAYLOAD:
                break
            first = buf[pos + 4]
            if first == 0xFF or (first == 0xFE and length < 9):
                if frames:
                    rows.append(bytes(buf[pos:end]))
                    pos = end
                break
            rows.append(bytes(buf[pos + skip : end]))
            pos = end
        if pos == size:
            buf.clear()
            self._pos = 0
        else:
            self._pos = pos
        return rows

    async def read_frame(self) -> bytes:
        """Read one raw wire frame, header included, for relaying without reassembly."""
        while True:
            frame = self.buffered_frame()
            if frame is not None:
                return frame
            buf = self._buf
            pos = self._pos
            if len(buf) - pos < 4:
                await self._fill(4)
            else:
                await self._fill(4 + (buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16))

    async def read_packet(self) -> bytes:
        """Read one logical packet payload (16 MB frames joined)."""
        frame = await self.read_frame()
        if len(frame) - 4 < p.MAX_PAYLOAD:
            return frame[4:]
        parts = [frame[4:]]
        while len(frame) - 4 == p.MAX_PAYLOAD:
            frame = await self.read_frame()
            parts.append(frame[4:])
        return b"".join(parts)

    def is_closed(self) -> bool:
        """True when the backend hung up (e.g. after ER_NET_PACKET_TOO_LARGE) or we closed it."""
        stream = self._stream
        return self.broken or stream.is_closing() or (stream.eof and self._pos >= len(self._buf))

    def _lost(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Lost connection to backend '{self.backend}' during query ({type(exc).__name__})"
        )

    async def execute(self, sql: str) -> OkResult:
        """Run a statement that returns no rows; raise BackendError on ERR."""
        self.send_command(p.COM_QUERY, sql.encode("utf-8", "surrogateescape"))
        return await self.result()

    async def result(self) -> OkResult:
        """The answer to a statement sent with send_command (execute's second half: send to
        several connections first, then read each answer, and the servers work in parallel
        without a task per connection); raise BackendError on ERR."""
        ok = None
        while True:
            payload = await self.read_packet()
            head = payload[0]
            if head == 0x00:
                result = OkResult(*p.parse_ok(payload))
            elif head == 0xFF:
                raise BackendError(*_err_args(payload))
            else:
                await self._skip_result_set()
                result = OkResult(0, 0, self._last_status, 0)
            ok = ok or result
            if not result.status & p.SERVER_MORE_RESULTS_EXISTS:
                return ok

    async def query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run a statement and return its rows as text (None for NULL); for control queries."""
        self.send_command(p.COM_QUERY, sql.encode("utf-8", "surrogateescape"))
        payload = await self.read_packet()
        if payload[0] == 0x00:
            return []
        if payload[0] == 0xFF:
            raise BackendError(*_err_args(payload))
        count, _ = p.read_lenenc_int(payload, 0)
        for _ in range(count or 0):
            await self.read_packet()
        await self.read_packet()  # EOF after column definitions
        rows = []
        while True:
            payload = await self.read_packet()
            if p.is_eof(payload):
                return rows
            if payload[0] == 0xFF:
                raise BackendError(*_err_args(payload))
            row = []
            pos = 0
            for _ in range(count or 0):
                n, pos = p.read_lenenc_int(payload, pos)
                if n is None:
                    row.append(None)
                else:
                    row.append(payload[pos : pos + n].decode("utf-8", "replace"))
                    pos += n
            rows.append(tuple(row))

    async def _skip_result_set(self) -> None:
        self._last_status = 0
        while not p.is_eof(await self.read_packet()):
            pass
        while True:
            payload = await self.read_packet()
            if p.is_eof(payload):
                self._last_status = p.eof_status(payload)[1]
                return
            if payload[0] == 0xFF:
                raise BackendError(*_err_args(payload))

    _last_status = 0

    async def reset(self) -> None:
        """COM_RESET_CONNECTION: drop session variables, temporary tables, user variables."""
        self.send_command(p.COM_RESET_CONNECTION, b"")
        payload = await self.read_packet()
        if payload[0] == 0xFF:
            raise BackendError(*_err_args(payload))
        self.state = DEFAULT_STATE
        self.statements.clear()

    async def apply_state(self, state: tuple[tuple[str, str], ...]) -> None:
        """Make this connection's session variables exactly `state` (a session's SETs)."""
        if state == self.state:
            return
        if self.state != DEFAULT_STATE:
            await self.reset()
        if state:
            await self.execute("SET " + ", ".join(assignment_sql(k, v) for k, v in state))
        self.changed_state(state)

    def changed_state(self, state: tuple[tuple[str, str], ...]) -> None:
        """Record that a SET gave this connection the session variables `state`. Statements
        prepared here before are closed: the server parsed them under the old variables
        (`||` is OR or CONCAT by sql_mode, literals by the connection's character set); a user
        variable changes none of that."""
        if self.statements and _system_variables(state) != _system_variables(self.state):
            for stmt_id in self.statements.values():
                self.send_command(p.COM_STMT_CLOSE, struct.pack("<I", stmt_id))
            self.statements.clear()
        self.state = state

    async def ping(self) -> bool:
        try:
            self.send_command(p.COM_PING, b"")
            payload = await asyncio.wait_for(self.read_packet(), CONNECT_TIMEOUT)
        except (ProxyError, TimeoutError):
            self.broken = True
            return False
        return payload[0] == 0x00

    def close(self) -> None:
        self.broken = True
        self._conn.close()


def mark_unfinished(conns: Iterable[BackendConnection], exc: BaseException) -> None:
    """After `exc` a connection may still have an answer on its way, unless `exc` is a
    ProxyError (an ERR answer read in full; a lost connection marks itself broken): a KILL's
    or shutdown's cancel, a client gone mid-result. Such connections are closed on release,
    never handed to another session."""
    if not isinstance(exc, ProxyError):
        for conn in conns:
            conn.broken = True


@contextlib.contextmanager
def returned(conn: BackendConnection) -> Iterator[BackendConnection]:
    """Give `conn` back to its pool when the block ends, clean only if its last answer was read
    in full (see mark_unfinished)."""
    try:
        yield conn
    except BaseException as exc:
        mark_unfinished((conn,), exc)
        raise
    finally:
        conn.pool.release(conn, not conn.broken)


async def kill_queries(
    conns: Iterable[BackendConnection],
    kill: Callable[[BackendConnection], Awaitable[bool]],
) -> None:
    """Stop the statements running on `conns` with `kill` (a KILL QUERY of the connection's
    thread on another connection; True once the server answered it)."""
    await send_kills(fence(conns), kill)


def fence(conns: Iterable[BackendConnection]) -> list[BackendConnection]:
    """Mark `conns` as targets of KILL QUERYs that send_kills will send.

    A KILL that reaches the server after its statement ended stops whatever that thread runs
    next, so from now until the KILL is answered a connection coming back to its pool is
    closed rather than handed to someone else. Fenced at once, the kills may go later."""
    targets = list(conns)
    for conn in targets:
        conn.kills_pending += 1
    return targets


async def send_kills(
    targets: list[BackendConnection], kill: Callable[[BackendConnection], Awaitable[bool]]
) -> None:
    """The KILLs of connections `fence` marked; lifts the fence, and closes each connection
    whose KILL got no answer."""
    answered = [False] * len(targets)  # cancelled midway: a KILL may still be on its way
    try:
        answered = list(await asyncio.gather(*(kill(conn) for conn in targets)))
    finally:
        for conn, ok in zip(targets, answered, strict=True):
            conn.kills_pending -= 1
            if not ok:
                conn.broken = True


def assignment_sql(name: str, value_sql: str) -> str:
    """One SET assignment as SQL: `NAMES utf8mb4`, `@x = 1`, `sql_mode = '...'`."""
    if name in ("names", "character set"):
        return f"{name.upper()} {value_sql}"
    if name.startswith("@"):
        return f"{name} = {value_sql}"
    return f"@@session.{name} = {value_sql}"


def _err_args(payload: bytes) -> tuple[str, int, str]:
    code, sqlstate, message = p.parse_err(payload)
    return message, code, sqlstate


class BackendPool:
    """Connections to one backend; acquire() takes no lock when an idle connection exists."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._idle: collections.deque[BackendConnection] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[BackendConnection]] = collections.deque()
        self._size = 0  # open + opening connections
        self._closed = False
        self.server_version = ""
        self.last_error: str | None = None  # why the last connect failed; None once one works
        self.down_until = 0.0  # after a failed connect, replicas are skipped until then

    @property
    def size(self) -> int:
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def acquire(
        self, state: tuple[tuple[str, str], ...] = DEFAULT_STATE
    ) -> BackendConnection:
        """A connection carrying exactly the session state `state`."""
        conn = self._take_idle(state)
        while conn is not None and conn.is_closed():
            self._discard(conn)
            conn = self._take_idle(state)
        if conn is None:
            if self._size < self.backend.pool.max:
                conn = await self._connect()
            else:
                waiter: asyncio.Future[BackendConnection] = (
                    asyncio.get_running_loop().create_future()
                )
                self._waiters.append(waiter)
                try:
                    conn = await asyncio.wait_for(waiter, CONNECT_TIMEOUT * 6)
                except TimeoutError:
                    raise BackendUnavailable(
                        f"Timed out waiting for a connection to backend '{self.backend.name}'"
                    ) from None
        elif time.monotonic() - conn.last_used > PING_AFTER_IDLE and not await conn.ping():
            self._discard(conn)
            conn = await self._connect()
        try:
            if conn.state != state:
                await conn.apply_state(state)
        except BaseException:
            self.release(conn, clean=False)
            raise
        return conn

    def _take_idle(self, state: tuple[tuple[str, str], ...]) -> BackendConnection | None:
        idle = self._idle
        if not idle:
            return None
        if idle[-1].state == state:
            return idle.pop()
        for conn in reversed(idle):
            if conn.state == state:
                idle.remove(conn)
                return conn
        return idle.pop()

    async def _connect(self) -> BackendConnection:
        b = self.backend
        self._size += 1
        try:
            raw = await asyncio.wait_for(
                aiomysql.connect(
                    host=b.host,
                    port=b.port,
                    user=b.user,
                    password=b.password,
                    db=b.database,
                    charset="utf8mb4",
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                ),
                CONNECT_TIMEOUT,
            )
        except Exception as exc:
            self._size -= 1
            self.last_error = str(exc) or type(exc).__name__
            self.down_until = time.monotonic() + DOWN_FOR
            raise BackendUnavailable(
                f"Can't connect to backend '{b.name}' ({b.host}:{b.port}): {exc}"
            ) from exc
        except BaseException:  # cancelled while connecting: the slot is free again
            self._size -= 1
            raise
        if raw.server_status & p.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
            # The proxy writes string literals with backslash escapes (a prepared statement's
            # values, user variables): under this mode a value could end its string early.
            raw.close()
            self._size -= 1
            self.last_error = "sql_mode NO_BACKSLASH_ESCAPES"
            raise BackendUnavailable(
                f"Backend '{b.name}' ({b.host}:{b.port}) runs with sql_mode "
                "NO_BACKSLASH_ESCAPES, which the proxy does not support"
            )
        conn = BackendConnection(self, raw)
        self.server_version = conn.server_version
        self.last_error = None
        return conn

    def release(self, conn: BackendConnection, clean: bool = True) -> None:
        """Return a connection; one that is broken or in an unknown state is closed instead."""
        conn.owner = None
        if conn.broken or not clean or self._closed or conn.kills_pending:
            self._discard(conn)
            self._wake_waiter_with_new()
            return
        conn.last_used = time.monotonic()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: BackendConnection) -> None:
        self._size -= 1
        with contextlib.suppress(Exception):
            conn.close()

    def _wake_waiter_with_new(self) -> None:
        while self._waiters and self._size < self.backend.pool.max:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            task = asyncio.ensure_future(self._connect())
            task.add_done_callback(lambda t, w=waiter: _settle(w, t))
            return

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())


def _settle(
    waiter: asyncio.Future[BackendConnection], task: asyncio.Task[BackendConnection]
) -> None:
    if task.cancelled():
        waiter.cancel()
    elif task.exception() is not None:
        if not waiter.done():
            waiter.set_exception(task.exception())  # type: ignore[arg-type]
    elif waiter.done():
        conn = task.result()
        conn.pool.release(conn)
    else:
        waiter.set_result(task.result())


class Backends:
    """Every backend's pool, by name, and the pools of their read replicas."""

    def __init__(self, backends: dict[str, Backend], reuse: dict[str, BackendPool] | None = None):
        """Pools for `backends`; a pool in `reuse` whose backend settings are unchanged is kept
        (a config reload keeps its open connections)."""
        reuse = reuse or {}
        self.pools = {}
        self.replicas: dict[str, list[BackendPool]] = {}
        self._turns: dict[str, itertools.cycle[BackendPool]] = {}
        for name, b in backends.items():
            kept = reuse.get(name)
            self.pools[name] = kept if kept is not None and kept.backend == b else BackendPool(b)
            if b.replicas:
                pools = [
                    BackendPool(
                        replace(
                            b,
                            name=f"{name}@replica{i}",
                            host=r.host,
                            port=r.port,
                            user=r.user,
                            password=r.password,
                            replicas=(),
                        )
                    )
                    for i, r in enumerate(b.replicas)
                ]
                self.replicas[name] = pools
                # Weighted round robin: each replica appears `weight` times per turn.
                self._turns[name] = itertools.cycle(
                    [
                        pool
                        for pool, r in zip(pools, b.replicas, strict=True)
                        for _ in range(r.weight)
                    ]
                )
        self.has_replicas = bool(self.replicas)

    def read_pool(self, name: str) -> BackendPool | None:
        """The next healthy replica of backend `name` (round robin by weight), or None."""
        pools = self.replicas.get(name)
        if not pools:
            return None
        turns = self._turns[name]
        now = time.monotonic()
        for _ in range(sum(r.weight for r in self.pools[name].backend.replicas)):
            pool = next(turns)
            if pool.down_until <= now:
                return pool
        return None

    def __getitem__(self, name: str) -> BackendPool:
        return self.pools[name]

    async def server_version(self) -> str:
        """The real version of the first reachable backend, for the handshake."""
        for pool in self.pools.values():
            try:
                conn = await pool.acquire()
            except ProxyError:
                continue
            pool.release(conn)
            return conn.server_version
        # As MariaDB sends it: without "5.5.5-", clients read 10.11 as a MySQL version and pick
        # MySQL 8's collations (mysql-connector: utf8mb4_0900_ai_ci, unknown to MariaDB).
        return "5.5.5-10.11.0-MariaDB"

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        for pools in self.replicas.values():
            for pool in pools:
                await pool.close()


def _system_variables(state: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """A session state without its user variables (`@x`)."""
    return tuple(item for item in state if not item[0].startswith("@"))
