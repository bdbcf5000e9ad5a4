"""The merge engine: rows from several units in, the rows one server would have returned out.

Pure and synchronous: the executor feeds it decoded rows (tuples of None, int, Decimal, float,
bytes) as they arrive from each unit and sends whatever comes out. A `Merger` is driven like
this:

    while (unit := merger.need()) is not None:
        rows = rows_buffered_for(unit) or None  # None: the unit ended
        send(merger.feed_many(unit, rows))
    send(merger.finish())

`need()` says which unit to read from next: for a merge sort, a unit none of whose rows wait
here, so each unit is read lazily, one batch of the rows its connection already received at a
time (a batch is ordered with the others by one C sort, not a heap step per row). It returns
None when nothing more is needed (every unit ended, or a LIMIT is satisfied).

Memory: rows held at once (groups, distinct keys, rows to sort) are counted against a cap; a
query that would exceed it ends with MergeTooLarge instead of exhausting the proxy's memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from router import values as v
from router.collation import WeightKey, pad_weight
from router.errors import NotSupported, ProxyError
from router.plan import (
    Aggregate,
    BitAgg,
    Col,
    Computed,
    Concat,
    Count,
    CountDistinct,
    Distinct,
    Expr,
    Filter,
    GroupConcat,
    Key,
    Limit,
    Lit,
    Merge,
    MergeSort,
    MinMax,
    Param,
    Project,
    Rule,
    Sort,
    SortKey,
    Sum,
)

Row = tuple[object, ...]

# MySQL column types (protocol "Column Types") the engine needs to tell apart.
_STRING_TYPES = frozenset({15, 245, 247, 248, 249, 250, 251, 252, 253, 254})
ENUM_FLAG = 0x100
SET_FLAG = 0x800
BINARY = 63  # the binary character set: byte strings, compared byte by byte
BIT = 16
GEOMETRY = 255  # compared as its bytes, and sorted by them like a string


@dataclass(frozen=True)
class ColumnInfo:
    """What the engine needs to know of one result column (from its column definition)."""

    type: int
    collation: int = 63
    flags: int = 0
    decimals: int = 0
    length: int = 0  # the most bytes a value may have (0: unknown)

    @property
    def is_string(self) -> bool:
        return self.type in _STRING_TYPES


class MergeTooLarge(ProxyError):
    """ER_TOO_BIG_SELECT: merging would hold more rows in the proxy than the configured cap."""

    code, sqlstate = 1104, "42000"

    def __init__(self, limit: int):
        super().__init__(
            f"Merging this query's results across shards would hold more than {limit} rows in "
            "shardproxy's memory (limits.max_merge_rows); narrow it with WHERE or LIMIT, or "
            "raise the limit"
        )


class Budget:
    """Rows held in memory by one statement's merge, against the configured cap."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    def take(self, count: int = 1) -> None:
        self.held += count
        if self.held > self.limit:
            raise MergeTooLarge(self.limit)

    def give(self, count: int = 1) -> None:
        self.held -= count


# --- keys -----------------------------------------------------------------------------------


# Longest WEIGHT_STRING() column whose weights are padded into plain bytes keys (see below);
# longer ones (TEXT) compare through WeightKey instead of holding padded copies.
MAX_PADDED_WEIGHT = 1024


