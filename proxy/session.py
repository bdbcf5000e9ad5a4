"""One client connection after authentication: its state and the commands it sends.

A session never shares backend state with another: pooled connections carry the exact list of
SETs (`state`) of the session using them, and are reset before serving a session with another
list; inside a transaction the session keeps its own pinned connection per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import re
import struct
from collections.abc import Awaitable, Coroutine, Sequence
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any

from proxy import packets as p
from proxy.admin import admin_show, explain_shards, xa_transactions
from proxy.auth import authenticate, parse_change_user
from proxy.backend import (
    BackendConnection,
    BackendError,
    OkResult,
    assignment_sql,
    fence,
    mark_unfinished,
    returned,
    send_kills,
)
from proxy.channel import ClientChannel, ClientClosed, ProtocolViolation
from proxy.deadlock import DeadlockFound
from proxy.diagnostics import Condition, Diagnostics, clears, fetch_all, fetch_conditions
from proxy.executor import (
    Outcome,
    ResultReader,
    Sender,
    concat_reads,
    relay_single,
    run_writes,
    send_ok,
    send_query,
    time_limit,
    with_time_limit,
)
from proxy.merge_exec import merge_reads
from proxy.metadata import (
    Column,
    Result,
    client_host,
    fetch,
    field_list,
    run_metadata,
    send_result,
)
from proxy.prepared import (
    ClientStatement,
    StatementNotFound,
    binary_row,
    describe,
    make_sender,
    parse_execute,
    prepare_ok,
    unmark,
)
from proxy.variables import read_back
from proxy.xa import XaError, XaStartFailed, xid_sql
from router import session_values
from router.analyze import INFORMATION_SCHEMA
from router.errors import (
    BackendUnavailable,
    ColumnListNeeded,
    DbAccessDenied,
    NoDatabaseSelected,
    NoShardForValue,
    NotSupported,
    ParseError,
    ProxyError,
    SpecificAccessDenied,
    UnknownDatabase,
)
from router.normalize import normalize
from router.plan import (
    ADMIN_PLANS,
    METADATA_PLANS,
    AdminShow,
    AdminWhat,
    Concat,
    DiagnosticsPlan,
    ExplainShards,
    KillPlan,
    Plan,
    Project,
    QueryPlan,
    ReloadConfig,
    Route,
    SetPlan,
    SetVar,
    ShowPlan,
    ShowWhat,
    TransactionPlan,
    TxnAction,
    Unit,
    UsePlan,
)
from router.planner import split_statements
from router.quoting import ansi_sql_mode, backtick_names
from router.statements import user_variable

if TYPE_CHECKING:
    from proxy.server import Runtime, Server

log = logging.getLogger("shardproxy.session")

# `@name :=` outside quotes is rare enough that a regex over the statement is a fine detector.
# Reads that must see the primary: locking reads, and the hint that forces it.
_PRIMARY_ONLY = ("FOR UPDATE", "LOCK IN SHARE MODE", "FOR SHARE", "SHARDPROXY:PRIMARY")
# SET values that are not expressions to plan: SET NAMES x COLLATE y, SET SESSION TRANSACTION.
_NOT_EXPRESSIONS = frozenset({"names", "character set", "session transaction"})
# SET last_insert_id / identity set LAST_INSERT_ID() itself.
_LAST_INSERT_ID_VARIABLES = frozenset({"last_insert_id", "identity"})
_RETURNING = re.compile(r"\bRETURNING\b", re.I)
_SETS_INSERT_ID = re.compile(r"\bLAST_INSERT_ID\s*\(", re.I)
_ASSIGNS = re.compile(
    r"""@([A-Za-z0-9_$.]+|`(?:[^`]|``)+`|'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")\s*:="""
)
# ER_QUERY_INTERRUPTED: what a statement stopped by KILL QUERY answers.
_INTERRUPTED = 1317
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TRUE = {"1", "on", "true"}
_FALSE = {"0", "off", "false"}
# An expression of these types is refused by SET autocommit (1232): DECIMAL, FLOAT, DOUBLE.
_NOT_INTEGERS = {0x00, 0xF6, 0x04, 0x05}
_INTEGERS = {0x01, 0x02, 0x03, 0x08, 0x09}
# The pool's own connection character set; SET NAMES of it changes nothing.
_POOL_CHARSET = "utf8mb4"
ER_LOCK_DEADLOCK = 1213
# MariaDB's default max_prepared_stmt_count, here per session: a client that never closes its
# statements gets MariaDB's error, not a proxy growing without bound.
MAX_PREPARED_STATEMENTS = 16382


class Session:
    def __init__(
        self,
        server: Server,
        channel: ClientChannel,
        connection_id: int,
        user: str,
        capabilities: int,
        database: str | None,
    ):
        self.server = server
        self.channel = channel
        self.connection_id = connection_id
        self.user = user
        self.capabilities = capabilities
        self.database = database
        self.autocommit = True
        self.in_txn = False
        self.txn_conns: dict[str, BackendConnection] = {}
        # Backends the open transaction wrote to; the others' branches only read.
        self.txn_written: set[str] = set()
        self.gtrid: str | None = None
        # Set when the proxy rolled the open transaction back (a backend was lost): until the
        # client ends it, statements fail and COMMIT reports the rollback instead of succeeding.
        self.txn_aborted: str | None = None
        self.next_transaction: str | None = None  # SET TRANSACTION for the next one only
        # LAST_INSERT_ID(): the first key the last INSERT generated (the proxy's or a backend's).
        self.last_insert_id = 0
        self.row_count = -1  # ROW_COUNT() of the last statement
        self.found_rows = 0  # FOUND_ROWS(): rows of the last result set (or its CALC total)
        self.diagnostics = Diagnostics()  # SHOW WARNINGS, @@warning_count (proxy.diagnostics)
        self.max_execution_time = 0  # MySQL's, in ms, for SELECTs (MariaDB lacks the variable)
        self.state: tuple[tuple[str, str], ...] = ()
        self.multi_statements = bool(capabilities & p.CLIENT_MULTI_STATEMENTS)
        self.statements: dict[int, ClientStatement] = {}
        self.busy = False  # running a command (graceful shutdown waits for it)
        self.statement = ""  # the client's text of the statement running (hints live there)
        self.active: list[BackendConnection] = []  # pooled connections of the running command
        # When the running statement holding transaction branches started (0: none), and
        # whether the deadlock detector chose it as a victim (proxy.deadlock).
        self.running_since = 0.0
        self.deadlock_victim = False
        self.killed = False  # by its own KILL: it ends after answering
        self._statement_ids = itertools.count(1)
        self.nonce = b""  # the greeting's, which COM_CHANGE_USER's credentials answer too
        # The state the login gave (its character set): what COM_RESET_CONNECTION goes back to.
        self.login_state: tuple[tuple[str, str], ...] = ()

    def new_ids(self, count: int) -> list[int]:
        """Generated keys for the router (router.route.InsertRoute)."""
        return self.server.keygen.next_ids(count)

    @property
    def runtime(self) -> Runtime:
        return self.server.runtime

    def status(self, more: bool = False) -> int:
        flags = p.SERVER_STATUS_AUTOCOMMIT if self.autocommit else 0
        if self.in_txn:
            flags |= p.SERVER_STATUS_IN_TRANS
        if more:
            flags |= p.SERVER_MORE_RESULTS_EXISTS
        return flags

    async def run(self) -> None:
        """Serve commands until the client quits or goes away."""
        try:
            while True:
                packet = await self.channel.read_command()
                if not packet:
                    raise ProtocolViolation("empty command packet")
                if packet[0] == p.COM_QUIT:
                    return
                self.busy = True
                try:
                    await self.dispatch(packet[0], packet[1:])
                except BaseException as exc:
                    # Killed, shut down or the client gone mid-statement: connections with
                    # half-read replies are closed, so the rollback below never talks over them.
                    mark_unfinished([*self.active, *self.txn_conns.values()], exc)
                    raise
                finally:
                    self.busy = False
                    self.active.clear()
                await self.channel.drain()
                if self.killed or (self.server.draining and not self.in_txn):
                    return
        except (ClientClosed, ConnectionError):
            return
        except ProtocolViolation as exc:
            log.info("connection %d: protocol violation: %s", self.connection_id, exc)
            self.channel.send_error(1156, "08S01", f"Got packets out of order: {exc}")
        finally:
            await self.end_transaction(commit=False)

    async def dispatch(self, command: int, body: bytes) -> None:
        try:
            if command == p.COM_QUERY:
                await self.handle_query(body)
            elif command == p.COM_PING:
                self.channel.send(p.ok_packet(status=self.status()))
            elif command == p.COM_INIT_DB:
                self.use(body.decode("utf-8", "surrogateescape"))
                self.channel.send(p.ok_packet(status=self.status()))
            elif command == p.COM_SET_OPTION:
                self.multi_statements = body[:2] == b"\x00\x00"
                self.channel.send(p.eof_packet(self.status()))
            elif command == p.COM_RESET_CONNECTION:
                await self.reset()
                self.channel.send(p.ok_packet(status=self.status()))
            elif command == p.COM_CHANGE_USER:
                await self.change_user(body)
            elif command == p.COM_STMT_PREPARE:
                await self.stmt_prepare(body)
            elif command == p.COM_STMT_EXECUTE:
                await self.stmt_execute(body)
            elif command == p.COM_STMT_SEND_LONG_DATA:
                self.stmt_long_data(body)
            elif command == p.COM_STMT_CLOSE:
                if len(body) >= 4:
                    self.statements.pop(struct.unpack_from("<I", body)[0], None)
            elif command == p.COM_STMT_RESET:
                stmt = self.statements.get(struct.unpack_from("<I", body)[0]) if body else None
                if stmt is None:
                    raise StatementNotFound("Unknown prepared statement handler given to RESET")
                stmt.long_data.clear()
                self.channel.send(p.ok_packet(status=self.status()))
            elif command == p.COM_STMT_FETCH:
                # Executions never open a cursor (no SERVER_STATUS_CURSOR_EXISTS): rows come
                # with the execution, and a fetch finds no cursor, as in MariaDB.
                stmt_id = struct.unpack_from("<I", body)[0] if len(body) >= 4 else 0
                if stmt_id not in self.statements:
                    raise StatementNotFound(
                        f"Unknown prepared statement handler ({stmt_id}) given to mysqld_stmt_fetch"
                    )
                raise ProxyError(f"The statement ({stmt_id}) has no open cursor", 1421, "HY000")
            elif command == p.COM_FIELD_LIST:
                await field_list(self, body)
            elif command == p.COM_PROCESS_KILL and len(body) >= 4:
                # mysql_kill(): the same as KILL CONNECTION id
                await self.kill(KillPlan(struct.unpack_from("<I", body)[0], query_only=False))
                self.channel.send(p.ok_packet(status=self.status()))
            elif command == p.COM_STATISTICS:
                self.channel.send(b"Uptime: 1  Threads: 1  Questions: 0")
            else:
                raise ProxyError(f"Command {command:#04x} is not supported", 1047, "08S01")
        except ProxyError as exc:
            message = exc.message
            if isinstance(exc, BackendError):
                message = self.runtime.names.message(message)  # never a physical name
            if "/*?" in message:  # quoting a prepared statement: its `?`, not the router's marks
                message = unmark(message)[0]
            self.diagnostics.error(exc.code, message)
            self.channel.send_error(exc.code, exc.sqlstate, message)

    async def reset(self) -> None:
        """The session as a new connection has it (COM_RESET_CONNECTION): transaction rolled
        back, variables and prepared statements gone; the user, the database and the login's
        character set stay, as in MariaDB."""
        await self.end_transaction(commit=False)
        self.state = self.login_state
        self.autocommit = True
        self.next_transaction = None
        self.max_execution_time = 0
        self.last_insert_id = 0
        self.row_count = -1
        self.found_rows = 0
        self.diagnostics.clear()
        self.statements.clear()

    async def change_user(self, body: bytes) -> None:
        """COM_CHANGE_USER: the session is reset, then the client logs in again (answering the
        greeting's nonce). As in MariaDB, a refused login leaves the reset session as it was
        (same user, same database) and the connection open."""
        login = parse_change_user(body, self.capabilities)
        await self.reset()
        user = await authenticate(self.channel, self.runtime.config, login, self.nonce)
        self.user = user.name
        self.database = login.database
        if login.charset is not None:
            self.login_state = login.state()
        self.state = self.login_state
        self.channel.send(p.ok_packet(status=self.status()))

    async def handle_query(self, body: bytes) -> None:
        sql = body.decode("utf-8", "surrogateescape")
        if self.state and '"' in sql and self._ansi_quotes():
            sql = backtick_names(sql)
        statements = split_statements(sql) if self.multi_statements and ";" in sql else [sql]
        if not statements:
            raise ProxyError("Query was empty", 1065, "42000")
        last = len(statements) - 1
        for i, statement in enumerate(statements):
            # An error ends a multi-statement batch, as in MySQL.
            await self.run_statement(statement, more=i < last)

    def _ansi_quotes(self) -> bool:
        """Whether this session's sql_mode makes "x" a name (see router.quoting)."""
        return any(name == "sql_mode" and ansi_sql_mode(value) for name, value in self.state)

    async def run_statement(self, sql: str, more: bool = False) -> None:
        self.statement = sql
        started = perf_counter()
        plan: Plan | None = None
        try:
            try:
                plan = self.runtime.router.plan(sql, self.database, new_ids=self.new_ids)
            except ColumnListNeeded as need:  # INSERT t VALUES ... (mysqldump's form)
                with_columns = await self.runtime.catalog.with_column_list(need)
                plan = self.runtime.router.plan(with_columns, self.database, new_ids=self.new_ids)
            await self.run_plan(plan, more)
        finally:
            self.server.metrics.statement(self, sql, plan, perf_counter() - started)

    async def run_plan(
        self, plan: Plan, more: bool, send: Sender = send_query, binary: bool = False
    ) -> None:
        if isinstance(plan, QueryPlan):
            await self.run_query(plan, more, send)
        elif isinstance(plan, UsePlan):
            self.use(plan.database)
            self.row_count = 0
            self.channel.send(p.ok_packet(status=self.status(more)))
        elif isinstance(plan, SetPlan):
            await self.apply_set(plan.assignments)
            self.row_count = 0
            self.channel.send(p.ok_packet(status=self.status(more)))
        elif isinstance(plan, TransactionPlan):
            await self.transaction(plan)
            self.row_count = 0
            self.channel.send(p.ok_packet(status=self.status(more)))
        elif isinstance(plan, ShowPlan):
            self.row_count = -1
            self.show(plan, more, binary)
        elif isinstance(plan, ADMIN_PLANS):
            await self.admin(plan, more, binary)
        elif isinstance(plan, METADATA_PLANS):
            await run_metadata(self, plan, more, binary)
        elif isinstance(plan, KillPlan):
            await self.kill(plan)
            self.channel.send(p.ok_packet(status=self.status(more)))
        elif isinstance(plan, DiagnosticsPlan):
            self.show_diagnostics(plan, more, binary)
        else:
            raise NotSupported(type(plan).__name__)

    async def admin(
        self, plan: AdminShow | ExplainShards | ReloadConfig, more: bool, binary: bool
    ) -> None:
        if not self.runtime.config.users[self.user].admin:
            raise SpecificAccessDenied("SHARDPROXY ADMIN")
        if isinstance(plan, ReloadConfig):
            await self.server.reload_everywhere()
            self.channel.send(p.ok_packet(status=self.status(more)))
            return
        if isinstance(plan, ExplainShards):
            columns, rows = explain_shards(plan)
        elif plan.what is AdminWhat.TRANSACTIONS:
            columns, rows = await xa_transactions(self.server)
        else:
            columns, rows = await admin_show(plan, self.server)
        self.send_rows(columns, rows, more, binary)

    async def kill(self, plan: KillPlan) -> None:
        """KILL [QUERY] n with the proxy's connection ids: users may kill their own sessions,
        admins any, on whichever worker process the session is (proxy/workers.py)."""
        if plan.connection_id == self.connection_id:
            # As in MariaDB: KILL QUERY interrupts the KILL itself; KILL answers 1927, then
            # the session ends (its transaction rolled back, see run).
            if plan.query_only:
                raise ProxyError("Query execution was interrupted", _INTERRUPTED, "70100")
            self.killed = True
            raise ProxyError("Connection was killed", 1927, "70100")
        admin = self.runtime.config.users[self.user].admin
        cluster = self.server.cluster
        if cluster is not None and not cluster.is_local(plan.connection_id):
            await cluster.kill(plan.connection_id, plan.query_only, self.user, admin)
        else:
            await self.server.kill(plan.connection_id, plan.query_only, self.user, admin)

    def stop_running_statement(self) -> Coroutine[Any, Any, None]:
        """The KILL QUERYs that stop this session's statement on each backend running it (on
        the proxy's control connections: the data pools may be busy, with this very
        statement). Only connections the session still holds are targeted, and they are
        fenced at once (proxy.backend.fence), so the kills may be sent after the session has
        ended: a connection it gives back meanwhile is closed, never pooled."""
        held = [c for c in [*self.active, *self.txn_conns.values()] if c.owner is self]
        control = self.server.deadlock.control_query

        async def kill(conn: BackendConnection) -> bool:
            answer = await control(conn.pool.backend, f"KILL QUERY {conn.thread_id}")
            return answer is not None

        return send_kills(fence(held if self.busy else []), kill)

    # --- prepared statements ----------------------------------------------------------------

    async def stmt_prepare(self, body: bytes) -> None:
        """COM_STMT_PREPARE: metadata from preparing the physical SQL of one data node."""
        if len(self.statements) >= MAX_PREPARED_STATEMENTS:
            raise ProxyError(
                "Can't create more than max_prepared_stmt_count statements "
                f"(current value: {MAX_PREPARED_STATEMENTS})",
                1461,
                "42000",
            )
        sql = body.decode("utf-8", "surrogateescape")
        if self.state and '"' in sql and self._ansi_quotes():
            sql = backtick_names(sql)
        normalized = normalize(sql)
        num_params = normalized.literals.count(None)
        params_defs: list[bytes] = []
        column_defs: list[bytes] = []
        try:
            plan = self.runtime.router.plan(
                sql, self.database, [None] * num_params, keep_markers=True,
                new_ids=self.new_ids, normalized=normalized,
            )  # fmt: skip
        except (NoShardForValue, NotSupported):
            plan = None  # decided by the values at execution
        if isinstance(plan, QueryPlan) and plan.units and not plan.implicit_commit:
            if session_values.PREFIX in plan.units[0].sql:  # typed as at execution
                plan = self._with_session_values(plan)
            unit = plan.units[0]
            conn, pooled = await self.connection(unit.backend)
            try:
                count, params_defs, column_defs = await describe(conn, unmark(unit.sql)[0])
            except BaseException as exc:
                mark_unfinished((conn,), exc)
                raise
            finally:
                if pooled:
                    conn.pool.release(conn, not conn.broken)
            if count != num_params:
                params_defs = []
            if len(plan.units) > 1 and isinstance(plan.merge, Project):
                # The merge drops the hidden columns (sort keys, WEIGHT_STRING()) before the
                # client sees a row: C clients bind exactly the columns announced here.
                column_defs = column_defs[: len(column_defs) - plan.merge.hidden]
        stmt_id = next(self._statement_ids)
        self.statements[stmt_id] = ClientStatement(stmt_id, sql, num_params, normalized=normalized)
        if num_params and not params_defs:
            params_defs = [p.column_definition("?")] * num_params
        channel = self.channel
        channel.send(prepare_ok(stmt_id, len(column_defs), num_params))
        names = self.runtime.names
        for defs in (params_defs, column_defs):
            if defs:
                for payload in defs:
                    channel.send(names.column_definition(payload))
                channel.send(p.eof_packet(self.status()))

    async def stmt_execute(self, body: bytes) -> None:
        stmt, params = parse_execute(body, self.statements)
        stmt.long_data.clear()
        self.statement = stmt.sql
        started = perf_counter()
        plan: Plan | None = None
        try:
            values = [param.value for param in params]
            router = self.runtime.router
            sql = stmt.sql
            normalized = stmt.normalized
            try:
                plan = router.plan(
                    sql, self.database, values, keep_markers=True, new_ids=self.new_ids,
                    normalized=normalized,
                )  # fmt: skip
            except ColumnListNeeded as need:  # INSERT t VALUES (?, ...): as in run_statement
                sql = await self.runtime.catalog.with_column_list(need)
                normalized = None
                plan = router.plan(
                    sql, self.database, values, keep_markers=True, new_ids=self.new_ids
                )
            if (
                isinstance(plan, QueryPlan)
                and (not plan.is_write or _returning(plan))
                and not plan.implicit_commit
            ):  # a result set: binary rows, so a backend prepared statement runs it
                await self.run_query(plan, False, make_sender(params, stmt.physical))
                return
            # Answered with OK packets (or the proxy's own rows): run as text with the values.
            plan = router.plan(
                sql, self.database, values, new_ids=self.new_ids, normalized=normalized
            )
            await self.run_plan(plan, False, binary=True)
        finally:
            self.server.metrics.statement(self, stmt.sql, plan, perf_counter() - started)

    def stmt_long_data(self, body: bytes) -> None:
        """COM_STMT_SEND_LONG_DATA: no reply, whatever happens."""
        if len(body) < 6:
            return
        stmt_id, param = struct.unpack_from("<IH", body)
        stmt = self.statements.get(stmt_id)
        if stmt is not None and param < stmt.num_params:
            stmt.long_data.setdefault(param, bytearray()).extend(body[6:])

    # --- databases and SHOW ---------------------------------------------------------------

    def allowed_databases(self) -> list[str]:
        user = self.runtime.config.users[self.user]
        names = list(self.runtime.config.databases)
        return names if user.databases is None else [n for n in names if n in user.databases]

    def use(self, name: str) -> None:
        if name.lower() == INFORMATION_SCHEMA:  # every user may read it, as in MariaDB
            self.database = INFORMATION_SCHEMA
            return
        if name not in self.runtime.config.databases:
            raise UnknownDatabase(name)
        if name not in self.allowed_databases():
            raise DbAccessDenied(f"Access denied for user '{self.user}'@'%' to database '{name}'")
        self.database = name

    def show(self, plan: ShowPlan, more: bool, binary: bool = False) -> None:
        if plan.what is ShowWhat.DATABASES:
            names = [INFORMATION_SCHEMA, *self.allowed_databases()]
            header = "Database"
            rows: list[Sequence[object]] = [(n,) for n in _like(names, plan.like)]
            columns = [header + (f" ({plan.like})" if plan.like else "")]
        else:
            db_name = plan.database or self.database
            if db_name is None:
                raise NoDatabaseSelected()
            if db_name not in self.allowed_databases():
                raise UnknownDatabase(db_name)
            db = self.runtime.config.databases[db_name]
            names = sorted(_like(list(db.tables), plan.like))
            columns = [f"Tables_in_{db_name}" + (f" ({plan.like})" if plan.like else "")]
            if plan.full:
                columns.append("Table_type")
                rows = [(n, "BASE TABLE") for n in names]
            else:
                rows = [(n,) for n in names]
        self.send_rows(columns, rows, more, binary)

    def show_diagnostics(self, plan: DiagnosticsPlan, more: bool, binary: bool) -> None:
        """SHOW WARNINGS / SHOW ERRORS / SHOW COUNT(*) ... from the session's own record,
        with MariaDB's column types (Code and the counts are unsigned integers). SHOW COUNT(*)
        is a SELECT of the variable in MariaDB; SHOW WARNINGS leaves FOUND_ROWS() as it was."""
        diagnostics = self.diagnostics
        if plan.count:
            name = "error_count" if plan.errors else "warning_count"
            count = diagnostics.errors if plan.errors else diagnostics.count
            column = p.column_definition(
                f"@@session.{name}", p.TYPE_LONGLONG, 21, p.BINARY_COLLATION, flags=160
            )
            result = Result([Column.parse(column)], [[str(count).encode()]])
            send_result(self, result, more, binary)
            return
        found_rows = self.found_rows
        send_result(self, self._conditions(plan), more, binary)
        self.found_rows = found_rows

    def _conditions(self, plan: DiagnosticsPlan) -> Result:
        diagnostics = self.diagnostics
        shown = [c for c in diagnostics.conditions if not plan.errors or c.level == "Error"]
        if plan.limit is not None:
            shown = shown[plan.offset : plan.offset + plan.limit]
        columns = [
            p.column_definition("Level", p.TYPE_VAR_STRING, 28, flags=1, decimals=39),
            p.column_definition("Code", p.TYPE_LONG, 4, p.BINARY_COLLATION, flags=161),
            p.column_definition("Message", p.TYPE_VAR_STRING, 2048, flags=1, decimals=39),
        ]
        rows: list[list[bytes | None]] = [
            [c.level.encode(), str(c.code).encode(), c.message.encode("utf-8", "replace")]
            for c in shown
        ]
        return Result([Column.parse(c) for c in columns], rows)

    def send_rows(
        self, columns: list[str], rows: list[Sequence[object]], more: bool, binary: bool
    ) -> None:
        """A small result set the proxy built itself, as text or binary-protocol rows."""
        self.found_rows = len(rows)
        payloads = p.text_result_payloads(columns, rows, self.status(more))
        if binary:
            # The same result set with binary-protocol rows (COM_STMT_EXECUTE).
            head = len(columns) + 2
            payloads = payloads[:head] + [binary_row(row) for row in rows] + payloads[-1:]
        for payload in payloads:
            self.channel.send(payload)

    # --- SET ------------------------------------------------------------------------------

    async def apply_set(self, assignments: Sequence[SetVar]) -> None:
        """Record SETs as the literal values a backend computed, so replaying them on another
        connection gives exactly the same session (SET x = CONCAT(@@x, ...) included)."""
        state = dict(self.state)
        remote: list[SetVar] = []
        for a in assignments:
            if a.name == "autocommit":
                await self.set_autocommit(a.value_sql, state)
            elif a.name == "transaction":
                # SET TRANSACTION without SESSION: only the next transaction's branches get it.
                if self.in_txn:
                    raise ProxyError(
                        "Transaction characteristics can't be changed while a transaction is "
                        "in progress",
                        1568,
                        "25001",
                    )
                self.next_transaction = a.value_sql
            elif a.name == "max_execution_time":
                self.max_execution_time = _milliseconds(a.value_sql)
            elif a.name in ("names", "character set"):
                value = a.value_sql.strip()
                if value.strip("'\"`").lower() == _POOL_CHARSET:
                    state.pop(a.name, None)
                else:
                    state[a.name] = value
                remote.append(a)
            else:
                remote.append(a)
        if remote:
            await self._run_sets(remote, state)
        for name in _LAST_INSERT_ID_VARIABLES & state.keys():
            # The session's LAST_INSERT_ID() is the proxy's, not any connection's.
            self.last_insert_id = int(state.pop(name).strip("'"))
        self.state = tuple(state.items())
        await self._sync_branches()

    async def _consume_insert_id(self) -> None:
        """SET insert_id is for the next INSERT only (MariaDB resets it once used): replayed
        with the rest of the state on every later connection, it would give every later
        INSERT the same AUTO_INCREMENT value."""
        state = dict(self.state)
        del state["insert_id"]
        self.state = tuple(state.items())
        await self._sync_branches()

    async def _sync_branches(self) -> None:
        """Give the session's state to every connection its open transaction holds: a SET ran
        on one of them at most, and a reset would end their branches."""
        want = dict(self.state)
        for conn in self.txn_conns.values():
            if conn.state != self.state:
                sql = _restate_sql(dict(conn.state), want)
                if sql is not None:
                    await conn.execute(sql)
                conn.changed_state(self.state)

    async def _run_sets(self, assignments: list[SetVar], state: dict[str, str]) -> None:
        backend, assignments = self._routed_sets(assignments)
        readback: list[str] = []
        parts = []
        for a in assignments:
            if a.name == "session transaction":
                parts.append(None)
                readback += ["tx_isolation", "tx_read_only"]
            else:
                parts.append(assignment_sql(a.name, a.value_sql))
                if a.name not in ("names", "character set"):
                    readback.append(a.name)
                if _assigns(a.value_sql):  # SET @a = (@b := 5) assigns @b too
                    readback += _assigned(a.value_sql)
        readback = list(dict.fromkeys(readback))
        sets_id = any(_sets_insert_id(a.value_sql) for a in assignments)
        conn, pooled = await self.connection(backend)
        clean = False
        try:
            if sets_id:  # LAST_INSERT_ID(expr) in a value: it starts from the session's
                await self._give_insert_id(conn)
            plain = [s for s in parts if s is not None]
            if plain:
                await conn.execute("SET " + ", ".join(plain))
            if sets_id:
                await self._take_insert_id(conn)
            for a in assignments:
                if a.name == "session transaction":
                    await conn.execute(f"SET SESSION TRANSACTION {a.value_sql}")
            if readback:
                state.update(await read_back(conn, readback))
            if "NO_BACKSLASH_ESCAPES" in state.get("sql_mode", "").upper():
                # The proxy reads and writes string literals with backslash escapes: under
                # this mode a rendered parameter could end its string early.
                undo = _restate_sql(state, dict(self.state))
                if undo is not None:
                    await conn.execute(undo)
                conn.changed_state(self.state)
                clean = True
                raise NotSupported("sql_mode NO_BACKSLASH_ESCAPES")
            conn.changed_state(tuple(state.items()))
            clean = True
        finally:
            if pooled:
                conn.pool.release(conn, clean)

    def _routed_sets(self, assignments: list[SetVar]) -> tuple[str, list[SetVar]]:
        """The backend to run the SETs on, and their values as it must read them: a value
        calling a function (`LAST_INSERT_ID()`, a subquery) is planned as a SELECT, so its
        tables get their physical names and backend, and the session's LAST_INSERT_ID(),
        ROW_COUNT(), CONNECTION_ID() are the session's, not the pooled connection's."""
        backends = set()
        routed = []
        for a in assignments:
            if "(" in a.value_sql and a.name not in _NOT_EXPRESSIONS and self.database:
                found = self._routed_value(a.value_sql)
                if found is not None:
                    if found[0] is not None:
                        backends.add(found[0])
                    a = SetVar(a.name, found[1])
            routed.append(a)
        if len(backends) > 1:
            raise NotSupported("SET with values read from tables on different backends")
        return (backends.pop() if backends else self.default_backend()), routed

    def _routed_value(self, value_sql: str) -> tuple[str | None, str] | None:
        """(backend, value) of one SET value, planned as `SELECT (value) AS v` (backend None:
        it reads no table, any will do); None when the router can't read it as an expression
        (the value goes to the backend as written)."""
        try:
            plan = self.runtime.router.plan(
                f"SELECT ({value_sql}) AS v", self.database, new_ids=self.new_ids
            )
        except ParseError:
            return None
        if not isinstance(plan, QueryPlan) or len(plan.units) != 1:
            raise NotSupported("this SET value")
        if session_values.PREFIX in plan.units[0].sql:
            plan = self._with_session_values(plan)
        unit = plan.units[0]
        if not (unit.sql.startswith("SELECT (") and unit.sql.endswith(") AS v")):
            return None
        value = unit.sql[len("SELECT ") : -len(" AS v")]
        return (None if plan.tableless else unit.backend), value

    async def set_autocommit(self, value_sql: str, state: dict[str, str]) -> None:
        """autocommit is the proxy's (it decides when transactions start); the backend
        connections carry the same value so that @@autocommit reads back right."""
        value = await self._autocommit_value(value_sql.strip())
        if value:
            if self.in_txn and not self.autocommit:  # from 0 to 1 only: a commit, as in MySQL
                await self.end_transaction(commit=True)
            self.autocommit = True
            state.pop("autocommit", None)
        else:
            self.autocommit = False
            state["autocommit"] = "0"

    async def _autocommit_value(self, value_sql: str) -> bool:
        """The value SET autocommit = value_sql gives, as MariaDB reads it: ON / OFF / 1 / 0
        / TRUE / FALSE / DEFAULT, a quoted 'ON' or 'OFF', or an expression (@saved, 1 + 0)
        that the default backend evaluates."""
        lowered = value_sql.lower()
        if lowered in _TRUE or lowered == "default":
            return True
        if lowered in _FALSE:
            return False
        accepted = ("on", "off")  # from a string; from an integer, 1 and 0
        if value_sql[:1] in ("'", '"') and value_sql[-1:] == value_sql[:1]:
            text = value_sql[1:-1]
        elif _WORD.fullmatch(value_sql):  # a bare word is a name for a value, like ON
            text = value_sql
        else:
            # The transaction's own connection when there is one: another could wait forever.
            conn, pooled = await self.connection(self.default_backend())
            clean = False
            try:
                result = await fetch(conn, f"SELECT {value_sql}")
                clean = True
            finally:
                if pooled:
                    conn.pool.release(conn, clean)
            (text_bytes,) = result.rows[0]
            text = "NULL" if text_bytes is None else text_bytes.decode("utf-8", "replace")
            column_type = result.columns[0].type
            if column_type in _NOT_INTEGERS:
                raise ProxyError("Incorrect argument type to variable 'autocommit'", 1232, "42000")
            if column_type in _INTEGERS:
                accepted = ("1", "0")
        if text.lower() in accepted:
            return text.lower() in ("1", "on")
        raise ProxyError(
            f"Variable 'autocommit' can't be set to the value of '{text}'", 1231, "42000"
        )

    # --- transactions -----------------------------------------------------------------------

    async def transaction(self, plan: TransactionPlan) -> None:
        """BEGIN / START TRANSACTION [READ ONLY | READ WRITE], COMMIT / ROLLBACK [AND CHAIN].

        A transaction's own access mode, like SET TRANSACTION's, is set on each branch's
        connection before its XA START (see `connection`)."""
        characteristics = self.next_transaction
        if plan.action is TxnAction.BEGIN:
            await self.end_transaction(commit=True)
            if plan.access is not None:
                self.next_transaction = _with_access(self.next_transaction, plan.access)
            self.in_txn = True
            return
        await self.end_transaction(commit=plan.action is TxnAction.COMMIT)
        if plan.chain:
            self.next_transaction = characteristics
            self.in_txn = True

    async def end_transaction(self, commit: bool) -> None:
        """Commit (XA, one phase when one branch) or roll back, and release pinned connections."""
        conns = list(self.txn_conns.values())
        written = self.txn_written
        gtrid = self.gtrid
        aborted = self.txn_aborted
        may_carry = self.next_transaction is None
        if self.in_txn or conns:
            # SET TRANSACTION is for the next transaction: a BEGIN with none open starts it.
            self.next_transaction = None
        self.txn_written = set()
        self.txn_conns = {}
        self.gtrid = None
        self.txn_aborted = None
        self.in_txn = False
        if aborted is not None and commit:
            raise XaError(aborted)
        if not conns or gtrid is None:
            return
        # A KILL (or shutdown) cancels this task: the commit or rollback runs to its end all
        # the same, as MariaDB finishes a COMMIT it started, and the session ends after it.
        # Stopped midway, it would leave answers unread and branches attached.
        ending = asyncio.ensure_future(self._end_branches(commit, gtrid, conns, written, may_carry))
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            while not ending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([ending])
            if not ending.cancelled():
                ending.exception()  # the client is gone: nobody to tell
            raise

    async def _end_branches(
        self,
        commit: bool,
        gtrid: str,
        conns: list[BackendConnection],
        written: set[str],
        may_carry: bool,
    ) -> None:
        coordinator = self.runtime.coordinator
        with contextlib.ExitStack() as releases:
            for conn in conns:
                releases.enter_context(returned(conn))
            if commit:
                # Branches that only read have nothing to make durable: they end in one phase
                # (no PREPARE, no decision row, no log flush), and two-phase commit runs only
                # among the branches that wrote (one phase again when just one did).
                writers = [c for c in conns if c.backend in written]
                await _end_read_only(gtrid, [c for c in conns if c.backend not in written])
                if writers:
                    await coordinator.commit(gtrid, writers, may_carry)
            else:
                await coordinator.rollback(gtrid, conns)

    def default_backend(self) -> str:
        config = self.runtime.config
        db = config.databases.get(self.database or "") or next(iter(config.databases.values()))
        return db.default_backend

    async def connection(
        self, backend: str, read: bool = False, start: bool = True
    ) -> tuple[BackendConnection, bool]:
        """(connection, pooled): the pinned one inside a transaction, else one from the pool;
        with `read`, from a healthy replica when the backend has some.

        Every branch of a transaction is an XA branch of one global id, started lazily, so a
        transaction that reaches a second backend needs no conversion. Without `start` a new
        branch is not started: the caller sends XA START with its first statement."""
        if self.in_txn:
            conn = self.txn_conns.get(backend)
            if conn is None:
                coordinator = self.runtime.coordinator
                if self.gtrid is None:
                    self.gtrid = coordinator.xids.new()
                conn = await self.runtime.backends[backend].acquire(self.state)
                try:
                    if self.next_transaction is not None:
                        await conn.execute(f"SET TRANSACTION {self.next_transaction}")
                    if start:
                        await coordinator.start(conn, self.gtrid)
                except BaseException:
                    conn.pool.release(conn, False)
                    raise
                conn.owner = self
                self.txn_conns[backend] = conn
            return conn, False
        conn = None
        if read:
            replica = self.runtime.backends.read_pool(backend)
            if replica is not None:
                with contextlib.suppress(BackendUnavailable):  # down: the primary answers
                    conn = await replica.acquire(self.state)
        if conn is None:
            conn = await self.runtime.backends[backend].acquire(self.state)
        conn.owner = self
        self.active.append(conn)
        return conn, True

    # --- running plans ------------------------------------------------------------------------

    async def run_query(self, plan: QueryPlan, more: bool, send: Sender = send_query) -> None:
        if any(session_values.PREFIX in unit.sql for unit in plan.units):
            plan = self._with_session_values(plan)
        # ROW_COUNT() as MariaDB keeps it: -1 after a result set, 0 after DDL, else the
        # affected rows (set where the OK is sent).
        self.row_count = 0 if plan.implicit_commit else -1
        if len(plan.units) > 1 and _returning(plan):
            # Each unit's rows would have to be merged into one result: run_writes reads OKs.
            raise NotSupported("RETURNING in a write over several shards or copies")
        if self.txn_aborted is not None and not plan.implicit_commit:
            raise XaError(self.txn_aborted + "; end it with ROLLBACK")
        if plan.implicit_commit:
            await self.end_transaction(commit=True)
        elif not self.autocommit and not self.in_txn and not plan.tableless:
            self.in_txn = True
        elif self.next_transaction is not None and not self.in_txn and not plan.tableless:
            self._autocommit_transaction(plan)  # a read of no table starts no transaction
        limit = time_limit(self.statement, self.max_execution_time)
        if limit and not plan.is_write and not plan.implicit_commit:
            send = with_time_limit(send, limit)
        try:
            if self.in_txn:
                await self._watched(self._run_in_transaction(plan, more, send), in_txn=True)
            else:
                await self._run_autocommit(plan, more, send)
            if plan.is_write and self.state and any(n == "insert_id" for n, _ in self.state):
                await self._consume_insert_id()
        finally:
            if plan.implicit_commit:  # DDL: the metadata catalog follows before the client's OK
                await self.runtime.catalog.after_ddl(unit.sql for unit in plan.units)

    def _autocommit_transaction(self, plan: QueryPlan) -> None:
        """SET TRANSACTION is for the next transaction, and an autocommit statement is one:
        it takes the characteristics (a write in a READ ONLY one fails, and leaves them for
        the next statement, as in MariaDB). Only the access mode matters for one statement."""
        characteristics = self.next_transaction or ""
        if plan.is_write and "READ ONLY" in _modes(characteristics):
            raise ProxyError("Cannot execute statement in a READ ONLY transaction", 1792, "25006")
        self.next_transaction = None

    def _with_session_values(self, plan: QueryPlan) -> QueryPlan:
        """USER(), CURRENT_USER(), CONNECTION_ID() as this session's (router.session_values)."""
        host = client_host(self)
        units = tuple(
            Unit(
                u.backend,
                session_values.fill(
                    u.sql,
                    self.user,
                    host,
                    self.connection_id,
                    self.last_insert_id,
                    self.row_count,
                    self.found_rows,
                    self.diagnostics.count,
                    self.diagnostics.errors,
                ),
            )
            for u in plan.units
        )
        return dataclasses.replace(plan, units=units)

    async def _run_autocommit(self, plan: QueryPlan, more: bool, send: Sender) -> None:
        if plan.notes:  # DDL whose OK counts them too: no unit's answer is relayed as it is
            await self._run_ddl(plan, more)
            return
        units = plan.units
        names = self.runtime.names
        read = (
            self.runtime.backends.has_replicas
            and not plan.is_write
            and not plan.implicit_commit
            and replica_may_answer(self.statement)
        )
        if len(units) == 1:
            conn, _ = await self.connection(units[0].backend, read)
            try:
                await self._relay_one(conn, plan, self.status(more), send)
            except BaseException as exc:
                mark_unfinished((conn,), exc)
                raise
            finally:
                conn.pool.release(conn, not conn.broken)
            return
        if _assigns(units[0].sql):
            raise NotSupported("assigning user variables (:=) in a statement over several shards")
        if plan.implicit_commit:
            await self._run_ddl(plan, more)
            return
        if plan.is_write:
            await self._watched(self._autocommit_write(plan, more), in_txn=False)
            return
        per_backend = _group_by_backend(units)
        if any(len(g) > self.runtime.backends[b].backend.pool.max for b, g in per_backend.items()):
            # More units than the pool may open: one connection per backend, in turn.
            pinned = {}
            try:
                for backend in per_backend:
                    pinned[backend] = (await self.connection(backend))[0]
                if isinstance(plan.merge, Concat):
                    await self._sequential_reads(pinned, plan, self.status(more), send)
                else:  # units sharing a connection run in turn (proxy.merge_exec)
                    outcome = await merge_reads(
                        [pinned[u.backend] for u in units], plan, self.channel, names,
                        self.status(more), send, self.runtime.config.limits.max_merge_rows,
                    )  # fmt: skip
                    await self._noted(plan, outcome, list(pinned.values()))
            except BaseException as exc:
                mark_unfinished(pinned.values(), exc)
                raise
            finally:
                for conn in pinned.values():
                    conn.pool.release(conn, not conn.broken)
            return
        acquired: list[BackendConnection] = []
        try:
            for unit in units:
                conn, _ = await self.connection(unit.backend, read)
                acquired.append(conn)
            if isinstance(plan.merge, Concat):
                outcome = await concat_reads(
                    acquired, units, self.channel, names, self.status(more), send
                )
            else:
                limit = self.runtime.config.limits.max_merge_rows
                outcome = await merge_reads(
                    acquired, plan, self.channel, names, self.status(more), send, limit
                )
            await self._noted(plan, outcome, acquired)
        except BaseException as exc:
            mark_unfinished(acquired, exc)
            raise
        finally:
            for conn in acquired:
                conn.pool.release(conn, not conn.broken)

    async def _run_ddl(self, plan: QueryPlan, more: bool) -> None:
        """DDL on every data node; it commits by itself, so no transaction wraps it. The
        router's notes come after the backends' (e.g. on tables the config doesn't have)."""
        by_backend = _group_by_backend(plan.units)
        conns = []
        try:
            for backend in by_backend:
                conns.append((await self.connection(backend))[0])
            found: list[Condition] = []
            ok = await run_writes(conns, list(by_backend.values()), found)
            conditions = self._logical(found)
            if ok.warnings and len(conditions) == ok.warnings:
                # Every data node ran the same DDL: the note each one made is one note.
                conditions = list(dict.fromkeys(conditions))
                ok = dataclasses.replace(ok, warnings=len(conditions))
            if plan.notes:
                conditions += [Condition("Note", n.code, n.message) for n in plan.notes]
                ok = dataclasses.replace(ok, warnings=ok.warnings + len(plan.notes))
            self._keep(plan, ok.warnings, conditions, logical=True)
        except BaseException as exc:
            mark_unfinished(conns, exc)
            raise
        finally:
            for conn in conns:
                conn.pool.release(conn, not conn.broken)
        send_ok(self.channel, ok, self.status(more))

    async def _autocommit_write(self, plan: QueryPlan, more: bool) -> None:
        """A write over several units outside a transaction: atomic through the XA path."""
        by_backend = _group_by_backend(plan.units)
        self.in_txn = True
        try:
            conns = [(await self.connection(b))[0] for b in by_backend]
            self.txn_written.update(by_backend)
            conditions: list[Condition] = []
            ok = await run_writes(conns, list(by_backend.values()), conditions)
        except BaseException:
            await self.end_transaction(commit=False)
            raise
        await self.end_transaction(commit=True)
        ok = _one_copy(plan, ok)
        self._keep(plan, ok.warnings, conditions)
        send_ok(self.channel, self._insert_result(plan, ok), self.status(more))

    async def _watched(self, statement: Awaitable[None], in_txn: bool) -> None:
        """Run a statement holding transaction branches, watched by the deadlock detector.

        A victim's waiting statement was stopped (KILL QUERY): the whole transaction is rolled
        back and the client gets 1213, as for a deadlock InnoDB found. A victim whose statement
        ended otherwise (it had begun sending rows, or finished as it was picked) keeps its
        open transaction only as a rolled-back one that fails every statement until ROLLBACK,
        so nothing it did before can be committed by mistake; an autocommit write that
        finished has committed, and stands."""
        self.deadlock_victim = False
        self.running_since = monotonic()
        self.server.deadlock.watch()
        try:
            await statement
        except ProxyError as exc:
            self.running_since = 0.0
            # Only the stopped statement itself means "rolled back by the deadlock check": an
            # error of a commit (an unknown outcome above all) is reported as it is.
            if not self.deadlock_victim or exc.code not in (_INTERRUPTED, DeadlockFound.code):
                raise
            await self.end_transaction(commit=False)
            raise DeadlockFound() from None
        finally:
            self.running_since = 0.0
        if self.deadlock_victim and in_txn:
            await self.end_transaction(commit=False)
            self.in_txn = True
            self.txn_aborted = f"Transaction rolled back: {DeadlockFound().message}"

    async def _run_in_transaction(self, plan: QueryPlan, more: bool, send: Sender) -> None:
        units = plan.units
        backends = list(dict.fromkeys(u.backend for u in units))
        # A new branch whose first statement is one text query starts in the same packet.
        piggyback = (
            len(units) == 1
            and send is send_query
            and backends[0] not in self.txn_conns
            and not _sets_insert_id(units[0].sql)  # which sends a statement first
        )
        try:
            conns = {b: (await self.connection(b, start=not piggyback))[0] for b in backends}
            if piggyback:
                send = self._start_with
            if plan.is_write:
                self.txn_written.update(backends)
            status = self.status(more)
            if len(units) == 1:
                await self._relay_one(conns[units[0].backend], plan, status, send)
            elif _assigns(units[0].sql):
                raise NotSupported(
                    "assigning user variables (:=) in a statement over several shards"
                )
            elif plan.is_write:
                by_backend = _group_by_backend(units)
                conditions: list[Condition] = []
                ok = await run_writes(
                    [conns[b] for b in by_backend], list(by_backend.values()), conditions
                )
                ok = _one_copy(plan, ok)
                self._keep(plan, ok.warnings, conditions)
                send_ok(self.channel, self._insert_result(plan, ok), status)
            elif not isinstance(plan.merge, Concat):  # one pinned connection per backend
                outcome = await merge_reads(
                    [conns[u.backend] for u in units], plan, self.channel, self.runtime.names,
                    status, send, self.runtime.config.limits.max_merge_rows,
                )  # fmt: skip
                await self._noted(plan, outcome, list(conns.values()))
            else:
                await self._sequential_reads(conns, plan, status, send)
        except BackendUnavailable as exc:
            # Its branch there is gone: roll back everywhere now, so no other branch keeps
            # locks, and make the client's COMMIT fail rather than commit the rest.
            await self.end_transaction(commit=False)
            self.in_txn = True
            self.txn_aborted = f"Transaction rolled back: {exc.message}"
            raise BackendUnavailable(f"{exc.message}; the transaction was rolled back") from exc
        except BackendError as exc:
            if exc.code == ER_LOCK_DEADLOCK:
                # InnoDB rolled back this branch; MySQL ends the whole transaction, so do we.
                await self.end_transaction(commit=False)
            raise

    async def _relay_one(
        self, conn: BackendConnection, plan: QueryPlan, status: int, send: Sender
    ) -> None:
        """Run a one-unit plan on `conn` and keep what it changed of the session: its insert id
        (LAST_INSERT_ID(expr) too), row count, warnings, FOUND_ROWS(), user variables."""
        unit = plan.units[0]
        sets_id = _sets_insert_id(unit.sql)
        if sets_id:  # the session's value first: the statement may never evaluate `expr`
            await self._give_insert_id(conn)
        outcome = await relay_single(
            conn, unit, self.channel, self.runtime.names, status, send,
            _first(plan.generated_ids),
        )  # fmt: skip
        self._inserted(outcome.last_insert_id)
        self._counted(outcome)
        await self._noted(plan, outcome, [conn])
        if sets_id:
            await self._take_insert_id(conn)
        if _assigns(unit.sql):
            await self._capture_user_variables(conn, unit.sql)

    async def _give_insert_id(self, conn: BackendConnection) -> None:
        """Before a LAST_INSERT_ID(expr) runs on `conn`: it holds the session's value."""
        await conn.query(f"SELECT LAST_INSERT_ID({self.last_insert_id})")

    async def _take_insert_id(self, conn: BackendConnection) -> None:
        """After it: the session's LAST_INSERT_ID() is what `conn` now holds."""
        (row,) = await conn.query("SELECT LAST_INSERT_ID()")
        self.last_insert_id = int(row[0] or 0)

    async def _start_with(self, conn: BackendConnection, unit: Unit) -> None:
        """Sender for a new branch's first statement: XA START in the same packet. If XA START
        is refused the branch does not exist: its connection goes, as if never taken."""
        assert self.gtrid is not None
        try:
            await self.runtime.coordinator.start_with(conn, self.gtrid, unit.sql)
        except XaStartFailed:
            del self.txn_conns[conn.backend]
            conn.pool.release(conn, False)
            raise

    def _inserted(self, insert_id: int) -> None:
        if insert_id:
            self.last_insert_id = insert_id

    def _counted(self, outcome: Outcome) -> None:
        if not outcome.is_result_set:
            self.row_count = outcome.affected_rows

    async def _noted(
        self, plan: QueryPlan, outcome: Outcome, conns: Sequence[BackendConnection]
    ) -> None:
        """Keep the statement's warnings and FOUND_ROWS() while its connections are still
        this session's (they hold the backend's answers); no round trip when it had none."""
        if outcome.warnings:
            self._keep(plan, outcome.warnings, await fetch_all(conns))
        elif self.diagnostics.count and clears(plan):
            self.diagnostics.clear()
        if outcome.is_result_set:
            self.found_rows = outcome.rows
            # One unit only: the router refuses SQL_CALC_FOUND_ROWS over several shards.
            # (`in` on the lowered text: 0.3 µs a SELECT, an IGNORECASE regex search 1.4 µs)
            if len(plan.units) == 1 and "sql_calc_found_rows" in plan.units[0].sql.lower():
                (row,) = await conns[0].query("SELECT FOUND_ROWS()")
                self.found_rows = int(row[0] or 0)

    def _keep(
        self, plan: QueryPlan, warnings: int, conditions: list[Condition], logical: bool = False
    ) -> None:
        """Record a statement's warnings (physical names made logical, unless `logical` says
        they are already) for SHOW WARNINGS."""
        if warnings:
            self.diagnostics.replace(conditions if logical else self._logical(conditions), warnings)
        elif self.diagnostics.count and clears(plan):
            self.diagnostics.clear()

    def _insert_result(self, plan: QueryPlan, ok: OkResult) -> OkResult:
        """The OK of a write over several units: the first generated key is its insert id."""
        if plan.generated_ids:
            ok = dataclasses.replace(ok, last_insert_id=plan.generated_ids[0])
        self._inserted(ok.last_insert_id)
        self.row_count = ok.affected_rows
        return ok

    def _logical(self, conditions: list[Condition]) -> list[Condition]:
        names = self.runtime.names
        return [dataclasses.replace(c, message=names.message(c.message)) for c in conditions]

    async def _capture_user_variables(self, conn: BackendConnection, sql: str) -> None:
        """A statement assigned user variables (`SELECT @x := ...`): keep their new values in
        the session, so they follow it to other connections and never stay behind on this one."""
        names = list(dict.fromkeys(_assigned(sql)))
        state = dict(self.state)
        state.update(await read_back(conn, names))
        self.state = tuple(state.items())
        conn.changed_state(self.state)
        await self._sync_branches()

    async def _sequential_reads(
        self, conns: dict[str, BackendConnection], plan: QueryPlan, status: int, send: Sender
    ) -> None:
        """Scatter reads on pinned connections: one unit at a time, since units share them."""
        sent_header = False
        warnings = rows = 0
        conditions: list[Condition] = []
        for unit in plan.units:
            conn = conns[unit.backend]
            await send(conn, unit)
            reader = ResultReader(conn, self.runtime.names)
            await reader.read_head()
            if reader.error is not None:
                if not sent_header:
                    raise reader.error
                self.channel.send_error(
                    reader.error.code, reader.error.sqlstate, reader.error.message
                )
                return
            if reader.ok is not None:
                continue
            if not sent_header:
                self.channel.send(reader.head[4:])
                for column in reader.columns:
                    self.channel.send(column)
                self.channel.send(p.with_eof_status(reader.column_eof, status))
                sent_header = True
            await reader.relay_rows(self.channel)
            if reader.error is not None:
                self.channel.send_error(
                    reader.error.code, reader.error.sqlstate, reader.error.message
                )
                return
            warnings += reader.final_warnings
            rows += reader.rows
            if reader.final_warnings:  # before the connection runs its next unit
                conditions += await fetch_conditions(conn)
        self._keep(plan, warnings, conditions)
        if sent_header:
            self.found_rows = rows
            self.channel.send(p.eof_packet(status, warnings))
        else:
            self.channel.send(p.ok_packet(status=status))


