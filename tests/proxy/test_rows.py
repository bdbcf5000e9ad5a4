"""Reading merge rows as bytes (KeyRows), against rows encoded with only the kept columns.

Rows are encoded the way servers send them (proxy.merge_exec's encoders match MariaDB byte for
byte, checked by the differential suite); a cut row must equal the row encoded from the kept
values alone, and every key cell must decode as that value's own encoding does.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import packets as p
from proxy import rows
from proxy.merge_exec import (
    KeyRows,
    _key_decoder,
    encode_binary_row,
    encode_binary_value,
    encode_text_value,
)
from router.merge import ColumnInfo

# One column of each wire shape: integers of every size, FLOAT/DOUBLE, DECIMAL, strings,
# temporal values (length-prefixed binary cells) and TIME.
TINY, SHORT, LONG, LONGLONG, FLOAT, DOUBLE, DECIMAL, VARCHAR, DATETIME, TIME = (
    1, 2, 3, 8, 4, 5, 246, 253, 12, 11,
)  # fmt: skip
DATETIMES = [b"\x00", b"\x04\xe8\x07\x02\x1d", b"\x07\xe8\x07\x02\x1d\x17\x3b\x3b"]
TIMES = [b"\x00", b"\x08\x01\x02\x00\x00\x00\x03\x04\x05", b"\x0c" + bytes(range(12))]


class Raw(bytes):
    """A value already in its binary-protocol encoding (temporal cells)."""

    @property
    def raw(self) -> bytes:
        return bytes(self)


def column_values(kind: int) -> st.SearchStrategy[object]:
    values: dict[int, st.SearchStrategy[object]] = {
        TINY: st.integers(-128, 127),
        SHORT: st.integers(-(2**15), 2**15 - 1),
        LONG: st.integers(-(2**31), 2**31 - 1),
        LONGLONG: st.integers(-(2**63), 2**63 - 1),
        FLOAT: st.floats(width=32, allow_nan=False),
        DOUBLE: st.floats(allow_nan=False),
        DECIMAL: st.decimals(places=2, allow_nan=False, allow_infinity=False),
        # Lengths on both sides of the 1-byte and 2-byte length prefixes.
        VARCHAR: st.binary(max_size=300),
        DATETIME: st.sampled_from(DATETIMES).map(Raw),
        TIME: st.sampled_from(TIMES).map(Raw),
    }
    return st.one_of(st.none(), values[kind])


Case = tuple[list[ColumnInfo], list[object], int, list[bool]]


@st.composite
def result_rows(draw: st.DrawFn) -> Case:
    """(columns, one row's values, columns kept, the key columns): up to 20 columns, so NULL
    bitmaps of 1 to 3 bytes, NULLs anywhere, keys anywhere (or none)."""
    kinds = draw(st.lists(st.sampled_from(sorted(column_kinds())), min_size=1, max_size=20))
    values = [draw(column_values(kind)) for kind in kinds]
    keep = draw(st.integers(1, len(kinds)))
    needed = draw(st.lists(st.booleans(), min_size=len(kinds), max_size=len(kinds)))
    return [ColumnInfo(kind) for kind in kinds], values, keep, needed


def column_kinds() -> set[int]:
    return {TINY, SHORT, LONG, LONGLONG, FLOAT, DOUBLE, DECIMAL, VARCHAR, DATETIME, TIME}


def text_data(value: object, info: ColumnInfo) -> bytes | None:
    """A value's text-protocol bytes (a temporal one's: a valid text of its type)."""
    if isinstance(value, Raw):
        return b"-838:59:59" if info.type == TIME else b"2024-02-29 23:59:59.5"
    return encode_text_value(value, info)


def text_row(values: list[object], infos: list[ColumnInfo]) -> bytes:
    cells = []
    for value, info in zip(values, infos, strict=True):
        data = text_data(value, info)
        cells.append(b"\xfb" if data is None else p.lenenc_str(data))
    return b"".join(cells)


def key_value(encoded: bytes, info: ColumnInfo, binary: bool) -> object:
    """What the merge should see of a key cell whose own encoding is `encoded` (a binary
    cell's length prefix included)."""
    decode = _key_decoder(info, binary)
    if decode is not None:
        return decode(encoded, 0, len(encoded))
    return encoded[rows.lenenc_start(encoded, 0) :] if binary else encoded


def check(row: tuple[object, ...], case: Case, cut: bytes, binary: bool) -> None:
    infos, values, _, needed = case
    assert len(row) == len(infos) + 1
    assert row[-1] == cut
    for index, (value, info) in enumerate(zip(values, infos, strict=True)):
        if not needed[index] or value is None:
            assert row[index] is None
        elif binary:
            assert row[index] == key_value(encode_binary_value(value, info), info, binary)
        else:
            data = text_data(value, info)
            assert data is not None
            assert row[index] == key_value(data, info, binary)


@settings(max_examples=400, deadline=None)
@given(result_rows())
def test_a_text_row_is_cut_to_the_kept_columns_with_its_keys_read(case: Case) -> None:
    infos, values, keep, needed = case
    row = KeyRows(infos, needed, keep, binary=False).row(text_row(values, infos))
    check(row, case, text_row(values[:keep], infos[:keep]), binary=False)


@settings(max_examples=400, deadline=None)
@given(result_rows())
def test_a_binary_row_is_cut_to_the_kept_columns_with_its_keys_read(case: Case) -> None:
    infos, values, keep, needed = case
    row = KeyRows(infos, needed, keep, binary=True).row(encode_binary_row(values, infos))
    check(row, case, encode_binary_row(values[:keep], infos[:keep]), binary=True)


def test_text_cells_read_every_length_prefix() -> None:
    """1-, 3-, 4- and 9-byte length prefixes, as values of 250 B, 64 KB and 16 MB+ have (a row
    over 16 MB arrives in several frames, joined before it is cut)."""
    big = b"x" * (1 << 24)
    values: list[bytes | None] = [b"a" * 250, b"b" * 65536, None, big, b"", b"tail"]
    infos = [ColumnInfo(VARCHAR)] * len(values)
    row = KeyRows(infos, [True] * 6, 4, binary=False).row(p.text_row(values))
    assert list(row[:-1]) == values
    assert row[-1] == p.text_row(values[:4])


def test_binary_cells_read_every_length_prefix() -> None:
    big = b"x" * (1 << 24)
    values: list[object] = [b"a" * 250, b"b" * 65536, None, big, b"", b"tail"]
    infos = [ColumnInfo(VARCHAR)] * len(values)
    row = KeyRows(infos, [True] * 6, 4, binary=True).row(encode_binary_row(values, infos))
    assert list(row[:-1]) == values
    assert row[-1] == encode_binary_row(values[:4], infos[:4])


def test_the_null_bitmap_is_rebuilt_for_the_kept_columns() -> None:
    """Column i is bit i + 2: nine or seven columns need two bitmap bytes, six need one. NULLs
    among the kept columns stay, those of dropped ones go."""
    values: list[object] = [None, 1, 2, 3, 4, 5, None, None, None]
    infos = [ColumnInfo(LONG)] * 9
    payload = encode_binary_row(values, infos)
    assert payload[1:3] == b"\x04\x07"
    numbers = b"".join(v.to_bytes(4, "little") for v in (1, 2, 3, 4, 5))
    assert KeyRows(infos, [False] * 9, 7, True).row(payload)[-1] == b"\x00\x04\x01" + numbers
    assert KeyRows(infos, [False] * 9, 6, True).row(payload)[-1] == b"\x00\x04" + numbers
