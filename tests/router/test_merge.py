"""The merge engine against a plain Python model of what one server would return.

Units are generated the way shards produce them: each sorted by the merge keys (for a merge
sort) or already grouped (for an aggregate), with string keys carrying a WEIGHT_STRING() as
utf8mb4_general_ci computes it: one 2-byte weight per character, case- and accent-insensitive,
and PAD SPACE ('a' = 'a ').
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import NotSupported
from router.merge import Budget, ColumnInfo, Merger, MergeTooLarge, run
from router.plan import (
    Aggregate,
    Col,
    Computed,
    Concat,
    Count,
    CountDistinct,
    Distinct,
    Filter,
    GroupConcat,
    Key,
    Limit,
    Lit,
    Merge,
    MergeSort,
    MinMax,
    Op,
    Project,
    Sort,
    SortKey,
    Sum,
)

VARCHAR, LONG, NEWDECIMAL = 253, 3, 246
GENERAL_CI = b"utf8mb4_general_ci"
LETTERS = ["a", "A", "á", "b", "B", "z", " ", "\t", "😀", "🎉"]


def fold_char(char: str) -> str:
    if char > "\uffff":
        return "\ufffd"
    decomposed = unicodedata.normalize("NFD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def weight(text: str) -> bytes:
    """WEIGHT_STRING(text) under utf8mb4_general_ci (for this alphabet)."""
    return b"".join(ord(fold_char(c)).to_bytes(2, "big") for c in text)


def model_key(text: str, width: int = 12) -> str:
    """What utf8mb4_general_ci compares: folded, padded with spaces (PAD SPACE)."""
    return "".join(fold_char(c) for c in text).ljust(width, " ")


strings = st.lists(st.sampled_from(LETTERS), max_size=4).map("".join)
maybe_strings = st.one_of(st.none(), strings)


def string_row(text: str | None, number: int) -> tuple[object, ...]:
    """(value, weight, collation, number) as a unit returns `SELECT s, n` with hidden keys."""
    if text is None:
        return (None, None, b"binary", number)
    return (text.encode(), weight(text), GENERAL_CI, number)


# The declared length of a WEIGHT_STRING() column: 0 (unknown) compares through WeightKey, 8
# (the longest weight here, 4 characters) through weights padded into plain bytes.
WEIGHT_LENGTHS = pytest.mark.parametrize("weight_length", [0, 8])


def string_columns(weight_length: int) -> list[ColumnInfo]:
    """Columns of string_row(), the weight column declaring `weight_length` bytes."""
    return [
        ColumnInfo(VARCHAR, 45),
        ColumnInfo(VARCHAR, 63, length=weight_length),
        ColumnInfo(VARCHAR, 45),
        ColumnInfo(LONG),
    ]


STRING_COLUMNS = string_columns(0)
STRING_KEY = Key(0, 1, 2)


def null_first(text: str | None) -> tuple:
    return (0,) if text is None else (1, model_key(text))


@WEIGHT_LENGTHS
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(maybe_strings, st.integers(-5, 5)), max_size=8), min_size=1, max_size=4
    ),
    st.booleans(),
    st.integers(0, 10),
    st.integers(0, 12),
)
def test_merge_sort_with_limit_matches_one_sorted_result(
    weight_length: int,
    units: list[list[tuple[str | None, int]]],
    desc: bool,
    offset: int,
    count: int,
) -> None:
    def key(row: tuple[str | None, int]) -> tuple:
        return (null_first(row[0]), row[1])

    shard_rows = [sorted(unit, key=key, reverse=desc) for unit in units]
    plan = Limit(MergeSort((SortKey(STRING_KEY, desc), SortKey(Key(3), desc))), offset, count)
    columns = string_columns(weight_length)
    out = run(plan, columns, [[string_row(*r) for r in rows] for rows in shard_rows])
    everything = sorted((r for unit in units for r in unit), key=key, reverse=desc)
    expected = everything[offset : offset + count]
    assert [key((None if r[0] is None else r[0].decode(), r[3])) for r in out] == [
        key(r) for r in expected
    ]


def feed_in_batches(
    plan: Merge,
    columns: list[ColumnInfo],
    units: list[list[tuple[object, ...]]],
    sizes: list[int],
) -> list[tuple[object, ...]]:
    """Merge `units` as the executor does: each read hands over the rows it found buffered,
    here the next `sizes` (cycled) of the unit that need() names."""
    merger = Merger(plan, columns, len(units))
    positions = [0] * len(units)
    out: list[tuple[object, ...]] = []
    reads = 0
    while (unit := merger.need()) is not None:
        start = positions[unit]
        size = sizes[reads % len(sizes)]
        reads += 1
        batch = units[unit][start : start + size]
        positions[unit] += len(batch)
        out += merger.feed_many(unit, batch or None)
    return out + merger.finish()


@WEIGHT_LENGTHS
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.tuples(maybe_strings, st.integers(-3, 3)), max_size=9), max_size=4),
    st.lists(st.integers(1, 5), min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from([None, (0, 3), (2, 4), (1, 0)]),
)
def test_rows_fed_in_batches_come_out_in_key_unit_position_order(
    weight_length: int,
    units: list[list[tuple[str | None, int]]],
    sizes: list[int],
    distinct: bool,
    limit: tuple[int, int] | None,
) -> None:
    """Whatever the batches, the output is that of a k-way merge by (key, unit): rows ordered
    by key, ties by unit, then by their place in the unit (the third column tells them apart)."""
    shard_rows = [
        [string_row(text, number) for text, number in sorted(unit, key=lambda r: null_first(r[0]))]
        for unit in units
    ]
    if not shard_rows:
        shard_rows = [[]]
    plan: Merge = MergeSort((SortKey(STRING_KEY),))
    if distinct:
        plan = Distinct(plan, (STRING_KEY,))
    if limit is not None:
        plan = Limit(plan, *limit)
    tagged = [
        [(r[0], r[1], r[2], r[3], (unit, position)) for position, r in enumerate(rows)]
        for unit, rows in enumerate(shard_rows)
    ]
    columns = [*string_columns(weight_length), ColumnInfo(LONG)]  # the tag: (unit, position)
    out = feed_in_batches(plan, columns, tagged, sizes)
    everything = sorted(
        (r for rows in tagged for r in rows),
        key=lambda r: (null_first(None if r[0] is None else r[0].decode()), r[4]),
    )
    if distinct:
        seen: set[tuple] = set()
        firsts = []
        for r in everything:
            key = null_first(None if r[0] is None else r[0].decode())
            if key not in seen:
                seen.add(key)
                firsts.append(r)
        everything = firsts
    if limit is not None:
        everything = everything[limit[0] : limit[0] + limit[1]]
    assert [r[4] for r in out] == [r[4] for r in everything]
    # One row at a time gives the same rows in the same order.
    assert out == feed_in_batches(plan, columns, tagged, [1])


@WEIGHT_LENGTHS
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(maybe_strings, max_size=8), min_size=1, max_size=4))
def test_distinct_keeps_one_row_per_collation_equal_value(
    weight_length: int, units: list[list[str | None]]
) -> None:
    plan = Project(Distinct(Concat(), (STRING_KEY,)), 3)
    columns = string_columns(weight_length)
    out = run(plan, columns, [[string_row(s, 0) for s in unit] for unit in units])
    values = [None if r[0] is None else r[0].decode() for r in out]
    expected = {None if s is None else model_key(s) for unit in units for s in unit}
    assert sorted(null_first(v) for v in values) == sorted(
        (0,) if v is None else (1, v) for v in expected
    )


@WEIGHT_LENGTHS
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(maybe_strings, st.one_of(st.none(), st.integers(-50, 50))), max_size=10),
        min_size=1,
        max_size=4,
    )
)
def test_grouping_merges_partial_aggregates(
    weight_length: int,
    units: list[list[tuple[str | None, int | None]]],
) -> None:
    """Each unit returns `SELECT g, COUNT(*), COUNT(v), SUM(v), MIN(v), MAX(v), AVG(v) ...
    GROUP BY g` with hidden WEIGHT_STRING(g), COLLATION(g), SUM(v), COUNT(v); the merged groups
    must equal grouping all rows at once."""
    columns = [
        ColumnInfo(VARCHAR, 45),  # 0 g
        ColumnInfo(8),  # 1 COUNT(*)
        ColumnInfo(8),  # 2 COUNT(v)
        ColumnInfo(NEWDECIMAL),  # 3 SUM(v)
        ColumnInfo(LONG),  # 4 MIN(v)
        ColumnInfo(LONG),  # 5 MAX(v)
        ColumnInfo(NEWDECIMAL, decimals=4),  # 6 AVG(v)
        ColumnInfo(VARCHAR, 63, length=weight_length),  # 7 WEIGHT_STRING(g)
        ColumnInfo(VARCHAR, 45),  # 8 COLLATION(g)
        ColumnInfo(NEWDECIMAL),  # 9 SUM(v)
        ColumnInfo(8),  # 10 COUNT(v)
    ]
    plan = Project(
        Aggregate(
            Concat(),
            (Key(0, 7, 8),),
            (
                (1, Count()),
                (2, Count()),
                (3, Sum()),
                (4, MinMax(Key(4), False)),
                (5, MinMax(Key(5), True)),
                (6, Computed(Op("/", (Col(9), Col(10))))),
                (9, Sum()),
                (10, Count()),
            ),
        ),
        4,
    )
    shards = []
    for unit in units:
        groups: dict[object, list[tuple[str | None, int | None]]] = defaultdict(list)
        for row in unit:
            groups[None if row[0] is None else model_key(row[0])].append(row)
        partials = []
        for rows in groups.values():
            text = rows[0][0]
            present = [v for _, v in rows if v is not None]
            total = Decimal(sum(present)) if present else None
            partials.append(
                (
                    None if text is None else text.encode(),
                    len(rows),
                    len(present),
                    total,
                    min(present) if present else None,
                    max(present) if present else None,
                    None,
                    None if text is None else weight(text),
                    GENERAL_CI,
                    total,
                    len(present),
                )
            )
        shards.append(partials)
    out = run(plan, columns, shards)
    everything: dict[object, list[int | None]] = defaultdict(list)
    for unit in units:
        for text, value in unit:
            everything[None if text is None else model_key(text)].append(value)
    assert len(out) == len(everything)
    for row in out:
        name = None if row[0] is None else model_key(row[0].decode())  # type: ignore[union-attr]
        values = everything[name]
        present = [v for v in values if v is not None]
        assert row[1] == len(values)
        assert row[2] == len(present)
        assert row[3] == (Decimal(sum(present)) if present else None)
        assert row[4] == (min(present) if present else None)
        assert row[5] == (max(present) if present else None)
        if present:
            exact = Decimal(sum(present)) / len(present)
            assert abs(row[6] - exact) < Decimal("1e-9")  # type: ignore[operator]
        else:
            assert row[6] is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), maybe_strings), max_size=10), max_size=4))
def test_count_distinct_counts_collation_distinct_values(
    units: list[list[tuple[int, str | None]]],
) -> None:
    """COUNT(DISTINCT s) GROUP BY g: units group by (g, s) and the proxy counts the s."""
    columns = [ColumnInfo(LONG), ColumnInfo(8), ColumnInfo(VARCHAR, 45)]
    columns += [ColumnInfo(VARCHAR, 63), ColumnInfo(VARCHAR, 45)]
    plan = Project(
        Sort(
            Aggregate(Concat(), (Key(0),), ((1, CountDistinct((Key(2, 3, 4),))),)),
            (SortKey(Key(0)),),
        ),
        3,
    )
    shards = []
    for unit in units:
        seen = {}
        for group, text in unit:
            seen.setdefault((group, None if text is None else model_key(text)), (group, text))
        shards.append(
            [
                (
                    g,
                    1,
                    None if t is None else t.encode(),
                    None if t is None else weight(t),
                    GENERAL_CI,
                )
                for g, t in seen.values()
            ]
        )
    out = run(plan, columns, shards)
    expected: dict[int, set[str]] = defaultdict(set)
    for unit in units:
        for group, text in unit:
            expected[group]
            if text is not None:
                expected[group].add(model_key(text))
    assert out == [(g, len(expected[g])) for g in sorted(expected)]


def test_scalar_aggregate_over_no_rows_gives_one_row() -> None:
    columns = [ColumnInfo(8), ColumnInfo(NEWDECIMAL), ColumnInfo(LONG), ColumnInfo(8)]
    plan = Aggregate(
        Concat(), (), ((0, Count()), (1, Sum()), (2, MinMax(Key(2), True)), (3, Count())), True
    )
    assert run(plan, columns, [[], []]) == [(0, None, None, 0)]
    grouped = Aggregate(Concat(), (Key(2),), ((0, Count()),), False)
    assert run(grouped, columns, [[], []]) == []


def test_min_max_of_bit_values_is_refused() -> None:
    """MariaDB sends MAX(bit) as the value's bytes or as its decimal text depending on the plan
    (b'\\xff' grouping through a temporary table, b'255' without GROUP BY or in index order):
    neither comparing nor computing with them can be trusted across shards."""
    bit = 16
    for grouped in (False, True):
        plan = Aggregate(
            Concat(), (Key(1),) if grouped else (), ((0, MinMax(Key(0), True)),), not grouped
        )
        with pytest.raises(NotSupported, match="BIT"):
            run(plan, [ColumnInfo(bit), ColumnInfo(LONG)], [[(b"255", 1)], [(b"\xff", 1)]])


def test_having_filters_merged_groups() -> None:
    columns = [ColumnInfo(LONG), ColumnInfo(8)]
    plan = Filter(Aggregate(Concat(), (Key(0),), ((1, Count()),)), Op(">", (Col(1), Lit(2))))
    units = [[(1, 2), (2, 1)], [(1, 1), (2, 1), (3, 5)]]
    assert sorted(run(plan, columns, units)) == [(1, 3), (3, 5)]  # type: ignore[type-var]


def test_group_concat_joins_parts_and_cuts_at_max_len() -> None:
    columns = [ColumnInfo(LONG), ColumnInfo(252, 45), ColumnInfo(8)]
    plan = Aggregate(Concat(), (Key(0),), ((1, GroupConcat(Lit("-"), 2)),))
    units = [[(1, b"ab", 7)], [(1, b"cd", 7)], [(1, None, 7)], [(1, b"\xc3\xa9f", 7)]]
    assert run(plan, columns, units) == [(1, b"ab-cd-", 7)]  # never half of the 'é'
    units = [[(1, b"ab", 8)], [(1, b"cd", 8)], [(1, b"\xc3\xa9f", 8)]]
    assert run(plan, columns, units) == [(1, b"ab-cd-\xc3\xa9", 8)]


def test_limit_stops_reading() -> None:
    plan = Limit(MergeSort((SortKey(Key(0)),)), 0, 2)
    merger = Merger(plan, [ColumnInfo(LONG)], 2)
    reads = 0
    units = [iter([(1,), (3,), (5,)]), iter([(2,), (4,)])]
    out = []
    while (unit := merger.need()) is not None:
        reads += 1
        out += merger.feed(unit, next(units[unit], None))
    assert out == [(1,), (2,)]
    assert reads == 3  # one head per unit, then the row after the first minimum


def test_memory_cap_ends_the_query() -> None:
    plan = Aggregate(Concat(), (Key(0),), ((1, Count()),))
    columns = [ColumnInfo(LONG), ColumnInfo(8)]
    with pytest.raises(MergeTooLarge) as error:
        run(plan, columns, [[(i, 1) for i in range(11)]], max_rows=10)
    assert error.value.code == 1104
    assert len(run(plan, columns, [[(i, 1) for i in range(10)]], max_rows=10)) == 10
    sort = Sort(Concat(), (SortKey(Key(0)),))
    with pytest.raises(MergeTooLarge):
        run(sort, columns, [[(i, 1) for i in range(6)]], max_rows=5)
    budget = Budget(5)
    merger = Merger(sort, columns, 1, budget)
    for i in range(5):
        merger.feed(0, (i, 1))
    merger.feed(0, None)
    assert len(merger.finish()) == 5
    assert budget.held == 0  # what the merge held is given back


def test_a_distinct_over_a_merge_sort_on_its_keys_streams() -> None:
    """Rows sorted by the DISTINCT keys (in any order of those keys) have equal ones adjacent:
    no set of seen keys, so the memory cap doesn't count them; any other input keeps the set."""
    columns = [ColumnInfo(LONG), ColumnInfo(LONG)]
    units = [
        [(i // 2, i % 3) for i in range(0, 100, 2)],
        [(i // 2, i % 3) for i in range(1, 100, 2)],
    ]
    units = [sorted(unit, key=lambda r: (-r[1], r[0])) for unit in units]
    expected = sorted({(a, b) for unit in units for a, b in unit}, key=lambda r: (-r[1], r[0]))
    by_b_then_a = MergeSort((SortKey(Key(1), desc=True), SortKey(Key(0))))
    plan = Distinct(by_b_then_a, (Key(0), Key(1)))
    assert run(plan, columns, units, max_rows=5) == expected
    with pytest.raises(MergeTooLarge):
        run(Distinct(Concat(), (Key(0), Key(1))), columns, units, max_rows=5)
    # Sorted by a key the DISTINCT doesn't have first: equal rows need not be adjacent.
    by_b = [[(1, 1), (2, 1), (1, 1)], [(1, 0)]]
    plan = Distinct(MergeSort((SortKey(Key(1), desc=True),)), (Key(0), Key(1)))
    assert run(plan, columns, by_b) == [(1, 1), (2, 1), (1, 0)]


def test_a_distinct_over_strings_a_shard_may_sort_in_part_keeps_the_set() -> None:
    """A shard's ORDER BY compares weights only up to max_sort_length (64 bytes at least), so
    strings with longer weights may come in any order among themselves and equal ones need not
    meet: the DISTINCT keeps its set. Weights that fit (8 bytes) stream."""
    units = [
        [string_row("a", 0), string_row("b", 0), string_row("c", 0)],
        [string_row("a", 0), string_row("b", 0), string_row("c", 0)],
    ]
    plan = Distinct(MergeSort((SortKey(STRING_KEY),)), (STRING_KEY,))
    assert len(run(plan, string_columns(8), units, max_rows=2)) == 3
    for unknown_or_long in (0, 65, 4096):
        with pytest.raises(MergeTooLarge):
            run(plan, string_columns(unknown_or_long), units, max_rows=2)
    assert len(run(plan, string_columns(4096), units)) == 3


def test_strings_without_weights_are_refused() -> None:
    with pytest.raises(NotSupported):
        Merger(MergeSort((SortKey(Key(0)),)), [ColumnInfo(VARCHAR, 45)], 2)
    with pytest.raises(NotSupported):  # ENUM sorts by its index, not its text
        Merger(MergeSort((SortKey(Key(0, 1, 2)),)), [ColumnInfo(254, 45, 0x100)] * 3, 2)
    # Binary strings compare byte by byte: no weight needed.
    assert run(
        MergeSort((SortKey(Key(0)),)), [ColumnInfo(VARCHAR, 63)], [[(b"b",)], [(b"a",)]]
    ) == [
        (b"a",),
        (b"b",),
    ]


def test_unknown_collations_are_refused_when_met() -> None:
    rows = [[(b"a", b"\x00A", b"utf8mb4_uca1400_ai_ci", 1)]]
    with pytest.raises(NotSupported):
        run(MergeSort((SortKey(STRING_KEY),)), STRING_COLUMNS, rows)


def test_counts_of_rows_per_unit_are_kept_across_units() -> None:
    """Concat keeps every row of every unit (the multiset), in unit order."""
    rows = [[(1,), (1,)], [(2,)], [], [(1,)]]
    assert Counter(run(Concat(), [ColumnInfo(LONG)], rows)) == Counter({(1,): 3, (2,): 1})


def test_max_merge_rows_is_configurable() -> None:
    from router.config_loader import load_config_text

    base = (
        "users: [{name: app, password: app}]\n"
        "backends: {ds0: {host: 127.0.0.1, port: 3306, user: root, password: '', database: d}}\n"
        "databases: {d: {default_backend: ds0, tables: {}}}\n"
    )
    assert load_config_text(base, "x.yaml").limits.max_merge_rows == 1_000_000
    config = load_config_text(base + "limits: {max_merge_rows: 500}\n", "x.yaml")
    assert config.limits.max_merge_rows == 500
    with pytest.raises(Exception, match=r"limits\.max_merge_rows"):
        load_config_text(base + "limits: {max_merge_rows: 0}\n", "x.yaml")


def test_a_weight_longer_than_its_column_declares_is_refused() -> None:
    """Padding to the declared length orders correctly only within it: beyond, no guess."""
    rows = [[string_row("abcde", 0)], [string_row("a", 0)]]
    with pytest.raises(NotSupported, match="WEIGHT_STRING"):
        run(MergeSort((SortKey(STRING_KEY),)), string_columns(8), rows)
