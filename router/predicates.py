"""Shard-key predicates kept symbolic, so a cached plan can route new literal values.

The analyzer turns `WHERE user_id IN (?, ?) OR user_id = -?` into a small tree of these; a
cache hit evaluates the tree against the statement's literal values and the table's algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from router.algorithms import ShardAlgorithm
from router.errors import NoShardForValue
from router.literals import literal_value


class Bindings:
    """The literal values of one statement, converted only when routing asks for them."""

    __slots__ = ("new_ids", "params", "texts")

    def __init__(
        self,
        texts: tuple[str, ...],
        params: dict[int, object],
        new_ids: Callable[[int], Sequence[int]] | None = None,
    ):
        self.texts = texts  # every slot's SQL text, parameters already rendered
        self.params = params  # slot -> value, for slots that came from `?` parameters
        # Supplies n generated keys for an INSERT that leaves its generated column out; the
        # proxy passes it in, so the router holds no clock or counter.
        self.new_ids = new_ids

    def value(self, slot: int) -> object:
        """Slot `slot`'s value: the parameter as bound, or the literal read from its text."""
        if slot in self.params:
            return self.params[slot]
        return literal_value(self.texts[slot])


class Unknown:
    """A value the router can't know (e.g. `-'abc'`): route as if any value were possible."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


@dataclass(frozen=True, slots=True)
class Slot:
    """The value of literal slot `index`, negated for `-?`."""

    index: int
    negate: bool = False

    def resolve(self, bindings: Bindings) -> object:
        value = bindings.value(self.index)
        if not self.negate:
            return value
        if isinstance(value, Decimal):
            return value.copy_negate()  # exact: unary minus would round to the context
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
        return UNKNOWN


@dataclass(frozen=True, slots=True)
class Const:
    """A value fixed by the statement's shape, such as NULL."""

    value: object

    def resolve(self, bindings: Bindings) -> object:
        return self.value


Source = Slot | Const


def shard_of(algorithm: ShardAlgorithm, value: object) -> int | None:
    """The shard for a key value; None when no shard can hold it (no rows can match)."""
    try:
        return algorithm.shard_for(value)
    except NoShardForValue:
        return None


@dataclass(frozen=True, slots=True)
class Equals:
    """`key = v`, `key IN (v, ...)`, `key IS NULL` (v = NULL)."""

    values: tuple[Source, ...]

    def shards(self, algorithm: ShardAlgorithm, bindings: Bindings) -> frozenset[int] | None:
        found = set()
        for source in self.values:
            value = source.resolve(bindings)
            if value is UNKNOWN:
                return None
            shard = shard_of(algorithm, value)
            if shard is not None:
                found.add(shard)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Between:
    """`key BETWEEN a AND b`, `key < b`, `key >= a`...: narrows only for range-aware algorithms."""

    low: Source | None
    high: Source | None
    low_inclusive: bool
    high_inclusive: bool

    def shards(self, algorithm: ShardAlgorithm, bindings: Bindings) -> frozenset[int] | None:
        low = None if self.low is None else self.low.resolve(bindings)
        high = None if self.high is None else self.high.resolve(bindings)
        if low is UNKNOWN or high is UNKNOWN:
            return None
        try:
            return algorithm.shards_for_range(low, high, self.low_inclusive, self.high_inclusive)
        except NoShardForValue:
            return None


@dataclass(frozen=True, slots=True)
class AllOf:
    """AND: a row must satisfy every part, so only shards every part allows."""

    parts: tuple[Condition, ...]

    def shards(self, algorithm: ShardAlgorithm, bindings: Bindings) -> frozenset[int] | None:
        result: frozenset[int] | None = None
        for part in self.parts:
            shards = part.shards(algorithm, bindings)
            if shards is not None:
                result = shards if result is None else result & shards
        return result


@dataclass(frozen=True, slots=True)
class AnyOf:
    """OR: a row may satisfy any part, so the union; one unbounded part makes it unbounded."""

    parts: tuple[Condition, ...]

    def shards(self, algorithm: ShardAlgorithm, bindings: Bindings) -> frozenset[int] | None:
        result: set[int] = set()
        for part in self.parts:
            shards = part.shards(algorithm, bindings)
            if shards is None:
                return None
            result |= shards
        return frozenset(result)


Condition = Equals | Between | AllOf | AnyOf
