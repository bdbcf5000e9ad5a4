"""Generated keys (proxy/ids.py): increasing per instance, unique across worker ids, whatever
the clock does."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.ids import EPOCH_MS, WORKERS, SnowflakeIds, decode, worker_for


class FakeClock:
    def __init__(self, millis: int):
        self.millis = millis

    def __call__(self) -> float:
        return self.millis / 1000


def test_layout_time_worker_sequence() -> None:
    clock = FakeClock(EPOCH_MS + 123_456)
    ids = SnowflakeIds(7, clock)
    first, second = ids.next_ids(2)
    assert decode(first) == (clock(), 7, 0)
    assert decode(second) == (clock(), 7, 1)
    assert first == (123_456 << 22) | (7 << 12)
    assert 0 < first < 2**63  # a positive signed BIGINT


def test_increasing_when_the_clock_stands_still_goes_back_or_runs_out_of_sequence() -> None:
    clock = FakeClock(EPOCH_MS + 10_000)
    ids = SnowflakeIds(3, clock)
    keys = ids.next_ids(5000)  # more than 4096 in one millisecond: borrows the next one
    clock.millis -= 5_000  # the clock steps back
    keys += ids.next_ids(10)
    clock.millis += 60_000
    keys += ids.next_ids(1)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(decode(k)[1] == 3 for k in keys)
    assert decode(keys[-1])[0] == clock()  # back on the clock once it is ahead again


@given(
    st.lists(
        st.tuples(st.integers(0, WORKERS - 1), st.integers(-3, 5), st.integers(1, 300)),
        min_size=1,
        max_size=40,
    )
)
def test_unique_across_workers_and_increasing_per_worker(
    steps: list[tuple[int, int, int]],
) -> None:
    clock = FakeClock(EPOCH_MS + 1_000_000)
    instances: dict[int, SnowflakeIds] = {}
    per_worker: dict[int, list[int]] = {}
    for worker, tick, count in steps:
        clock.millis += tick
        ids = instances.setdefault(worker, SnowflakeIds(worker, clock))
        per_worker.setdefault(worker, []).extend(ids.next_ids(count))
    every = [k for keys in per_worker.values() for k in keys]
    assert len(set(every)) == len(every)
    for keys in per_worker.values():
        assert all(a < b for a, b in itertools.pairwise(keys))


def test_worker_ids_are_checked_and_derived_from_the_instance_id() -> None:
    with pytest.raises(ValueError):
        SnowflakeIds(WORKERS)
    assert worker_for("A") == worker_for("A")
    assert 0 <= worker_for("proxy-17") < WORKERS
