"""The listener: accepts clients, authenticates them, and runs a Session per connection.

The handshake packet is built and parsed by mysql-mimic's compiled `packets` module and the
password check is its mysql_native_password scramble check; everything after authentication is
ours (see docs/decisions.md for why mimic's connection loop and Session are not used).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import ssl
from dataclasses import dataclass, replace

from mysql_mimic import packets as mimic_packets
from mysql_mimic.charset import CharacterSet
from mysql_mimic.types import Capabilities, ServerStatus

from proxy import packets as p
from proxy.auth import NATIVE_PASSWORD, Login, authenticate
from proxy.backend import Backends
from proxy.catalog import Catalog
from proxy.channel import ClientChannel, ClientClosed, ProtocolViolation
from proxy.deadlock import CONTROL_TIMEOUT, DeadlockDetector
from proxy.http import HttpEndpoints, Readiness, scrape_registry
from proxy.ids import SnowflakeIds, worker_for
from proxy.metrics import Metrics, make_registry
from proxy.names import NameMap
from proxy.session import Session
from proxy.stream import Stream
from proxy.workers_control import WorkerControl, WorkerRole
from proxy.xa import Coordinator
from router.config import Config, Listener
from router.config_loader import load_config
from router.errors import ConfigError, ProxyError
from router.planner import Router

log = logging.getLogger("shardproxy.server")

VERSION_SUFFIX = "-shardproxy"
HANDSHAKE_TIMEOUT = 10.0
_NONCE_CHARS = bytes(range(0x21, 0x7F)).replace(b"\\", b"")


@dataclass(frozen=True)
class Runtime:
    """Everything derived from one config; a reload swaps the whole object."""

    config: Config
    router: Router
    names: NameMap
    backends: Backends
    coordinator: Coordinator
    catalog: Catalog


class Server:
    """The proxy in one process; with listen.workers > 1, one of several worker processes
    (`role`) serving the same port, which ask each other about sessions (`cluster`)."""

    def __init__(
        self, config: Config, config_path: str | None = None, role: WorkerRole | None = None
    ):
        self.config_path = config_path
        self.role = role
        worker = config.transactions.worker_id
        if role is None:
            instance = config.transactions.instance_id or secrets.token_hex(4)
            key_worker = worker_for(instance) if worker is None else worker
        else:
            instance = role.instance_id
            key_worker = role.key_worker_id(worker)
        self.runtime = _build_runtime(config, None, instance)
        self.instance = instance
        # Generated keys (proxy/ids.py); kept across reloads so they keep increasing.
        self.keygen = SnowflakeIds(key_worker)
        self._recovery: asyncio.Task[None] | None = None
        self._catalog_sync: asyncio.Future[None] | None = None
        self.server_version = "10.11.0-MariaDB" + VERSION_SUFFIX
        # Worker k of n hands out k+1, k+1+n, ...: ids are unique over the workers and tell
        # whose session a KILL means.
        self._ids = (
            itertools.count(1) if role is None else itertools.count(role.index + 1, role.count)
        )
        self._server: asyncio.Server | None = None
        self.sessions: dict[int, Session] = {}
        self.deadlock = DeadlockDetector(self)  # lock-wait cycles through several backends
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # KILL QUERYs of killed sessions' statements, still on their way (Server.kill).
        self._stopping: set[asyncio.Task[None]] = set()
        self.draining = False  # shutting down: sessions end after their transaction
        self._tls = _tls_context(config.listen)
        self.metrics = Metrics()  # outlives reloads; so does the HTTP port (a restart moves it)
        self.readiness = Readiness(self)
        self.registry = make_registry(self)
        # Workers leave the HTTP port to their supervisor, which asks them over `cluster`.
        self.cluster = WorkerControl(self, role) if role is not None else None
        self.http: HttpEndpoints | None = None
        if config.http is not None and role is None:
            self.http = HttpEndpoints(config.http, self.readiness.check, self._scrape)

    @property
    def accepting(self) -> bool:
        """Whether new clients are being accepted (not yet listening, or draining: no)."""
        return self._server is not None and self._server.is_serving() and not self.draining

    async def start(self) -> None:
        if self.http is not None:
            await self.http.start()  # first: /health answers while the rest starts
        version = await self.runtime.backends.server_version()
        self.server_version = version + VERSION_SUFFIX
        await self._recover_once()
        # In the background: unreachable backends must not delay listening; a metadata query
        # that comes first waits for this sync (Catalog.ensure).
        self._catalog_sync = asyncio.ensure_future(self._sync_catalog())
        self._recovery = asyncio.ensure_future(self._recovery_loop())
        listen = self.runtime.config.listen
        # SO_REUSEPORT: every worker binds the port; the kernel spreads connections over them.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Stream(self._client),
            listen.host,
            listen.port,
            reuse_port=self.role is not None,
        )
        if self.cluster is not None:
            await self.cluster.start()
        log.info("listening on %s:%d as %s", listen.host, listen.port, self.server_version)

    async def _scrape(self) -> bytes:
        return await scrape_registry(self.registry)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def reload(self) -> None:
        """Load the config file again and apply it to new statements, or keep the old one.

        Connections stay up; pools of unchanged backends are kept. A change that would move
        existing rows (a table's kind, shard key, algorithm or data nodes) is refused."""
        if self.config_path is None:
            raise ProxyError("The proxy was not started from a config file", 1105, "HY000")
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config:\n%s", exc)
            raise ProxyError(f"Config reload refused: {exc.problems[0]}", 1105, "HY000") from exc
        old = self.runtime
        moved = rows_that_would_move(old.config, config)
        if moved:
            log.error("config reload refused, keeping the running config: %s", "; ".join(moved))
            raise ProxyError(f"Config reload refused: {moved[0]}", 1105, "HY000")
        if replace(config.listen, workers=1) != replace(old.config.listen, workers=1):
            log.warning("config reload: a new listen address takes a restart; keeping the old")
        self.runtime = _build_runtime(config, old, self.instance)
        for name, pool in old.backends.pools.items():
            if self.runtime.backends.pools.get(name) is not pool:
                await pool.close()
        log.info("config reloaded from %s", self.config_path)

    async def reload_everywhere(self) -> None:
        """RELOAD SHARDPROXY CONFIG: this process's reload, then every other worker's."""
        await self.reload()
        if self.cluster is not None:
            await self.cluster.from_others("RELOAD SHARDPROXY CONFIG", {"op": "reload"})

    async def kill(self, connection_id: int, query_only: bool, user: str, admin: bool) -> None:
        """KILL [QUERY] of one of this process's sessions on behalf of `user`: users may kill
        their own sessions, admins any. The statement is stopped on its backends with their
        own KILL QUERY.

        KILL CONNECTION ends the session at once, as MySQL does, rather than after the KILL
        QUERYs, which wait up to CONTROL_TIMEOUT for a slow backend: they are sent meanwhile
        (the session's connections are fenced first, so none is pooled while still running
        the statement)."""
        target = self.sessions.get(connection_id)
        if target is None:
            raise ProxyError(f"Unknown thread id: {connection_id}", 1094, "HY000")
        if target.user != user and not admin:
            raise ProxyError(f"You are not owner of thread {connection_id}", 1095, "HY000")
        stop = target.stop_running_statement()
        if query_only:
            await stop
            return
        self.kill_session(connection_id)
        stopping = asyncio.ensure_future(stop)
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("KILL QUERY of a killed session failed: %r", task.exception())

    def kill_session(self, connection_id: int) -> None:
        """End a session as KILL does: its transaction is rolled back, its client closed."""
        task = self._tasks.get(connection_id)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        session = self.sessions.get(connection_id)
        if session is not None:
            session.channel.close()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; let running statements and transactions finish within `grace`
        seconds; roll back what remains; close backends cleanly."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            if not session.busy and not session.in_txn:
                session.channel.close()
        deadline = asyncio.get_running_loop().time() + grace
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._tasks.values()):
            task.cancel()  # the session's finally rolls its transaction back
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=5)
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.http is not None:
            await self.http.close()
        self.readiness.close()
        if self.cluster is not None:
            self.cluster.close()
        if self._recovery is not None:
            self._recovery.cancel()
        if self._stopping:  # KILL QUERYs on their way need the control connections
            await asyncio.wait(self._stopping, timeout=CONTROL_TIMEOUT)
            for task in list(self._stopping):
                task.cancel()
        await self.deadlock.close()
        await self.runtime.backends.close()
        await self.runtime.coordinator.log.close()

    async def _recover_once(self) -> None:
        """Create the decision log if needed and finish transactions crashed instances left."""
        coordinator = self.runtime.coordinator
        try:
            await coordinator.log.ensure_table()
            resolved = await coordinator.recover()
        except ProxyError as exc:
            log.warning("XA recovery pass failed: %s", exc.message)
            return
        except Exception:
            # The loop must outlive any surprise: it is what finishes crashed transactions.
            log.exception("XA recovery pass failed")
            return
        if resolved:
            log.info("XA recovery resolved %d branch(es)", resolved)

    async def _sync_catalog(self) -> None:
        """Bring the metadata catalog in step; metadata queries retry later if this fails."""
        try:
            await self.runtime.catalog.sync()
        except ProxyError as exc:
            log.warning("%s", exc.message)
        except Exception:
            log.exception("metadata catalog sync failed")

    async def _recovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.runtime.config.transactions.recovery_interval)
            await self._recover_once()

    async def _client(self, stream: Stream) -> None:
        channel = ClientChannel(stream)
        channel.error_counts = self.metrics.errors
        connection_id = next(self._ids)
        try:
            session = await asyncio.wait_for(
                self._handshake(channel, connection_id), HANDSHAKE_TIMEOUT
            )
            if session is None:
                await channel.drain()
                return
            self.sessions[connection_id] = session
            task = asyncio.current_task()
            assert task is not None
            self._tasks[connection_id] = task
            try:
                await session.run()
            finally:
                self.sessions.pop(connection_id, None)
                self._tasks.pop(connection_id, None)
        except (ClientClosed, ConnectionError, TimeoutError, ProtocolViolation):
            pass
        except asyncio.CancelledError:
            log.info(
                "connection %d closed by %s", connection_id, "shutdown" if self.draining else "KILL"
            )
        except Exception:
            log.exception("connection %d failed", connection_id)
        finally:
            with contextlib.suppress(Exception):
                await channel.drain()
            channel.close()

    async def _handshake(self, channel: ClientChannel, connection_id: int) -> Session | None:
        nonce = bytes(_NONCE_CHARS[b % len(_NONCE_CHARS)] for b in os.urandom(20))
        channel.seq = 0
        capabilities = p.SERVER_CAPABILITIES | (p.CLIENT_SSL if self._tls else 0)
        channel.send(
            mimic_packets.make_handshake_v10(
                capabilities=Capabilities(capabilities),
                server_charset=CharacterSet.utf8mb4,
                server_version=self.server_version,
                connection_id=connection_id,
                auth_data=nonce + b"\x00",
                status_flags=ServerStatus(p.SERVER_STATUS_AUTOCOMMIT),
                auth_plugin_name=NATIVE_PASSWORD,
            )
        )
        await channel.drain()
        response = await _read_response(channel, capabilities)
        if not isinstance(response, mimic_packets.HandshakeResponse41):
            if self._tls is None:
                channel.send_error(1043, "08S01", "Bad handshake: TLS is not configured")
                return None
            await channel.start_tls(self._tls)
            response = await _read_response(channel, capabilities)
            if not isinstance(response, mimic_packets.HandshakeResponse41):
                raise ProtocolViolation("a second SSLRequest")
        config = self.runtime.config
        if config.listen.require_secure_transport and not channel.secure:
            channel.send_error(
                3159,
                "HY000",
                "Connections using insecure transport are prohibited while "
                "--require_secure_transport=ON.",
            )
            return None
        login = Login(
            response.username,
            response.auth_response,
            response.client_plugin,
            response.database or None,
            response.client_charset.name,
        )
        try:
            user = await authenticate(channel, config, login, nonce)
        except ProxyError as exc:
            channel.send_error(exc.code, exc.sqlstate, exc.message)
            return None
        channel.send(p.ok_packet(status=p.SERVER_STATUS_AUTOCOMMIT))
        await channel.drain()
        session = Session(
            self, channel, connection_id, user.name, int(response.capabilities), login.database
        )
        session.nonce = nonce
        session.state = session.login_state = login.state()
        return session


