"""Deadlocks that span backends: a wait-for graph among this proxy's sessions.

InnoDB finds a deadlock inside one server. A cycle through two servers (session A waits on
shard 1 for B while B waits on shard 2 for A) it can't see: both would wait
innodb_lock_wait_timeout and get 1205. When a statement of a transaction has run longer than
`transactions.deadlock_check_after`, the detector asks every server where a running transaction
has a branch which transactions wait for which (information_schema.INNODB_LOCK_WAITS and
INNODB_TRX), maps the backend thread ids to the sessions whose transactions hold those
connections, and looks for cycles. In each cycle one session is the victim, the lightest by
InnoDB's own measure (trx_weight: rows changed and locked, summed over its branches) and the
youngest on a tie: its statement is stopped with KILL QUERY on each of its branches (through
a control connection), and the session answers 1213 and rolls its whole transaction back
(proxy.session), as it does for a deadlock InnoDB found.

Nothing runs while no transaction's statement runs: one timer is armed when such a statement
starts, and servers are queried only when a statement has run past the threshold.

Scope: the sessions of this process. A cycle through sessions of two proxy instances, or
through a client that is not a proxy session, still ends at innodb_lock_wait_timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from proxy.backend import BackendConnection, BackendPool, kill_queries
from router.config import Backend, PoolSize
from router.errors import ProxyError

if TYPE_CHECKING:
    from proxy.server import Server
    from proxy.session import Session

log = logging.getLogger("shardproxy.deadlock")

MESSAGE = "Deadlock found when trying to get lock; try restarting transaction"
# Bounds each control query and KILL: a server that hangs must not stall the next checks.
CONTROL_TIMEOUT = 5.0
# Every transaction of ours on a server, its weight, and what it waits for (one row per
# blocking transaction; NULL when it waits for nothing).
_WAITS_SQL = (
    "SELECT r.trx_mysql_thread_id, r.trx_weight, b.trx_mysql_thread_id"
    " FROM information_schema.INNODB_TRX r"
    " LEFT JOIN information_schema.INNODB_LOCK_WAITS w ON w.requesting_trx_id = r.trx_id"
    " LEFT JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id"
    " WHERE r.trx_mysql_thread_id IN ({})"
)

Node = TypeVar("Node", bound=Hashable)
_END = object()
ServerKey = tuple[str, int]  # (host, port): thread ids are unique per server


class DeadlockFound(ProxyError):
    """ER_LOCK_DEADLOCK, for a session the detector chose as a victim."""

    code, sqlstate = 1213, "40001"

    def __init__(self) -> None:
        super().__init__(MESSAGE)


def find_cycle(waits_for: Mapping[Node, Collection[Node]]) -> list[Node] | None:
    """One cycle of the wait-for graph (its nodes in order), or None when it has none."""
    done: set[Node] = set()
    for start in waits_for:
        if start in done:
            continue
        path: list[Node] = [start]
        on_path = {start: 0}
        todo = [iter(waits_for.get(start, ()))]
        while todo:
            target = next(todo[-1], _END)
            if target is _END:
                todo.pop()
                finished = path.pop()
                del on_path[finished]
                done.add(finished)
            elif target in on_path:
                return path[on_path[target] :]
            elif target not in done:
                on_path[target] = len(path)
                path.append(target)
                todo.append(iter(waits_for.get(target, ())))
    return None


def choose_victims(
    waits_for: Mapping[Node, Collection[Node]], cost: Callable[[Node], tuple[float, ...]]
) -> list[tuple[Node, list[Node]]]:
    """(victim, its cycle) until no cycle is left: in each cycle found, the node of least
    `cost` goes (and with it every edge it is part of)."""
    graph = {node: set(targets) for node, targets in waits_for.items()}
    chosen = []
    while (cycle := find_cycle(graph)) is not None:
        victim = min(cycle, key=cost)
        chosen.append((victim, cycle))
        del graph[victim]
        for targets in graph.values():
            targets.discard(victim)
    return chosen


class DeadlockDetector:
    """Watches statements of transactions and breaks cycles of lock waits across backends."""

    def __init__(self, server: Server):
        self.server = server
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        # Control connections, one pool per backend (KILL needs the connections' own user).
        self._control: dict[str, BackendPool] = {}
        self._failing: dict[str, str] = {}  # backend -> why its last check failed (logged once)

    def watch(self) -> None:
        """A statement of a transaction started: a check follows once it may have waited long
        enough (nothing to do when one is already due: it looks at every session)."""
        if self._timer is None and self._running is None:
            after = self.server.runtime.config.transactions.deadlock_check_after
            if after:
                self._timer = asyncio.get_running_loop().call_later(after, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._running = asyncio.ensure_future(self._check_and_rearm())

    async def _check_and_rearm(self) -> None:
        started = time.monotonic()
        try:
            await self.check(started)
        except Exception:
            log.exception("deadlock check failed")
        finally:
            self._running = None
        self._rearm(started)

    def _rearm(self, checked: float) -> None:
        """The next check: when the next statement reaches the threshold, and again after the
        threshold while statements the last check saw still run (a wait they start later may
        close a cycle)."""
        after = self.server.runtime.config.transactions.deadlock_check_after
        if not after:
            return
        now = time.monotonic()
        delays = [
            after if since + after <= checked else max(since + after - now, 0.0)
            for session in self.server.sessions.values()
            if (since := session.running_since)
        ]
        if delays:
            self._timer = asyncio.get_running_loop().call_later(min(delays), self._wake)

    async def check(self, now: float) -> None:
        """If a statement of a transaction has run `deadlock_check_after` seconds by `now`,
        build the wait-for graph among sessions and stop one victim in each of its cycles."""
        after = self.server.runtime.config.transactions.deadlock_check_after
        sessions = list(self.server.sessions.values())
        if not any(s.txn_conns and s.running_since and now - s.running_since >= after
                   for s in sessions):  # fmt: skip
            return
        # A snapshot of who holds which connection; a cycle is acted on only if every member
        # still runs the same statement of the same transaction afterwards.
        branches: dict[tuple[ServerKey, int], tuple[Session, BackendConnection]] = {}
        asked: dict[ServerKey, Backend] = {}  # servers to ask, each through one backend
        for session in sessions:
            for conn in session.txn_conns.values():
                where = _server_of(conn)
                branches[(where, conn.thread_id)] = (session, conn)
                if session.running_since:
                    asked.setdefault(where, conn.pool.backend)
        snapshot = {s.connection_id: (s.running_since, s.gtrid) for s in sessions}
        by_id = {s.connection_id: s for s in sessions}
        answers = await asyncio.gather(
            *(self._waits(backend, [t for w, t in branches if w == where])
              for where, backend in asked.items())
        )  # fmt: skip
        waits_for: dict[int, set[int]] = {}
        weights: dict[int, int] = {}
        for where, rows in zip(asked, answers, strict=True):
            weighed: set[str] = set()  # one row per blocker: a branch's weight counts once
            for thread, weight, blocker in rows:
                sid = _owner(branches, where, thread)
                if sid is None:
                    continue
                if thread not in weighed:
                    weighed.add(thread)
                    weights[sid] = weights.get(sid, 0) + int(weight or 0)
                holder = _owner(branches, where, blocker)
                if holder is not None:  # else: not waiting, or for a client that isn't ours
                    waits_for.setdefault(sid, set()).add(holder)
        victims = choose_victims(
            waits_for, lambda sid: (weights.get(sid, 0), -_sequence(snapshot[sid][1]))
        )
        for victim_id, cycle in victims:
            members = [by_id[sid] for sid in cycle]
            if any((m.running_since, m.gtrid) != snapshot[m.connection_id] for m in members):
                log.info("deadlock check: sessions %s moved on; no victim", cycle)
                continue
            victim = by_id[victim_id]
            victim.deadlock_victim = True
            log.warning(
                "deadlock across backends among sessions %s: rolling back session %d's transaction",
                " -> ".join(str(sid) for sid in [*cycle, cycle[0]]),
                victim_id,
            )
            # Every branch: a statement over several backends ends only when each part has.
            await kill_queries(
                [conn for owner, conn in branches.values() if owner is victim
                 and conn.owner is victim],
                self._kill,
            )  # fmt: skip

    async def _kill(self, conn: BackendConnection) -> bool:
        answer = await self.control_query(conn.pool.backend, f"KILL QUERY {conn.thread_id}")
        return answer is not None

    async def _waits(self, backend: Backend, threads: list[int]) -> list[tuple[str | None, ...]]:
        """(thread, trx_weight, blocking thread) rows of our `threads` on the server of
        `backend`; none when it can't answer."""
        sql = _WAITS_SQL.format(",".join(str(t) for t in sorted(set(threads))))
        return await self.control_query(backend, sql) or []

    async def control_query(
        self, backend: Backend, sql: str
    ) -> list[tuple[str | None, ...]] | None:
        """Rows of `sql` on a control connection to `backend`'s server; None when it can't
        answer (logged once until it answers again). Control connections are a pool of one
        per backend of their own, so a KILL QUERY never waits behind busy data connections."""
        pool = await self._pool(backend)
        if pool.down_until > time.monotonic():
            return None  # its connect failed moments ago (already logged)
        try:
            conn = await asyncio.wait_for(pool.acquire(), CONTROL_TIMEOUT)
        except ProxyError as exc:
            self._failed(backend.name, exc.message)
            return None
        except TimeoutError:
            self._failed(backend.name, f"no control connection within {CONTROL_TIMEOUT:.0f} s")
            return None
        ok = False
        try:
            rows = await asyncio.wait_for(conn.query(sql), CONTROL_TIMEOUT)
            ok = True
        except ProxyError as exc:
            ok = not conn.broken
            self._failed(backend.name, exc.message)
            return None
        except TimeoutError:
            self._failed(backend.name, f"no answer within {CONTROL_TIMEOUT:.0f} s")
            return None
        finally:
            pool.release(conn, ok)
        if self._failing.pop(backend.name, None) is not None:
            log.info("control connection: backend '%s' answers again", backend.name)
        return rows

    def _failed(self, backend: str, why: str) -> None:
        if self._failing.get(backend) != why:
            self._failing[backend] = why
            log.warning("control query on backend '%s' failed: %s", backend, why)

    async def _pool(self, backend: Backend) -> BackendPool:
        """The control pool of `backend` (as its sessions' connections were opened), renewed
        when a reload changed the backend."""
        name = backend.name
        wanted = _control_settings(backend)
        pool = self._control.get(name)
        if pool is None or pool.backend != wanted:
            if pool is not None:
                await pool.close()
            pool = self._control[name] = BackendPool(wanted)
        return pool

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._running is not None:
            self._running.cancel()
        for pool in self._control.values():
            await pool.close()


def _control_settings(backend: Backend) -> Backend:
    return replace(backend, pool=PoolSize(0, 1), replicas=())


def _owner(
    branches: Mapping[tuple[ServerKey, int], tuple[Session, BackendConnection]],
    where: ServerKey,
    thread: str | None,
) -> int | None:
    """The session (its connection id) whose transaction holds thread `thread` of `where`."""
    owner = None if thread is None else branches.get((where, int(thread)))
    return None if owner is None else owner[0].connection_id


def _server_of(conn: BackendConnection) -> ServerKey:
    backend = conn.pool.backend
    return backend.host, backend.port


def _sequence(gtrid: str | None) -> int:
    """A transaction's place in this instance's order of starts (proxy.xa.XidSource)."""
    return int(gtrid.rsplit("-", 1)[1]) if gtrid else 0
