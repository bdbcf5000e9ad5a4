"""The control channel of worker processes (listen.workers > 1): a Unix socket per worker.

A worker knows only its own sessions. Statements about sessions anywhere (KILL of another
worker's connection, SHOW SHARDPROXY SESSIONS / BACKENDS, SHOW PROCESSLIST, RELOAD SHARDPROXY
CONFIG) ask the other workers here, and the supervisor asks the same sockets for /ready and
/metrics. One request per connection: a JSON line in, a JSON line out, either
{"ok": value} or {"error": [code, sqlstate, message]}. The sockets live in the supervisor's
private run directory (mode 0700), so only the proxy's own user can reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxy.ids import WORKERS, worker_for
from router.errors import ProxyError

if TYPE_CHECKING:
    from proxy.server import Server

log = logging.getLogger("shardproxy.workers")

# A worker answers from memory (a readiness check waits up to http.CHECK_TIMEOUT for pings).
CONTROL_TIMEOUT = 5.0
# Answers are small except /metrics ones (a few hundred samples).
_LINE_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class WorkerRole:
    """Which worker a process is: its index among `count`, where the control sockets live, and
    the supervisor's instance id (each worker is an XA coordinator of its own)."""

    index: int
    count: int
    run_dir: str
    instance: str

    @property
    def instance_id(self) -> str:
        """The worker's XA instance id: distinct per worker, the same for its replacement."""
        return f"{self.instance}w{self.index}"

    def key_worker_id(self, pinned: int | None) -> int:
        """The worker id in generated keys: consecutive from the instance's, one per worker."""
        base = worker_for(self.instance) if pinned is None else pinned
        return (base + self.index) % WORKERS

    def owner_of(self, connection_id: int) -> int:
        """The worker whose session has `connection_id` (worker k hands out k+1, k+1+count...)."""
        return (connection_id - 1) % self.count


def socket_path(run_dir: str, index: int) -> str:
    return os.path.join(run_dir, f"worker{index}.sock")


class WorkerDown(Exception):
    """The worker's socket is gone or refuses connections: the worker is not running."""


async def ask(run_dir: str, index: int, request: dict[str, Any]) -> Any:
    """Send `request` to worker `index`; its answer, or its error as a ProxyError.

    Raises WorkerDown when the worker is not running and TimeoutError when it does not
    answer within CONTROL_TIMEOUT."""
    path = socket_path(run_dir, index)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(path, limit=_LINE_LIMIT), CONTROL_TIMEOUT
        )
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise WorkerDown(f"worker {index} is not running") from exc
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), CONTROL_TIMEOUT)
    except ConnectionError as exc:
        raise WorkerDown(f"worker {index} went away") from exc
    finally:
        writer.close()
    if not line:
        raise WorkerDown(f"worker {index} went away")
    answer = json.loads(line)
    if "error" in answer:
        code, sqlstate, message = answer["error"]
        raise ProxyError(message, code, sqlstate)
    return answer["ok"]


class WorkerControl:
    """One worker's end of the control channel: answers the others, and asks them."""

    def __init__(self, server: Server, role: WorkerRole):
        self.server = server
        self.role = role
        self._listener: asyncio.Server | None = None

    async def start(self) -> None:
        path = socket_path(self.role.run_dir, self.role.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # the socket of the worker this one replaces
        self._listener = await asyncio.start_unix_server(self._handle, path, limit=_LINE_LIMIT)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def is_local(self, connection_id: int) -> bool:
        return self.role.owner_of(connection_id) == self.role.index

    # --- asking the other workers -------------------------------------------------------------

    async def kill(self, connection_id: int, query_only: bool, user: str, admin: bool) -> None:
        """KILL [QUERY] of a session on another worker, with the killer's rights."""
        owner = self.role.owner_of(connection_id)
        request = {
            "op": "kill",
            "id": connection_id,
            "query_only": query_only,
            "user": user,
            "admin": admin,
        }
        try:
            await ask(self.role.run_dir, owner, request)
        except WorkerDown:
            # Its sessions ended with it.
            raise ProxyError(f"Unknown thread id: {connection_id}", 1094, "HY000") from None
        except TimeoutError:
            raise _no_answer("KILL", owner) from None

    async def from_others(self, what: str, request: dict[str, Any]) -> list[Any]:
        """Every other running worker's answer to `request`; `what` names the statement in
        the error raised when a running worker does not answer (an answer without its part
        would be wrong)."""
        others = [k for k in range(self.role.count) if k != self.role.index]
        answers = await asyncio.gather(
            *(ask(self.role.run_dir, k, request) for k in others), return_exceptions=True
        )
        results = []
        for index, answer in zip(others, answers, strict=True):
            if isinstance(answer, WorkerDown):
                continue  # not running (being restarted): it has no sessions
            if isinstance(answer, TimeoutError):
                raise _no_answer(what, index)
            if isinstance(answer, BaseException):
                raise answer
            results.append(answer)
        return results

    # --- answering ------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), CONTROL_TIMEOUT)
            if not line:
                return
            try:
                answer: dict[str, Any] = {"ok": await self._answer(json.loads(line))}
            except ProxyError as exc:
                answer = {"error": [exc.code, exc.sqlstate, exc.message]}
            writer.write(json.dumps(answer).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), CONTROL_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()

    async def _answer(self, request: dict[str, Any]) -> Any:
        from proxy.admin import backend_rows, session_rows
        from proxy.metadata import processlist_rows
        from proxy.metrics import families_of

        server = self.server
        op = request["op"]
        if op == "kill":
            await server.kill(
                request["id"], request["query_only"], request["user"], request["admin"]
            )
            return None
        if op == "sessions":
            return session_rows(server)
        if op == "backends":
            return backend_rows(server)
        if op == "processlist":
            rows = processlist_rows(
                list(server.sessions.values()), request["user"], request["admin"], None
            )
            return [_text(row) for row in rows]
        if op == "reload":
            await server.reload()
            return None
        if op == "ready":
            return await server.readiness.check()
        if op == "metrics":
            return {"pid": os.getpid(), "families": families_of(server.registry)}
        raise ProxyError(f"unknown control request {op!r}", 1105, "HY000")


def _no_answer(what: str, index: int) -> ProxyError:
    return ProxyError(
        f"{what}: worker {index} did not answer within {CONTROL_TIMEOUT:g} s, "
        "so the proxy cannot answer for every worker",
        1105,
        "HY000",
    )


def _text(row: Sequence[bytes | None]) -> list[str | None]:
    """A row of bytes as JSON-able text (bytes that are not UTF-8 survive the round trip)."""
    return [None if v is None else v.decode("utf-8", "surrogateescape") for v in row]


def row_bytes(row: Sequence[str | None]) -> list[bytes | None]:
    return [None if v is None else v.encode("utf-8", "surrogateescape") for v in row]
