"""Shard algorithms: a shard-key value -> a shard number in [0, shard_count)."""

from __future__ import annotations

from typing import Protocol


class ShardAlgorithm(Protocol):
    """What the router needs of an algorithm.

    Values arrive as the SQL literal or bound parameter gave them: int, Decimal, float, str,
    bytes or None (NULL goes to shard 0 by convention).
    """

    shard_count: int

    def shard_for(self, value: object) -> int:
        """The shard holding rows whose key equals `value`; NoShardForValue if none."""
        ...

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        """Shards that can hold keys in the range (None bound = unbounded); None = all."""
        ...