def _key_getter(key: Key, columns: Sequence[ColumnInfo]) -> Callable[[Row], object]:
    """A function giving a row's comparable value for `key`: None for NULL, the weight for a
    string, the value for anything else."""
    column = key.column
    info = columns[column]
    if info.flags & (ENUM_FLAG | SET_FLAG):
        raise NotSupported("ordering, grouping or DISTINCT on ENUM or SET values across shards")
    if not info.is_string:
        return lambda row: row[column]
    if key.weight is None or key.collation is None:
        if info.collation == BINARY:
            return lambda row: row[column]
        raise NotSupported("comparing strings across shards without their collation weights")
    weight_column = key.weight
    collation_column = key.collation
    # A PAD SPACE weight padded to the longest weight its column may hold orders and compares
    # as the string does (WeightKey's rule) with bytes comparisons alone, which cost a
    # fraction of WeightKey's Python ones; the server's column length bounds its weights.
    size = columns[weight_column].length
    padded_to = size if 0 < size <= MAX_PADDED_WEIGHT else 0
    pads: dict[object, tuple[bytes, int]] = {}

    def get(row: Row) -> object:
        weight = row[weight_column]
        if weight is None:
            if row[column] is not None:
                raise NotSupported("a string whose WEIGHT_STRING() is NULL")
            return None
        name = row[collation_column]
        found = pads.get(name)
        if found is None:
            pad = pad_weight(name.decode() if isinstance(name, bytes) else str(name))
            if pad is None:
                raise NotSupported(f"merging strings of collation {name!r} across shards")
            target = -(-padded_to // len(pad)) * len(pad) if pad else 0
            found = pads[name] = (pad, target)
        assert isinstance(weight, bytes)
        pad, target = found
        if not pad:
            return bytes(weight)
        if not target:
            return WeightKey(weight, pad)
        short = target - len(weight)
        if short < 0 or short % len(pad):
            raise NotSupported("a WEIGHT_STRING() longer than its column says")
        return weight + pad * (short // len(pad))

    return get


class _Desc:
    """Reverses the order of a sort key part."""

    __slots__ = ("part",)

    def __init__(self, part: tuple[object, ...]):
        self.part = part

    def __lt__(self, other: _Desc) -> bool:
        return other.part < self.part  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.part == other.part


def sort_key(keys: Sequence[SortKey], columns: Sequence[ColumnInfo]) -> Callable[[Row], object]:
    """The sort key function MySQL's ORDER BY amounts to: NULLs first ascending, last
    descending; strings by collation weight."""
    getters = [(_key_getter(k.key, columns), k.desc) for k in keys]
    if len(getters) == 1:
        get, desc = getters[0]  # keys of one part need no enclosing tuple

        def one(row: Row) -> object:
            value = get(row)
            part = (0,) if value is None else (1, value)
            return _Desc(part) if desc else part

        return one

    def key(row: Row) -> tuple:
        parts: list[object] = []
        for get, desc in getters:
            value = get(row)
            part = (0,) if value is None else (1, value)
            parts.append(_Desc(part) if desc else part)
        return tuple(parts)

    return key


def group_key(keys: Sequence[Key], columns: Sequence[ColumnInfo]) -> Callable[[Row], tuple]:
    """A hashable key equal for rows MySQL puts in one group (or calls DISTINCT-equal)."""
    getters = [_key_getter(k, columns) for k in keys]
    if len(getters) == 1:
        (get,) = getters
        return lambda row: (get(row),)
    return lambda row: tuple([get(row) for get in getters])


# --- expressions ----------------------------------------------------------------------------

_ARITHMETIC = frozenset({"+", "-", "*", "DIV", "%", "MOD"})
_COMPARISON = frozenset({"=", "<>", "!=", "<", "<=", ">", ">=", "<=>"})
_LOGICAL = frozenset({"AND", "OR", "XOR", "NOT"})


def evaluate(expr: Expr, row: Row) -> object:
    """An expression's value over a merged row, with MySQL semantics."""
    if isinstance(expr, Col):
        return row[expr.index]
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Param):  # pragma: no cover - bound before running
        raise AssertionError("unbound parameter in a merge expression")
    name = expr.name
    args = [evaluate(arg, row) for arg in expr.args]
    if name == "/":
        increment = args[2] if len(args) > 2 else None
        if not isinstance(increment, int):
            increment = v.DEFAULT_DIV_INCREMENT
        return v.divide(args[0], args[1], increment)
    if name in _ARITHMETIC:
        return v.arithmetic("%" if name == "MOD" else name, args[0], args[1])
    if name in _COMPARISON:
        return v.comparison(name, args[0], args[1])
    if name in _LOGICAL:
        return v.logical(name, args)
    if name == "NEG":
        return v.negate(args[0])
    if name == "IS NULL":
        return int(args[0] is None)
    if name == "IS NOT NULL":
        return int(args[0] is not None)
    if name in ("IFNULL", "COALESCE"):
        return next((a for a in args if a is not None), None)
    if name == "NULLIF":
        return None if v.comparison("=", args[0], args[1]) == 1 else args[0]
    if name == "IF":
        return args[1] if v.truth(args[0]) else args[2]
    if name == "ABS":
        value = args[0]
        if value is None:
            return None
        return v.negate(value) if v.compare(value, 0) == -1 else value
    raise NotSupported(f"{name} while merging results across shards")  # pragma: no cover


# --- aggregation ----------------------------------------------------------------------------


def _add(total: object, value: object) -> object:
    if value is None:
        return total
    if total is None:
        return value
    if isinstance(total, float) or isinstance(value, float):
        return float(total) + float(value)  # type: ignore[arg-type]
    return v.arithmetic("+", total, value) if isinstance(total, Decimal) else total + value  # type: ignore[operator]


class _Rules:
    """Applies one Aggregate's rules: folds rows into per-group states, finishes groups."""

    def __init__(self, node: Aggregate, columns: Sequence[ColumnInfo], budget: Budget):
        self.budget = budget
        self.width = len(columns)
        self.simple: list[tuple[int, Rule]] = []  # rules folded row by row
        self.computed: list[tuple[int, Computed]] = []
        self.getters: dict[int, Callable[[Row], object]] = {}
        self.group_getters: dict[int, Callable[[Row], tuple]] = {}
        for index, rule in node.rules:
            if isinstance(rule, Computed):
                self.computed.append((index, rule))
                continue
            self.simple.append((index, rule))
            if isinstance(rule, MinMax):
                if columns[index].type == BIT:
                    # MariaDB sends MIN/MAX of a BIT as its bytes or as its decimal text
                    # depending on the plan (b'\xff' or b'255'), and the two can't be told
                    # apart (b'9' is both 57 and 9).
                    raise NotSupported("MIN() or MAX() of BIT values across shards")
                self.getters[index] = _key_getter(rule.key, columns)
            elif isinstance(rule, CountDistinct):
                self.group_getters[index] = group_key(rule.keys, columns)

    def start(self) -> list[object]:
        """Fresh states, one per folded rule."""
        states: list[object] = []
        for _, rule in self.simple:
            if isinstance(rule, Count):
                states.append(0)
            elif isinstance(rule, CountDistinct):
                states.append(set())
            elif isinstance(rule, GroupConcat):
                states.append([])
            else:
                states.append(None)
        return states

    def fold(self, states: list[object], row: Row) -> None:
        for position, (index, rule) in enumerate(self.simple):
            value = row[index]
            if isinstance(rule, Sum):
                states[position] = _add(states[position], value)
            elif isinstance(rule, Count):
                states[position] += value or 0  # type: ignore[operator]
            elif isinstance(rule, MinMax):
                if value is None:
                    continue
                key = self.getters[index](row)
                best = states[position]
                if (
                    best is None
                    or (rule.is_max and best[0] < key)  # type: ignore[index]
                    or (not rule.is_max and key < best[0])  # type: ignore[index]
                ):
                    weight = row[rule.key.weight] if rule.key.weight is not None else None
                    states[position] = (key, value, weight)
            elif isinstance(rule, CountDistinct):
                key = self.group_getters[index](row)
                seen = states[position]
                assert isinstance(seen, set)
                if None not in key and key not in seen:
                    self.budget.take()
                    seen.add(key)
            elif isinstance(rule, GroupConcat) and value is not None:
                self.budget.take()
                states[position].append(value)  # type: ignore[union-attr]
            elif isinstance(rule, BitAgg) and value is not None:
                current = states[position]
                assert isinstance(value, int)
                if current is None:
                    states[position] = value
                elif rule.op == "AND":
                    states[position] = current & value  # type: ignore[operator]
                elif rule.op == "OR":
                    states[position] = current | value  # type: ignore[operator]
                else:
                    states[position] = current ^ value  # type: ignore[operator]

    def finish(self, first: Row | None, states: list[object]) -> Row:
        """The group's merged row: rule results over the first row's values."""
        out = list(first) if first is not None else [None] * self.width
        for position, (index, rule) in enumerate(self.simple):
            state = states[position]
            if isinstance(rule, MinMax):
                if state is None:
                    out[index] = None
                    if rule.key.weight is not None:
                        out[rule.key.weight] = None
                else:
                    _, out[index], weight = state  # type: ignore[misc]
                    if rule.key.weight is not None:
                        out[rule.key.weight] = weight
            elif isinstance(rule, CountDistinct):
                assert isinstance(state, set)
                out[index] = len(state)
                self.budget.give(len(state))
            elif isinstance(rule, GroupConcat):
                assert isinstance(state, list)
                self.budget.give(len(state))
                out[index] = _group_concat(state, rule, out) if state else None
            elif isinstance(rule, BitAgg) and state is None:
                # No rows at all: the identity of the operation, as MySQL returns it.
                out[index] = (1 << 64) - 1 if rule.op == "AND" else 0
            else:
                out[index] = state
        row = tuple(out)
        for index, rule in self.computed:
            out[index] = evaluate(rule.expr, row)
            row = tuple(out)
        return row


def _group_concat(parts: list[object], rule: GroupConcat, row: list[object]) -> bytes:
    separator = rule.separator.value if isinstance(rule.separator, Lit) else ","
    if isinstance(separator, str):
        separator = separator.encode("utf-8", "surrogateescape")
    assert isinstance(separator, bytes)
    text = separator.join(p for p in parts if isinstance(p, bytes))
    max_len = row[rule.max_len]
    if isinstance(max_len, int) and len(text) > max_len:
        text = _cut_utf8(text, max_len)
    return text


def _cut_utf8(text: bytes, size: int) -> bytes:
    """The first `size` bytes of UTF-8 text, less a character that would be cut in half."""
    cut = text[:size]
    start = len(cut) - 1
    while start >= 0 and (cut[start] & 0xC0) == 0x80:
        start -= 1
    if start < 0:
        return b""
    lead = cut[start]
    length = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return cut if len(cut) - start >= length else cut[:start]


# --- stages ---------------------------------------------------------------------------------


class _Stage:
    """One primitive above the source: rows pushed in, rows out."""

    done = False

    def push(self, row: Row) -> Iterable[Row]:
        raise NotImplementedError

    def push_many(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            out.extend(self.push(row))
        return out

    def finish(self) -> Iterable[Row]:
        return ()


class _AggregateStage(_Stage):
    def __init__(self, node: Aggregate, columns: Sequence[ColumnInfo], budget: Budget):
        self.node = node
        self.rules = _Rules(node, columns, budget)
        self.key = group_key(node.group, columns)
        self.budget = budget
        self.groups: dict[tuple, tuple[Row, list[object]]] = {}

    def push(self, row: Row) -> Iterable[Row]:
        key = self.key(row)
        group = self.groups.get(key)
        if group is None:
            self.budget.take()
            group = (row, self.rules.start())
            self.groups[key] = group
        self.rules.fold(group[1], row)
        return ()

    def finish(self) -> Iterable[Row]:
        if not self.groups and self.node.scalar:
            yield self.rules.finish(None, self.rules.start())
            return
        groups = self.groups
        self.groups = {}
        for first, states in groups.values():
            self.budget.give()
            yield self.rules.finish(first, states)


class _FilterStage(_Stage):
    def __init__(self, node: Filter):
        self.condition = node.condition

    def push(self, row: Row) -> Iterable[Row]:
        return (row,) if v.truth(evaluate(self.condition, row)) else ()

    def push_many(self, rows: list[Row]) -> list[Row]:
        condition = self.condition
        return [row for row in rows if v.truth(evaluate(condition, row))]


class _SortStage(_Stage):
    def __init__(self, node: Sort, columns: Sequence[ColumnInfo], budget: Budget):
        self.key = sort_key(node.keys, columns)
        self.budget = budget
        self.rows: list[Row] = []

    def push(self, row: Row) -> Iterable[Row]:
        self.budget.take()
        self.rows.append(row)
        return ()

    def finish(self) -> Iterable[Row]:
        rows = self.rows
        self.rows = []
        rows.sort(key=self.key)
        self.budget.give(len(rows))
        return rows


class _DistinctStage(_Stage):
    def __init__(self, node: Distinct, columns: Sequence[ColumnInfo], budget: Budget):
        self.key = group_key(node.keys, columns)
        self.budget = budget
        self.seen: set[tuple] = set()

    def push(self, row: Row) -> Iterable[Row]:
        key = self.key(row)
        if key in self.seen:
            return ()
        self.budget.take()
        self.seen.add(key)
        return (row,)

    def push_many(self, rows: list[Row]) -> list[Row]:
        key, seen, out = self.key, self.seen, []
        for row in rows:
            k = key(row)
            if k not in seen:
                seen.add(k)
                out.append(row)
        self.budget.take(len(out))
        return out


class _SortedDistinctStage(_Stage):
    """DISTINCT over rows that come ordered by its keys (a merge sort on them): equal rows are
    adjacent, so each is compared with the last one kept, and nothing is held (no budget: a
    DISTINCT of millions of values streams)."""

    def __init__(self, node: Distinct, columns: Sequence[ColumnInfo]):
        self.key = group_key(node.keys, columns)
        self.last: object = _NO_ROW

    def push(self, row: Row) -> Iterable[Row]:
        return self.push_many([row])

    def push_many(self, rows: list[Row]) -> list[Row]:
        key, last, out = self.key, self.last, []
        for row in rows:
            k = key(row)
            if k != last:
                out.append(row)
                last = k
        self.last = last
        return out


def _sorted_by(
    source: Concat | MergeSort, keys: Sequence[Key], columns: Sequence[ColumnInfo]
) -> bool:
    """Whether rows of `source` come with rows equal on `keys` adjacent: a merge sort whose
    first len(keys) sort keys are those keys, in any order and direction, each of which the
    shards sort in full (see _fully_sorted)."""
    if not isinstance(source, MergeSort):
        return False
    if set(keys) != {sort.key for sort in source.keys[: len(keys)]}:
        return False
    return all(_fully_sorted(key, columns) for key in keys)


# MariaDB's least max_sort_length (bytes): a shard's ORDER BY compares a string's sort key (its
# weights) only up to the session's max_sort_length (1024 by default, 64 at least), leaving
# strings alike that far in any order, which the proxy's comparison of whole weights then sees
# out of order: equal rows of two shards need not meet in the merge.
MIN_MAX_SORT_LENGTH = 64


def _fully_sorted(key: Key, columns: Sequence[ColumnInfo]) -> bool:
    """Whether every shard orders this key's values exactly as the merge compares them: any
    value but a string (or geometry), or a string whose weights (at most its WEIGHT_STRING()
    column's length, or its own length without one) fit in any max_sort_length."""
    info = columns[key.column]
    if not info.is_string and info.type != GEOMETRY:
        return True
    size = columns[key.weight].length if key.weight is not None else info.length
    return 0 < size <= MIN_MAX_SORT_LENGTH


# Before any row: unequal to every key.
_NO_ROW = object()


class _LimitStage(_Stage):
    def __init__(self, node: Limit):
        assert isinstance(node.offset, int) and isinstance(node.count, int), "bind first"
        self.skip = node.offset
        self.left = node.count
        self.done = self.left <= 0

    def push(self, row: Row) -> Iterable[Row]:
        if self.skip:
            self.skip -= 1
            return ()
        if self.left <= 0:
            return ()
        self.left -= 1
        self.done = self.left <= 0
        return (row,)

    def push_many(self, rows: list[Row]) -> list[Row]:
        skipped = min(self.skip, len(rows))
        self.skip -= skipped
        out = rows[skipped : skipped + max(self.left, 0)]
        self.left -= len(out)
        self.done = self.left <= 0
        return out


class _ProjectStage(_Stage):
    def __init__(self, node: Project):
        self.hidden = node.hidden

    def push(self, row: Row) -> Iterable[Row]:
        return (row[: -self.hidden] if self.hidden else row,)

    def push_many(self, rows: list[Row]) -> list[Row]:
        hidden = self.hidden
        return [row[:-hidden] for row in rows] if hidden else rows


def _stages(
    node: Merge, columns: Sequence[ColumnInfo], budget: Budget
) -> tuple[Concat | MergeSort, list[_Stage]]:
    """The plan's leaf, and its stages from the leaf upwards."""
    if isinstance(node, Concat | MergeSort):
        return node, []
    source, stages = _stages(node.source, columns, budget)
    if isinstance(node, Aggregate):
        stages.append(_AggregateStage(node, columns, budget))
    elif isinstance(node, Filter):
        stages.append(_FilterStage(node))
    elif isinstance(node, Sort):
        stages.append(_SortStage(node, columns, budget))
    elif isinstance(node, Distinct):
        if not stages and _sorted_by(source, node.keys, columns):
            stages.append(_SortedDistinctStage(node, columns))
        else:
            stages.append(_DistinctStage(node, columns, budget))
    elif isinstance(node, Limit):
        stages.append(_LimitStage(node))
    else:
        stages.append(_ProjectStage(node))
    return source, stages


class Merger:
    """Runs one bound merge plan over `units` row streams; see the module docstring."""

    def __init__(
        self,
        plan: Merge,
        columns: Sequence[ColumnInfo],
        units: int,
        budget: Budget | None = None,
    ):
        self.budget = budget if budget is not None else Budget(1 << 62)
        source, self.stages = _stages(plan, columns, self.budget)
        self.limits = [stage for stage in self.stages if isinstance(stage, _LimitStage)]
        self.sorted = isinstance(source, MergeSort)
        self.key = sort_key(source.keys, columns) if isinstance(source, MergeSort) else None
        self.ended = [False] * units
        # Merge sort: each unit's rows read but not out yet, and their keys (both in order).
        self.pending: list[list[Row]] = [[] for _ in range(units)]
        self.pending_keys: list[list[object]] = [[] for _ in range(units)]
        self.current = 0  # Concat: the unit being read

    @property
    def done(self) -> bool:
        """No more input is needed (a LIMIT is satisfied)."""
        return any(stage.done for stage in self.limits)

    def need(self) -> int | None:
        """The unit to read the next rows from, or None when no more input is needed."""
        if self.limits and self.done:
            return None
        if not self.sorted:
            while self.current < len(self.ended) and self.ended[self.current]:
                self.current += 1
            return self.current if self.current < len(self.ended) else None
        pending = self.pending
        for unit, ended in enumerate(self.ended):
            if not ended and not pending[unit]:
                return unit
        return None

    def feed(self, unit: int, row: Row | None) -> list[Row]:
        """A unit's next row (None: it has no more); returns rows ready for the client."""
        return self.feed_many(unit, None if row is None else (row,))

    def feed_many(self, unit: int, rows: Sequence[Row] | None) -> list[Row]:
        """A unit's next rows, in its order (None: it has no more); returns rows ready for
        the client. Feeding many rows at once lets a merge sort order them in one C sort."""
        if rows is None:
            self.ended[unit] = True
        elif not self.sorted:
            return self._push(rows) if self.stages else list(rows)
        elif rows:
            assert self.key is not None and not self.pending[unit], "feed the unit need() names"
            self.pending[unit] = list(rows)
            self.pending_keys[unit] = list(map(self.key, rows))
        if self.limits and self.done:
            return []
        ready = self._ready()
        return self._push(ready) if self.stages and ready else ready

    def _ready(self) -> list[Row]:
        """Merge sort: the pending rows no row still unread can precede, in order.

        The merged order is (key, unit, position in unit), as a k-way merge by (key, unit)
        gives. Every open unit's last pending row bounds what it may still send, so with
        (key, unit) of the least of those last rows as the bound, a unit's pending rows up to
        the bound are ready (rows equal to its key only from units not after the bound's).
        The bound's unit is emptied whole, so it is read next: the merge always advances."""
        pending, keys = self.pending, self.pending_keys
        bound: tuple[object, int] | None = None
        for unit, ended in enumerate(self.ended):
            if ended:
                continue
            if not pending[unit]:
                return []  # that unit's next row is unknown: nothing is safe yet
            last = (keys[unit][-1], unit)
            if bound is None or last < bound:
                bound = last
        ready_rows: list[Row] = []
        ready_keys: list[object] = []
        runs = 0
        for unit, rows in enumerate(pending):
            if not rows:
                continue
            unit_keys = keys[unit]
            if bound is None or unit == bound[1]:
                cut = len(rows)
            elif unit < bound[1]:
                cut = bisect.bisect_right(unit_keys, bound[0])  # type: ignore[arg-type]
            else:
                cut = bisect.bisect_left(unit_keys, bound[0])  # type: ignore[arg-type]
            if not cut:
                continue
            runs += 1
            if cut == len(rows):
                ready_rows += rows
                ready_keys += unit_keys
                pending[unit] = []
                keys[unit] = []
            else:
                ready_rows += rows[:cut]
                ready_keys += unit_keys[:cut]
                del rows[:cut], unit_keys[:cut]
        if runs < 2:
            return ready_rows
        # Runs appended in unit order and a stable sort by key: (key, unit, position) order.
        order = sorted(range(len(ready_rows)), key=ready_keys.__getitem__)
        return [ready_rows[i] for i in order]

    def _push(self, rows: Iterable[Row]) -> list[Row]:
        """Rows through every stage, in order; stages after a satisfied LIMIT get none."""
        out = rows if isinstance(rows, list) else list(rows)
        for stage in self.stages:
            if stage.done:
                return []
            out = stage.push_many(out)
            if not out:
                return out
        return out

    def finish(self) -> list[Row]:
        """Rows that come out once all input is in (groups, sorted rows)."""
        out: list[Row] = []
        if self.sorted and not self.done:
            self.ended = [True] * len(self.ended)  # whatever is pending is all there is
            ready = self._ready()
            out = self._push(ready) if self.stages and ready else ready
        for position, stage in enumerate(self.stages):
            rows = list(stage.finish())
            for later in self.stages[position + 1 :]:
                if later.done or not rows:
                    rows = []
                    break
                rows = later.push_many(rows)
            out.extend(rows)
        return out


def run(
    plan: Merge,
    columns: Sequence[ColumnInfo],
    units: Sequence[Iterable[Row]],
    max_rows: int = 1 << 62,
) -> list[Row]:
    """Merge in-memory unit results (for tests and small results)."""
    iterators = [iter(rows) for rows in units]
    merger = Merger(plan, columns, len(units), Budget(max_rows))
    out: list[Row] = []
    while (unit := merger.need()) is not None:
        out.extend(merger.feed(unit, next(iterators[unit], None)))
    out.extend(merger.finish())
    return out
