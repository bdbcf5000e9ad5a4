"""The decision log (proxy/xa.py DecisionLog) on a real MariaDB: a statement cancelled in
flight (a KILLed session recording an ABORT) must not leave its answer for the next one, a long
list of backends must not refuse a batch, and a log that can't be reached is told apart from one
lost mid-insert."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import xa_helpers
from xa_helpers import new_db_name

from proxy.backend import BackendError
from proxy.xa import ABORT, COMMIT, DecisionLog, DecisionNotSent
from router.config import Backend
from router.errors import BackendUnavailable

if TYPE_CHECKING:
    from conftest import Cluster

pair = xa_helpers.pair

LATER = time.monotonic() + 3600


def decision_log(pair: Cluster) -> DecisionLog:
    db = new_db_name("xalog")
    pair.instances[0].execute(f"CREATE DATABASE `{db}`")
    instance = pair.instances[0]
    return DecisionLog(Backend("x0", instance.host, instance.port, "root", "", db))


def test_a_statement_cancelled_in_flight_does_not_answer_the_next(pair: Cluster) -> None:
    """Recovery must read the COMMIT that stands, not the answer of a cancelled insert."""

    async def run() -> None:
        log = decision_log(pair)
        await log.ensure_table()
        assert await log.decide("g1", COMMIT, "A", ["x0", "x1"]) == COMMIT
        for _ in range(3):
            other = asyncio.ensure_future(log.decide("g1", ABORT, "B", ["x0", "x1"]))
            await asyncio.sleep(0)  # its insert is sent, its answer (a duplicate) unread
            other.cancel()
            await asyncio.gather(other, return_exceptions=True)
            assert await log.lookup(["g1"]) == {"g1": COMMIT}
            assert await log.decide("g1", ABORT, "B", []) == COMMIT
        await log.close()

    asyncio.run(run())


def test_a_long_backend_list_does_not_refuse_its_batch(pair: Cluster) -> None:
    """`backends` is only for people: 40 long names are cut to fit, nobody's commit fails."""

    async def run() -> None:
        log = decision_log(pair)
        await log.ensure_table()
        many = [f"orders_shard_eu_west_1_{i:02d}" for i in range(40)]
        results = await asyncio.gather(
            log.decide_commit("g1", "A", ["x0", "x1"], LATER),
            log.decide_commit("g2", "A", ["x0", "x1"], LATER),
            log.decide_commit("g3", "A", many, LATER),
            return_exceptions=True,
        )
        assert results == [COMMIT] * 3
        assert await log.lookup(["g1", "g2", "g3"]) == dict.fromkeys(["g1", "g2", "g3"], COMMIT)
        ((kept,),) = await log._query("SELECT backends FROM shardproxy_xa_log WHERE gtrid = 'g3'")
        assert kept is not None and kept.startswith("orders_shard_eu_west_1_00,")
        assert len(kept) <= 1024
        await log.close()

    asyncio.run(run())


def test_a_log_that_cannot_be_reached_is_known_to_hold_no_decision(pair: Cluster) -> None:
    """No connection: nothing was sent (the coordinator may roll back, 1614). A server that
    refuses the insert: BackendError. Neither is the 'may or may not have landed' case."""

    async def run() -> None:
        instance = pair.instances[0]
        down = DecisionLog(Backend("x0", instance.host, 1, "root", "", "nowhere"))
        try:
            await down.decide_commit("g1", "A", ["x0", "x1"], LATER)
        except DecisionNotSent as exc:
            assert isinstance(exc, BackendUnavailable)
        else:
            raise AssertionError("a decision without a log")
        await down.close()
        log = decision_log(pair)  # its table does not exist
        try:
            await log.decide_commit("g1", "A", ["x0", "x1"], LATER)
        except BackendError as exc:
            assert exc.code == 1146
        else:
            raise AssertionError("a decision without a table")
        await log.close()

    asyncio.run(run())
