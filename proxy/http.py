"""The HTTP endpoints: /health, /ready and /metrics, served in the proxy's event loop.

Requests are tiny and rare (probes and scrapes every few seconds), so this is a minimal
HTTP/1.1 server on asyncio streams: one request per connection, GET and HEAD only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from proxy.backend import BackendPool, returned
from router.config import HttpEndpoint
from router.errors import ProxyError

if TYPE_CHECKING:
    from proxy.server import Server

log = logging.getLogger("shardproxy.http")

REQUEST_TIMEOUT = 10.0
# A readiness probe answers within this; a backend that hasn't answered by then is not ready
# (its check goes on in the background and the next probe reuses it).
CHECK_TIMEOUT = 2.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


Probe = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]
Scrape = Callable[[], Awaitable[bytes]]


class HttpEndpoints:
    """Serves /health, /ready and /metrics; what /ready and /metrics say comes from `ready`
    and `scrape` (one server's, or the worker supervisor's for all its workers)."""

    def __init__(self, endpoint: HttpEndpoint, ready: Probe, scrape: Scrape):
        self.endpoint = endpoint
        self.ready = ready
        self.scrape = scrape
        self._listener: asyncio.Server | None = None

    async def start(self) -> None:
        self._listener = await asyncio.start_server(
            self._handle, self.endpoint.host, self.endpoint.port
        )
        log.info("HTTP endpoints on %s:%d", self.endpoint.host, self.port)

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    # --- HTTP -------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            request = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(request) != 3 or not request[2].startswith("HTTP/"):
                await _respond(writer, 400, b"bad request\n")
                return
            method, target = request[0], request[1]
            if method not in ("GET", "HEAD"):
                await _respond(writer, 405, b"only GET and HEAD\n", extra=("Allow: GET, HEAD",))
                return
            status, body, content_type = await self._route(target.split("?", 1)[0])
            await _respond(writer, status, body, content_type, head_only=method == "HEAD")
        except ConnectionError:
            pass
        except Exception:
            log.exception("HTTP request failed")
            with contextlib.suppress(Exception):
                await _respond(writer, 500, b"internal error\n")
        finally:
            writer.close()

    async def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/health":
            return 200, b"ok\n", "text/plain; charset=utf-8"
        if path == "/ready":
            ready, details = await self.ready()
            body = json.dumps(details).encode() + b"\n"
            return (200 if ready else 503), body, "application/json"
        if path == "/metrics":
            return 200, await self.scrape(), CONTENT_TYPE_LATEST
        return 404, b"not found: try /health, /ready or /metrics\n", "text/plain; charset=utf-8"


class Readiness:
    """Whether one server is ready: it accepts clients and every backend answers a ping."""

    def __init__(self, server: Server):
        self.server = server
        # Backend name -> 1/0 from its last readiness check (shardproxy_backend_up).
        self.backend_up: dict[str, int] = {}
        self._checks: dict[str, asyncio.Task[str | None]] = {}

    def close(self) -> None:
        for task in self._checks.values():
            task.cancel()

    async def check(self) -> tuple[bool, dict[str, object]]:
        """(ready, details): ready while the proxy accepts clients and every backend answers."""
        pools = dict(self.server.runtime.backends.pools)
        for name, pool in pools.items():
            task = self._checks.get(name)
            if task is None or task.done():
                self._checks[name] = asyncio.ensure_future(_check(pool))
        for name in list(self._checks):
            if name not in pools and self._checks[name].done():
                del self._checks[name]  # a backend a reload removed
        tasks = {name: self._checks[name] for name in pools}
        if tasks:
            await asyncio.wait(tasks.values(), timeout=CHECK_TIMEOUT)
        backends: dict[str, str] = {}
        for name, task in tasks.items():
            if not task.done():
                problem: str | None = f"no answer within {CHECK_TIMEOUT:g} s"
            elif task.cancelled():
                problem = "check cancelled"
            elif task.exception() is not None:
                problem = str(task.exception())
            else:
                problem = task.result()
            backends[name] = problem or "ok"
            self.backend_up[name] = 0 if problem else 1
        for name in list(self.backend_up):
            if name not in pools:
                del self.backend_up[name]
        accepting = self.server.accepting
        ready = accepting and all(state == "ok" for state in backends.values())
        return ready, {"ready": ready, "accepting_clients": accepting, "backends": backends}


async def scrape_registry(registry: CollectorRegistry) -> bytes:
    """The text exposition of one process's registry."""
    return generate_latest(registry)


async def _check(pool: BackendPool) -> str | None:
    """None when the backend answers a ping, else what went wrong.

    A pool whose every connection is busy serving clients counts as reachable: taking one
    would make the probe wait for a client's statement."""
    for _ in range(2):  # an idle connection may have died quietly: then try a fresh one
        if not pool.idle and pool.size >= pool.backend.pool.max:
            return None
        try:
            conn = await pool.acquire()
        except ProxyError as exc:
            return exc.message
        with returned(conn):  # a cancelled probe closes its connection, never leaks it
            alive = await conn.ping()
            conn.broken = conn.broken or not alive
        if alive:
            return None
    return "the backend did not answer a ping"


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
    extra: tuple[str, ...] = (),
) -> None:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *extra,
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(body)
    await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
