"""Shard algorithms: equal keys (as MySQL compares them) must always land on the same shard."""

from __future__ import annotations

import dataclasses
import unicodedata
import zlib
from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from router.algorithms import (
    ALGORITHMS,
    AlgorithmParamError,
    HashMod,
    IncorrectValue,
    Mod,
    Range,
    ShardAlgorithm,
    ValueList,
    canonical_key,
    fold,
    make_algorithm,
)
from router.errors import NoShardForValue

# Letters whose upper and lower case map one to one (unlike ß -> SS), so swapcase keeps a
# string equal under utf8mb4_general_ci.
CASE_PAIRED = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-"
    "àáâãäåçèéêëìíîïñòóôõöùúûüýÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝαβγδεζηθλμπρτφχψωΑΒΓΔΕΖΗΘΛΜΠΡΤΦΧΨΩ"
)
CASE_PAIRED_TEXT = st.text(CASE_PAIRED, max_size=20)
SHARD_COUNTS = st.integers(min_value=1, max_value=64)


def hash_mod(shards: int = 4) -> HashMod:
    return make_algorithm("hash_mod", {}, shards)  # type: ignore[return-value]


# -- mod -----------------------------------------------------------------------------------------


@given(st.integers(), SHARD_COUNTS)
def test_mod_is_python_modulo(key: int, shards: int) -> None:
    assert Mod(shards).shard_for(key) == key % shards
    assert 0 <= Mod(shards).shard_for(key) < shards


def test_mod_negative_keys_use_floor_modulo() -> None:
    assert Mod(4).shard_for(-7) == 1  # MySQL's MOD(-7, 4) is -3: not a shard


@pytest.mark.parametrize(
    "value", [7, "7", " 7", "+7", "007", "7.0", b"7", Decimal("7.00"), 7.0, Decimal("7E0")]
)
def test_mod_accepts_every_spelling_of_an_integer(value: object) -> None:
    assert Mod(4).shard_for(value) == 3


@pytest.mark.parametrize("value", ["abc", "7.5", 7.5, Decimal("7.5"), float("nan"), "", "1e3"])
def test_mod_rejects_non_integers(value: object) -> None:
    with pytest.raises(IncorrectValue) as info:
        Mod(4).shard_for(value)
    assert (info.value.code, info.value.sqlstate) == (1366, "HY000")
    assert info.value.message.startswith("Incorrect integer value: ")


# -- hash_mod ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "crc", "shard_of_4"),
    [
        (0, 0xF4DBDF21, 1),
        (7, 0x6ABF4A82, 2),
        (-7, 0xD94EED1F, 3),
        (123456789, 0xCBF43926, 2),  # CRC-32's published check value
        ("alice", 0xD0DA7EF7, 3),
        ("\N{GRINNING FACE}", 0x8B7233C9, 1),
        (b"\x00\xff", 0x6CDBFD72, 2),
        (Decimal("1.50"), 0x875C9BBA, 2),
    ],
)
def test_hash_mod_is_pinned(value: object, crc: int, shard_of_4: int) -> None:
    """Changing the hash or the canonical form moves existing rows: it must not happen quietly."""
    assert zlib.crc32(canonical_key(value)) == crc
    assert hash_mod(4).shard_for(value) == shard_of_4


