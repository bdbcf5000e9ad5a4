"""Comparing strings as MySQL does, from the WEIGHT_STRING() the backends compute.

Shards return `WEIGHT_STRING(expr)` next to every string sort, group or distinct key, so the
proxy never re-implements a collation: equal weights mean equal strings. What the weight bytes
leave out is PAD SPACE: most collations compare as if the shorter string were padded with
spaces ('a' = 'a ', and 'a\\t' < 'a' because a tab weighs less than the padding space), while
WEIGHT_STRING() keeps trailing spaces as they are. So a key strips trailing space weights and
compares the remainder against an endless run of them. NO PAD collations (and binary strings)
compare their weights as they are.

Which collation a key has comes from the shards too (`COLLATION(expr)`: a result's column
definition names only the character set it is sent in). The table below was read from MariaDB
10.11: the weight of ' ' under each collation. Collations whose weights are not one unit per
character (Czech contractions, multi-level `_w2`) are left out, as are those added later:
merging on them is refused rather than risked.
"""

from __future__ import annotations

from types import MappingProxyType

# Space weight (hex) -> PAD SPACE collations with that weight unit, as
# "charset:collation-suffix,..." groups (utf8mb4:general_ci is utf8mb4_general_ci).
_PAD_SPACE = {
    "000020": ("utf16:bin utf16le:bin utf32:bin utf8mb4:bin"),
    "0020": (
        "ucs2:bin,general_ci,general_mysql500_ci utf16:general_ci utf16le:general_ci "
        "utf32:general_ci utf8mb3:bin,general_ci,general_mysql500_ci utf8mb4:general_ci"
    ),
    "0209": (
        "ucs2:croatian_ci,croatian_mysql561_ci,danish_ci,esperanto_ci,estonian_ci,german2_ci,"
        "hungarian_ci,icelandic_ci,latvian_ci,lithuanian_ci,persian_ci,polish_ci,roman_ci,"
        "romanian_ci,sinhala_ci,slovak_ci,slovenian_ci,spanish2_ci,spanish_ci,swedish_ci,"
        "turkish_ci,unicode_ci,vietnamese_ci utf16:croatian_ci,croatian_mysql561_ci,danish_ci,"
        "esperanto_ci,estonian_ci,german2_ci,hungarian_ci,icelandic_ci,latvian_ci,"
        "lithuanian_ci,persian_ci,polish_ci,roman_ci,romanian_ci,sinhala_ci,slovak_ci,"
        "slovenian_ci,spanish2_ci,spanish_ci,swedish_ci,turkish_ci,unicode_ci,vietnamese_ci "
        "utf32:croatian_ci,croatian_mysql561_ci,danish_ci,esperanto_ci,estonian_ci,german2_ci,"
        "hungarian_ci,icelandic_ci,latvian_ci,lithuanian_ci,persian_ci,polish_ci,roman_ci,"
        "romanian_ci,sinhala_ci,slovak_ci,slovenian_ci,spanish2_ci,spanish_ci,swedish_ci,"
        "turkish_ci,unicode_ci,vietnamese_ci utf8mb3:croatian_ci,croatian_mysql561_ci,"
        "danish_ci,esperanto_ci,estonian_ci,german2_ci,hungarian_ci,icelandic_ci,latvian_ci,"
        "lithuanian_ci,persian_ci,polish_ci,roman_ci,romanian_ci,sinhala_ci,slovak_ci,"
        "slovenian_ci,spanish2_ci,spanish_ci,swedish_ci,turkish_ci,unicode_ci,vietnamese_ci "
        "utf8mb4:croatian_ci,croatian_mysql561_ci,danish_ci,esperanto_ci,estonian_ci,"
        "german2_ci,hungarian_ci,icelandic_ci,latvian_ci,lithuanian_ci,persian_ci,polish_ci,"
        "roman_ci,romanian_ci,sinhala_ci,slovak_ci,slovenian_ci,spanish2_ci,spanish_ci,"
        "swedish_ci,turkish_ci,unicode_ci,vietnamese_ci"
    ),
    "020A": (
        "ucs2:myanmar_ci,unicode_520_ci utf16:myanmar_ci,unicode_520_ci utf32:myanmar_ci,"
        "unicode_520_ci utf8mb3:myanmar_ci,unicode_520_ci utf8mb4:myanmar_ci,unicode_520_ci"
    ),
    "20": (
        "armscii8:bin,general_ci ascii:bin,general_ci big5:bin,chinese_ci cp1250:bin,"
        "croatian_ci,general_ci,polish_ci cp1251:bin,bulgarian_ci,general_ci,general_cs,"
        "ukrainian_ci cp1256:bin,general_ci cp1257:bin,general_ci,lithuanian_ci cp850:bin,"
        "general_ci cp852:bin,general_ci cp866:bin,general_ci cp932:bin,japanese_ci dec8:bin,"
        "swedish_ci eucjpms:bin,japanese_ci euckr:bin,korean_ci gb2312:bin,chinese_ci gbk:bin,"
        "chinese_ci geostd8:bin,general_ci greek:bin,general_ci hebrew:bin,general_ci hp8:bin,"
        "english_ci keybcs2:bin,general_ci koi8r:bin,general_ci koi8u:bin,general_ci "
        "latin1:bin,danish_ci,general_ci,general_cs,german1_ci,german2_ci,spanish_ci,"
        "swedish_ci latin2:bin,croatian_ci,general_ci,hungarian_ci latin5:bin,turkish_ci "
        "latin7:bin macce:bin,general_ci macroman:bin,general_ci sjis:bin,japanese_ci swe7:bin,"
        "swedish_ci tis620:bin,thai_ci ujis:bin,japanese_ci"
    ),
    "2C": ("latin7:estonian_cs"),
    "30": ("latin7:general_ci,general_cs"),
}
_NO_PAD = (
    "armscii8:general_nopad_ci,nopad_bin ascii:general_nopad_ci,nopad_bin "
    "big5:chinese_nopad_ci,nopad_bin cp1250:general_nopad_ci,nopad_bin cp1251:general_nopad_ci,"
    "nopad_bin cp1256:general_nopad_ci,nopad_bin cp1257:general_nopad_ci,nopad_bin "
    "cp850:general_nopad_ci,nopad_bin cp852:general_nopad_ci,nopad_bin cp866:general_nopad_ci,"
    "nopad_bin cp932:japanese_nopad_ci,nopad_bin dec8:nopad_bin,swedish_nopad_ci "
    "eucjpms:japanese_nopad_ci,nopad_bin euckr:korean_nopad_ci,nopad_bin "
    "gb2312:chinese_nopad_ci,nopad_bin gbk:chinese_nopad_ci,nopad_bin geostd8:general_nopad_ci,"
    "nopad_bin greek:general_nopad_ci,nopad_bin hebrew:general_nopad_ci,nopad_bin "
    "hp8:english_nopad_ci,nopad_bin keybcs2:general_nopad_ci,nopad_bin koi8r:general_nopad_ci,"
    "nopad_bin koi8u:general_nopad_ci,nopad_bin latin1:nopad_bin,swedish_nopad_ci "
    "latin2:general_nopad_ci,nopad_bin latin5:nopad_bin,turkish_nopad_ci "
    "latin7:general_nopad_ci,nopad_bin macce:general_nopad_ci,nopad_bin "
    "macroman:general_nopad_ci,nopad_bin sjis:japanese_nopad_ci,nopad_bin swe7:nopad_bin,"
    "swedish_nopad_ci tis620:nopad_bin,thai_nopad_ci ucs2:general_nopad_ci,nopad_bin,"
    "unicode_520_nopad_ci,unicode_nopad_ci ujis:japanese_nopad_ci,nopad_bin "
    "utf16:general_nopad_ci,nopad_bin,unicode_520_nopad_ci,unicode_nopad_ci "
    "utf16le:general_nopad_ci,nopad_bin utf32:general_nopad_ci,nopad_bin,unicode_520_nopad_ci,"
    "unicode_nopad_ci utf8mb3:general_nopad_ci,nopad_bin,unicode_520_nopad_ci,unicode_nopad_ci "
    "utf8mb4:general_nopad_ci,nopad_bin,unicode_520_nopad_ci,unicode_nopad_ci"
)


def _names(spec: str) -> list[str]:
    names = []
    for group in spec.split():
        charset, _, suffixes = group.partition(":")
        names.extend(f"{charset}_{suffix}" for suffix in suffixes.split(","))
    return names


def _table() -> MappingProxyType[str, bytes]:
    table = {
        name: bytes.fromhex(space) for space, spec in _PAD_SPACE.items() for name in _names(spec)
    }
    table.update((name, b"") for name in _names(_NO_PAD))
    table["binary"] = b""
    return MappingProxyType(table)


# Collation name -> the weight unit that pads (b"" for NO PAD).
PAD_WEIGHTS = _table()


def pad_weight(collation: str) -> bytes | None:
    """The padding weight unit of a collation (as COLLATION() names it); b"" for NO PAD;
    None if merging on it is not supported."""
    return PAD_WEIGHTS.get(collation.lower())


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
