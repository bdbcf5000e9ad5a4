"""Helpers for the XA crash, recovery and bank tests: private MariaDB pairs, proxy configs with
short recovery timings, and reading XA state straight from the backends.

Not a test module (no `test_` prefix); the test modules import it by name, as pytest puts
`tests/integration` on `sys.path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql
import pytest
from conftest import Cluster, retarget_config
from mariadb_instances import MariaDBInstance, free_port

if TYPE_CHECKING:
    from conftest import ProxyFactory, ProxyProcess

FORMAT_ID = 0x5350  # proxy/xa.py: the format id of every branch the proxy starts
ABORT_AFTER = 3  # seconds: recovery rolls back a prepared branch without a decision after this
RECOVERY_INTERVAL = 1

# Two backends, one per server; accounts and transfers over 4 shards (`mod`: key K in shard K % 4;
# shards 0, 1 on x0, shards 2, 3 on x1). Ports and databases are filled in by `xa_config`.
# `xlog` is x0's database under another name: as log_backend it holds the same decision log, but
# no branch is on it, so decisions take their own (group-committed) insert; with x0 as
# log_backend, x0's branch carries the decision and commits in one phase (proxy/xa.py).
CONFIG = """\
listen: {{host: 127.0.0.1, port: 3307}}
users:
  - {{name: app, password: app}}
  - {{name: admin, password: admin, admin: true}}
backends:
  x0: {{host: 127.0.0.1, port: 1, user: root, password: "", database: {db}_0, pool: {{min: 0, max: 64}}}}
  x1: {{host: 127.0.0.1, port: 2, user: root, password: "", database: {db}_1, pool: {{min: 0, max: 64}}}}
  xlog: {{host: 127.0.0.1, port: 1, user: root, password: "", database: {db}_0, pool: {{min: 0, max: 4}}}}
databases:
  bank:
    default_backend: x0
    tables:
      accounts:  {{shard_key: id, algorithm: mod, backends: [x0, x1], tables_per_backend: 2}}
      transfers: {{shard_key: id, algorithm: mod, backends: [x0, x1], tables_per_backend: 2}}
      events:    {{shard_key: id, algorithm: mod, backends: [x0, x1], tables_per_backend: 2, generated_key: {{column: id}}}}
      notes:     {{shard_key: account_id, algorithm: mod, backends: [x0, x1], tables_per_backend: 2, generated_key: {{column: id}}}}
    binding: [[accounts, transfers]]
transactions:
  log_backend: {log}
  abort_after: {abort_after}
  recovery_interval: {recovery_interval}
  instance_id: {instance_id}
{worker}"""  # noqa: E501

ACCOUNTS = "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
EVENTS = "CREATE TABLE events (id BIGINT PRIMARY KEY, body VARCHAR(100))"
NOTES = "CREATE TABLE notes (id BIGINT PRIMARY KEY, account_id BIGINT NOT NULL, body VARCHAR(100))"
TRANSFERS = (
    "CREATE TABLE transfers (id BIGINT PRIMARY KEY, src BIGINT NOT NULL, dst BIGINT NOT NULL, "
    "amount BIGINT NOT NULL)"
)

_databases = itertools.count(1)


def node_of(key: int) -> tuple[int, int]:
    """(instance, shard) holding key `key` of a `mod` table over 4 shards."""
    shard = key % 4
    return shard // 2, shard


def start_pair(base_dir: Path, prefix: str) -> Cluster:
    """Two private MariaDB servers this module may kill at will."""
    instances = []
    for i in range(2):
        instance = MariaDBInstance(f"{prefix}{i}", free_port(), base_dir)
        instance.start()
        instances.append(instance)
    return Cluster(instances)


def stop_pair(cluster: Cluster) -> None:
    for instance in cluster.instances:
        with contextlib.suppress(Exception):
            instance.stop()


@pytest.fixture(scope="module")
def pair(mariadb_base_dir: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The test module's own two servers (import this fixture into the module)."""
    cluster = start_pair(mariadb_base_dir, request.module.__name__.replace("_", ""))
    yield cluster
    stop_pair(cluster)


@pytest.fixture
def proxies(
    proxy_server: ProxyFactory, monkeypatch: pytest.MonkeyPatch, pair: Cluster
) -> Iterator[Proxies]:
    """Proxies started by one test, killed after it; servers it killed are started again."""
    started = Proxies(proxy_server, monkeypatch)
    yield started
    started.stop_all()
    heal(pair)


def heal(cluster: Cluster) -> None:
    """Start any server of the pair a test left killed."""
    for instance in cluster.instances:
        if not instance.is_running():
            instance.start()


def xa_config(
    cluster: Cluster,
    db: str,
    instance_id: str = "A",
    abort_after: int = ABORT_AFTER,
    recovery_interval: int = RECOVERY_INTERVAL,
    worker_id: int | None = None,
    log: str = "xlog",
) -> str:
    """A proxy config for the `bank` database on the pair, its physical databases `db`_0/_1;
    `log` is its log_backend (see CONFIG)."""
    text = CONFIG.format(
        db=db,
        log=log,
        instance_id=instance_id,
        abort_after=abort_after,
        recovery_interval=recovery_interval,
        worker="" if worker_id is None else f"  worker_id: {worker_id}\n",
    )
    return retarget_config(text, cluster)


def new_db_name(prefix: str) -> str:
    """Physical database names of their own, so no other test's decision log is shared."""
    return f"{prefix}{next(_databases)}"


