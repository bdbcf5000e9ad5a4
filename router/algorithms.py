"""Shard algorithms: a shard-key value -> a shard number in [0, shard_count).

Routing is only correct if two key values MySQL considers equal always land on the same shard,
so every algorithm first turns a value into a canonical form that follows how MySQL compares:

- numbers: int, Decimal and float compare by numeric value (7 = 7.0 = Decimal('7.00')), and a
  numeric string compares equal to the number (`WHERE id = '7'` finds id 7);
- strings: as the default collation utf8mb4_general_ci compares them (see `fold`);
- bytes: byte for byte, as a binary column does.

NULL (None) goes to shard 0 under every algorithm.

How to add an algorithm:

1. Write a frozen dataclass with a `shard_count: int` field, `shard_for` and `shards_for_range`
   (see `ShardAlgorithm`), and a classmethod `from_params(params, shard_count, table)` that
   validates the YAML parameters and raises `AlgorithmParamError` naming the bad parameter
   (`table` is the logical table name, for runtime error messages).
   Give it a `__str__` for `check-config` output. Keep `shard_for` allocation-free where you can:
   it runs for every routed row and statement.
2. Add it to `ALGORITHMS` under the name users write in `algorithm:`.
3. Add property tests in tests/router/test_algorithms.py and a section in docs/config.md.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Protocol, Self

from router.errors import NoShardForValue, ProxyError


class ShardAlgorithm(Protocol):
    """What the router needs of an algorithm.

    Values arrive as the SQL literal or bound parameter gave them: int, Decimal, float, str,
    bytes or None (NULL goes to shard 0 by convention).
    """

    @property
    def shard_count(self) -> int:
        """How many shards (data nodes) the algorithm spreads keys over."""
        ...

    def shard_for(self, value: object) -> int:
        """The shard holding rows whose key equals `value`; NoShardForValue if none."""
        ...

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        """Shards that can hold keys in the range (None bound = unbounded); None = all."""
        ...


class AlgorithmParamError(ValueError):
    """Bad algorithm parameters; `param` names the offending one so the loader can point at it."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param


class IncorrectValue(NoShardForValue):
    """ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: a key value that can't be read as the key's type.

    Also a NoShardForValue, because no shard holds such a key: an integer key never equals 7.5,
    so a read can match nothing, while an INSERT of it fails as in MySQL's strict mode.
    """

    code, sqlstate = 1366, "HY000"

    def __init__(self, kind: str, value: object):
        ProxyError.__init__(self, f"Incorrect {kind} value: {value!r}")


# A number written as text. No exponent: '1e999999999' would expand to a huge canonical form.
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*", re.ASCII)

# Where general_ci's weight differs from "decompose, drop marks, upper-case" for one character.
# fold() matches WEIGHT_STRING(... COLLATE utf8mb4_general_ci) of MariaDB 10.11 on the whole BMP.
_FOLD_EXCEPTIONS = {
    "\u00df": "S",  # sharp s: one letter S, where upper() gives "SS"
    "\u0345": "\u0399",  # combining ypogegrammeni: weighs as capital iota, not ignorable
    "\u03f2": "\u03a3",  # lunate sigma: weighs as capital sigma
}


def fold(text: str) -> str:
    """A string's comparison key under utf8mb4_general_ci: equal strings fold equally.

    general_ci weighs each character on its own, case- and accent-insensitively, and is
    PAD SPACE: 'alice' = 'Alice' = 'ÁLICE '. So we map each character to its decomposition
    (NFD) without combining marks, upper-cased; supplementary characters (emoji, ...) all weigh
    as U+FFFD; trailing spaces go. This may merge a few strings MySQL keeps apart (harmless:
    they share a shard) but never splits strings MySQL calls equal.
    """
    if text.isascii():
        return text.upper().rstrip(" ")
    out = []
    for char in text:
        folded = _FOLD_EXCEPTIONS.get(char)
        if folded is None:
            if char > "\uffff":
                folded = "\ufffd"
            else:
                decomposed = unicodedata.normalize("NFD", char)
                folded = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
        out.append(folded)
    return "".join(out).rstrip(" ")


def _decimal_text(number: Decimal) -> str:
    """Shortest exact decimal text: 7, 7.0 and 7.00 all give '7'; no context rounding."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _as_number(value: object) -> int | Decimal | float | None:
    """The numeric value MySQL would compare `value` as, or None if it isn't a number."""
    if isinstance(value, int | Decimal | float):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value):
        return Decimal(value)
    return None


def _as_int(value: object) -> int:
    """An integer key value; IncorrectValue if `value` is not a whole number."""
    number = _as_number(value)
    if isinstance(number, int):
        return number
    if isinstance(number, float) and number.is_integer():
        return int(number)
    if isinstance(number, Decimal) and number.is_finite() and number == number.to_integral_value():
        return int(number)
    raise IncorrectValue("integer", value)


