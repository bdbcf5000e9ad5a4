"""Bad protocol input on raw sockets: every misbehaving client gets an error or is disconnected,
quickly, and never disturbs the proxy or the next client."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from typing import TYPE_CHECKING

import pymysql
import pytest
from shop_helpers import RawClient, assert_proxy_serves, err_fields

if TYPE_CHECKING:
    from conftest import ProxyProcess


def serves(proxy: ProxyProcess) -> None:
    assert proxy.is_running(), proxy.log_tail()
    assert_proxy_serves(proxy)


def error_or_close(client: RawClient, timeout: float = 3.0) -> list[bytes]:
    """What the server sends before hanging up; it must hang up within `timeout`. Anything it
    sends must be a well-formed ERR packet."""
    packets = client.read_until_closed(timeout)
    for packet in packets:
        err_fields(packet)
    return packets


@pytest.fixture
def raw(shop_proxy: ProxyProcess):
    clients: list[RawClient] = []

    def connect() -> RawClient:
        client = RawClient(shop_proxy.host, shop_proxy.port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def test_the_raw_client_itself_works(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    assert client.greeting[0] == 10  # protocol v10
    client.login()
    reply = client.query("SELECT 1")
    assert reply[-1][:1] == b"\xfe"
    assert b"\x011" in reply  # the text row "1"
    client.send_packet(b"\x01", 0)  # COM_QUIT
    assert client.read_until_closed(3) == []


# --- before authentication -------------------------------------------------------------------


def test_garbage_instead_of_the_handshake_response(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.send_packet(b"\x05hello garbage", 1)  # well framed, meaningless
    packets = error_or_close(client)
    if packets:
        code, sqlstate, _ = err_fields(packets[0])
        assert (code, sqlstate) == (1043, "08S01")  # ER_HANDSHAKE_ERROR: Bad handshake
    serves(shop_proxy)


def test_unframed_garbage_instead_of_the_handshake_response(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    error_or_close(client)
    serves(shop_proxy)


def test_truncated_handshake_response(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    full = client.handshake_response("app", "app", "shop")
    client.send_packet(full[:20], 1)  # a complete packet holding half a handshake response
    packets = error_or_close(client)
    assert packets, "no error for a truncated handshake response"
    code, sqlstate, _ = err_fields(packets[0])
    assert (code, sqlstate) == (1043, "08S01")
    serves(shop_proxy)


def test_handshake_response_with_wrong_sequence_id(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.send_packet(client.handshake_response("app", "app", "shop"), 7)
    error_or_close(client)
    serves(shop_proxy)


def test_clients_that_connect_and_send_nothing_do_not_block_others(
    shop_proxy: ProxyProcess,
) -> None:
    silent = [socket.create_connection((shop_proxy.host, shop_proxy.port)) for _ in range(30)]
    greeted = [RawClient(shop_proxy.host, shop_proxy.port) for _ in range(5)]  # read, then idle
    try:
        started = time.monotonic()
        serves(shop_proxy)
        conn = shop_proxy.connect(connect_timeout=3)
        conn.close()
        assert time.monotonic() - started < 3
    finally:
        for sock in silent:
            sock.close()
        for client in greeted:
            client.close()
    # ... and ones that connect and hang up at once.
    for _ in range(10):
        socket.create_connection((shop_proxy.host, shop_proxy.port)).close()
    serves(shop_proxy)


# --- after authentication ------------------------------------------------------------------


def test_unknown_command_is_an_error_and_the_session_goes_on(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_packet(b"\xee" + os.urandom(16), 0)
    _, reply = client.read_packet()
    code, sqlstate, _ = err_fields(reply)
    assert (code, sqlstate) == (1047, "08S01")  # ER_UNKNOWN_COM_ERROR
    assert client.query("SELECT 1")[-1][:1] == b"\xfe"
    serves(shop_proxy)


def test_garbage_bytes_after_the_handshake(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_raw(b"\xde\xad\xbe\xef" * 16)
    error_or_close(client)
    serves(shop_proxy)


def test_empty_command_packet(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_packet(b"", 0)
    error_or_close(client)
    serves(shop_proxy)


def test_truncated_command_packet(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    # Announces 100 bytes, sends 12, then nothing: other clients must not wait for it.
    client.send_raw(struct.pack("<I", 100)[:3] + b"\x00" + b"\x03SELECT 1 +")
    time.sleep(0.1)
    serves(shop_proxy)
    client.sock.shutdown(socket.SHUT_WR)
    error_or_close(client)
    serves(shop_proxy)


def test_command_with_a_wrong_sequence_id(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_packet(b"\x03SELECT 1", 5)
    packets = error_or_close(client)
    if packets:
        code, sqlstate, _ = err_fields(packets[0])
        assert (code, sqlstate) == (1156, "08S01")  # ER_NET_PACKETS_OUT_OF_ORDER
    serves(shop_proxy)


def test_huge_length_header_does_not_block_others(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_raw(b"\xff\xff\xff\x00\x03SELECT '")  # announces 16 MB - 1, sends 9 bytes
    time.sleep(0.1)
    serves(shop_proxy)
    client.close()
    serves(shop_proxy)


def test_packet_over_max_allowed_packet_is_refused(raw, shop_proxy: ProxyProcess) -> None:
    """A 20 MB query (the servers' max_allowed_packet is 16 MB) gets ER_NET_PACKET_TOO_LARGE or
    a disconnect; nobody else notices."""
    client = raw()
    client.login()
    body = b"\x03SELECT '" + b"x" * (20 << 20) + b"'"
    # 16 MB - 1 per packet, then the rest (a multi-packet command, as the protocol splits it).
    for seq, offset in enumerate(range(0, len(body) + 1, 0xFFFFFF)):
        client.send_packet(body[offset : offset + 0xFFFFFF], seq)
    client.sock.settimeout(10)
    try:
        _, reply = client.read_packet()
    except (ConnectionError, OSError):
        reply = None
    if reply is not None:
        code, _, _ = err_fields(reply)
        assert code in (1153, 2013, 2006), code
    serves(shop_proxy)


def test_bytes_larger_than_a_command_after_quit(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    client.send_packet(b"\x01", 0)  # COM_QUIT
    with contextlib.suppress(OSError):
        client.send_raw(b"\x00" * 1024)
    error_or_close(client)
    serves(shop_proxy)


def test_pymysql_still_works_while_misbehaving_clients_are_connected(
    raw, shop_proxy: ProxyProcess
) -> None:
    stuck = raw()
    stuck.login()
    stuck.send_raw(b"\x10\x00\x00\x00\x03SEL")  # incomplete forever
    conns = [shop_proxy.connect(read_timeout=5) for _ in range(5)]
    try:
        for conn in conns:
            with conn.cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID() > 0")
                assert cursor.fetchall() == ((1,),)
    finally:
        for conn in conns:
            conn.close()
    with pytest.raises(pymysql.err.OperationalError):
        shop_proxy.connect(password="bad")
    serves(shop_proxy)


# --- prepared statements ----------------------------------------------------------------------


def prepare(client: RawClient, sql: str) -> int:
    """COM_STMT_PREPARE of a statement with one parameter: its id (reads its reply)."""
    client.send_packet(b"\x16" + sql.encode(), 0)
    _, reply = client.read_packet()
    assert reply[:1] == b"\x00", err_fields(reply)
    for _ in range(2):  # the parameter's definition, EOF
        client.read_packet()
    return struct.unpack_from("<I", reply, 1)[0]


def test_com_reset_connection_drops_prepared_statements(raw, shop_proxy: ProxyProcess) -> None:
    client = raw()
    client.login()
    stmt_id = prepare(client, "SET @a = ?")
    client.send_packet(b"\x1f", 0)  # COM_RESET_CONNECTION
    assert client.read_packet()[1][:1] == b"\x00"
    client.send_packet(b"\x1a" + struct.pack("<I", stmt_id), 0)  # COM_STMT_RESET
    assert err_fields(client.read_packet()[1])[0] == 1243  # ER_UNKNOWN_STMT_HANDLER
    serves(shop_proxy)


def test_prepared_statements_beyond_max_prepared_stmt_count_are_refused(
    raw, shop_proxy: ProxyProcess
) -> None:
    """A client that never closes its statements gets MariaDB's 1461 at 16382 of them."""
    client = raw()
    client.login()
    client.sock.settimeout(30)
    prepare_set = b"\x16SET @a = ?"
    for batch in range(0, 16382, 2000):  # pipelined, a batch at a time
        count = min(2000, 16382 - batch)
        client.send_raw((struct.pack("<I", len(prepare_set))[:3] + b"\x00" + prepare_set) * count)
        for _ in range(count * 3):
            client.read_packet()
    client.send_packet(prepare_set, 0)
    assert err_fields(client.read_packet()[1])[:2] == (1461, "42000")
    client.send_packet(b"\x19" + struct.pack("<I", 1), 0)  # COM_STMT_CLOSE: room for one more
    prepare(client, "SET @a = ?")


def test_a_prepared_statements_syntax_error_quotes_its_own_text(
    raw, shop_proxy: ProxyProcess
) -> None:
    client = raw()
    client.login()
    client.send_packet(b"\x16SELEC ?", 0)
    code, sqlstate, message = err_fields(client.read_packet()[1])
    assert (code, sqlstate) == (1064, "42000")
    assert "near 'SELEC ?'" in message, message


def test_com_stmt_fetch_finds_no_cursor(raw, shop_proxy: ProxyProcess) -> None:
    """Executions never open a cursor, so a fetch is MariaDB's 'no open cursor' (1421), and
    one of an unknown statement 1243, not 'command not supported' (08S01)."""
    client = raw()
    client.login()
    stmt_id = prepare(client, "SET @a = ?")
    client.send_packet(b"\x1c" + struct.pack("<II", stmt_id, 10), 0)
    assert err_fields(client.read_packet()[1])[:2] == (1421, "HY000")
    client.send_packet(b"\x1c" + struct.pack("<II", stmt_id + 100, 10), 0)
    assert err_fields(client.read_packet()[1])[:2] == (1243, "HY000")
    serves(shop_proxy)


def test_com_reset_connection_keeps_the_handshakes_character_set(
    raw, shop_proxy: ProxyProcess
) -> None:
    """libmariadb's mysql_reset_connection() sends no SET NAMES after it: MariaDB keeps the
    character set the client logged in with, and so must the proxy."""
    client = raw()
    response = bytearray(client.handshake_response("app", "app", "shop"))
    response[8] = 8  # latin1_swedish_ci
    client.send_packet(bytes(response), 1)
    assert client.read_packet()[1][:1] == b"\x00"
    for _ in range(2):
        assert b"\x06latin1" in client.query("SELECT @@character_set_client")
        client.send_packet(b"\x1f", 0)  # COM_RESET_CONNECTION
        assert client.read_packet()[1][:1] == b"\x00"
