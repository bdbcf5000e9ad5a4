"""XA two-phase commit across backends: the coordinator, the decision log, and recovery.

The proxy keeps no local state: the COMMIT/ABORT decision of every distributed transaction is a
row in a table on one backend, keyed by the transaction's global id. Both a coordinator's COMMIT
and a recovering instance's ABORT are plain INSERTs on that key, so whoever inserts first decides
and nobody can decide differently afterwards.

Global ids are `sp-<log>-<instance>-<ms>-<seq>`: <log> names the decision log (a hash of its
server and database), so an instance only ever recovers transactions whose decisions live in the
log it reads; <instance> makes ids unique across instances; <ms>, the start time, tells recovery
the age of a prepared branch from its id alone.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from proxy.backend import BackendConnection, BackendError, BackendPool, Backends
from router.config import Backend, PoolSize
from router.errors import BackendUnavailable, ProxyError

log = logging.getLogger("shardproxy.xa")

FORMAT_ID = 0x5350  # "SP": only branches with this format id are ours to recover
LOG_TABLE = "shardproxy_xa_log"
COMMIT = "COMMIT"
ABORT = "ABORT"
ER_DUP_ENTRY = 1062
_GTRID = re.compile(r"sp-([0-9a-f]+)-([0-9A-Za-z]+)-(\d+)-(\d+)")
# The decision log has connections of its own, so a commit never waits for a session's.
LOG_POOL_SIZE = 4

# Failpoints for crash tests: SHARDPROXY_CRASH_AT=after_prepare|after_decision makes the process
# SIGKILL itself at that point of the next distributed commit, as a real crash would.
CRASH_ENV = "SHARDPROXY_CRASH_AT"


def _failpoint(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class XaError(ProxyError):
    """A distributed transaction that could not commit; every branch was rolled back."""

    code, sqlstate = 1614, "XA100"  # ER_XA_RBROLLBACK


class XaOutcomeUnknown(ProxyError):
    """The commit decision could not be confirmed durable; recovery will finish the branches."""

    code, sqlstate = 2013, "HY000"


def xid_sql(gtrid: str, bqual: str) -> str:
    return f"'{gtrid}','{bqual}',{FORMAT_ID}"


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
    """The COMMIT/ABORT decisions, in a table on one backend."""

    def __init__(self, backend: Backend):
        self.pool = BackendPool(replace(backend, pool=PoolSize(0, LOG_POOL_SIZE)))

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
        """Record `decision` unless one exists; return the decision that stands."""
        names = ",".join(sorted(backends))
        try:
            await self._execute(
                f"INSERT INTO {LOG_TABLE} (gtrid, decision, instance, backends) "
                f"VALUES ('{gtrid}', '{decision}', '{instance}', '{names}')"
            )
            return decision
        except BackendError as exc:
            if exc.code != ER_DUP_ENTRY:
                raise
        existing = await self.lookup([gtrid])
        return existing[gtrid]

    async def lookup(self, gtrids: Sequence[str]) -> dict[str, str]:
        if not gtrids:
            return {}
        quoted = ",".join(f"'{g}'" for g in gtrids)
        rows = await self._query(
            f"SELECT gtrid, decision FROM {LOG_TABLE} WHERE gtrid IN ({quoted})"
        )
        return {str(g): str(d) for g, d in rows}

    async def forget(self, gtrid: str) -> None:
        await self._execute(f"DELETE FROM {LOG_TABLE} WHERE gtrid = '{gtrid}'")

    async def purge(self, abort_after: float, pending_sql: str) -> None:
        """Drop COMMIT rows with no prepared branch left, and ABORT rows long past the point
        where any coordinator could still try to commit them (see Coordinator.commit)."""
        await self._execute(
            f"DELETE FROM {LOG_TABLE} WHERE gtrid NOT IN ({pending_sql}) AND ("
            f"(decision = '{COMMIT}' AND decided_at < NOW(6) - INTERVAL {int(abort_after)} SECOND)"
            f" OR decided_at < NOW(6) - INTERVAL {int(abort_after * 10)} SECOND)"
        )

    async def close(self) -> None:
        await self.pool.close()

    async def _execute(self, sql: str) -> None:
        conn = await self.pool.acquire()
        ok = False
        try:
            await conn.execute(sql)
            ok = True
        finally:
            conn.pool.release(conn, ok or not conn.broken)

    async def _query(self, sql: str) -> list[tuple[str | None, ...]]:
        conn = await self.pool.acquire()
        ok = False
        try:
            rows = await conn.query(sql)
            ok = True
            return rows
        finally:
            conn.pool.release(conn, ok or not conn.broken)


@dataclass(frozen=True)
class InDoubt:
    """A prepared branch found by XA RECOVER on the server of `backend`."""

    backend: str
    gtrid: str
    bqual: str
    decision: str | None
    age_seconds: float | None


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

    async def commit(self, gtrid: str, branches: Sequence[BackendConnection]) -> None:
        """Commit every branch or none. Raises XaError (all rolled back) or XaOutcomeUnknown."""
        if len(branches) == 1:
            conn = branches[0]
            xid = xid_sql(gtrid, conn.backend)
            try:
                await conn.execute(f"XA END {xid}; XA COMMIT {xid} ONE PHASE")
            except ProxyError as exc:
                await self._rollback_branches(gtrid, branches)
                raise XaError(f"Transaction rolled back: {exc.message}") from exc
            self.stats["one_phase_commits"] += 1
            return
        results = await asyncio.gather(
            *(self._prepare(gtrid, c) for c in branches), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self._rollback_branches(gtrid, branches)
            raise XaError(f"Transaction rolled back: a branch failed to prepare: {failures[0]}")
        _failpoint("after_prepare")
        age = gtrid_age_seconds(gtrid, time.time())
        if age is not None and age > self.abort_after / 2:
            # Recovery may abort branches this old: let it, rather than race it.
            await self._rollback_branches(gtrid, branches)
            raise XaError("Transaction rolled back: it stayed open longer than the XA timeout")
        try:
            decision = await self.log.decide(
                gtrid, COMMIT, self.instance, (c.backend for c in branches)
            )
        except BackendError as exc:
            await self._rollback_branches(gtrid, branches)
            raise XaError(f"Transaction rolled back: the decision log refused: {exc}") from exc
        except ProxyError as exc:
            # The insert may or may not have landed: leave the branches prepared for recovery,
            # which reads the log and finishes them one way, consistently.
            for conn in branches:
                conn.broken = True
            raise XaOutcomeUnknown(
                f"Lost the XA decision log during commit; recovery will complete {gtrid}"
            ) from exc
        if decision != COMMIT:
            await self._rollback_branches(gtrid, branches)
            raise XaError("Transaction rolled back by recovery before it could commit")
        _failpoint("after_decision")
        results = await asyncio.gather(
            *(c.execute(f"XA COMMIT {xid_sql(gtrid, c.backend)}") for c in branches),
            return_exceptions=True,
        )
        self.stats["commits"] += 1
        if any(isinstance(r, BaseException) for r in results):
            for conn, result in zip(branches, results, strict=True):
                if isinstance(result, BaseException):
                    conn.broken = True
            log.warning("XA %s: commit decided, some branches left for recovery", gtrid)
            return
        try:
            await self.log.forget(gtrid)
        except ProxyError:
            log.info("XA %s: committed; its log row stays until recovery removes it", gtrid)

    async def _prepare(self, gtrid: str, conn: BackendConnection) -> None:
        xid = xid_sql(gtrid, conn.backend)
        await conn.execute(f"XA END {xid}; XA PREPARE {xid}")

    async def rollback(self, gtrid: str, branches: Sequence[BackendConnection]) -> None:
        await self._rollback_branches(gtrid, branches)

    async def _rollback_branches(self, gtrid: str, branches: Sequence[BackendConnection]) -> None:
        self.stats["rollbacks"] += 1

        async def one(conn: BackendConnection) -> None:
            if conn.broken:
                return
            xid = xid_sql(gtrid, conn.backend)
            # The branch may be ACTIVE, IDLE or PREPARED; END fails harmlessly when not ACTIVE.
            with contextlib.suppress(BackendError):
                await conn.execute(f"XA END {xid}")
            try:
                await conn.execute(f"XA ROLLBACK {xid}")
            except BackendError as exc:
                log.warning("XA %s: rollback on %s failed: %s", gtrid, conn.backend, exc)
                conn.broken = True
            except BackendUnavailable:
                conn.broken = True

        await asyncio.gather(*(one(c) for c in branches))

    # --- recovery -------------------------------------------------------------------------

    async def in_doubt(self) -> tuple[list[InDoubt], bool]:
        """Every prepared branch whose decision lives in our log, on every reachable server,
        with its decision; and whether every server answered.

        XA RECOVER lists a whole server's branches, so each server is asked once even when
        several backends (databases) live on it."""
        found: list[tuple[str, str, str]] = []
        complete = True
        servers: dict[tuple[str, int], str] = {}
        for name, pool in self.backends.pools.items():
            servers.setdefault((pool.backend.host, pool.backend.port), name)
        for name in servers.values():
            pool = self.backends[name]
            try:
                conn = await pool.acquire()
            except ProxyError:
                complete = False
                continue
            try:
                rows = await conn.query("XA RECOVER")
            except ProxyError:
                pool.release(conn, False)
                complete = False
                continue
            pool.release(conn)
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
        return branches, complete

    async def recover(self) -> int:
        """Finish what crashed coordinators left prepared; returns branches resolved."""
        resolved = 0
        branches, complete = await self.in_doubt()
        for branch in branches:
            decision = branch.decision
            if decision is None:
                if branch.age_seconds is None or branch.age_seconds < self.abort_after:
                    continue  # possibly still being committed by a live coordinator
                decision = await self.log.decide(branch.gtrid, ABORT, self.instance, [])
            verb = "COMMIT" if decision == COMMIT else "ROLLBACK"
            pool = self.backends[branch.backend]
            conn = await pool.acquire()
            try:
                await conn.execute(f"XA {verb} {xid_sql(branch.gtrid, branch.bqual)}")
            except BackendError as exc:
                # XAER_NOTA: another instance finished it first.
                log.info("recovery: XA %s %s on %s: %s", verb, branch.gtrid, branch.backend, exc)
                pool.release(conn)
                continue
            except ProxyError:
                pool.release(conn, False)
                continue
            pool.release(conn)
            resolved += 1
            key = "recovered_commits" if verb == "COMMIT" else "recovered_rollbacks"
            self.stats[key] += 1
            log.warning("recovery: XA %s %s on %s", verb, branch.gtrid, branch.backend)
        if complete:
            # Decisions no prepared branch needs any more. A COMMIT row must outlive every
            # branch of its transaction, so this only runs when every backend answered.
            pending = ",".join(f"'{g}'" for g in {b.gtrid for b in branches}) or "''"
            await self.log.purge(self.abort_after, pending)
        return resolved
