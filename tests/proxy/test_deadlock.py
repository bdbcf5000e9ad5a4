"""The wait-for graph of proxy.deadlock: cycles are found, and the victims chosen leave none."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.deadlock import DeadlockDetector, DeadlockFound, choose_victims, find_cycle

graphs = st.dictionaries(st.integers(0, 7), st.sets(st.integers(0, 7), max_size=3), max_size=8)


def _is_cycle(graph: dict[int, set[int]], cycle: list[int]) -> bool:
    return bool(cycle) and all(
        cycle[(i + 1) % len(cycle)] in graph.get(node, set()) for i, node in enumerate(cycle)
    )


def _acyclic(graph: dict[int, set[int]]) -> bool:
    """Kahn's algorithm: every node can be removed once nothing waits for it."""
    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    waited_on = {n: 0 for n in nodes}
    for targets in graph.values():
        for target in targets:
            waited_on[target] += 1
    free = [n for n, count in waited_on.items() if count == 0]
    removed = 0
    while free:
        node = free.pop()
        removed += 1
        for target in graph.get(node, ()):
            waited_on[target] -= 1
            if waited_on[target] == 0:
                free.append(target)
    return removed == len(nodes)


def test_two_sessions_waiting_for_each_other_are_a_cycle() -> None:
    assert sorted(find_cycle({1: {2}, 2: {1}}) or []) == [1, 2]


def test_a_chain_of_waits_is_no_cycle() -> None:
    assert find_cycle({1: {2}, 2: {3}, 3: set()}) is None
    assert choose_victims({1: {2}, 2: {3}}, lambda n: (0,)) == []


def test_a_session_waiting_for_itself_is_a_cycle() -> None:
    """Two branches of one transaction on one server (two backends there) never see each
    other's locks as their own: InnoDB would wait until the timeout."""
    assert find_cycle({5: {5}}) == [5]


def test_the_lightest_then_youngest_member_of_a_cycle_is_the_victim() -> None:
    weights = {1: 10, 2: 3, 3: 3}
    starts = {1: 1, 2: 2, 3: 3}  # 3 started last
    chosen = choose_victims({1: {2}, 2: {3}, 3: {1}}, lambda n: (weights[n], -starts[n]))
    assert [(victim, sorted(cycle)) for victim, cycle in chosen] == [(3, [1, 2, 3])]


def test_one_victim_breaks_two_cycles_through_it() -> None:
    chosen = choose_victims({1: {2, 3}, 2: {1}, 3: {1}}, lambda n: (0 if n == 1 else 1,))
    assert [victim for victim, _ in chosen] == [1]


@given(graphs)
def test_a_cycle_found_is_one_and_none_is_found_only_without_any(
    graph: dict[int, set[int]],
) -> None:
    cycle = find_cycle(graph)
    if cycle is None:
        assert _acyclic(graph)
    else:
        assert _is_cycle(graph, cycle)


@given(graphs, st.dictionaries(st.integers(0, 7), st.integers(0, 5)))
def test_victims_leave_no_cycle_and_each_is_the_cheapest_of_a_cycle(
    graph: dict[int, set[int]], weights: dict[int, int]
) -> None:
    def cost(node: int) -> tuple[float, ...]:
        return (weights.get(node, 0), node)

    chosen = choose_victims(graph, cost)
    remaining = {n: set(t) for n, t in graph.items()}
    for victim, cycle in chosen:
        assert _is_cycle(remaining, cycle)
        assert victim == min(cycle, key=cost)
        remaining.pop(victim)
        for targets in remaining.values():
            targets.discard(victim)
    assert _acyclic(remaining)
    assert len({victim for victim, _ in chosen}) == len(chosen)


def test_the_victim_gets_mysqls_deadlock_error() -> None:
    error = DeadlockFound()
    assert (error.code, error.sqlstate, error.message) == (
        1213,
        "40001",
        "Deadlock found when trying to get lock; try restarting transaction",
    )


# -- the detector over fake sessions and canned server answers ----------------------------------


@dataclass
class FakeConn:
    backend: str
    thread_id: int
    pool: Any
    owner: Any = None
    kills_pending: int = 0
    broken: bool = False


@dataclass
class FakeSession:
    connection_id: int
    gtrid: str | None
    txn_conns: dict[str, FakeConn]
    running_since: float = 0.0
    deadlock_victim: bool = False


def _pool(name: str, host: str) -> Any:
    return SimpleNamespace(backend=SimpleNamespace(name=name, host=host, port=3306))


SERVERS = {"ds0": _pool("ds0", "h0"), "ds1": _pool("ds1", "h1")}


def _session(sid: int, seq: int, threads: dict[str, int], running: float) -> FakeSession:
    conns = {b: FakeConn(b, t, SERVERS[b]) for b, t in threads.items()}
    session = FakeSession(sid, f"sp-0a0b0c0d-A-1700000000000-{seq}", conns, running)
    for conn in conns.values():
        conn.owner = session  # held, as Session.connection() marks its connections
    return session


