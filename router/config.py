"""The typed config model: what a YAML file means once loaded and validated.

Everything here is frozen: a reload builds a new `Config` and swaps one reference.
The YAML loader that builds it lives in `router.config_loader`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.algorithms import ShardAlgorithm


@dataclass(frozen=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = 3307
    # On SIGTERM: seconds running statements and transactions get to finish.
    shutdown_grace: int = 30
    # TLS for clients: PEM certificate chain and key; None: no TLS offered.
    tls_cert: str | None = None
    tls_key: str | None = None
    # Refuse clients that did not switch to TLS (MySQL's require_secure_transport).
    require_secure_transport: bool = False
    # Processes serving the port (SO_REUSEPORT); 1: the proxy is one process (proxy/workers.py).
    workers: int = 1


@dataclass(frozen=True)
class Transactions:
    """Where the XA decision log lives and how recovery behaves."""

    # Backend holding the decision log table; None: the first database's default backend.
    log_backend: str | None = None
    # Recovery rolls back a prepared branch without a decision once it has seen it this long.
    abort_after: int = 30
    # Seconds between recovery passes (one also runs at start).
    recovery_interval: int = 10
    # Unique per proxy instance; None: generated at start.
    instance_id: str | None = None
    # 0..1023, the instance's part of every generated key; None: a hash of instance_id.
    worker_id: int | None = None
    # Seconds a statement of a transaction runs before the proxy looks for a lock-wait cycle
    # through several backends (proxy/deadlock.py); 0: never.
    deadlock_check_after: float = 1.0


@dataclass(frozen=True)
class HttpEndpoint:
    """The HTTP listener for /health, /ready and /metrics, on a port of its own."""

    host: str = "127.0.0.1"
    port: int = 9090


@dataclass(frozen=True)
class Logging:
    """How the proxy logs: one line per event, as text or JSON."""

    format: str = "text"  # "text" or "json"
    level: str = "info"  # debug, info, warning, error
    # Statements slower than this are logged with their plan; None: never.
    slow_query_ms: int | None = 1000


@dataclass(frozen=True)
class Limits:
    """Bounds on what one statement may cost the proxy."""

    # Rows a cross-shard merge may hold in memory at once (groups, DISTINCT keys, rows to
    # sort, rows read ahead); a statement needing more ends with error 1104.
    max_merge_rows: int = 1_000_000


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    # None: every logical database; otherwise only these.
    databases: tuple[str, ...] | None = None
    admin: bool = False


@dataclass(frozen=True)
class PoolSize:
    min: int = 0
    max: int = 32


@dataclass(frozen=True)
class Replica:
    """A read replica of a backend: same physical database, its own server."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    weight: int = 1  # share of reads, relative to the backend's other replicas


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = ""  # the physical database every connection of this backend uses
    pool: PoolSize = field(default_factory=PoolSize)
    # Reads outside transactions may go to these; writes never do.
    replicas: tuple[Replica, ...] = ()


class TableKind(Enum):
    SHARDED = "sharded"
    BROADCAST = "broadcast"
    SINGLE = "single"


@dataclass(frozen=True)
class DataNode:
    """Where one shard of a table lives: a backend and a physical table name on it."""

    backend: str
    table: str

    def __str__(self) -> str:
        return f"{self.backend}.{self.table}"


@dataclass(frozen=True)
class Table:
    name: str  # logical name, lower case
    kind: TableKind
    # SHARDED: one node per shard, index = shard number the algorithm returns.
    # BROADCAST: one node per backend holding a copy. SINGLE: exactly one node.
    nodes: tuple[DataNode, ...]
    shard_key: str | None = None  # lower case column name, SHARDED only
    algorithm: ShardAlgorithm | None = None  # SHARDED only
    algorithm_name: str | None = None  # as written in the file, for check-config / EXPLAIN
    # SHARDED only: lower case column the proxy fills with a generated id when an INSERT
    # leaves it out (proxy/ids.py).
    generated_key: str | None = None

    @property
    def backends(self) -> tuple[str, ...]:
        """The distinct backends holding this table, in node order."""
        return tuple(dict.fromkeys(node.backend for node in self.nodes))


@dataclass(frozen=True)
class Database:
    name: str  # logical name as the client sees it
    default_backend: str
    tables: dict[str, Table]  # keyed by lower-case logical name
    # Each group: tables co-located row by row (same algorithm, same node count).
    binding_groups: tuple[frozenset[str], ...] = ()

    def binding_group_of(self, table: str) -> frozenset[str] | None:
        for group in self.binding_groups:
            if table in group:
                return group
        return None


@dataclass(frozen=True)
class Config:
    listen: Listener
    users: dict[str, User]
    backends: dict[str, Backend]
    databases: dict[str, Database]  # keyed by logical name exactly as written
    source: str = "<memory>"  # file the config was loaded from
    transactions: Transactions = field(default_factory=Transactions)
    http: HttpEndpoint | None = None  # None: no HTTP endpoints
    logging: Logging = field(default_factory=Logging)
    limits: Limits = field(default_factory=Limits)

    def database(self, name: str) -> Database | None:
        return self.databases.get(name)