def canonical_key(value: object) -> bytes:
    """The bytes `hash_mod` hashes: equal under MySQL comparison -> equal bytes.

    Numbers and numeric strings -> shortest decimal text; other strings -> `fold`; bytes as is.
    """
    if type(value) is int:
        return b"%d" % value
    if isinstance(value, str):
        folded = fold(value)
        if _NUMERIC_TEXT.fullmatch(folded):
            return _decimal_text(Decimal(folded)).encode()
        return folded.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, date):  # as the literal '2024-06-01' or '2024-06-01 10:00:00' reads
        return str(value).encode()
    if isinstance(value, int):  # bool
        return b"%d" % value
    if isinstance(value, Decimal):
        return _decimal_text(value).encode()
    if isinstance(value, float):
        # repr, not Decimal(value): 0.1 must match DECIMAL '0.1', not 0.1000000000000000055...
        return _decimal_text(Decimal(repr(value))).encode()
    raise IncorrectValue("key", value)


def _check_shard_count(shard_count: int) -> None:
    if shard_count < 1:
        raise AlgorithmParamError(None, f"needs at least 1 shard, got {shard_count}")


def _check_param_names(algorithm: str, params: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """Typos in parameter names are errors, not silently ignored parameters."""
    for name in params:
        if name not in known:
            takes = f"takes {', '.join(known)}" if known else "takes no parameters"
            raise AlgorithmParamError(name, f"unknown parameter {name!r} ({algorithm} {takes})")


@dataclass(frozen=True)
class Mod:
    """Integer key % shard_count: predictable by a human (user 7 of 4 shards -> shard 3).

    Negative keys use Python's floor modulo (-7 % 4 = 1), not MySQL's MOD (-3), so every key
    lands in [0, shard_count).
    """

    shard_count: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], shard_count: int, table: str) -> Self:
        _check_param_names("mod", params, ())
        _check_shard_count(shard_count)
        return cls(shard_count)

    def shard_for(self, value: object) -> int:
        if type(value) is int:
            return value % self.shard_count
        if value is None:
            return 0
        return _as_int(value) % self.shard_count

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        return None

    def __str__(self) -> str:
        return "mod"


@dataclass(frozen=True)
class HashMod:
    """CRC-32 of the key's canonical form % shard_count: spreads any key type evenly.

    CRC-32 is fixed by the standard, so a key maps to the same shard on every platform and
    Python release (Python's own hash() is salted per process). See `canonical_key`.
    """

    shard_count: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], shard_count: int, table: str) -> Self:
        _check_param_names("hash_mod", params, ())
        _check_shard_count(shard_count)
        return cls(shard_count)

    def shard_for(self, value: object) -> int:
        if type(value) is int:
            return zlib.crc32(b"%d" % value) % self.shard_count
        if value is None:
            return 0
        return zlib.crc32(canonical_key(value)) % self.shard_count

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        return None

    def __str__(self) -> str:
        return "hash_mod"