def _restate_sql(have: dict[str, str], want: dict[str, str]) -> str | None:
    """The SET that takes a connection from session state `have` to `want` without a reset
    (which would end its transaction); None when they are the same."""
    parts = [assignment_sql(name, value) for name, value in want.items() if have.get(name) != value]
    for name in have.keys() - want.keys():
        if name in ("names", "character set"):
            parts.append(assignment_sql(name, _POOL_CHARSET))
        elif name.startswith("@"):
            parts.append(f"{name} = NULL")
        else:
            parts.append(f"@@session.{name} = DEFAULT")
    return "SET " + ", ".join(parts) if parts else None


def _modes(characteristics: str) -> list[str]:
    """SET TRANSACTION's characteristics, each as `ISOLATION LEVEL READ COMMITTED`, `READ ONLY`."""
    return [" ".join(part.upper().split()) for part in characteristics.split(",") if part.strip()]


def _with_access(characteristics: str | None, access: str) -> str:
    """SET TRANSACTION's characteristics for the next transaction, with `access` (READ ONLY or
    READ WRITE) in place of any access mode they had: START TRANSACTION's overrides it."""
    kept = [m for m in _modes(characteristics or "") if m not in ("READ ONLY", "READ WRITE")]
    return ", ".join([*kept, access])


