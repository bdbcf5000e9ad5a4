"""The wait-for graph of proxy.deadlock: cycles are found, and the victims chosen leave none."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.deadlock import DeadlockFound, choose_victims, find_cycle

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