@pytest.mark.parametrize(
    "equal",
    [
        # utf8mb4_general_ci: case- and accent-insensitive, trailing spaces ignored.
        ["alice", "Alice", "ALICE", "ÁLICE", "álice   ", "Alice "],
        # The groups below were checked against MariaDB 10.11's WEIGHT_STRING(... COLLATE
        # utf8mb4_general_ci), which treats each as one value.
        ["straße", "STRASE", "strase"],
        [
            "\N{GREEK SMALL LETTER SIGMA}",
            "\N{GREEK SMALL LETTER FINAL SIGMA}",
            "\N{GREEK CAPITAL LETTER SIGMA}",
            "\N{GREEK LUNATE SIGMA SYMBOL}",
        ],
        [
            "\N{COMBINING GREEK YPOGEGRAMMENI}",  # not ignorable: weighs as iota
            "\N{GREEK SMALL LETTER IOTA}",
            "\N{GREEK CAPITAL LETTER IOTA}",
            "\N{GREEK SMALL LETTER IOTA WITH TONOS}",
        ],
        ["\N{GRINNING FACE}", "\N{PILE OF POO}", "\ufffd"],  # every supplementary character
        # Integers and numeric strings: `WHERE id = '7'` finds id 7.
        [7, "7", " 7", "+7", "007", "7.0", 7.0, Decimal("7.00")],
        [0.1, Decimal("0.1"), "0.10"],
        [0, -0.0, Decimal("-0"), "-0"],
    ],
)
def test_hash_mod_equal_values_hash_equally(equal: list[object]) -> None:
    assert len({canonical_key(value) for value in equal}) == 1


@given(CASE_PAIRED_TEXT, st.integers(min_value=0, max_value=3), SHARD_COUNTS)
def test_hash_mod_folds_case_accents_and_trailing_spaces(
    text: str, spaces: int, shards: int
) -> None:
    algorithm = hash_mod(shards)
    expected = algorithm.shard_for(text)
    unaccented = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    )
    for variant in (text.swapcase(), text.upper(), unaccented, text + " " * spaces):
        assert algorithm.shard_for(variant) == expected


def test_hash_mod_keeps_different_strings_apart() -> None:
    assert canonical_key("alice") != canonical_key("alicia")
    assert canonical_key(" alice") != canonical_key("alice")  # only trailing spaces pad
    assert canonical_key(b"alice") != canonical_key("alice")  # binary compares bytes


def test_dates_hash_as_their_literals() -> None:
    assert canonical_key(date(2024, 6, 1)) == canonical_key("2024-06-01")
    assert canonical_key(datetime(2024, 6, 1, 10, 0)) == canonical_key("2024-06-01 10:00:00")


@given(st.integers(), SHARD_COUNTS)
def test_hash_mod_fast_path_agrees_with_canonical_key(key: int, shards: int) -> None:
    assert hash_mod(shards).shard_for(key) == hash_mod(shards).shard_for(str(key))


# -- range ---------------------------------------------------------------------------------------


def range_of(*boundaries: object) -> Range:
    return make_algorithm("range", {"boundaries": list(boundaries)}, len(boundaries) + 1)  # type: ignore[return-value]


def test_range_counts_boundaries_at_or_below_the_key() -> None:
    algorithm = range_of(100, 200)
    assert algorithm.shard_count == 3
    assert [algorithm.shard_for(v) for v in (-5, 99, 100, 199, 200, 10**9)] == [0, 0, 1, 1, 2, 2]
    assert algorithm.shard_for("150") == 1
    assert algorithm.shard_for(Decimal("99.5")) == 0


def test_range_on_strings_compares_as_the_collation_does() -> None:
    algorithm = range_of("m")
    assert algorithm.shard_for("alice") == 0
    assert algorithm.shard_for("Zed") == 1  # 'Z' (0x5A) sorts after 'm' case-insensitively
    assert algorithm.shard_for("M") == 1


def test_range_on_dates() -> None:
    algorithm = range_of(date(2024, 1, 1), date(2025, 1, 1))
    assert algorithm.shard_for("2023-12-31") == 0
    assert algorithm.shard_for("2024-01-01") == 1
    assert algorithm.shard_for("2024-01-01 10:00:00") == 1
    assert algorithm.shard_for(date(2025, 3, 1)) == 2


def test_range_rejects_values_it_cannot_order() -> None:
    with pytest.raises(IncorrectValue):
        range_of(100).shard_for("abc")