def _returning(plan: QueryPlan) -> bool:
    """Whether a write returns rows (INSERT / REPLACE / DELETE ... RETURNING), which its units
    all do alike; a RETURNING in a string only costs a refusal or a binary execution."""
    sql = plan.units[0].sql if plan.is_write and plan.units else ""
    return "returning" in sql.lower() and _RETURNING.search(sql) is not None


def _sets_insert_id(sql: str) -> bool:
    """Whether a statement may set LAST_INSERT_ID(expr): the router made every plain
    LAST_INSERT_ID() a marker, so any call left in it has an argument."""
    return "_insert_id" in sql.lower() and _SETS_INSERT_ID.search(sql) is not None


def _assigned(sql: str) -> list[str]:
    """The user variables a statement assigns with `:=`, in order (repeats kept)."""
    return [user_variable(m.group(1)) for m in _ASSIGNS.finditer(sql)]


def _assigns(sql: str) -> bool:
    """Whether a statement assigns user variables (`@x := ...`); most have no `:=` at all."""
    return ":=" in sql and _ASSIGNS.search(sql) is not None


def _first(ids: tuple[int, ...]) -> int:
    return ids[0] if ids else 0


def _group_by_backend(units: Sequence) -> dict[str, list]:
    groups: dict[str, list] = {}
    for unit in units:
        groups.setdefault(unit.backend, []).append(unit)
    return groups


