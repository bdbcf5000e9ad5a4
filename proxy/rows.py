"""Result rows as wire bytes: how their cells are laid out, for reading rows without decoding.

A cross-shard merge that only picks and orders rows (merge sort, DISTINCT, LIMIT) looks at a few
key columns; every other byte of a shard's row goes to the client as the shard sent it. The
hidden key columns the rewrite appends are the row's last ones, so the client's row is a prefix
of the shard's: a text row cut at the first hidden cell, or a binary row with its NULL bitmap
rebuilt for the kept columns and its values cut at the first hidden one
(proxy.merge_exec.KeyRows walks the cells with these helpers).
"""

from __future__ import annotations

# Binary-protocol cells of a fixed size, by column type; temporal cells carry their own length.
_FIXED = {0x01: 1, 0x02: 2, 0x0D: 2, 0x03: 4, 0x09: 4, 0x08: 8, 0x04: 4, 0x05: 8}
_SIZED = frozenset({0x07, 0x0A, 0x0B, 0x0C, 0x0E})
# Bytes of a length-encoded integer, by its first byte when that is not the value itself.
_LENENC_SIZE = {0xFC: 3, 0xFD: 4, 0xFE: 9}


def lenenc_start(payload: bytes, pos: int) -> int:
    """Where the bytes of the (non-NULL) length-encoded string at `pos` start."""
    return pos + _LENENC_SIZE.get(payload[pos], 1)


def null_bytes(width: int) -> int:
    """Size of a binary row's NULL bitmap (its first two bits are reserved)."""
    return (width + 9) // 8


def cell_size(kind: int) -> int:
    """How a binary-protocol cell of column type `kind` is sized: its size when fixed, 0 when
    it starts with a one-byte size (temporal values), -1 when length-encoded (the rest)."""
    return _FIXED.get(kind, 0 if kind in _SIZED else -1)
