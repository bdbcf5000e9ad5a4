"""Load a YAML config file into a validated, frozen `router.config.Config`.

We walk the composed YAML node tree rather than the plain dicts `yaml.safe_load` gives, so each
problem can name its file, line and key path. Every problem is collected, then all are raised
together as one ConfigError: a user fixing a file should not have to rerun once per typo.
The format is documented in docs/config.md; config/schema.json mirrors it for editors.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from router.algorithms import ALGORITHMS, AlgorithmParamError, ShardAlgorithm, make_algorithm
from router.config import (
    Backend,
    Config,
    Database,
    DataNode,
    HttpEndpoint,
    Limits,
    Listener,
    Logging,
    PoolSize,
    Replica,
    Table,
    TableKind,
    Transactions,
    User,
)
from router.errors import ConfigError

_TOP_KEYS = (
    "listen",
    "users",
    "backends",
    "databases",
    "transactions",
    "http",
    "logging",
    "limits",
)
_LIMITS_KEYS = ("max_merge_rows",)
_HTTP_KEYS = ("host", "port")
_LOGGING_KEYS = ("format", "level", "slow_query_ms")
_LOG_FORMATS = ("text", "json")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_TRANSACTION_KEYS = (
    "log_backend",
    "abort_after",
    "recovery_interval",
    "instance_id",
    "worker_id",
    "deadlock_check_after",
)
_LISTEN_KEYS = ("host", "port", "shutdown_grace", "tls", "require_secure_transport", "workers")
_TLS_KEYS = ("cert", "key")
_USER_KEYS = ("name", "password", "databases", "admin")
_BACKEND_KEYS = ("host", "port", "user", "password", "database", "pool", "replicas")
_REPLICA_KEYS = ("host", "port", "user", "password", "weight")
_POOL_KEYS = ("min", "max")
_DATABASE_KEYS = ("default_backend", "tables", "binding")
_SHARDED_KEYS = (
    "shard_key",
    "algorithm",
    "backends",
    "tables_per_backend",
    "nodes",
    "generated_key",
)
_GENERATED_KEY_KEYS = ("column",)
WORKER_IDS = 1024  # proxy/ids.py: 10 bits of every generated key
MAX_WORKERS = 64  # listen.workers: far more than cores a Python proxy would use
_BROADCAST_KEYS = ("broadcast", "backends")
_SINGLE_KEYS = ("backend", "physical")
_TABLE_KEYS = tuple(dict.fromkeys(_SHARDED_KEYS + _BROADCAST_KEYS + _SINGLE_KEYS))

# Names end up in `backend.table` node specs and in SQL identifiers.
_NAME = re.compile(r"[^.`\s]+")
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_INVALID = object()  # a scalar that could not be read; already reported

Entries = dict[Any, tuple[Node, Node]]  # key -> (key node, value node), in file order


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError([f"{path}: (file): cannot read it: {reason}"]) from None
    return load_config_text(text, path, env)


def load_config_text(
    text: str, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate config `text` (named `source` in problems); `env` defaults to os.environ."""
    loader = _Loader(source, os.environ if env is None else env)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([f"{source}:{line}: (yaml): {what}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}:1: (yaml): {exc}"]) from None
    if root is None:
        raise ConfigError([f"{source}:1: (top level): the file is empty"])
    try:
        config = loader.config(root)
    except RecursionError:
        raise ConfigError([f"{source}:1: (yaml): recursive aliases are not supported"]) from None
    if loader.problems:
        ordered = sorted(dict.fromkeys(loader.problems), key=lambda problem: problem[0])
        raise ConfigError([text for _, text in ordered])
    return config


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _describe_value(value: object) -> str:
    """A scalar as "got ..." text: `string '3306'`, `number 3306`, `boolean false`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, int | float):
        return f"number {value}"
    return f"{type(value).__name__} {value}"


def _quote_hint(value: object) -> str:
    """How to get a string where YAML read something else."""
    if isinstance(value, bool):
        return " (quote it: YAML reads yes/no/on/off/true/false as booleans)"
    if value is None:
        return ' (write "" for an empty string)'
    return " (quote it)"


@dataclass
class _TableDraft:
    """A table as read, before broadcast tables learn which backends their database uses."""

    table: Table
    node: Node
    path: str
    broadcast_default: bool = False


class _Loader:
    """One load: walks the node tree, reports problems, builds the frozen model."""

    def __init__(self, source: str, env: Mapping[str, str]):
        self.source = source
        self.env = env
        self.problems: list[tuple[int, str]] = []
        self._constructor = SafeConstructor()
        # Declared names, even where the body had problems, so references don't cascade errors.
        self._backend_names: dict[str, None] = {}  # in file order: broadcast tables use it
        self._database_names: set[str] = set()
        # (backend, lower-case physical table) -> "db.table (line N)": one owner per table.
        self._physical_owners: dict[tuple[str, str], str] = {}

    # -- reporting and reading nodes ----------------------------------------------------------

    def error(self, node: Node, path: str, message: str) -> None:
        line = _line(node)
        self.problems.append((line, f"{self.source}:{line}: {path or '(top level)'}: {message}"))

    def scalar(self, node: Node, path: str) -> Any:
        """A scalar's value with ${VAR} interpolated; _INVALID (reported) for lists and mappings."""
        if not isinstance(node, ScalarNode):
            self.error(node, path, f"expected a single value, got {self.kind(node)}")
            return _INVALID
        if node.tag == _STR_TAG:
            return self.interpolate(node, path)
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            self.error(node, path, f"cannot read {node.value!r}: {exc}")
            return _INVALID

    def interpolate(self, node: ScalarNode, path: str) -> str:
        """Replace ${VAR} and ${VAR:-default} from the environment; $${ is a literal ${."""

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            if name is None:
                self.error(node, path, "malformed ${...}: write ${NAME} or ${NAME:-default}")
                return ""
            value = self.env.get(name)
            if value:
                return value
            if default is not None:
                return default
            if value is None:
                self.error(node, path, f"environment variable {name} is not set")
            return ""

        return _ENV.sub(replace, node.value) if "$" in node.value else node.value

    def kind(self, node: Node) -> str:
        """What a node holds, for "expected X, got Y"; reports nothing itself."""
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        if node.tag == _STR_TAG:
            return _describe_value(node.value)
        try:
            return _describe_value(self._constructor.construct_object(node))
        except (yaml.YAMLError, ValueError):
            return f"{node.value!r}"

    def mapping(self, node: Node, path: str, any_keys: bool = False) -> Entries | None:
        """A mapping's entries; duplicate keys are errors, `<<` merge keys are honoured."""
        if not isinstance(node, MappingNode):
            self.error(node, path, f"expected a mapping, got {self.kind(node)}")
            return None
        entries: Entries = {}
        merged: Entries = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    for key, pair in (self.mapping(source, path, any_keys) or {}).items():
                        merged.setdefault(key, pair)
                continue
            # Keys are names, never interpolated.
            is_text = isinstance(key_node, ScalarNode) and key_node.tag == _STR_TAG
            key = key_node.value if is_text else self.scalar(key_node, path)
            if key is _INVALID:
                continue
            if not any_keys and not isinstance(key, str):
                hint = _quote_hint(key)
                self.error(
                    key_node, path, f"keys must be strings, got {_describe_value(key)}{hint}"
                )
                continue
            if key in entries:
                first = _line(entries[key][0])
                self.error(key_node, _join(path, key), f"duplicate key (first at line {first})")
                continue
            entries[key] = (key_node, value_node)
        for key, pair in merged.items():
            entries.setdefault(key, pair)
        return entries

    def check_keys(
        self,
        entries: Entries,
        node: Node,
        path: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> None:
        """Unknown keys (typos) and missing required keys are errors."""
        allowed = tuple(allowed)
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                self.error(key_node, _join(path, key), f"unknown key{_suggest(key, allowed)}")
        for key in required:
            if key not in entries:
                self.error(node, _join(path, key), "required key is missing")

    def sequence(self, node: Node, path: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, path, f"expected a list, got {self.kind(node)}")
            return None
        items: list[Node] = node.value
        return items

    def string(self, node: Node, path: str, name: bool = False) -> str | None:
        """A string value; with `name`, one usable as an identifier (no '.', '`' or spaces)."""
        value = self.scalar(node, path)
        if value is _INVALID:
            return None
        if not isinstance(value, str):
            hint = _quote_hint(value)
            self.error(node, path, f"expected a string, got {_describe_value(value)}{hint}")
            return None
        if name and not self.valid_name(value, node, path):
            return None
        return value

    def valid_name(self, name: str, node: Node, path: str) -> bool:
        if _NAME.fullmatch(name):
            return True
        self.error(node, path, f"{name!r} is not a valid name (no '.', '`' or spaces)")
        return False

    def integer(self, node: Node, path: str, low: int, high: int | None = None) -> int | None:
        """An integer in [low, high]; an interpolated `${PORT}` that is all digits counts."""
        value = self.scalar(node, path)
        if value is _INVALID:
            return None
        if isinstance(value, str) and "${" in node.value and value.isdigit():
            value = int(value)
        if type(value) is not int:
            hint = " (remove the quotes)" if isinstance(value, str) and value.isdigit() else ""
            self.error(node, path, f"expected an integer, got {_describe_value(value)}{hint}")
            return None
        if value < low or (high is not None and value > high):
            limits = f"{low}..{high}" if high is not None else f">= {low}"
            self.error(node, path, f"{value} is out of range (must be {limits})")
            return None
        return value

    def seconds(self, node: Node, path: str) -> float | None:
        """A duration in seconds, >= 0, whole or fractional."""
        value = self.scalar(node, path)
        if value is _INVALID:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(node, path, f"expected a number of seconds, got {_describe_value(value)}")
            return None
        if value < 0:
            self.error(node, path, f"{value} is out of range (must be >= 0)")
            return None
        return float(value)

    def boolean(self, node: Node, path: str) -> bool | None:
        value = self.scalar(node, path)
        if value is _INVALID:
            return None
        if not isinstance(value, bool):
            self.error(node, path, f"expected true or false, got {_describe_value(value)}")
            return None
        return value

    def names(self, node: Node, path: str) -> list[tuple[str, Node, str]] | None:
        """A list of names as (name, node, path) so each item's problems point at its line."""
        items = self.sequence(node, path)
        if items is None:
            return None
        result = []
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            value = self.string(item, item_path, name=True)
            if value is not None:
                result.append((value, item, item_path))
        return result

    def plain(self, node: Node, path: str) -> Any:
        """A node as plain Python values (for algorithm parameters)."""
        if isinstance(node, SequenceNode):
            return [self.plain(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            entries = self.mapping(node, path, any_keys=True) or {}
            return {key: self.plain(value, _join(path, key)) for key, (_, value) in entries.items()}
        return self.scalar(node, path)

    # -- sections ------------------------------------------------------------------------------

    def config(self, root: Node) -> Config:
        entries = self.mapping(root, "")
        if entries is None:
            return Config(Listener(), {}, {}, {}, self.source)  # never returned: it has problems
        self.check_keys(entries, root, "", _TOP_KEYS, ("users", "backends", "databases"))
        listen = self.listener(entries["listen"][1]) if "listen" in entries else Listener()
        backends = self.backends(entries["backends"][1]) if "backends" in entries else {}
        databases = self.databases(entries["databases"][1]) if "databases" in entries else {}
        users = self.users(entries["users"][1]) if "users" in entries else {}
        transactions = (
            self.transactions(entries["transactions"][1], backends)
            if "transactions" in entries
            else Transactions()
        )
        http = self.http(entries["http"][1]) if "http" in entries else None
        logging = self.logging(entries["logging"][1]) if "logging" in entries else Logging()
        limits = self.limits(entries["limits"][1]) if "limits" in entries else Limits()
        if transactions.worker_id is not None and (
            transactions.worker_id + listen.workers > WORKER_IDS
        ):
            self.error(
                entries["transactions"][1],
                "transactions.worker_id",
                f"with listen.workers: {listen.workers}, worker ids {transactions.worker_id}.."
                f"{transactions.worker_id + listen.workers - 1} must stay below {WORKER_IDS}",
            )
        return Config(
            listen,
            users,
            backends,
            databases,
            self.source,
            transactions,
            http=http,
            logging=logging,
            limits=limits,
        )

    def limits(self, node: Node) -> Limits:
        entries = self.mapping(node, "limits")
        if entries is None:
            return Limits()
        self.check_keys(entries, node, "limits", _LIMITS_KEYS)
        rows = Limits().max_merge_rows
        if "max_merge_rows" in entries:
            rows = self.integer(entries["max_merge_rows"][1], "limits.max_merge_rows", 1) or rows
        return Limits(rows)

    def http(self, node: Node) -> HttpEndpoint | None:
        entries = self.mapping(node, "http")
        if entries is None:
            return None
        self.check_keys(entries, node, "http", _HTTP_KEYS)
        default = HttpEndpoint()
        host, port = default.host, default.port
        if "host" in entries:
            host = self.string(entries["host"][1], "http.host") or host  # reported if None
        if "port" in entries:
            port = self.integer(entries["port"][1], "http.port", 1, 65535) or port
        return HttpEndpoint(host, port)

    def logging(self, node: Node) -> Logging:
        entries = self.mapping(node, "logging")
        if entries is None:
            return Logging()
        self.check_keys(entries, node, "logging", _LOGGING_KEYS)
        default = Logging()
        values = {"format": default.format, "level": default.level}
        for key, allowed in (("format", _LOG_FORMATS), ("level", _LOG_LEVELS)):
            if key not in entries:
                continue
            value_node = entries[key][1]
            value = self.string(value_node, f"logging.{key}")
            if value is None:
                continue
            if value.lower() not in allowed:
                self.error(
                    value_node, f"logging.{key}", f"{value!r}: expected one of {', '.join(allowed)}"
                )
                continue
            values[key] = value.lower()
        slow = default.slow_query_ms
        if "slow_query_ms" in entries:
            slow_node = entries["slow_query_ms"][1]
            slow = (
                None
                if _is_null(slow_node)
                else self.integer(slow_node, "logging.slow_query_ms", 0) or 0
            )
        return Logging(values["format"], values["level"], slow)

    def transactions(self, node: Node, backends: dict[str, Backend]) -> Transactions:
        entries = self.mapping(node, "transactions")
        if entries is None:
            return Transactions()
        self.check_keys(entries, node, "transactions", _TRANSACTION_KEYS)
        default = Transactions()
        log_backend = default.log_backend
        if "log_backend" in entries:
            log_backend = self.string(entries["log_backend"][1], "transactions.log_backend")
            if log_backend is not None and log_backend not in backends:
                self.error(
                    entries["log_backend"][1],
                    "transactions.log_backend",
                    f"unknown backend '{log_backend}'",
                )
        abort_after, interval = default.abort_after, default.recovery_interval
        if "abort_after" in entries:
            abort_after = (
                self.integer(entries["abort_after"][1], "transactions.abort_after", 1)
                or abort_after
            )
        if "recovery_interval" in entries:
            interval = (
                self.integer(entries["recovery_interval"][1], "transactions.recovery_interval", 1)
                or interval
            )
        instance_id = default.instance_id
        if "instance_id" in entries:
            instance_id = self.string(entries["instance_id"][1], "transactions.instance_id")
            if instance_id is not None and not re.fullmatch(r"[0-9A-Za-z]{1,24}", instance_id):
                self.error(
                    entries["instance_id"][1],
                    "transactions.instance_id",
                    "must be 1 to 24 letters or digits",
                )
        worker_id = default.worker_id
        if "worker_id" in entries:
            worker_id = self.integer(
                entries["worker_id"][1], "transactions.worker_id", 0, WORKER_IDS - 1
            )
        check_after = default.deadlock_check_after
        if "deadlock_check_after" in entries:
            seconds = self.seconds(
                entries["deadlock_check_after"][1], "transactions.deadlock_check_after"
            )
            check_after = check_after if seconds is None else seconds
        return Transactions(log_backend, abort_after, interval, instance_id, worker_id, check_after)

    def listener(self, node: Node) -> Listener:
        entries = self.mapping(node, "listen")
        if entries is None:
            return Listener()
        self.check_keys(entries, node, "listen", _LISTEN_KEYS)
        default = Listener()
        host, port = default.host, default.port
        if "host" in entries:
            host = self.string(entries["host"][1], "listen.host") or host  # reported if None
        if "port" in entries:
            port = self.integer(entries["port"][1], "listen.port", 1, 65535) or port
        grace = default.shutdown_grace
        if "shutdown_grace" in entries:
            value = self.integer(entries["shutdown_grace"][1], "listen.shutdown_grace", 0)
            grace = value if value is not None else grace
        cert = key = None
        if "tls" in entries:
            tls = self.mapping(entries["tls"][1], "listen.tls")
            if tls is not None:
                self.check_keys(tls, entries["tls"][1], "listen.tls", _TLS_KEYS, _TLS_KEYS)
                if "cert" in tls:
                    cert = self.string(tls["cert"][1], "listen.tls.cert")
                if "key" in tls:
                    key = self.string(tls["key"][1], "listen.tls.key")
        secure = False
        if "require_secure_transport" in entries:
            node = entries["require_secure_transport"][1]
            secure = bool(self.boolean(node, "listen.require_secure_transport"))
            if secure and cert is None:
                self.error(node, "listen.require_secure_transport", "needs listen.tls")
        workers = default.workers
        if "workers" in entries:
            value = self.integer(entries["workers"][1], "listen.workers", 1, MAX_WORKERS)
            workers = value if value is not None else workers
        return Listener(host, port, grace, cert, key, secure, workers)

    def users(self, node: Node) -> dict[str, User]:
        items = self.sequence(node, "users")
        if items is None:
            return {}
        if not items:
            self.error(node, "users", "at least one user is required")
        users: dict[str, User] = {}
        first_line: dict[str, int] = {}
        for index, item in enumerate(items):
            path = f"users[{index}]"
            entries = self.mapping(item, path)
            if entries is None:
                continue
            self.check_keys(entries, item, path, _USER_KEYS, ("name", "password"))
            name = self.string(entries["name"][1], f"{path}.name") if "name" in entries else None
            password = (
                self.string(entries["password"][1], f"{path}.password")
                if "password" in entries
                else None
            )
            databases: tuple[str, ...] | None = None
            if "databases" in entries:
                listed = self.names(entries["databases"][1], f"{path}.databases")
                for db, db_node, db_path in listed or ():
                    if db not in self._database_names:
                        known = ", ".join(sorted(self._database_names)) or "none"
                        self.error(db_node, db_path, f"unknown database {db!r} (known: {known})")
                databases = tuple(db for db, _, _ in listed or ())
            admin = False
            if "admin" in entries:
                admin = bool(self.boolean(entries["admin"][1], f"{path}.admin"))
            if name is None or password is None:
                continue
            if name in users:
                self.error(
                    entries["name"][1],
                    f"{path}.name",
                    f"duplicate user {name!r} (first at line {first_line[name]})",
                )
                continue
            first_line[name] = _line(item)
            users[name] = User(name, password, databases, admin)
        return users

    def backends(self, node: Node) -> dict[str, Backend]:
        entries = self.mapping(node, "backends")
        if entries is None:
            return {}
        if not entries:
            self.error(node, "backends", "at least one backend is required")
        backends: dict[str, Backend] = {}
        for name, (key_node, value) in entries.items():
            path = _join("backends", name)
            if not self.valid_name(name, key_node, path):
                continue
            self._backend_names[name] = None
            backend = self.backend(name, value, path)
            if backend is not None:
                backends[name] = backend
        return backends

    def backend(self, name: str, node: Node, path: str) -> Backend | None:
        entries = self.mapping(node, path)
        if entries is None:
            return None
        self.check_keys(entries, node, path, _BACKEND_KEYS, ("host", "port", "user", "database"))

        def get_string(key: str) -> str | None:
            return self.string(entries[key][1], _join(path, key)) if key in entries else None

        host, user, database = get_string("host"), get_string("user"), get_string("database")
        password = get_string("password") if "password" in entries else ""
        port = None
        if "port" in entries:
            port = self.integer(entries["port"][1], f"{path}.port", 1, 65535)
        pool = self.pool(entries["pool"][1], f"{path}.pool") if "pool" in entries else PoolSize()
        if host is None or user is None or database is None or password is None:
            return None
        replicas = (
            self.replicas(entries["replicas"][1], f"{path}.replicas", user, password)
            if "replicas" in entries
            else ()
        )
        if port is None or pool is None:
            return None
        return Backend(name, host, port, user, password, database, pool, replicas)

    def replicas(self, node: Node, path: str, user: str, password: str) -> tuple[Replica, ...]:
        """A backend's read replicas; user and password default to the backend's."""
        items = self.sequence(node, path)
        replicas = []
        for i, item in enumerate(items or []):
            item_path = f"{path}[{i}]"
            entries = self.mapping(item, item_path)
            if entries is None:
                continue
            self.check_keys(entries, item, item_path, _REPLICA_KEYS, ("host", "port"))
            host = (
                self.string(entries["host"][1], f"{item_path}.host") if "host" in entries else None
            )
            port = (
                self.integer(entries["port"][1], f"{item_path}.port", 1, 65535)
                if "port" in entries
                else None
            )
            r_user = (
                self.string(entries["user"][1], f"{item_path}.user") if "user" in entries else user
            )
            r_password = (
                self.string(entries["password"][1], f"{item_path}.password")
                if "password" in entries
                else password
            )
            weight = (
                self.integer(entries["weight"][1], f"{item_path}.weight", 1)
                if "weight" in entries
                else 1
            )
            if None in (host, port, r_user, r_password, weight):
                continue
            replicas.append(Replica(host, port, r_user, r_password, weight))  # type: ignore[arg-type]
        return tuple(replicas)

    def pool(self, node: Node, path: str) -> PoolSize | None:
        entries = self.mapping(node, path)
        if entries is None:
            return None
        self.check_keys(entries, node, path, _POOL_KEYS)
        default = PoolSize()
        low = self.integer(entries["min"][1], f"{path}.min", 0) if "min" in entries else default.min
        high = (
            self.integer(entries["max"][1], f"{path}.max", 1) if "max" in entries else default.max
        )
        if low is None or high is None:
            return None
        if low > high:
            self.error(node, path, f"min ({low}) is larger than max ({high})")
            return None
        return PoolSize(low, high)

    def databases(self, node: Node) -> dict[str, Database]:
        entries = self.mapping(node, "databases")
        if entries is None:
            return {}
        databases: dict[str, Database] = {}
        for name, (key_node, value) in entries.items():
            path = _join("databases", name)
            if not self.valid_name(name, key_node, path):
                continue
            self._database_names.add(name)
            database = self.database(name, value, path)
            if database is not None:
                databases[name] = database
        return databases

    def backend_ref(self, node: Node, path: str) -> str | None:
        """A backend name that must be declared under `backends`."""
        name = self.string(node, path, name=True)
        if name is not None and name not in self._backend_names:
            self.unknown_backend(name, node, path)
            return None
        return name

    def unknown_backend(self, name: str, node: Node, path: str) -> None:
        known = ", ".join(sorted(self._backend_names)) or "none"
        self.error(node, path, f"unknown backend {name!r} (known: {known})")

    def database(self, name: str, node: Node, path: str) -> Database | None:
        entries = self.mapping(node, path)
        if entries is None:
            return None
        self.check_keys(entries, node, path, _DATABASE_KEYS, ("default_backend",))
        default_backend = None
        if "default_backend" in entries:
            default_backend = self.backend_ref(
                entries["default_backend"][1], f"{path}.default_backend"
            )
        declared: dict[str, _TableDraft | None] = {}
        if "tables" in entries and not _is_null(entries["tables"][1]):  # `tables:` left empty
            declared = self.tables(entries["tables"][1], f"{path}.tables", default_backend)
        drafts = {table: draft for table, draft in declared.items() if draft is not None}
        # Broadcast tables default to every backend this database uses, in `backends` order.
        used = {default_backend} | {b for d in drafts.values() for b in d.table.backends}
        used_in_order = [backend for backend in self._backend_names if backend in used]
        for draft in drafts.values():
            if draft.broadcast_default:
                nodes = tuple(DataNode(backend, draft.table.name) for backend in used_in_order)
                draft.table = Table(draft.table.name, TableKind.BROADCAST, nodes)
        for draft in drafts.values():
            self.claim_physical(name, draft)
        binding: tuple[frozenset[str], ...] = ()
        if "binding" in entries and not _is_null(entries["binding"][1]):
            binding = self.binding(entries["binding"][1], f"{path}.binding", declared)
        if default_backend is None:
            return None
        tables = {table: draft.table for table, draft in drafts.items()}
        return Database(name, default_backend, tables, binding)

    def claim_physical(self, database: str, draft: _TableDraft) -> None:
        """Two logical tables writing one physical table would corrupt each other's rows."""
        owner = f"{database}.{draft.table.name} (line {_line(draft.node)})"
        for data_node in draft.table.nodes:
            key = (data_node.backend, data_node.table.lower())
            if key in self._physical_owners:
                other = self._physical_owners[key]
                self.error(draft.node, draft.path, f"{data_node} is also a data node of {other}")
            else:
                self._physical_owners[key] = owner

    def tables(
        self, node: Node, path: str, default_backend: str | None
    ) -> dict[str, _TableDraft | None]:
        """Tables by lower-case name; None for a table whose problems were reported."""
        entries = self.mapping(node, path)
        if entries is None:
            return {}
        drafts: dict[str, _TableDraft | None] = {}
        lines: dict[str, int] = {}
        for written, (key_node, value) in entries.items():
            table_path = _join(path, written)
            if not self.valid_name(written, key_node, table_path):
                continue
            name = written.lower()
            if name in drafts:
                first = lines[name]
                self.error(
                    key_node,
                    table_path,
                    f"duplicate table {name!r} (first at line {first}; names are case-insensitive)",
                )
                continue
            lines[name] = _line(key_node)
            drafts[name] = self.table(name, value, table_path, default_backend)
        return drafts

    def table(
        self, name: str, node: Node, path: str, default_backend: str | None
    ) -> _TableDraft | None:
        """One table; its kind follows from its keys (see docs/config.md)."""
        if _is_null(node):
            entries: Entries | None = {}
        else:
            entries = self.mapping(node, path)
        if entries is None:
            return None
        allowed: tuple[str, ...]
        broadcast = False
        if "broadcast" in entries:
            broadcast = bool(self.boolean(entries["broadcast"][1], f"{path}.broadcast"))
        if broadcast:
            kind, allowed = TableKind.BROADCAST, _BROADCAST_KEYS
        elif any(key in entries for key in _SHARDED_KEYS):
            kind, allowed = TableKind.SHARDED, (*_SHARDED_KEYS, "broadcast")
        else:
            kind, allowed = TableKind.SINGLE, (*_SINGLE_KEYS, "broadcast")
        for key, (key_node, _) in entries.items():
            if key not in allowed and key in _TABLE_KEYS:
                self.error(
                    key_node,
                    _join(path, key),
                    f"not allowed for a {kind.value} table{_suggest(key, allowed)}",
                )
        self.check_keys(entries, node, path, _TABLE_KEYS)
        if kind is TableKind.SHARDED:
            table = self.sharded(name, node, entries, path)
            return None if table is None else _TableDraft(table, node, path)
        if kind is TableKind.BROADCAST:
            if "backends" not in entries:
                placeholder = Table(name, TableKind.BROADCAST, ())
                return _TableDraft(placeholder, node, path, broadcast_default=True)
            backends = self.backend_list(entries["backends"][1], f"{path}.backends")
            if backends is None:
                return None
            nodes = tuple(DataNode(backend, name) for backend in backends)
            return _TableDraft(Table(name, kind, nodes), node, path)
        backend = default_backend
        if "backend" in entries:
            backend = self.backend_ref(entries["backend"][1], f"{path}.backend")
        physical = name
        if "physical" in entries:
            physical = self.string(entries["physical"][1], f"{path}.physical", name=True) or ""
        if backend is None or not physical:
            return None
        return _TableDraft(Table(name, kind, (DataNode(backend, physical),)), node, path)

    def backend_list(self, node: Node, path: str) -> list[str] | None:
        """A non-empty list of distinct, declared backends."""
        items = self.sequence(node, path)
        if items is None:
            return None
        if not items:
            self.error(node, path, "needs at least one backend")
            return None
        backends: list[str] = []
        ok = True
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            backend = self.backend_ref(item, item_path)
            if backend is None:
                ok = False
            elif backend in backends:
                self.error(item, item_path, f"backend {backend!r} is listed twice")
                ok = False
            else:
                backends.append(backend)
        return backends if ok else None

    def sharded(self, name: str, node: Node, entries: Entries, path: str) -> Table | None:
        for key in ("shard_key", "algorithm"):
            if key not in entries:
                self.error(node, _join(path, key), "required key is missing for a sharded table")
        shard_key = None
        if "shard_key" in entries:
            shard_key = self.string(entries["shard_key"][1], f"{path}.shard_key", name=True)
        nodes = self.data_nodes(name, node, entries, path)
        if "algorithm" not in entries:
            return None
        # Without nodes the shard count is unknown, but the algorithm is still worth checking.
        shard_count = None if nodes is None else len(nodes)
        built = self.algorithm(name, entries["algorithm"][1], f"{path}.algorithm", shard_count)
        if shard_key is None or nodes is None or built is None:
            return None
        algorithm_name, algorithm = built
        generated = None
        if "generated_key" in entries:
            generated = self.generated_key(entries["generated_key"][1], f"{path}.generated_key")
        return Table(
            name,
            TableKind.SHARDED,
            nodes,
            shard_key.lower(),
            algorithm,
            algorithm_name,
            generated_key=generated,
        )

    def generated_key(self, node: Node, path: str) -> str | None:
        """`generated_key: {column: id}`: the column the proxy fills when INSERTs omit it."""
        entries = self.mapping(node, path)
        if entries is None:
            return None
        self.check_keys(entries, node, path, _GENERATED_KEY_KEYS, ("column",))
        if "column" not in entries:
            return None
        column = self.string(entries["column"][1], f"{path}.column", name=True)
        return None if column is None else column.lower()

    def data_nodes(
        self, name: str, node: Node, entries: Entries, path: str
    ) -> tuple[DataNode, ...] | None:
        """Nodes from `backends` x `tables_per_backend`, or listed explicitly in `nodes`."""
        if "nodes" in entries:
            if "backends" in entries or "tables_per_backend" in entries:
                self.error(
                    entries["nodes"][0],
                    f"{path}.nodes",
                    "use either nodes or backends (with tables_per_backend), not both",
                )
                return None
            return self.explicit_nodes(entries["nodes"][1], f"{path}.nodes")
        if "backends" not in entries:
            self.error(node, f"{path}.backends", "a sharded table needs backends or nodes")
            return None
        backends = self.backend_list(entries["backends"][1], f"{path}.backends")
        per_backend = 1
        if "tables_per_backend" in entries:
            per_backend = (
                self.integer(entries["tables_per_backend"][1], f"{path}.tables_per_backend", 1) or 0
            )
        if backends is None or not per_backend:
            return None
        count = len(backends) * per_backend
        return tuple(
            DataNode(backends[i // per_backend], f"{name}_{i}" if per_backend > 1 else name)
            for i in range(count)
        )

    def explicit_nodes(self, node: Node, path: str) -> tuple[DataNode, ...] | None:
        items = self.sequence(node, path)
        if items is None:
            return None
        if not items:
            self.error(node, path, "needs at least one node")
            return None
        nodes: list[DataNode] = []
        ok = True
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            spec = self.string(item, item_path)
            if spec is None:
                ok = False
                continue
            backend, _, table = spec.partition(".")
            if not table or not _NAME.fullmatch(backend) or not _NAME.fullmatch(table):
                self.error(item, item_path, f"expected backend.table, got {spec!r}")
                ok = False
                continue
            if backend not in self._backend_names:
                self.unknown_backend(backend, item, item_path)
                ok = False
                continue
            data_node = DataNode(backend, table)
            if data_node in nodes:
                self.error(item, item_path, f"{spec} is listed twice")
                ok = False
                continue
            nodes.append(data_node)
        return tuple(nodes) if ok else None

    def algorithm(
        self, table: str, node: Node, path: str, shard_count: int | None
    ) -> tuple[str, ShardAlgorithm] | None:
        """`algorithm: NAME` or `algorithm: {type: NAME, ...params}` built for `shard_count`.

        With no shard count (the nodes had problems) only the name is checked.
        """
        entries: Entries = {}
        if isinstance(node, MappingNode):
            entries = self.mapping(node, path) or {}
            if "type" not in entries:
                self.error(node, f"{path}.type", "required key is missing")
                return None
            name = self.string(entries["type"][1], f"{path}.type")
            params = {
                key: self.plain(value, _join(path, key))
                for key, (_, value) in entries.items()
                if key != "type"
            }
        else:
            name = self.string(node, path)
            params = {}
        if name is None or _contains_invalid(params):
            return None
        if shard_count is None:
            if name not in ALGORITHMS:
                self.error(node, path, f"unknown algorithm {name!r} (known: {_known_algorithms()})")
            return None
        try:
            return name, make_algorithm(name, params, shard_count, table)
        except AlgorithmParamError as exc:
            if exc.param in entries:
                self.error(entries[exc.param][1], _join(path, exc.param), str(exc))
            else:
                self.error(node, path, str(exc))
            return None

    def binding(
        self, node: Node, path: str, drafts: Mapping[str, _TableDraft | None]
    ) -> tuple[frozenset[str], ...]:
        """Groups of co-located sharded tables; co-location is checked shard by shard."""
        groups = self.sequence(node, path)
        if groups is None:
            return ()
        result: list[frozenset[str]] = []
        bound: dict[str, str] = {}
        for index, group_node in enumerate(groups):
            group_path = f"{path}[{index}]"
            items = self.names(group_node, group_path)
            if items is None:
                continue
            if len(items) < 2:
                self.error(group_node, group_path, "a binding group needs at least two tables")
                continue
            members: list[str] = []
            first: Table | None = None
            ok = True
            for written, item, item_path in items:
                name = written.lower()
                draft = drafts.get(name)
                problem = None
                if draft is None:
                    if name not in drafts:  # else its own problems are already reported
                        problem = f"unknown table {name!r}"
                elif draft.table.kind is not TableKind.SHARDED:
                    problem = (
                        f"{name} is a {draft.table.kind.value} table; only sharded tables bind"
                    )
                elif name in bound:
                    problem = f"{name} is already in binding group {bound[name]}"
                elif first is not None:
                    problem = _not_colocated(draft.table, first)
                if problem is not None:
                    self.error(item, item_path, problem)
                if problem is not None or draft is None:
                    ok = False
                    continue
                first = first or draft.table
                members.append(name)
                bound[name] = group_path
            if ok:
                result.append(frozenset(members))
        return tuple(result)


def _not_colocated(table: Table, first: Table) -> str | None:
    """Why `table` can't share a binding group with `first`, or None if it can."""
    if table.algorithm != first.algorithm:
        return (
            f"{table.name} uses {table.algorithm} over {len(table.nodes)} nodes, "
            f"{first.name} uses {first.algorithm} over {len(first.nodes)}: "
            "bound tables need the same algorithm and node count"
        )
    for shard, (mine, theirs) in enumerate(zip(table.nodes, first.nodes, strict=True)):
        if mine.backend != theirs.backend:
            return (
                f"{table.name} shard {shard} is on {mine.backend} but {first.name} shard {shard} "
                f"is on {theirs.backend}: bound tables must be co-located"
            )
    return None


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _contains_invalid(value: Any) -> bool:
    if value is _INVALID:
        return True
    if isinstance(value, list):
        return any(_contains_invalid(item) for item in value)
    if isinstance(value, dict):
        return any(_contains_invalid(item) for item in value.values())
    return False


def _known_algorithms() -> str:
    return ", ".join(sorted(ALGORITHMS))


def _suggest(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (expected one of: {', '.join(allowed)})"


def describe(config: Config) -> str:
    """What the proxy understood from a config, for `shardproxy check-config`; no passwords."""
    listen = f"listen {config.listen.host}:{config.listen.port}"
    if config.listen.workers > 1:
        listen += f" ({config.listen.workers} worker processes)"
    lines = [f"config {config.source}", listen]
    lines.append("users:")
    for user in config.users.values():
        scope = "all databases" if user.databases is None else ", ".join(user.databases)
        lines.append(f"  {user.name}: {scope or 'no databases'}{', admin' if user.admin else ''}")
    lines.append("backends:")
    for backend in config.backends.values():
        lines.append(
            f"  {backend.name}: {backend.user}@{backend.host}:{backend.port}/{backend.database}"
            f" (pool {backend.pool.min}..{backend.pool.max})"
        )
    for database in config.databases.values():
        lines.append(f"database {database.name} (default backend {database.default_backend}):")
        width = max((len(name) for name in database.tables), default=0)
        for table in database.tables.values():
            lines.append(f"  {table.name.ljust(width)}  {_describe_table(table)}")
        for group in database.binding_groups:
            members = [name for name in database.tables if name in group]  # file order
            lines.append(f"  binding group: {', '.join(members)}")
    return "\n".join(lines)


def _describe_table(table: Table) -> str:
    nodes = " ".join(str(node) for node in table.nodes)
    if table.kind is TableKind.SHARDED:
        generated = f", generated key {table.generated_key}" if table.generated_key else ""
        return (
            f"sharded by {table.shard_key} ({table.algorithm}, {len(table.nodes)} shards"
            f"{generated}): {nodes}"
        )
    return f"{table.kind.value}: {nodes}"
