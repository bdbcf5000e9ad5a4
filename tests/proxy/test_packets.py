"""The packet codec, byte for byte."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy import packets as p
from proxy.prepared import ClientStatement, encode_execute, parse_execute, unmark


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lenenc_int_round_trips(n: int):
    encoded = p.lenenc_int(n)
    assert p.read_lenenc_int(encoded, 0) == (n, len(encoded))


def test_lenenc_int_boundaries():
    assert p.lenenc_int(250) == b"\xfa"
    assert p.lenenc_int(251) == b"\xfc\xfb\x00"
    assert p.lenenc_int(65536) == b"\xfd\x00\x00\x01"
    assert p.lenenc_int(1 << 24) == b"\xfe" + (1 << 24).to_bytes(8, "little")
    assert p.read_lenenc_int(b"\xfb", 0) == (None, 1)


def test_frame_splits_at_16_mb_and_ends_exact_multiples_with_an_empty_packet():
    small, seq = p.frame(b"abc", 5)
    assert small == b"\x03\x00\x00\x05abc" and seq == 6
    exact, seq = p.frame(b"x" * p.MAX_PAYLOAD, 0)
    assert len(exact) == 4 + p.MAX_PAYLOAD + 4 and seq == 2
    assert exact[-4:] == b"\x00\x00\x00\x01"
    bigger, seq = p.frame(b"y" * (p.MAX_PAYLOAD + 10), 255)
    assert bigger[3] == 255 and bigger[4 + p.MAX_PAYLOAD + 3] == 0 and seq == 257
    assert bigger[4 + p.MAX_PAYLOAD : 4 + p.MAX_PAYLOAD + 3] == b"\x0a\x00\x00"


def test_ok_eof_err_layouts():
    ok = p.ok_packet(3, 300, p.SERVER_STATUS_AUTOCOMMIT, 2)
    assert ok == b"\x00\x03\xfc\x2c\x01\x02\x00\x02\x00"
    assert p.parse_ok(ok) == (3, 300, p.SERVER_STATUS_AUTOCOMMIT, 2)
    eof = p.eof_packet(p.SERVER_STATUS_AUTOCOMMIT, 1)
    assert eof == b"\xfe\x01\x00\x02\x00" and p.is_eof(eof)
    assert p.eof_status(p.with_eof_status(eof, 0x0008)) == (1, 0x0008)
    err = p.err_packet(1146, "42S02", "Table 'shop.x' doesn't exist")
    assert err[:9] == b"\xff\x7a\x04#42S02"
    assert p.parse_err(err) == (1146, "42S02", "Table 'shop.x' doesn't exist")


def test_text_result_set_payloads():
    payloads = p.text_result_payloads(["Database"], [("shop",), (None,)], 2)
    assert payloads[0] == b"\x01"
    assert payloads[2] == p.eof_packet(2)
    assert payloads[3] == b"\x04shop" and payloads[4] == b"\xfb"
    assert payloads[-1] == p.eof_packet(2)


def _execute_body(stmt_id: int, types: list[int], values: list[bytes | None]) -> bytes:
    bitmap = bytearray((len(types) + 7) // 8)
    for i, value in enumerate(values):
        if value is None:
            bitmap[i // 8] |= 1 << (i % 8)
    return (
        struct.pack("<IBI", stmt_id, 0, 1)
        + bytes(bitmap)
        + b"\x01"
        + b"".join(struct.pack("<BB", t, 0) for t in types)
        + b"".join(v for v in values if v is not None)
    )


def test_execute_parameters_decode_and_reencode_for_a_subset():
    stmt = ClientStatement(7, "INSERT ...", 4)
    body = _execute_body(
        7,
        [0x08, 0xFD, 0x06, 0xF6],
        [struct.pack("<q", -5), b"\x07O'Brien", None, b"\x0412.5"],
    )
    parsed, params = parse_execute(body, {7: stmt})
    assert parsed is stmt
    assert [param.value for param in params] == [-5, "O'Brien", None, Decimal("12.5")]
    again = encode_execute(99, [params[1], params[2]])
    assert again == struct.pack("<IBI", 99, 0, 1) + b"\x02\x01" + b"\xfd\x00\x06\x00\x07O'Brien"
    # A later execute may leave the types out: the bound ones are reused.
    rebound = struct.pack("<IBI", 7, 0, 1) + b"\x04\x00" + struct.pack("<q", 1) + b"\x01a"
    rebound += b"\x011"
    _, params = parse_execute(rebound, {7: stmt})
    assert [param.value for param in params] == [1, "a", None, Decimal("1")]


def test_unmark_returns_question_marks_and_parameter_order():
    assert unmark("SELECT * FROM t_1 WHERE a = /*?2*/? AND b = /*?0*/?") == (
        "SELECT * FROM t_1 WHERE a = ? AND b = ?",
        [2, 0],
    )


def test_malformed_execute_is_an_error_not_a_crash():
    stmt = ClientStatement(1, "SELECT ?", 1)
    with pytest.raises(Exception) as error:
        parse_execute(struct.pack("<IBI", 1, 0, 1) + b"\x00\x01\xfd\x00\x09abc", {1: stmt})
    assert getattr(error.value, "code", None) == 1835