def _build_runtime(config: Config, previous: Runtime | None, instance: str) -> Runtime:
    """A runtime for `config`, keeping the previous one's pools and coordinator where their
    settings did not change."""
    reused = previous.backends.pools if previous is not None else {}
    backends = Backends(config.backends, reused)
    txn = config.transactions
    log_name = txn.log_backend or next(iter(config.databases.values())).default_backend
    log_backend = config.backends[log_name]
    coordinator = previous.coordinator if previous is not None else None
    if coordinator is None or coordinator.log.pool.backend != replace(
        log_backend, pool=coordinator.log.pool.backend.pool
    ):
        coordinator = Coordinator(backends, log_backend, instance, txn.abort_after)
    else:
        coordinator.backends = backends
        coordinator.abort_after = txn.abort_after
    names = NameMap.from_config(config)
    catalog = Catalog(config, backends, names)
    return Runtime(config, Router(config), names, backends, coordinator, catalog)


def rows_that_would_move(old: Config, new: Config) -> list[str]:
    """Why `new` would put existing rows somewhere else than `old` did (empty: it wouldn't)."""
    problems = []
    for db_name, old_db in old.databases.items():
        new_db = new.databases.get(db_name)
        if new_db is None:
            continue
        for name, before in old_db.tables.items():
            after = new_db.tables.get(name)
            if after is None:
                continue
            for what, a, b in (
                ("kind", before.kind, after.kind),
                ("shard key", before.shard_key, after.shard_key),
                ("algorithm", before.algorithm, after.algorithm),
                ("data nodes", before.nodes, after.nodes),
            ):
                if a != b:
                    problems.append(
                        f"{db_name}.{name}: changing its {what} would move existing rows "
                        "(reshard with a data migration, then restart)"
                    )
    return problems


async def _read_response(
    channel: ClientChannel, capabilities: int
) -> mimic_packets.HandshakeResponse41 | mimic_packets.SSLRequest:
    try:
        return mimic_packets.parse_handshake_response(
            Capabilities(capabilities), await channel.read_packet()
        )
    except (ClientClosed, ProtocolViolation):
        raise
    except Exception as exc:
        raise ProtocolViolation(f"bad handshake response: {exc}") from exc


def _tls_context(listen: Listener) -> ssl.SSLContext | None:
    if listen.tls_cert is None or listen.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(listen.tls_cert, listen.tls_key)
    return context