class Proxies:
    """Starts proxies for one test (optionally with failpoint env) and stops them after it.

    A proxy left running would go on recovering the next test's transactions."""

    def __init__(self, factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch):
        self.factory = factory
        self.monkeypatch = monkeypatch
        self.started: list[ProxyProcess] = []

    def start(self, config: str, name: str, **env: str) -> ProxyProcess:
        with self.monkeypatch.context() as patch:
            patch.delenv("SHARDPROXY_CRASH_AT", raising=False)
            patch.delenv("SHARDPROXY_DELAY_AT", raising=False)
            for key, value in env.items():
                patch.setenv(key, value)
            proxy = self.factory(config, name=name)
        self.started.append(proxy)
        return proxy

    def stop_all(self) -> None:
        for proxy in self.started:
            with contextlib.suppress(Exception):
                proxy.kill()


@contextlib.contextmanager
def no_failpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restart a proxy that ran with a failpoint without it."""
    with monkeypatch.context() as patch:
        patch.delenv("SHARDPROXY_CRASH_AT", raising=False)
        patch.delenv("SHARDPROXY_DELAY_AT", raising=False)
        yield


def create_tables(proxy: ProxyProcess, *statements: str) -> None:
    conn = proxy.connect(database="bank")
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                name = statement.split()[2]
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
                cursor.execute(statement)
    finally:
        conn.close()


def prepared(instance: MariaDBInstance) -> list[tuple[str, str]]:
    """(gtrid, bqual) of every branch the proxy prepared on this server, by XA RECOVER."""
    found = []
    for format_id, gtrid_length, bqual_length, data in instance.execute("XA RECOVER"):
        if format_id != FORMAT_ID:
            continue
        text = data.decode() if isinstance(data, bytes) else data
        found.append((text[:gtrid_length], text[gtrid_length : gtrid_length + bqual_length]))
    return sorted(found)


def prepared_everywhere(cluster: Cluster, db: str) -> list[tuple[int, str, str]]:
    """Branches of this test's decision log prepared on either server: (server, gtrid, bqual)."""
    found = []
    for index, instance in enumerate(cluster.instances):
        for gtrid, bqual in prepared(instance):
            if bqual in ("x0", "x1") and _log_of(gtrid) == log_id_of(cluster, db):
                found.append((index, gtrid, bqual))
    return found


def _log_of(gtrid: str) -> str:
    return gtrid.split("-")[1]


def log_id_of(cluster: Cluster, db: str) -> str:
    """proxy/xa.py's log_id of the decision log in `db`_0 on server 0."""
    instance = cluster.instances[0]
    where = f"{instance.host}:{instance.port}/{db}_0".encode()
    return hashlib.sha1(where).hexdigest()[:8]


def decisions(cluster: Cluster, db: str) -> dict[str, tuple[str, str]]:
    """gtrid -> (decision, deciding instance) from the decision log table."""
    rows = cluster.instances[0].execute(
        f"SELECT gtrid, decision, instance FROM `{db}_0`.shardproxy_xa_log"
    )
    return {gtrid: (decision, instance) for gtrid, decision, instance in rows}


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.1
) -> Any:
    """Poll until `predicate()` is truthy; its value. AssertionError naming `message` else."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except pymysql.MySQLError:
            value = None  # a server still starting
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def balances(pair: Cluster, db: str) -> dict[int, int]:
    """Every account's balance, read straight from the backends."""
    return dict(table_rows(pair, db, "accounts", "id, balance"))


def two_accounts(
    proxies: Proxies, pair: Cluster, prefix: str, log: str = "x0", **env: str
) -> tuple[ProxyProcess, str]:
    """A new proxy over `bank` on its own databases, with accounts 1 (on x0) and 2 (on x1) of
    100 each; `log` is its log_backend, `env` the proxy's failpoints."""
    db = new_db_name(prefix)
    proxy = proxies.start(xa_config(pair, db, log=log), db, **env)
    create_tables(proxy, ACCOUNTS)
    conn = proxy.connect(database="bank")
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO accounts (id, balance) VALUES (1, 100)")
        cursor.execute("INSERT INTO accounts (id, balance) VALUES (2, 100)")
    conn.close()
    return proxy, db


def table_rows(cluster: Cluster, db: str, table: str, columns: str = "*") -> list[tuple]:
    """Every row of `table` on every shard, read straight from the backends."""
    rows: list[tuple] = []
    for shard in range(4):
        instance = cluster.instances[shard // 2]
        rows += instance.execute(f"SELECT {columns} FROM `{db}_{shard // 2}`.`{table}_{shard}`")
    return sorted(rows)


_RECOVERED = re.compile(r"recovery: XA (COMMIT|ROLLBACK) (sp-\S+) on (\S+)")


def recovered(*proxies: ProxyProcess) -> list[tuple[str, str, str, str]]:
    """(proxy name, verb, gtrid, backend) for every branch a proxy's recovery finished."""
    found = []
    for proxy in proxies:
        text = proxy.log_path.read_text(errors="replace") if proxy.log_path.exists() else ""
        for match in _RECOVERED.finditer(text):
            found.append((proxy.name, match.group(1), match.group(2), match.group(3)))
    return found


def row_locked(instance: MariaDBInstance, database: str, table: str, key: int) -> bool:
    """Whether another transaction holds a lock on row `key` (NOWAIT fails at once)."""
    conn = instance.connect(database, autocommit=False)
    try:
        with conn.cursor() as cursor:
            try:
                cursor.execute(f"SELECT id FROM `{table}` WHERE id = %s FOR UPDATE NOWAIT", [key])
            except pymysql.err.OperationalError as exc:
                if exc.args[0] in (1205, 3572):
                    return True
                raise
        conn.rollback()
        return False
    finally:
        conn.close()
