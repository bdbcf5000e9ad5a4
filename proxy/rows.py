"""Result rows as wire bytes: finding cells and cutting rows without decoding them.

A cross-shard merge that only picks and orders rows (merge sort, DISTINCT, LIMIT) looks at a few
key columns; every other byte of a shard's row goes to the client as the shard sent it. The
hidden key columns the rewrite appends are the row's last ones, so the client's row is a prefix
of the shard's: a text row cut at the first hidden cell, or a binary row with its NULL bitmap
rebuilt for the kept columns and its values cut at the first hidden one.
"""

from __future__ import annotations

from collections.abc import Sequence

# Binary-protocol cells of a fixed size, by column type; temporal cells carry their own length.
_FIXED = {0x01: 1, 0x02: 2, 0x0D: 2, 0x03: 4, 0x09: 4, 0x08: 8, 0x04: 4, 0x05: 8}
_SIZED = frozenset({0x07, 0x0A, 0x0B, 0x0C, 0x0E})


def _lenenc(payload: bytes, pos: int) -> tuple[int, int]:
    """(length, position of the bytes) of a length-encoded string; length -1 for NULL."""
    first = payload[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return -1, pos + 1
    if first == 0xFC:
        return payload[pos + 1] | payload[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return int.from_bytes(payload[pos + 1 : pos + 4], "little"), pos + 4
    return int.from_bytes(payload[pos + 1 : pos + 9], "little"), pos + 9


def lenenc_start(payload: bytes, pos: int) -> int:
    """Where the bytes of the (non-NULL) length-encoded string at `pos` start."""
    return _lenenc(payload, pos)[1]


def text_cells(payload: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of the first `count` values of a text row; (-1, end) for NULL, so that
    `end` of cell i is where value i+1 starts."""
    cells = []
    pos = 0
    for _ in range(count):
        first = payload[pos]
        if first < 0xFB:  # the usual one-byte length, read inline: this runs for every row
            start = pos + 1
            pos = start + first
            cells.append((start, pos))
            continue
        length, start = _lenenc(payload, pos)
        if length < 0:
            cells.append((-1, start))
            pos = start
        else:
            pos = start + length
            cells.append((start, pos))
    return cells


def null_bytes(width: int) -> int:
    """Size of a binary row's NULL bitmap (its first two bits are reserved)."""
    return (width + 9) // 8


def binary_cells(payload: bytes, types: Sequence[int], count: int) -> list[tuple[int, int]]:
    """(start, end) of the first `count` cells of a binary row whose columns have `types`:
    the cell's wire bytes (a string's length prefix included); (-1, start) for NULL."""
    bitmap = int.from_bytes(payload[1 : 1 + null_bytes(len(types))], "little") >> 2
    pos = 1 + null_bytes(len(types))
    cells = []
    for index in range(count):
        if bitmap >> index & 1:
            cells.append((-1, pos))
            continue
        kind = types[index]
        size = _FIXED.get(kind)
        if size is not None:
            end = pos + size
        elif kind in _SIZED or payload[pos] < 0xFB:  # a one-byte size or length first
            end = pos + 1 + payload[pos]
        else:
            length, start = _lenenc(payload, pos)
            end = start + length
        cells.append((pos, end))
        pos = end
    return cells


def cut_text_row(payload: bytes, cells: Sequence[tuple[int, int]], keep: int) -> bytes:
    """The text row of the first `keep` (>= 1) columns, given its cells up to at least `keep`."""
    return payload[: cells[keep - 1][1]]


def cut_binary_row(
    payload: bytes, width: int, cells: Sequence[tuple[int, int]], keep: int
) -> bytes:
    """The binary row of the first `keep` (>= 1) of its `width` columns: the NULL bitmap
    rebuilt for them, the values up to the first dropped one."""
    old = null_bytes(width)
    new = null_bytes(keep)
    bitmap = int.from_bytes(payload[1 : 1 + old], "little") & ((1 << (keep + 2)) - 1)
    return b"\x00" + bitmap.to_bytes(new, "little") + payload[1 + old : cells[keep - 1][1]]