def real_intervals_meet(
    low: Decimal | None,
    low_inclusive: bool,
    high: Decimal | None,
    high_inclusive: bool,
    shard_low: int | None,
    shard_high: int | None,
) -> bool:
    """Whether the real range meets the shard's interval [shard_low, shard_high)."""
    if low is not None and shard_high is not None and low >= shard_high:
        return False
    if (
        high is not None
        and shard_low is not None
        and (high < shard_low or (high == shard_low and not high_inclusive))
    ):
        return False
    if low is not None and high is not None:
        return low < high or (low == high and low_inclusive and high_inclusive)
    return True


BOUNDARIES = st.lists(st.integers(-1000, 1000), min_size=1, max_size=8, unique=True).map(sorted)
BOUND = st.none() | st.decimals(-1100, 1100, places=1)


@given(BOUNDARIES, BOUND, BOUND, st.booleans(), st.booleans())
def test_range_shards_for_range_is_exact(
    boundaries: list[int],
    low: Decimal | None,
    high: Decimal | None,
    low_inclusive: bool,
    high_inclusive: bool,
) -> None:
    """A shard is in the answer exactly when its interval overlaps the range."""
    algorithm = range_of(*boundaries)
    edges: list[int | None] = [None, *boundaries, None]
    expected = {
        shard
        for shard in range(algorithm.shard_count)
        if real_intervals_meet(
            low, low_inclusive, high, high_inclusive, edges[shard], edges[shard + 1]
        )
    }
    assert algorithm.shards_for_range(low, high, low_inclusive, high_inclusive) == frozenset(
        expected
    )


@given(BOUNDARIES, st.integers(-1100, 1100), st.integers(-1100, 1100), st.data())
def test_range_shards_for_range_agrees_with_shard_for(
    boundaries: list[int], low: int, high: int, data: st.DataObject
) -> None:
    assume(low <= high)
    algorithm = range_of(*boundaries)
    shards = algorithm.shards_for_range(low, high, True, True)
    assert shards is not None
    value = data.draw(st.integers(low, high))
    assert algorithm.shard_for(value) in shards
    assert algorithm.shard_for(str(value)) in shards


def test_range_empty_ranges_touch_no_shard() -> None:
    algorithm = range_of(100)
    assert algorithm.shards_for_range(5, 3, True, True) == frozenset()
    assert algorithm.shards_for_range(100, 100, True, False) == frozenset()
    assert algorithm.shards_for_range(100, 100, True, True) == frozenset({1})
    assert algorithm.shards_for_range(None, None, True, True) == frozenset({0, 1})


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"boundaries": [1, 1]}, "boundaries", "strictly ascending"),
        ({"boundaries": [2, 1]}, "boundaries", "strictly ascending"),
        ({"boundaries": ["b", "A"]}, "boundaries", "strictly ascending"),
        ({"boundaries": [1, "a"]}, "boundaries", "mix numbers and strings"),
        ({"boundaries": [True]}, "boundaries", "is a boolean"),
        ({"boundaries": []}, "boundaries", "non-empty list"),
        ({}, "boundaries", "non-empty list"),
        ({"boundaries": [1], "bounds": [2]}, "bounds", "unknown parameter 'bounds'"),
        ({"boundaries": [1, 2, 3]}, "boundaries", "3 boundaries make 4 shards"),
    ],
)
def test_range_bad_params(params: dict[str, object], param: str, message: str) -> None:
    with pytest.raises(AlgorithmParamError, match=message) as info:
        make_algorithm("range", params, 2)
    assert info.value.param == param


# -- list ----------------------------------------------------------------------------------------


def regions(default: int | None = None) -> ValueList:
    params: dict[str, object] = {"values": {0: ["de", "fr"], 1: ["us", 7]}}
    if default is not None:
        params["default"] = default
    return make_algorithm("list", params, 3, "customers")  # type: ignore[return-value]


def test_list_maps_values_as_the_column_compares_them() -> None:
    algorithm = regions()
    assert [algorithm.shard_for(v) for v in ("de", "DE", "Fr ", "us", "7", 7.0)] == [
        0,
        0,
        0,
        1,
        1,
        1,
    ]