def _detector(
    sessions: list[FakeSession], answers: dict[str, list[tuple[str | None, ...]]]
) -> tuple[DeadlockDetector, list[tuple[str, str]]]:
    """A detector whose servers answer `answers` (by backend asked) and that records every
    control statement sent."""
    config = SimpleNamespace(transactions=SimpleNamespace(deadlock_check_after=1.0))
    server = SimpleNamespace(
        sessions={s.connection_id: s for s in sessions}, runtime=SimpleNamespace(config=config)
    )
    detector = DeadlockDetector(server)  # type: ignore[arg-type]
    sent: list[tuple[str, str]] = []

    async def control_query(backend: Any, sql: str) -> list[tuple[str | None, ...]] | None:
        sent.append((backend.name, sql))
        return [] if sql.startswith("KILL") else answers.get(backend.name)

    detector.control_query = control_query  # type: ignore[method-assign]
    return detector, sent


def _kills(sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((b, sql) for b, sql in sent if sql.startswith("KILL"))


def test_check_kills_the_lighter_session_of_a_cycle_on_every_branch() -> None:
    """1 holds a row on ds0 (thread 11) and waits on ds1 (thread 21) for 2, which waits on ds0
    (thread 12) for 1. Session 1 locked more (weight 5 + 1) than session 2 (2 + 2): 2 goes."""
    one = _session(1, seq=1, threads={"ds0": 11, "ds1": 21}, running=10.0)
    two = _session(2, seq=2, threads={"ds0": 12, "ds1": 22}, running=10.0)
    detector, sent = _detector(
        [one, two],
        {
            "ds0": [("11", "5", None), ("12", "2", "11"), ("12", "2", "99")],  # 99: not ours
            "ds1": [("21", "1", "22"), ("22", "2", None)],
        },
    )
    asyncio.run(detector.check(now=11.5))
    assert (one.deadlock_victim, two.deadlock_victim) == (False, True)
    assert _kills(sent) == [("ds0", "KILL QUERY 12"), ("ds1", "KILL QUERY 22")]
    asked = sorted(sql for _, sql in sent if not sql.startswith("KILL"))
    assert [sql.rsplit("IN ", 1)[1] for sql in asked] == ["(11,12)", "(21,22)"]


def test_check_on_equal_weights_kills_the_youngest_transaction() -> None:
    one = _session(1, seq=7, threads={"ds0": 11, "ds1": 21}, running=10.0)
    two = _session(2, seq=3, threads={"ds0": 12, "ds1": 22}, running=10.0)
    detector, _ = _detector(
        [one, two],
        {
            "ds0": [("11", "2", None), ("12", "2", "11")],
            "ds1": [("21", "2", "22"), ("22", "2", None)],
        },
    )
    asyncio.run(detector.check(now=11.5))
    assert (one.deadlock_victim, two.deadlock_victim) == (True, False)


def test_check_asks_nobody_before_a_statement_has_run_the_threshold() -> None:
    one = _session(1, seq=1, threads={"ds0": 11}, running=10.0)
    idle = _session(2, seq=2, threads={"ds1": 21}, running=0.0)  # holds locks, runs nothing
    detector, sent = _detector([one, idle], {})
    asyncio.run(detector.check(now=10.9))
    assert sent == []
    asyncio.run(detector.check(now=11.0))
    assert [backend for backend, _ in sent] == ["ds0"]  # only where a running one has branches


def test_check_without_a_cycle_or_with_a_server_down_kills_nobody() -> None:
    """2 waits for 1 on ds0 (a plain wait); ds1, where 1 would wait for 2, doesn't answer."""
    one = _session(1, seq=1, threads={"ds0": 11, "ds1": 21}, running=10.0)
    two = _session(2, seq=2, threads={"ds0": 12, "ds1": 22}, running=10.0)
    detector, sent = _detector([one, two], {"ds0": [("11", "1", None), ("12", "1", "11")]})
    asyncio.run(detector.check(now=12.0))
    assert not one.deadlock_victim and not two.deadlock_victim
    assert _kills(sent) == []


def test_check_leaves_a_cycle_whose_statement_ended_meanwhile() -> None:
    """The servers are not asked at one instant: if a member's statement ended while they
    answered, the cycle may be gone, and nobody is killed."""
    one = _session(1, seq=1, threads={"ds0": 11, "ds1": 21}, running=10.0)
    two = _session(2, seq=2, threads={"ds0": 12, "ds1": 22}, running=10.0)
    detector, sent = _detector([one, two], {})
    answers = {"ds0": [("11", "1", None), ("12", "1", "11")], "ds1": [("21", "1", "22")]}

    async def control_query(backend: Any, sql: str) -> list[tuple[str | None, ...]] | None:
        sent.append((backend.name, sql))
        one.running_since = 0.0  # its statement ended while the servers answered
        return answers.get(backend.name)

    detector.control_query = control_query  # type: ignore[method-assign]
    asyncio.run(detector.check(now=12.0))
    assert not two.deadlock_victim and _kills(sent) == []
