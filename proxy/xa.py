"""XA two-phase commit across backends: the coordinator, the decision log, and recovery.

The proxy keeps no local state: the COMMIT/ABORT decision of every distributed transaction is a
row in a table on one backend, keyed by the transaction's global id. Both a coordinator's COMMIT
and a recovering instance's ABORT are plain INSERTs on that key, so whoever inserts first decides
and nobody can decide differently afterwards.

Global ids are `sp-<log>-<instance>-<ms>-<seq>`: <log> names the decision log (a hash of its
server and database), so an instance only ever recovers transactions whose decisions live in the
log it reads; <instance> makes ids unique across instances; <ms>, the start time, is shown by the
admin listing. Recovery never compares clocks across machines: it rolls back a prepared branch
without a decision once it has itself seen that branch prepared for `abort_after` seconds, and a
coordinator only decides COMMIT within `abort_after / 2` of starting to prepare.

docs/transactions.md describes the protocol, the failpoints and the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from proxy import packets as p
from proxy.backend import BackendConnection, BackendError, BackendPool, Backends, returned
from router.config import Backend, PoolSize
from router.errors import BackendUnavailable, ProxyError

log = logging.getLogger("shardproxy.xa")

T = TypeVar("T")

FORMAT_ID = 0x5350  # "SP": only branches with this format id are ours to recover
LOG_TABLE = "shardproxy_xa_log"
COMMIT = "COMMIT"
ABORT = "ABORT"
ER_DUP_ENTRY = 1062
ER_XAER_NOTA = 1397
# Bounds every wait on the decision log and on recovery's statements.
LOG_TIMEOUT = 10.0
_GTRID = re.compile(r"sp-([0-9a-f]+)-([0-9A-Za-z]+)-(\d+)-(\d+)")
# The decision log has connections of its own, so a commit never waits for a session's.
LOG_POOL_SIZE = 4

# An ABORT row must outlive any COMMIT insert still in flight for its id (see DecisionLog.purge).
KEEP_ABORT_SECONDS = 3600

# Failpoints for crash tests, at the points of a two-phase commit named in FAILPOINTS:
# SHARDPROXY_CRASH_AT=<point> makes the process SIGKILL itself there, as a real crash would;
# SHARDPROXY_DELAY_AT=<point>:<seconds> pauses the commit there (other sessions keep running).
CRASH_ENV = "SHARDPROXY_CRASH_AT"
DELAY_ENV = "SHARDPROXY_DELAY_AT"
FAILPOINTS = ("after_prepare", "before_decision", "after_decision")
# The session state a branch may have and still carry the decision row: only these leave the
# INSERT and its commit as in a fresh autocommit session (no read-only transaction, no statement
# or lock wait limit, no binlog switch, CURRENT_TIMESTAMP on the log server's clock).
_CARRIER_STATE = frozenset(
    {"names", "character set", "character_set_client", "character_set_connection",
     "character_set_results", "collation_connection", "sql_mode", "autocommit",
     "tx_isolation", "transaction_isolation"}
)  # fmt: skip
# SET SESSION TRANSACTION reads back tx_read_only even when it only set the isolation level.
_READ_WRITE = frozenset({("tx_read_only", "0"), ("transaction_read_only", "0")})
# `backends` in the log is VARCHAR(1024), and only for people: longer lists are cut.
BACKENDS_COLUMN = 1024


async def _settle(steps: list[Awaitable[T]]) -> list[T | BaseException]:
    """asyncio.gather(*steps, return_exceptions=True), with no task for a single step (a
    commit usually has one branch besides the carrier)."""
    if len(steps) == 1:
        try:
            return [await steps[0]]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*steps, return_exceptions=True)


async def _failpoint(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    delay = os.environ.get(DELAY_ENV)
    if delay:
        point, _, seconds = delay.partition(":")
        if point == name:
            log.warning("failpoint %s: pausing %s s", name, seconds or "1")
            await asyncio.sleep(float(seconds or 1))


class XaError(ProxyError):
    """A distributed transaction that could not commit; every branch was rolled back."""

    code, sqlstate = 1614, "XA100"  # ER_XA_RBROLLBACK


class XaStartFailed(BackendError):
    """XA START was refused; the statement sent in the same packet did not run."""


class XaOutcomeUnknown(ProxyError):
    """The commit decision could not be confirmed durable; recovery will finish the branches."""

    code, sqlstate = 2013, "HY000"


class DecisionNotSent(BackendUnavailable):
    """Nothing reached the decision log (no connection to it): no decision can have landed."""


def xid_sql(gtrid: str, bqual: str) -> str:
    return f"'{gtrid}','{bqual}',{FORMAT_ID}"


def backends_value(names: Iterable[str]) -> str:
    """The `backends` column of a decision: sorted, comma-separated, cut to fit the column."""
    text = ",".join(sorted(names))
    return text if len(text) <= BACKENDS_COLUMN else text[: BACKENDS_COLUMN - 3] + "..."


def log_id(backend: Backend) -> str:
    """Names a decision log by where it lives, the same in every instance that shares it."""
    where = f"{backend.host}:{backend.port}/{backend.database}".encode()
    return hashlib.sha1(where).hexdigest()[:8]


@dataclass
class XidSource:
    """Makes global transaction ids unique across proxy instances."""

    log: str
    instance: str
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new(self) -> str:
        return f"sp-{self.log}-{self.instance}-{int(time.time() * 1000)}-{next(self._seq)}"

    def owns(self, gtrid: str) -> bool:
        """Whether the decision of `gtrid` lives in our log (whichever instance started it)."""
        match = _GTRID.fullmatch(gtrid)
        return match is not None and match.group(1) == self.log


def gtrid_age_seconds(gtrid: str, now: float) -> float | None:
    match = _GTRID.fullmatch(gtrid)
    if match is None:
        return None
    return now - int(match.group(3)) / 1000


class DecisionLog:
    """The COMMIT/ABORT decisions, in a table on one backend.

    Coordinators' COMMIT decisions are group-committed: whatever arrives while one insert is in
    flight goes into the next, one multi-row INSERT (one redo-log flush) for all of them; a lone
    decision is inserted at once. Deleting decisions no branch needs any more is batched the same
    way, off the commit's path."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.pool = BackendPool(replace(backend, pool=PoolSize(0, LOG_POOL_SIZE)))
        self._waiting: list[_Pending] = []
        self._inserter: asyncio.Task[None] | None = None
        self._finished: set[str] = set()
        self._deleter: asyncio.Task[None] | None = None
        self.stats = {"decision_inserts": 0, "decisions_grouped": 0}

    def insert_sql(self, rows: Sequence[tuple[str, str, str, str]]) -> str:
        """INSERT of (gtrid, decision, instance, backends) rows; the table is qualified by its
        database, so it also runs on a branch connection of the log backend."""
        values = ",".join(f"('{g}', '{d}', '{i}', '{b}')" for g, d, i, b in rows)
        return (
            f"INSERT INTO `{self.backend.database}`.{LOG_TABLE} "
            f"(gtrid, decision, instance, backends) VALUES {values}"
        )

    async def ensure_table(self) -> None:
        await self._execute(
            f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} ("
            " gtrid VARCHAR(64) NOT NULL PRIMARY KEY,"
            " decision VARCHAR(6) NOT NULL,"
            " instance VARCHAR(64) NOT NULL,"
            " backends VARCHAR(1024) NOT NULL,"
            " decided_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
            ") ENGINE=InnoDB"
        )

    async def decide(
        self, gtrid: str, decision: str, instance: str, backends: Iterable[str]
    ) -> str:
        """Record `decision` unless one exists; return the decision that stands.

        Raises BackendError when the insert was refused (nothing recorded) and another
        ProxyError when the log was lost: then the insert may or may not have landed."""
        return await self._decide_row(gtrid, decision, instance, backends_value(backends))

    async def _decide_row(self, gtrid: str, decision: str, instance: str, names: str) -> str:
        for _ in range(3):
            try:
                await self._execute(self.insert_sql([(gtrid, decision, instance, names)]))
                return decision
            except BackendError as exc:
                if exc.code != ER_DUP_ENTRY:
                    raise
            existing = (await self.lookup([gtrid])).get(gtrid)
            if existing is not None:
                return existing
            # Purged between our insert and our read: insert again.
        raise BackendError(f"XA decision for {gtrid} keeps changing", 1105, "HY000")

    async def decide_commit(
        self, gtrid: str, instance: str, backends: Iterable[str], deadline: float
    ) -> str:
        """`decide(gtrid, COMMIT, ...)` in a group commit with concurrent callers.

        Returns once the decision that stands is durable; raises as `decide` does, for this
        transaction alone. A decision still waiting at `deadline` (monotonic) is not inserted:
        BackendError, so its coordinator rolls back rather than race recovery."""
        pending = _Pending(gtrid, instance, backends_value(backends), deadline)
        self._waiting.append(pending)
        if self._inserter is None:
            self._inserter = asyncio.create_task(self._insert_waiting())
        return await pending.future

    async def _insert_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._insert_batch(batch)
        finally:
            self._inserter = None
            for pending in self._waiting:  # only when cancelled (the log is closing)
                pending.fail(BackendUnavailable("XA decision log closed"))
            self._waiting = []

    async def _insert_batch(self, batch: list[_Pending]) -> None:
        now = time.monotonic()
        late = [p for p in batch if now > p.deadline]
        for pending in late:
            pending.fail(BackendError("XA decision came past the XA timeout", 1105, "HY000"))
        batch = [p for p in batch if now <= p.deadline]
        if not batch:
            return
        rows = [(p.gtrid, COMMIT, p.instance, p.backends) for p in batch]
        self.stats["decision_inserts"] += 1
        self.stats["decisions_grouped"] += len(batch)
        try:
            await self._execute(self.insert_sql(rows))
        except BackendError as exc:
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            # The batch inserted nothing: one row was refused (a duplicate is recovery's ABORT,
            # decided first). Each decision again on its own, so only that one is refused.
            try:
                await asyncio.gather(*(self._decide_alone(p) for p in batch))
            finally:
                for pending in batch:  # only when cancelled (the log is closing)
                    pending.fail(BackendUnavailable("XA decision log closed during the insert"))
            return
        except BaseException as exc:
            # Lost the log (or closing it): the insert may or may not have landed, for all of
            # them; DecisionNotSent when it surely did not.
            error = exc if isinstance(exc, ProxyError) else BackendUnavailable(repr(exc))
            for pending in batch:
                pending.fail(error)
            if not isinstance(exc, Exception):
                raise
            return
        for pending in batch:
            pending.succeed(COMMIT)

    async def _decide_alone(self, pending: _Pending) -> None:
        try:
            pending.succeed(
                await self._decide_row(pending.gtrid, COMMIT, pending.instance, pending.backends)
            )
        except Exception as exc:
            pending.fail(exc if isinstance(exc, ProxyError) else BackendUnavailable(repr(exc)))

    def forget_later(self, gtrid: str) -> None:
        """Delete a decision whose branches are all committed, batched with others; rows a
        failed delete leaves behind are removed by recovery (see `purge`)."""
        self._finished.add(gtrid)
        if self._deleter is None:
            self._deleter = asyncio.create_task(self._delete_finished())

    async def _delete_finished(self) -> None:
        try:
            while self._finished:
                batch, self._finished = self._finished, set()
                quoted = ",".join(f"'{g}'" for g in sorted(batch))
                try:
                    await self._execute(f"DELETE FROM {LOG_TABLE} WHERE gtrid IN ({quoted})")
                except ProxyError as exc:
                    log.info("XA decision log: %d rows left for recovery (%s)", len(batch), exc)
        finally:
            self._deleter = None

    async def lookup(self, gtrids: Sequence[str]) -> dict[str, str]:
        if not gtrids:
            return {}
        quoted = ",".join(f"'{g}'" for g in gtrids)
        rows = await self._query(
            f"SELECT gtrid, decision FROM {LOG_TABLE} WHERE gtrid IN ({quoted})"
        )
        return {str(g): str(d) for g, d in rows}

    async def now(self) -> str:
        """The log server's clock, the one `decided_at` is written with."""
        ((value,),) = await self._query("SELECT NOW(6)")
        return str(value)

    async def purge(self, before: str, keep_commit: float, pending: Iterable[str]) -> None:
        """Drop decisions no prepared branch needs any more.

        `before` is the log server's time when the caller started listing prepared branches
        (XA RECOVER on every server) and `pending` what it found. A COMMIT decided before that
        time whose id is not pending has no prepared branch left: its branches were all prepared
        before the decision, so XA RECOVER would have listed any that was not committed yet.
        An ABORT row is kept much longer: a coordinator's COMMIT insert for the same id might
        still be in flight (stuck in a network buffer) and must find it."""
        pending_sql = ",".join(f"'{g}'" for g in sorted(set(pending))) or "''"
        keep_abort = max(KEEP_ABORT_SECONDS, int(keep_commit * 10))
        await self._execute(
            f"DELETE FROM {LOG_TABLE} WHERE gtrid NOT IN ({pending_sql}) AND ("
            f"(decision = '{COMMIT}' AND decided_at < TIMESTAMP'{before}' "
            f"- INTERVAL {int(keep_commit)} SECOND)"
            f" OR decided_at < TIMESTAMP'{before}' - INTERVAL {keep_abort} SECOND)"
        )

    async def close(self) -> None:
        for task in (self._inserter, self._deleter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.pool.close()

    async def _execute(self, sql: str) -> None:
        await self._on_log(lambda conn: conn.execute(sql))

    async def _query(self, sql: str) -> list[tuple[str | None, ...]]:
        return await self._on_log(lambda conn: conn.query(sql))

    async def _on_log(self, statement: Callable[[BackendConnection], Awaitable[T]]) -> T:
        """Run one statement on a log connection, each step bounded by LOG_TIMEOUT.

        DecisionNotSent when no connection was had: the statement surely did not run."""
        # asyncio.timeout, not wait_for: no task per step (a commit's path).
        try:
            async with asyncio.timeout(LOG_TIMEOUT):
                conn = await self.pool.acquire()
        except (ProxyError, TimeoutError) as exc:
            message = str(exc) or f"no connection within {LOG_TIMEOUT:.0f} s"
            raise DecisionNotSent(f"XA decision log on '{self.backend.name}': {message}") from exc
        with returned(conn):
            try:
                async with asyncio.timeout(LOG_TIMEOUT):
                    return await statement(conn)
            except TimeoutError:
                conn.broken = True
                raise BackendUnavailable(
                    f"XA decision log on '{conn.backend}' did not answer within {LOG_TIMEOUT:.0f} s"
                ) from None


@dataclass
class _Pending:
    """A COMMIT decision waiting for its group insert."""

    gtrid: str
    instance: str
    backends: str
    deadline: float
    future: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def succeed(self, decision: str) -> None:
        if not self.future.done():
            self.future.set_result(decision)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass(frozen=True)
class InDoubt:
    """A prepared branch found by XA RECOVER on the server of `backend`."""

    backend: str
    gtrid: str
    bqual: str
    decision: str | None
    age_seconds: float | None  # since the transaction started, by the id's timestamp


class Coordinator:
    """Runs the commit protocol for sessions, and recovery for everyone's transactions."""

    def __init__(
        self,
        backends: Backends,
        log_backend: Backend,
        instance: str,
        abort_after: float = 30.0,
    ):
        self.backends = backends
        self.log = DecisionLog(log_backend)
        self.xids = XidSource(log_id(log_backend), instance)
        self.instance = instance
        self.abort_after = abort_after
        # gtrid -> when this instance's recovery first saw it prepared without a decision
        # (monotonic clock). Only ever delays an abort: losing it on restart is harmless.
        self._first_seen: dict[str, float] = {}
        self.stats: dict[str, int] = {
            "commits": 0,
            "one_phase_commits": 0,
            "rollbacks": 0,
            "recovered_commits": 0,
            "recovered_rollbacks": 0,
        }

    # --- the commit protocol --------------------------------------------------------------

    async def start(self, conn: BackendConnection, gtrid: str) -> None:
        await conn.execute(f"XA START {xid_sql(gtrid, conn.backend)}")

    async def start_with(self, conn: BackendConnection, gtrid: str, sql: str) -> None:
        """Start the branch and send its first statement in one packet (a multi-statement),
        a round trip less than `start`; reads XA START's answer, the statement's follows.

        The server runs nothing after a statement that fails, so when XA START is refused the
        statement never ran (outside the branch, or at all): XaStartFailed."""
        xid = xid_sql(gtrid, conn.backend)
        conn.send_command(p.COM_QUERY, f"XA START {xid}; {sql}".encode("utf-8", "surrogateescape"))
        payload = await conn.read_packet()
        if payload[0] == 0xFF:
            code, sqlstate, message = p.parse_err(payload)
            raise XaStartFailed(message, code, sqlstate)

    async def commit(
        self, gtrid: str, branches: Sequence[BackendConnection], may_carry: bool = True
    ) -> None:
        """Commit every branch or none.

        Raises XaError when every branch was rolled back, XaOutcomeUnknown when the outcome
        can't be known here (a lost connection during a one-phase commit, a lost decision log);
        after XaOutcomeUnknown recovery finishes the branches one way, consistently.

        When one branch is on the decision log's backend it carries the decision: the COMMIT row
        is inserted in that branch, which then commits in one phase, so the row is durable
        exactly when that branch is. It needs no PREPARE and the decision no insert of its own.
        Not `may_carry` when the branches' transactions differ from their sessions' state
        (SET TRANSACTION READ ONLY for this one transaction)."""
        if len(branches) == 1:
            await self._commit_one_phase(gtrid, branches[0])
            return
        started = time.monotonic()
        carrier = next((c for c in branches if may_carry and self._may_carry_decision(c)), None)
        others = [c for c in branches if c is not carrier]
        results = await _settle([self._prepare(gtrid, c) for c in others])
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # A branch whose connection was lost may have prepared anyway: an ABORT decision
            # lets recovery roll it back at its next pass instead of after abort_after.
            lost = any(not isinstance(f, BackendError) for f in failures)
            await self._abort(gtrid, branches, record=lost)
            raise XaError(f"Transaction rolled back: a branch failed to prepare: {failures[0]}")
        await _failpoint("after_prepare")
        if time.monotonic() - started > self.abort_after / 2:
            # Recovery may abort branches prepared this long: let it, rather than race it.
            await self._abort(gtrid, branches, record=True)
            raise XaError("Transaction rolled back: preparing it took longer than the XA timeout")
        await _failpoint("before_decision")
        names = [c.backend for c in branches]
        try:
            if carrier is not None:
                await self._carry(gtrid, carrier, names)
                decision = COMMIT
            else:
                deadline = started + self.abort_after / 2
                decision = await self.log.decide_commit(gtrid, self.instance, names, deadline)
        except DecisionNotSent as exc:
            # Nothing was sent: no COMMIT row can exist, so the branches may be rolled back.
            await self._abort(gtrid, branches, record=False)
            raise XaError(f"Transaction rolled back: no decision log: {exc.message}") from exc
        except BackendError as exc:
            # Nothing recorded: the carrier's branch (with its insert) did not commit, or the
            # log refused the insert. A duplicate key is recovery's ABORT, inserted first.
            await self._abort(gtrid, branches, record=False)
            if exc.code == ER_DUP_ENTRY:
                raise XaError("Transaction rolled back by recovery before it could commit") from exc
            raise XaError(f"Transaction rolled back: the decision log refused: {exc}") from exc
        except ProxyError as exc:
            # The insert may or may not have landed: leave the branches prepared for recovery,
            # which reads the log and finishes them one way, consistently.
            for conn in branches:
                conn.broken = True
            raise XaOutcomeUnknown(
                f"Lost the XA decision log during COMMIT; the transaction may or may not have "
                f"committed, recovery will complete {gtrid}"
            ) from exc
        if decision != COMMIT:
            await self._abort(gtrid, branches, record=False)
            raise XaError("Transaction rolled back by recovery before it could commit")
        await _failpoint("after_decision")
        results = await _settle(
            [c.execute(f"XA COMMIT {xid_sql(gtrid, c.backend)}") for c in others]
        )
        self.stats["commits"] += 1
        if any(isinstance(r, BaseException) for r in results):
            # Committed all the same: the decision is durable and recovery applies it.
            for conn, result in zip(others, results, strict=True):
                if isinstance(result, BaseException):
                    conn.broken = True
            log.warning("XA %s: commit decided, some branches left for recovery", gtrid)
            return
        self.log.forget_later(gtrid)

    async def _carry(self, gtrid: str, carrier: BackendConnection, names: list[str]) -> None:
        """Insert the COMMIT row in the carrier's branch and commit it in one phase, within
        LOG_TIMEOUT as a separate decision insert (its INSERT may wait on a lock)."""
        xid = xid_sql(gtrid, carrier.backend)
        row = (gtrid, COMMIT, self.instance, backends_value(names))
        if carrier.is_closed():  # then execute() would send nothing either
            raise DecisionNotSent(f"Lost connection to backend '{carrier.backend}'")
        try:
            async with asyncio.timeout(LOG_TIMEOUT):
                await carrier.execute(
                    f"{self.log.insert_sql([row])}; XA END {xid}; XA COMMIT {xid} ONE PHASE"
                )
        except TimeoutError:
            carrier.broken = True
            raise BackendUnavailable(
                f"XA decision on '{carrier.backend}' did not answer within {LOG_TIMEOUT:.0f} s"
            ) from None

    def _may_carry_decision(self, conn: BackendConnection) -> bool:
        """Whether `conn`'s branch can hold the decision row: it is on the log's backend, and
        its session state is one the row's INSERT and commit behave the same in as in a fresh
        session (_CARRIER_STATE, user variables): a READ ONLY transaction, a statement time
        limit, a short lock wait timeout or sql_log_bin=0 would refuse, fail or hide the row;
        time_zone or timestamp would move `decided_at` off the log server's clock, which
        recovery's purge compares with NOW() there."""
        return conn.backend == self.log.backend.name and all(
            name in _CARRIER_STATE or name.startswith("@") or (name, value) in _READ_WRITE
            for name, value in conn.state
        )

    async def _commit_one_phase(self, gtrid: str, conn: BackendConnection) -> None:
        xid = xid_sql(gtrid, conn.backend)
        try:
            await conn.execute(f"XA END {xid}; XA COMMIT {xid} ONE PHASE")
        except BackendError as exc:
            # The backend refused (e.g. the branch was rolled back by a deadlock).
            await self._abort(gtrid, [conn], record=False)
            raise XaError(f"Transaction rolled back: {exc.message}") from exc
        except ProxyError as exc:
            # Lost before the answer: the backend may have committed. An unprepared branch
            # can't be recovered, so the server either committed it or rolls it back itself.
            conn.broken = True
            raise XaOutcomeUnknown(
                f"Lost connection to backend '{conn.backend}' during COMMIT; the transaction "
                "may or may not have committed"
            ) from exc
        self.stats["one_phase_commits"] += 1

    async def _prepare(self, gtrid: str, conn: BackendConnection) -> None:
        xid = xid_sql(gtrid, conn.backend)
        await conn.execute(f"XA END {xid}; XA PREPARE {xid}")

    async def rollback(self, gtrid: str, branches: Sequence[BackendConnection]) -> None:
        await self._abort(gtrid, branches, record=False)

    async def _abort(self, gtrid: str, branches: Sequence[BackendConnection], record: bool) -> None:
        """Roll every branch back; with `record` (or when a rollback fails) also record ABORT,
        so recovery rolls back at once whatever stays prepared where we could not reach."""
        self.stats["rollbacks"] += 1

        async def one(conn: BackendConnection) -> bool:
            if conn.broken:
                return False
            xid = xid_sql(gtrid, conn.backend)
            try:
                # The branch may be ACTIVE, IDLE, PREPARED or ROLLBACK ONLY; END fails
                # harmlessly when it is not ACTIVE.
                with contextlib.suppress(BackendError):
                    await conn.execute(f"XA END {xid}")
                await conn.execute(f"XA ROLLBACK {xid}")
            except BackendError as exc:
                if exc.code == ER_XAER_NOTA:
                    return True  # never got anywhere (or a deadlock already rolled it back)
                log.warning("XA %s: rollback on %s failed: %s", gtrid, conn.backend, exc)
                conn.broken = True
                return False
            except ProxyError:
                conn.broken = True
                return False
            return True

        done = await asyncio.gather(*(one(c) for c in branches))
        if (record or not all(done)) and len(branches) > 1:
            try:
                await self.log.decide(gtrid, ABORT, self.instance, (c.backend for c in branches))
            except ProxyError as exc:
                log.info("XA %s: could not record ABORT (%s); recovery will", gtrid, exc)

    # --- recovery -------------------------------------------------------------------------

    async def in_doubt(self) -> tuple[list[InDoubt], list[str]]:
        """Every prepared branch whose decision lives in our log, on every reachable server,
        with its decision; and the servers (as a backend on each) that did not answer.

        XA RECOVER lists a whole server's branches, so each server is asked once even when
        several backends (databases) live on it. It also lists branches still attached to a
        live coordinator's connection (which no other connection can finish)."""
        found: list[tuple[str, str, str]] = []
        unreachable: list[str] = []
        servers: dict[tuple[str, int], str] = {}
        for name, pool in self.backends.pools.items():
            servers.setdefault((pool.backend.host, pool.backend.port), name)
        for name in servers.values():
            pool = self.backends[name]
            try:
                conn = await asyncio.wait_for(pool.acquire(), LOG_TIMEOUT)
            except (ProxyError, TimeoutError):
                unreachable.append(name)
                continue
            try:
                with returned(conn):
                    rows = await asyncio.wait_for(conn.query("XA RECOVER"), LOG_TIMEOUT)
            except (ProxyError, TimeoutError):
                unreachable.append(name)
                continue
            for format_id, gtrid_len, bqual_len, data in rows:
                if int(format_id or 0) != FORMAT_ID or data is None:
                    continue
                split = int(gtrid_len or 0)
                gtrid, bqual = data[:split], data[split : split + int(bqual_len or 0)]
                if self.xids.owns(gtrid):
                    found.append((name, gtrid, bqual))
        decisions = await self.log.lookup(sorted({g for _, g, _ in found}))
        now = time.time()
        branches = [
            InDoubt(backend, gtrid, bqual, decisions.get(gtrid), gtrid_age_seconds(gtrid, now))
            for backend, gtrid, bqual in found
        ]
        return branches, unreachable

    async def recover(self) -> int:
        """Finish what crashed or stalled coordinators left prepared; returns branches resolved.

        COMMIT and ABORT decisions are applied at once. A branch without a decision is left
        alone until this instance has seen it prepared for `abort_after` seconds (its
        coordinator may still be deciding); then ABORT is recorded, unless a COMMIT got there
        first, and applied."""
        started = await self.log.now()
        branches, unreachable = await self.in_doubt()
        complete = not unreachable
        now = time.monotonic()
        seen = {b.gtrid for b in branches}
        if complete:
            self._first_seen = {g: t for g, t in self._first_seen.items() if g in seen}
        decisions: dict[str, str] = {}
        resolved = 0
        for branch in branches:
            decision = decisions.get(branch.gtrid, branch.decision)
            if decision is None:
                first = self._first_seen.setdefault(branch.gtrid, now)
                if now - first < self.abort_after:
                    continue  # possibly still being committed by a live coordinator
                try:
                    decision = await self.log.decide(branch.gtrid, ABORT, self.instance, [])
                except ProxyError as exc:
                    # This one waits for the next pass; the others are finished now.
                    log.warning("recovery: could not decide %s: %s", branch.gtrid, exc)
                    continue
                decisions[branch.gtrid] = decision
            if await self._finish(branch, decision):
                resolved += 1
        if complete:
            await self.log.purge(started, self.abort_after, seen)
        return resolved

    async def _finish(self, branch: InDoubt, decision: str) -> bool:
        """Apply `decision` to one recovered branch; False if someone else has it."""
        verb = "COMMIT" if decision == COMMIT else "ROLLBACK"
        pool = self.backends[branch.backend]
        try:
            conn = await asyncio.wait_for(pool.acquire(), LOG_TIMEOUT)
        except (ProxyError, TimeoutError):
            return False
        try:
            with returned(conn):
                await asyncio.wait_for(
                    conn.execute(f"XA {verb} {xid_sql(branch.gtrid, branch.bqual)}"), LOG_TIMEOUT
                )
        except BackendError as exc:
            # XAER_NOTA: finished already, or still attached to its coordinator's connection.
            log.info("recovery: XA %s %s on %s: %s", verb, branch.gtrid, branch.backend, exc)
            return False
        except (ProxyError, TimeoutError):
            return False
        key = "recovered_commits" if verb == "COMMIT" else "recovered_rollbacks"
        self.stats[key] += 1
        log.warning("recovery: XA %s %s on %s", verb, branch.gtrid, branch.backend)
        return True
