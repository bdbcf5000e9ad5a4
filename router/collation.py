"""Comparing strings as MySQL does, from the WEIGHT_STRING() the backends compute.

Shards return `WEIGHT_STRING(expr)` next to every string sort, group or distinct key, so the
proxy never re-implements a collation: equal weights mean equal strings. What the weight bytes
leave out is PAD SPACE: most collations compare as if the shorter string were padded with
spaces ('a' = 'a ', and 'a\\t' < 'a' because a tab weighs less than the padding space), while
WEIGHT_STRING() keeps trailing spaces as they are. So a key strips trailing space weights and
compares the remainder against an endless run of them. NO PAD collations (and binary strings)
compare their weights as they are.

The table below was read from MariaDB 10.11: the weight of ' ' under each collation id.
Collations whose weights are not one unit per character (Czech contractions, multi-level
`_w2`) are left out: merging on them is refused rather than risked.
"""

from __future__ import annotations

from types import MappingProxyType

# Space weight (hex) -> PAD SPACE collation ids with that weight unit.
_PAD_SPACE = {
    "000020": "46 55 61-62",
    "0020": "33 35 45 54 56 60 83 90 159 223",
    "0209": (
        "101-110 112-122 124 128-137 139-149 151 160-169 171-181 183 192-201 203-213 215 "
        "224-233 235-245 247 576 608 640 672 736"
    ),
    "020A": "123 150 182 214 246 577 609 641 673 737",
    "20": "1 3-16 18-19 21-32 36-40 43-44 47-53 57-59 64-75 77-82 84-89 91-99",
    "2C": "20",
    "30": "41-42",
}
_NO_PAD = (
    "63 1025 1027-1028 1030-1037 1040 1042-1043 1046 1048-1050 1052 1054 1056-1057 1059-1065 "
    "1067 1069-1071 1074-1075 1077-1086 1088-1099 1101-1117 1119-1122 1125 1147 1152 1174 1184 "
    "1206 1216 1238 1248 1270"
)

BINARY = 63


def _ids(spec: str) -> list[int]:
    ids = []
    for item in spec.split():
        low, _, high = item.partition("-")
        ids.extend(range(int(low), int(high or low) + 1))
    return ids


def _table() -> MappingProxyType[int, bytes]:
    table = {cid: bytes.fromhex(space) for space, spec in _PAD_SPACE.items() for cid in _ids(spec)}
    table.update((cid, b"") for cid in _ids(_NO_PAD))
    return MappingProxyType(table)


# Collation id -> the weight unit that pads (b"" for NO PAD).
PAD_WEIGHTS = _table()


def pad_weight(collation: int) -> bytes | None:
    """The padding weight unit of a collation; b"" for NO PAD; None if not supported."""
    return PAD_WEIGHTS.get(collation)


class WeightKey:
    """A string's WEIGHT_STRING() bytes, ordered and compared under PAD SPACE rules."""

    __slots__ = ("pad", "weight")

    def __init__(self, weight: bytes, pad: bytes):
        if pad:
            unit = len(pad)
            while weight.endswith(pad) and len(weight) % unit == 0:
                weight = weight[:-unit]
        self.weight = weight
        self.pad = pad

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightKey) and self.weight == other.weight

    def __hash__(self) -> int:
        return hash(self.weight)

    def __lt__(self, other: WeightKey) -> bool:
        return _compare(self, other) < 0

    def __le__(self, other: WeightKey) -> bool:
        return _compare(self, other) <= 0

    def __gt__(self, other: WeightKey) -> bool:
        return _compare(self, other) > 0

    def __ge__(self, other: WeightKey) -> bool:
        return _compare(self, other) >= 0

    def __repr__(self) -> str:
        return f"WeightKey({self.weight.hex()})"


def _compare(a: WeightKey, b: WeightKey) -> int:
    x, y = a.weight, b.weight
    if x == y:
        return 0
    n = min(len(x), len(y))
    if x[:n] != y[:n] or not a.pad:
        return -1 if x < y else 1
    # One is a prefix of the other: the longer one's rest against padding. The rest is never
    # all padding (stripped), so they differ.
    if len(x) < len(y):
        rest = y[n:]
        padding = (a.pad * (len(rest) // len(a.pad) + 1))[: len(rest)]
        return -1 if padding < rest else 1
    rest = x[n:]
    padding = (a.pad * (len(rest) // len(a.pad) + 1))[: len(rest)]
    return -1 if rest < padding else 1