async def _end_read_only(gtrid: str, conns: Sequence[BackendConnection]) -> None:
    """End branches that changed nothing with a one-phase commit (releasing their locks).

    A failure changes no data: the connection is closed, and the server drops the branch."""

    sent = []
    for conn in conns:  # all sent, then each answer read: the servers work in parallel
        xid = xid_sql(gtrid, conn.backend)
        try:
            conn.send_command(p.COM_QUERY, f"XA END {xid}; XA COMMIT {xid} ONE PHASE".encode())
            sent.append(conn)
        except ProxyError:
            conn.broken = True
    for conn in sent:
        try:
            await conn.result()
        except ProxyError:
            conn.broken = True


def replica_may_answer(sql: str) -> bool:
    """Whether a read may go to a replica: not a locking read, not forced to the primary."""
    upper = sql.upper()
    return not any(word in upper for word in _PRIMARY_ONLY)


def _one_copy(plan: QueryPlan, ok: OkResult) -> OkResult:
    """A broadcast write changed each copy alike; the client sees one table's count."""
    if plan.route is not Route.BROADCAST or not plan.units:
        return ok
    copies = len(plan.units)
    return OkResult(ok.affected_rows // copies, ok.last_insert_id, ok.status, ok.warnings // copies)


def _milliseconds(value_sql: str) -> int:
    """The value of SET max_execution_time (DEFAULT: 0, no limit)."""
    value = value_sql.strip()
    if value.upper() == "DEFAULT":
        return 0
    if not value.isdigit():
        raise ProxyError("Incorrect argument type to variable 'max_execution_time'", 1232, "42000")
    return int(value)


def _like(names: list[str], pattern: str | None) -> list[str]:
    if pattern is None:
        return names
    regex = re.compile(
        "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern),
        re.IGNORECASE | re.DOTALL,
    )
    return [n for n in names if regex.fullmatch(n)]