def _boundary(value: object) -> int | Decimal | float | str:
    """A YAML boundary or list value as a comparable key; dates become ISO text."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is a boolean; quote it (YAML reads yes/no/on/off as booleans)")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal | float):
        return value
    if isinstance(value, str):
        return value
    raise TypeError(f"{value!r} is a {type(value).__name__}; expected a number or a string")


@dataclass(frozen=True)
class Range:
    """Shard = how many boundaries are <= the key: boundaries [100, 200] give 3 shards,
    (-inf, 100), [100, 200) and [200, +inf).

    Boundaries are all numbers or all strings (dates are ISO text, so '2024-06-01 10:00' sorts
    after '2024-06-01'). String keys compare folded, as general_ci orders them.
    """

    boundaries: tuple[Any, ...]  # all numbers, or all folded strings
    shard_count: int = field(init=False)
    numeric: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shard_count", len(self.boundaries) + 1)
        object.__setattr__(self, "numeric", not isinstance(self.boundaries[0], str))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], shard_count: int, table: str) -> Self:
        _check_param_names("range", params, ("boundaries",))
        raw = params.get("boundaries")
        if not isinstance(raw, list) or not raw:
            raise AlgorithmParamError("boundaries", "range needs boundaries: a non-empty list")
        try:
            values = [_boundary(value) for value in raw]
        except TypeError as exc:
            raise AlgorithmParamError("boundaries", str(exc)) from None
        if len({isinstance(value, str) for value in values}) > 1:
            raise AlgorithmParamError("boundaries", "boundaries mix numbers and strings")
        keys: list[Any] = (
            values if not isinstance(values[0], str) else [fold(str(v)) for v in values]
        )
        if any(a >= b for a, b in pairwise(keys)):
            raise AlgorithmParamError("boundaries", "boundaries must be strictly ascending")
        if len(values) + 1 != shard_count:
            raise AlgorithmParamError(
                "boundaries",
                f"{len(values)} {'boundary makes' if len(values) == 1 else 'boundaries make'} "
                f"{len(values) + 1} shards, but the table has {shard_count} data nodes",
            )
        return cls(tuple(keys))

    def _key(self, value: object) -> Any:
        """`value` comparable with the boundaries: a number, or folded text."""
        if self.numeric:
            number = _as_number(value)
            if number is None or number != number:  # NaN orders nowhere
                raise IncorrectValue("decimal", value)
            return number
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return fold(value if isinstance(value, str) else str(value))

    def shard_for(self, value: object) -> int:
        if value is None:
            return 0
        return bisect_right(self.boundaries, self._key(value))

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        """Every shard holding some key in the range, treating the key domain as dense.

        `id > 99` with boundary 100 includes shard 0 (99.5 could be there): the algorithm
        can't know the column is an integer. Empty ranges give the empty set.
        """
        low_key = None if low is None else self._key(low)
        high_key = None if high is None else self._key(high)
        if (
            low_key is not None
            and high_key is not None
            and (
                low_key > high_key
                or (low_key == high_key and not (low_inclusive and high_inclusive))
            )
        ):
            return frozenset()
        bounds = self.boundaries
        first = 0 if low_key is None else bisect_right(bounds, low_key)
        if high_key is None:
            last = self.shard_count - 1
        elif high_inclusive:
            last = bisect_right(bounds, high_key)
        else:
            last = bisect_left(bounds, high_key)
        return frozenset(range(first, last + 1))

    def __str__(self) -> str:
        return f"range {list(self.boundaries)}"


@dataclass(frozen=True)
class ValueList:
    """Explicit value -> shard lists, e.g. regions; keys compare as MySQL compares them.

    A value not listed goes to `default`, or fails with NoShardForValue when there is none.
    """

    shard_count: int
    # (canonical key, shard) pairs sorted by shard then key: the comparable, hashable form.
    entries: tuple[tuple[bytes, int], ...]
    default: int | None = None
    # Only names the table in NoShardForValue; tables of a binding group still compare equal.
    table: str = field(default="", compare=False)
    _lookup: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", dict(self.entries))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], shard_count: int, table: str) -> Self:
        _check_shard_count(shard_count)
        _check_param_names("list", params, ("values", "default"))
        raw = params.get("values")
        if not isinstance(raw, Mapping) or not raw:
            raise AlgorithmParamError(
                "values", "list needs values: a mapping of shard index -> list of values"
            )
        owner: dict[bytes, int] = {}
        for index, values in raw.items():
            shard = _shard_index(index, shard_count, "values")
            if not isinstance(values, list):
                raise AlgorithmParamError("values", f"shard {shard}: expected a list of values")
            for value in values:
                try:
                    key = canonical_key(_boundary(value))
                except TypeError as exc:
                    raise AlgorithmParamError("values", f"shard {shard}: {exc}") from None
                if key in owner and owner[key] != shard:
                    raise AlgorithmParamError(
                        "values", f"value {value!r} is listed for shards {owner[key]} and {shard}"
                    )
                owner[key] = shard
        default = params.get("default")
        if default is not None:
            default = _shard_index(default, shard_count, "default")
        entries = tuple(sorted(owner.items(), key=lambda item: (item[1], item[0])))
        return cls(shard_count, entries, default, table)

    def shard_for(self, value: object) -> int:
        if value is None:
            return 0
        shard = self._lookup.get(canonical_key(value), self.default)
        if shard is None:
            raise NoShardForValue(self.table, value)
        return shard

    def shards_for_range(
        self, low: object | None, high: object | None, low_inclusive: bool, high_inclusive: bool
    ) -> frozenset[int] | None:
        return None

    def __str__(self) -> str:
        shards: dict[int, list[str]] = {}
        for key, shard in self.entries:
            shards.setdefault(shard, []).append(key.decode("utf-8", "replace"))
        text = "list {" + ", ".join(f"{i}: [{_abridge(keys)}]" for i, keys in shards.items()) + "}"
        return text if self.default is None else f"{text}, default {self.default}"


def _abridge(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items) - limit} more)"


def _shard_index(raw: object, shard_count: int, param: str) -> int:
    """A shard index from YAML (an int, or digits when written as a quoted key)."""
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if type(raw) is not int or not 0 <= raw < shard_count:
        raise AlgorithmParamError(
            param, f"shard index {raw!r} is not in 0..{shard_count - 1} (the table's data nodes)"
        )
    return raw


class _Factory(Protocol):
    def from_params(
        self, params: Mapping[str, Any], shard_count: int, table: str
    ) -> ShardAlgorithm: ...


ALGORITHMS: Mapping[str, _Factory] = MappingProxyType(
    {"mod": Mod, "hash_mod": HashMod, "range": Range, "list": ValueList}
)


def make_algorithm(
    name: str, params: Mapping[str, Any], shard_count: int, table: str = ""
) -> ShardAlgorithm:
    """Build the algorithm `name` for `table`, which has `shard_count` data nodes.

    Raises AlgorithmParamError (a ValueError) with a message fit for a config error.
    """
    factory = ALGORITHMS.get(name)
    if factory is None:
        known = ", ".join(sorted(ALGORITHMS))
        raise AlgorithmParamError("type", f"unknown algorithm {name!r} (known: {known})")
    return factory.from_params(params, shard_count, table)


__all__ = [
    "ALGORITHMS",
    "AlgorithmParamError",
    "HashMod",
    "IncorrectValue",
    "Mod",
    "Range",
    "ShardAlgorithm",
    "ValueList",
    "canonical_key",
    "fold",
    "make_algorithm",
]
