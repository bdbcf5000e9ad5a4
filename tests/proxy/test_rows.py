"""Cutting result rows as bytes, against rows encoded with only the kept columns.

Rows are encoded the way servers send them (proxy.merge_exec's encoders match MariaDB byte for
byte, checked by the differential suite); a cut row must equal the row encoded from the kept
values alone, and every cell found must be that value's own encoding.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import packets as p
from proxy import rows
from proxy.merge_exec import encode_binary_row, encode_binary_value, encode_text_value
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


@st.composite
def result_rows(draw: st.DrawFn) -> tuple[list[ColumnInfo], list[object], int]:
    """(columns, one row's values, columns kept): up to 20 columns, so NULL bitmaps of 1 to 3
    bytes, NULLs anywhere."""
    kinds = draw(st.lists(st.sampled_from(sorted(column_kinds())), min_size=1, max_size=20))
    values = [draw(column_values(kind)) for kind in kinds]
    keep = draw(st.integers(1, len(kinds)))
    return [ColumnInfo(kind) for kind in kinds], values, keep


def column_kinds() -> set[int]:
    return {TINY, SHORT, LONG, LONGLONG, FLOAT, DOUBLE, DECIMAL, VARCHAR, DATETIME, TIME}


def text_data(value: object, info: ColumnInfo) -> bytes | None:
    """A value's text-protocol bytes (a temporal one's text does not matter, only its size)."""
    if isinstance(value, Raw):
        return bytes(value).hex().encode()
    return encode_text_value(value, info)


def text_row(values: list[object], infos: list[ColumnInfo]) -> bytes:
    cells = []
    for value, info in zip(values, infos, strict=True):
        data = text_data(value, info)
        cells.append(b"\xfb" if data is None else p.lenenc_str(data))
    return b"".join(cells)


@settings(max_examples=300, deadline=None)
@given(result_rows())
def test_a_cut_text_row_is_the_row_of_the_kept_columns(
    case: tuple[list[ColumnInfo], list[object], int],
) -> None:
    infos, values, keep = case
    payload = text_row(values, infos)
    cells = rows.text_cells(payload, len(infos))
    assert cells[-1][1] == len(payload)
    assert rows.cut_text_row(payload, cells, keep) == text_row(values[:keep], infos[:keep])
    for (start, end), value, info in zip(cells, values, infos, strict=True):
        if value is None:
            assert start == -1
        else:
            assert payload[start:end] == text_data(value, info)


@settings(max_examples=300, deadline=None)
@given(result_rows())
def test_a_cut_binary_row_is_the_row_of_the_kept_columns(
    case: tuple[list[ColumnInfo], list[object], int],
) -> None:
    infos, values, keep = case
    payload = encode_binary_row(values, infos)
    types = [info.type for info in infos]
    cells = rows.binary_cells(payload, types, len(infos))
    assert cells[-1][1] == len(payload)
    cut = rows.cut_binary_row(payload, len(infos), cells, keep)
    assert cut == encode_binary_row(values[:keep], infos[:keep])
    for (start, end), value, info in zip(cells, values, infos, strict=True):
        if value is None:
            assert start == -1
        else:
            assert payload[start:end] == encode_binary_value(value, info)


def test_text_cells_read_every_length_prefix() -> None:
    """1-, 3-, 4- and 9-byte length prefixes, as values of 250 B, 64 KB and 16 MB+ have (a row
    over 16 MB arrives in several frames, joined before it is cut)."""
    big = b"x" * (1 << 24)
    values: list[bytes | None] = [b"a" * 250, b"b" * 65536, None, big, b"", b"tail"]
    payload = p.text_row(values)
    cells = rows.text_cells(payload, len(values))
    found = [None if start < 0 else payload[start:end] for start, end in cells]
    assert found == values
    assert rows.cut_text_row(payload, cells, 4) == p.text_row(values[:4])


def test_the_null_bitmap_is_rebuilt_for_the_kept_columns() -> None:
    """Column i is bit i + 2: nine or seven columns need two bitmap bytes, six need one. NULLs
    among the kept columns stay, those of dropped ones go."""
    values: list[object] = [None, 1, 2, 3, 4, 5, None, None, None]
    payload = encode_binary_row(values, [ColumnInfo(LONG)] * 9)
    assert payload[1:3] == b"\x04\x07"
    cells = rows.binary_cells(payload, [LONG] * 9, 9)
    numbers = b"".join(v.to_bytes(4, "little") for v in (1, 2, 3, 4, 5))
    assert rows.cut_binary_row(payload, 9, cells, 7) == b"\x00\x04\x01" + numbers
    assert rows.cut_binary_row(payload, 9, cells, 6) == b"\x00\x04" + numbers
