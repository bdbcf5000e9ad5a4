"""DecisionLog's group commit (proxy/xa.py): decisions arriving while an insert is in flight share
the next one, and a failed insert fails exactly the transactions in it. The log server is a fake
that records each statement and answers as a test tells it to."""

from __future__ import annotations

import asyncio
import re
import time

from proxy.backend import BackendError
from proxy.xa import ABORT, COMMIT, DecisionLog
from router.config import Backend
from router.errors import BackendUnavailable

LATER = time.monotonic() + 3600


class FakeLog(DecisionLog):
    """A DecisionLog whose table is a dict; `refuse` maps a gtrid to the error an insert
    naming it gets (the whole multi-row insert fails, as on a server)."""

    def __init__(self) -> None:
        super().__init__(Backend("log", "127.0.0.1", 1, "root", "", "db"))
        self.rows: dict[str, str] = {}
        self.inserts: list[list[str]] = []
        self.refuse: dict[str, Exception] = {}

    async def _execute(self, sql: str) -> None:
        await asyncio.sleep(0.01)  # a round trip, during which others arrive
        if sql.startswith("DELETE"):
            for gtrid in re.findall(r"'([^']+)'", sql):
                self.rows.pop(gtrid, None)
            return
        rows = re.findall(r"\('([^']+)', '([A-Z]+)'", sql)
        self.inserts.append([g for g, _ in rows])
        for gtrid, _ in rows:
            if gtrid in self.refuse:
                raise self.refuse[gtrid]
            if gtrid in self.rows:
                raise BackendError("Duplicate entry", 1062, "23000")
        self.rows.update(rows)

    async def lookup(self, gtrids):  # type: ignore[no-untyped-def]
        return {g: self.rows[g] for g in gtrids if g in self.rows}


async def decide_all(log: FakeLog, gtrids: list[str], deadline: float = LATER) -> list:
    async def one(gtrid: str) -> str | Exception:
        try:
            return await log.decide_commit(gtrid, "A", ["x0", "x1"], deadline)
        except Exception as exc:
            return exc

    # The first one's insert is in flight when the others arrive.
    first = asyncio.create_task(one(gtrids[0]))
    await asyncio.sleep(0.001)
    rest = await asyncio.gather(*(one(g) for g in gtrids[1:]))
    return [await first, *rest]


def test_concurrent_decisions_share_one_insert() -> None:
    async def run() -> None:
        log = FakeLog()
        results = await decide_all(log, [f"g{i}" for i in range(6)])
        assert results == [COMMIT] * 6
        # The first goes alone at once; the five that came during its insert share the next.
        assert log.inserts == [["g0"], ["g1", "g2", "g3", "g4", "g5"]]
        assert log.rows == dict.fromkeys(log.rows, COMMIT) and len(log.rows) == 6

    asyncio.run(run())


def test_a_refused_row_fails_only_its_transaction() -> None:
    """One row the server refuses (any ERR, not only a duplicate) fails the multi-row insert;
    its rows are then inserted one by one, so only that transaction is refused."""

    async def run() -> None:
        log = FakeLog()
        log.refuse["g3"] = BackendError("Check constraint failed", 4025, "23000")
        results = await decide_all(log, [f"g{i}" for i in range(4)])
        assert results[:3] == [COMMIT] * 3
        assert isinstance(results[3], BackendError) and results[3].code == 4025
        assert log.rows == dict.fromkeys(["g0", "g1", "g2"], COMMIT)
        assert log.inserts == [["g0"], ["g1", "g2", "g3"], ["g1"], ["g2"], ["g3"]]
        # The next decision is not held back by the failure.
        assert await decide_all(log, ["g9"]) == [COMMIT]

    asyncio.run(run())


def test_any_failure_of_an_insert_resolves_every_waiting_decision() -> None:
    """A bug or a cancel in the insert must not leave a coordinator waiting for ever with its
    branches prepared."""

    async def run() -> None:
        log = FakeLog()
        log.rows["g1"] = ABORT  # the batch fails on g1, then its rows go one by one
        log.refuse["g3"] = RuntimeError("unexpected")
        results = await asyncio.wait_for(decide_all(log, [f"g{i}" for i in range(4)]), 5)
        assert results[:3] == [COMMIT, ABORT, COMMIT]
        assert type(results[3]) is BackendUnavailable

    asyncio.run(run())


class StuckRetries(FakeLog):
    """A log whose inserts after the second (the one-by-one retries) never answer."""

    async def _execute(self, sql: str) -> None:
        if len(self.inserts) >= 2:
            await asyncio.sleep(3600)
        await super()._execute(sql)


def test_closing_the_log_during_one_by_one_retries_resolves_every_decision() -> None:
    async def run() -> None:
        log = StuckRetries()
        log.rows["g2"] = ABORT  # the batch fails, its rows go one by one
        waiting = asyncio.ensure_future(decide_all(log, [f"g{i}" for i in range(4)]))
        while len(log.inserts) < 2:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the retries are waiting
        await log.close()
        results = await asyncio.wait_for(waiting, 5)
        assert results[0] == COMMIT
        assert all(type(r) is BackendUnavailable for r in results[1:])

    asyncio.run(run())


def test_a_duplicate_in_a_batch_refuses_only_that_transaction() -> None:
    """Recovery decided ABORT for g2 first: g2 gets ABORT, the rest of its batch commits."""

    async def run() -> None:
        log = FakeLog()
        log.rows["g2"] = ABORT
        results = await decide_all(log, [f"g{i}" for i in range(4)])
        assert results == [COMMIT, COMMIT, ABORT, COMMIT]
        assert log.rows == {"g0": COMMIT, "g1": COMMIT, "g2": ABORT, "g3": COMMIT}

    asyncio.run(run())


def test_a_lost_log_leaves_its_batch_in_doubt() -> None:
    async def run() -> None:
        log = FakeLog()
        log.refuse["g1"] = BackendUnavailable("Lost connection to backend 'log'")
        results = await decide_all(log, ["g0", "g1", "g2"])
        assert results[0] == COMMIT
        # Not a BackendError: the coordinator reports the outcome unknown, for both.
        assert all(type(r) is BackendUnavailable for r in results[1:])

    asyncio.run(run())


def test_a_decision_past_its_deadline_is_not_inserted() -> None:
    async def run() -> None:
        log = FakeLog()
        (result,) = await decide_all(log, ["g0"], deadline=time.monotonic() - 1)
        assert isinstance(result, BackendError)
        assert log.rows == {} and log.inserts == []

    asyncio.run(run())


def test_finished_decisions_are_deleted_in_batches() -> None:
    async def run() -> None:
        log = FakeLog()
        await decide_all(log, [f"g{i}" for i in range(5)])
        for i in range(5):
            log.forget_later(f"g{i}")
        await asyncio.sleep(0.05)
        assert log.rows == {}

    asyncio.run(run())