def test_list_unknown_value_without_default_is_an_error() -> None:
    with pytest.raises(NoShardForValue) as info:
        regions().shard_for("jp")
    assert info.value.code == 1526
    assert "'customers'" in info.value.message


def test_list_unknown_value_goes_to_default() -> None:
    assert regions(default=2).shard_for("jp") == 2


def test_list_equality_ignores_the_table_name() -> None:
    """Binding groups compare algorithms; the table name only labels errors."""
    params = {"values": {0: ["a"], 1: ["b"]}}
    assert make_algorithm("list", params, 2, "t1") == make_algorithm("list", params, 2, "t2")
    assert hash(make_algorithm("list", params, 2, "t1")) == hash(make_algorithm("list", params, 2))


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"values": {0: ["de"], 1: ["DE"]}}, "values", "listed for shards 0 and 1"),
        ({"values": {0: ["7"], 1: [7]}}, "values", "listed for shards 0 and 1"),
        ({"values": {5: ["de"]}}, "values", "shard index 5 is not in 0..1"),
        ({"values": {0: [False]}}, "values", "quote it"),
        ({"values": {0: "de"}}, "values", "expected a list"),
        ({"values": {0: ["de"]}, "default": 2}, "default", "shard index 2"),
        ({"values": {}}, "values", "list needs values"),
        ({"value": {0: ["de"]}}, "value", "unknown parameter"),
    ],
)
def test_list_bad_params(params: dict[str, object], param: str, message: str) -> None:
    with pytest.raises(AlgorithmParamError, match=message) as info:
        make_algorithm("list", params, 2)
    assert info.value.param == param


def test_list_accepts_quoted_shard_indexes() -> None:
    assert make_algorithm("list", {"values": {"1": ["x"]}}, 2).shard_for("X") == 1


# -- every algorithm -----------------------------------------------------------------------------


def every_algorithm() -> list[ShardAlgorithm]:
    return [Mod(4), hash_mod(4), range_of(10, 20), regions()]


@pytest.mark.parametrize("algorithm", every_algorithm(), ids=str)
def test_null_goes_to_shard_zero(algorithm: ShardAlgorithm) -> None:
    assert algorithm.shard_for(None) == 0


@pytest.mark.parametrize("algorithm", every_algorithm(), ids=str)
def test_algorithms_are_immutable_and_hashable(algorithm: ShardAlgorithm) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        algorithm.shard_count = 9  # type: ignore[misc]
    hash(algorithm)


@pytest.mark.parametrize("name", ["mod", "hash_mod", "list"])
def test_only_range_narrows_ranges(name: str) -> None:
    params = {"values": {0: [1]}} if name == "list" else {}
    assert make_algorithm(name, params, 2).shards_for_range(1, 5, True, True) is None


def test_registry() -> None:
    assert set(ALGORITHMS) == {"mod", "hash_mod", "range", "list"}
    with pytest.raises(TypeError):
        ALGORITHMS["mine"] = Mod  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "params", "shards", "param", "message"),
    [
        ("hash", {}, 2, "type", "unknown algorithm 'hash' (known: hash_mod, list, mod, range)"),
        ("mod", {"n": 2}, 2, "n", "unknown parameter 'n' (mod takes no parameters)"),
        ("hash_mod", {}, 0, None, "needs at least 1 shard"),
    ],
)
def test_make_algorithm_errors(
    name: str, params: dict[str, object], shards: int, param: str | None, message: str
) -> None:
    with pytest.raises(AlgorithmParamError) as info:
        make_algorithm(name, params, shards)
    assert message in str(info.value)
    assert info.value.param == param


@given(st.text(max_size=30))
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


def test_unreadable_keys_are_values_no_shard_holds() -> None:
    """Callers that treat NoShardForValue as "no rows can match" handle 7.5 for an int key too."""
    with pytest.raises(NoShardForValue) as info:
        Mod(4).shard_for(7.5)
    assert (info.value.code, info.value.message) == (1366, "Incorrect integer value: 7.5")
