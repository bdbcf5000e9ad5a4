"""Checking a client's credentials, at the handshake and again on COM_CHANGE_USER.

Both answer the nonce the greeting sent: mysql_native_password's scramble, or
caching_sha2_password's fast path (the proxy knows the passwords, so every login is a cache
hit); a client offering another plugin is asked to switch to mysql_native_password.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from mysql_mimic.auth import NativePasswordAuthPlugin
from mysql_mimic.charset import Collation

from proxy import packets as p
from proxy.channel import ClientChannel, ProtocolViolation
from router.analyze import INFORMATION_SCHEMA
from router.config import Config, User
from router.errors import AccessDenied, DbAccessDenied, UnknownDatabase

NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"


@dataclass(frozen=True)
class Login:
    """What a client logs in with: a HandshakeResponse41's fields, or COM_CHANGE_USER's."""

    username: str
    auth_response: bytes
    plugin: str | None
    database: str | None
    charset: str | None  # the client's character set (None: COM_CHANGE_USER sent none)

    def state(self) -> tuple[tuple[str, str], ...]:
        """The session state it starts with: the client's character set, as if it had sent
        SET NAMES (none for the pool's own utf8mb4)."""
        if self.charset is None or self.charset == "utf8mb4":
            return ()
        return (("names", self.charset),)


def parse_change_user(body: bytes, capabilities: int) -> Login:
    """COM_CHANGE_USER's payload (without the command byte)."""
    try:
        end = body.index(b"\x00")
        username = body[:end].decode("utf-8", "surrogateescape")
        pos = end + 1
        if capabilities & p.CLIENT_SECURE_CONNECTION:
            length = body[pos]
            auth_response = body[pos + 1 : pos + 1 + length]
            pos += 1 + length
        else:
            end = body.index(b"\x00", pos)
            auth_response = body[pos:end]
            pos = end + 1
        end = body.index(b"\x00", pos)
        database = body[pos:end].decode("utf-8", "surrogateescape") or None
        pos = end + 1
        charset = None
        if pos + 2 <= len(body):
            charset = Collation(struct.unpack_from("<H", body, pos)[0]).charset.name
            pos += 2
        plugin = None
        if capabilities & p.CLIENT_PLUGIN_AUTH and pos < len(body):
            end = body.find(b"\x00", pos)
            plugin = body[pos : end if end >= 0 else len(body)].decode("ascii") or None
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ProtocolViolation(f"bad COM_CHANGE_USER: {exc}") from exc
    return Login(username, auth_response, plugin, database, charset)


async def authenticate(channel: ClientChannel, config: Config, login: Login, nonce: bytes) -> User:
    """The user `login` proves to be, after an auth switch if its plugin is neither of ours;
    raises AccessDenied, UnknownDatabase or DbAccessDenied (the caller sends the error)."""
    auth_response = login.auth_response
    plugin = login.plugin
    if plugin not in (None, NATIVE_PASSWORD, CACHING_SHA2):
        # Ask the client to answer with mysql_native_password on the same nonce.
        channel.send(b"\xfe" + NATIVE_PASSWORD.encode() + b"\x00" + nonce + b"\x00")
        await channel.drain()
        auth_response = await channel.read_packet()
        plugin = NATIVE_PASSWORD
    check = _sha2_password_ok if plugin == CACHING_SHA2 else _password_ok
    user = config.users.get(login.username)
    if user is None or not check(user.password, auth_response, nonce):
        raise AccessDenied(
            f"Access denied for user '{login.username}'@'{peer(channel)}' "
            f"(using password: {'YES' if auth_response else 'NO'})"
        )
    database = login.database
    if database is not None and database.lower() != INFORMATION_SCHEMA:  # open to everyone
        if database not in config.databases:
            raise UnknownDatabase(database)
        if user.databases is not None and database not in user.databases:
            raise DbAccessDenied(
                f"Access denied for user '{user.name}'@'%' to database '{database}'"
            )
    if plugin == CACHING_SHA2:
        channel.send(b"\x01\x03")  # fast_auth_success: the scramble matched
    return user


def _sha2_password_ok(password: str, scramble: bytes, nonce: bytes) -> bool:
    """caching_sha2_password's fast path. scramble = SHA256(pw) XOR SHA256(SHA256(SHA256(pw))
    + nonce)."""
    if not password:
        return not scramble
    digest = hashlib.sha256(password.encode()).digest()
    mask = hashlib.sha256(hashlib.sha256(digest).digest() + nonce).digest()
    expected = bytes(a ^ b for a, b in zip(digest, mask, strict=True))
    return hmac.compare_digest(expected, scramble)


def _password_ok(password: str, scramble: bytes, nonce: bytes) -> bool:
    if not password:
        return not scramble
    if not scramble:
        return False
    stored = NativePasswordAuthPlugin.create_auth_string(password)
    return NativePasswordAuthPlugin().verify_scramble(stored, scramble, nonce)


def peer(channel: ClientChannel) -> str:
    """The client's address, as MySQL names it in access-denied messages."""
    address = channel.stream.get_extra_info("peername")
    return str(address[0]) if address else "localhost"
