"""The metadata catalog: per logical database, a schema of empty tables with the logical names.

`router.metadata` sends information_schema queries, SHOW TABLES and SHOW TABLE STATUS to these
schemas on the metadata backend, so MariaDB evaluates them exactly. This module keeps them in
step with the tables' first data nodes: each catalog table is created from its first node's
SHOW CREATE TABLE with the physical names made logical, and recreated only when that text
changes. It syncs at start and after every DDL through the proxy (before the client gets its
OK, so a client reads its own DDL back). Before each catalog query it compares the first nodes'
CREATE_TIME (which every CREATE, DROP and ALTER changes) with the last sync's, one query per
backend, and syncs what differs: DDL made straight on the backends shows at once. Everything is
compared again `STALE_AFTER` seconds after the last full sync (CREATE_TIME has 1 s steps).

The catalog lives in MySQL, not in the proxy, so every proxy instance over the same backends
shares it; two instances syncing at once converge on the same text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Iterable

from proxy.backend import BackendConnection, BackendError, BackendPool, Backends
from proxy.names import NameMap
from router.config import Config, PoolSize, Table
from router.errors import ColumnListNeeded, ProxyError
from router.literals import quote_string
from router.metadata import catalog_database, metadata_backend
from router.rewrite import render_name

log = logging.getLogger("shardproxy.catalog")

STALE_AFTER = 30.0  # seconds; a metadata query after that re-checks every table
ER_NO_SUCH_TABLE = 1146
ER_TABLE_EXISTS = 1050
_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")
_CREATE_HEAD = re.compile(r"CREATE\s+TABLE\s+`(?:[^`]|``)+`", re.I)
_WORD = re.compile(r"\w+")
_CREATION_TIMES = (
    "SELECT TABLE_NAME, CREATE_TIME, CREATE_TIME >= NOW() - INTERVAL 1 SECOND "
    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
)

TableKey = tuple[str, str]  # (logical database, logical table)


class CatalogUnavailable(ProxyError):
    """The catalog schemas can't be created or read (e.g. no CREATE privilege)."""


class Catalog:
    """Keeps the catalog schemas of one config in step; one per Runtime."""

    def __init__(self, config: Config, backends: Backends, names: NameMap):
        self.config = config
        self.backends = backends
        self.names = names
        self.backend = metadata_backend(config)
        # Writing the catalog changes a connection's session (USE, foreign_key_checks), so it
        # uses connections of its own and closes them: sessions' pools are never churned.
        self._writer = BackendPool(
            dataclasses.replace(config.backends[self.backend], pool=PoolSize(0, 1), replicas=())
        )
        self.synced_at: float | None = None  # monotonic time of the last full sync
        # First node's CREATE_TIME per table as of its last sync (None: no such table). Any
        # CREATE, DROP or ALTER changes it, so comparing finds tables changed on the backends.
        self._created: dict[TableKey, str | None] = {}
        self._columns: dict[TableKey, tuple[str, ...]] = {}  # INSERT's implicit column lists
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.synced_at is not None and time.monotonic() - self.synced_at < STALE_AFTER

    async def ensure(self, stale_ok: bool = False) -> None:
        """Before a catalog query: sync the tables whose first node changed since their last
        sync (one query per backend), and everything after STALE_AFTER seconds.

        `stale_ok`: any earlier sync will do (a session holding pinned connections must not
        wait for the pool's, which a pool of one could never give it)."""
        if self.synced_at is not None and stale_ok:
            return
        if not self._fresh():
            await self.sync(only_if_stale=True)
            return
        try:
            created = await self._creation_times(self._all_keys())
            present = await self._catalog_tables()
        except ProxyError as exc:
            raise CatalogUnavailable(
                f"The metadata catalog can't be checked: {exc.message}"
            ) from exc
        # Other proxy instances with this config share the catalog schemas and write them too,
        # so what the catalog holds is compared as well, not only what this instance last did.
        changed = [
            key
            for key, value in created.items()
            if self._created.get(key) != value
            or (value or "").endswith("*")
            or (value is not None) != (key in present)
        ]
        if changed:
            await self.sync(changed)

    async def sync(
        self, keys: Iterable[TableKey] | None = None, only_if_stale: bool = False
    ) -> None:
        """Bring the given catalog tables (None: all, and drop strays) in step."""
        wanted = self._all_keys() if keys is None else sorted(set(keys))
        async with self._lock:
            if only_if_stale and self._fresh():
                return  # another session synced while this one waited
            for key in wanted:
                self._columns.pop(key, None)
            started = time.monotonic()
            try:
                created = await self._creation_times(wanted)
                definitions = await self._definitions(wanted)
                await self._apply(definitions, full=keys is None)
            except ProxyError as exc:
                raise CatalogUnavailable(
                    f"The metadata catalog on backend '{self.backend}' is unavailable: "
                    f"{exc.message}",
                    exc.code if isinstance(exc, BackendError) else None,
                ) from exc
            self._created.update(created)
            if keys is None:
                self.synced_at = started

    async def _catalog_tables(self) -> set[TableKey]:
        """(logical database, table) of every table the catalog schemas hold now."""
        schemas = {catalog_database(db): db for db in self.config.databases}
        listed = ", ".join(quote_string(name) for name in schemas)
        rows = await _query_on(
            self.backends,
            self.backend,
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
            f"WHERE TABLE_SCHEMA IN ({listed})",
        )
        return {(schemas[str(schema)], str(name).lower()) for schema, name in rows if name}

    async def after_ddl(self, sqls: Iterable[str]) -> None:
        """Re-sync the tables a DDL statement may have changed; never raises."""
        keys = self._tables_named(sqls)
        if not keys:
            return
        try:
            await self.sync(keys)
        except ProxyError as exc:
            log.warning("catalog sync after DDL failed: %s", exc.message)

    async def with_column_list(self, need: ColumnListNeeded) -> str:
        """The INSERT of `need` with its table's column list written out, as MySQL reads an
        INSERT without one: every column in order, except INVISIBLE ones."""
        key = (need.database, need.table)
        columns = self._columns.get(key)
        if columns is None:
            node = self._table(key).nodes[0]
            rows = await _query_on(
                self.backends, node.backend, "SHOW COLUMNS FROM " + render_name(node.table, True)
            )
            columns = tuple(
                str(row[0]) for row in rows if "INVISIBLE" not in (row[5] or "").upper()
            )
            self._columns[key] = columns
        listed = ", ".join(render_name(c, True) for c in columns)
        return f"{need.text[: need.position]} ({listed}){need.text[need.position :]}"

    def _all_keys(self) -> list[TableKey]:
        return [(db.name, name) for db in self.config.databases.values() for name in db.tables]

    def _tables_named(self, sqls: Iterable[str]) -> list[TableKey]:
        """Every logical table whose logical or physical name appears in the statements."""
        index: dict[str, list[TableKey]] = {}
        for db in self.config.databases.values():
            for table in db.tables.values():
                for name in {table.name, *(node.table.lower() for node in table.nodes)}:
                    index.setdefault(name, []).append((db.name, table.name))
        found: set[TableKey] = set()
        for sql in sqls:
            for word in _WORD.findall(sql):
                found.update(index.get(word.lower(), ()))
        return sorted(found)

    async def _creation_times(self, keys: list[TableKey]) -> dict[TableKey, str | None]:
        """Each table's first node CREATE_TIME (None if it doesn't exist), a query per backend."""
        by_backend: dict[str, dict[str, TableKey]] = {}
        for key in keys:
            node = self._table(key).nodes[0]
            by_backend.setdefault(node.backend, {})[node.table.lower()] = key
        found: dict[TableKey, str | None] = dict.fromkeys(keys)

        async def read(backend: str, names: dict[str, TableKey]) -> None:
            rows = await _query_on(self.backends, backend, _CREATION_TIMES)
            for name, created, recent in rows:
                key = names.get((name or "").lower())
                if key is not None:
                    # Changed within the last second: a second change in the same second would
                    # keep this CREATE_TIME, so the table stays unsettled (synced again).
                    found[key] = (created or "") + ("*" if recent == "1" else "")

        await asyncio.gather(*(read(b, n) for b, n in by_backend.items()))
        return found

    def _table(self, key: TableKey) -> Table:
        return self.config.databases[key[0]].tables[key[1]]

    async def _definitions(self, keys: list[TableKey]) -> dict[TableKey, str | None]:
        """Each table's catalog DDL from its first data node (None: the table doesn't exist)."""
        by_backend: dict[str, list[TableKey]] = {}
        for key in keys:
            by_backend.setdefault(self._table(key).nodes[0].backend, []).append(key)
        results: dict[TableKey, str | None] = {}

        async def read(backend: str, group: list[TableKey]) -> None:
            pool = self.backends[backend]
            conn = await pool.acquire()
            clean = False
            try:
                for key in group:
                    node = self._table(key).nodes[0]
                    text = await _show_create(conn, render_name(node.table, True))
                    results[key] = None if text is None else self._logical_ddl(key, text)
                clean = True
            finally:
                pool.release(conn, clean)

        await asyncio.gather(*(read(b, g) for b, g in by_backend.items()))
        return results

    def _logical_ddl(self, key: TableKey, text: str) -> str:
        """A first node's CREATE TABLE as the catalog table's: logical names, no counter."""
        text = _AUTO_INCREMENT.sub("", text)
        head = _CREATE_HEAD.match(text)
        body = text[head.end() :] if head else text
        return "CREATE TABLE " + render_name(key[1], True) + self.names.message(body)

    async def _apply(self, definitions: dict[TableKey, str | None], full: bool) -> None:
        databases = {db for db, _ in definitions}
        if full:
            databases |= set(self.config.databases)
        # Read before taking the catalog's connection: with a pool of one, holding two
        # connections to one backend would wait for ever.
        charsets = {db: await self._charset(db) for db in sorted(databases)}
        pool = self._writer
        conn = await pool.acquire()
        try:
            # This connection's session is changed (USE, foreign_key_checks): it is closed after.
            await conn.execute("SET SESSION foreign_key_checks = 0")
            for database in sorted(databases):
                schema = render_name(catalog_database(database), True)
                options = charsets[database]
                await conn.execute(f"CREATE DATABASE IF NOT EXISTS {schema}{options}")
                if options:
                    await conn.execute(f"ALTER DATABASE {schema}{options}")
                await conn.execute("USE " + schema)
                for (db, table), wanted in definitions.items():
                    if db == database:
                        await _put_table(conn, table, wanted)
                if full:
                    known = set(self.config.databases[database].tables)
                    for (name,) in await conn.query("SHOW TABLES"):
                        if name is not None and name not in known:
                            await conn.execute("DROP TABLE IF EXISTS " + render_name(name, True))
        finally:
            pool.release(conn, clean=False)

    async def _charset(self, database: str) -> str:
        """` CHARACTER SET x COLLATE y` of the logical database's default backend ('' if none)."""
        default = self.config.databases[database].default_backend
        physical = self.config.backends[default].database
        rows = await _query_on(
            self.backends,
            default,
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
            f"information_schema.SCHEMATA WHERE SCHEMA_NAME = '{_escape(physical)}'",
        )
        if rows and rows[0][0] and rows[0][1]:
            return f" CHARACTER SET {rows[0][0]} COLLATE {rows[0][1]}"
        return ""


async def _show_create(conn: BackendConnection, name: str) -> str | None:
    """SHOW CREATE TABLE's text, or None if there is no such table (or it is a view)."""
    try:
        rows = await conn.query("SHOW CREATE TABLE " + name)
    except BackendError as exc:
        if exc.code == ER_NO_SUCH_TABLE:
            return None
        raise
    if not rows or rows[0][1] is None or not rows[0][1].upper().startswith("CREATE TABLE"):
        return None
    return rows[0][1]


async def _put_table(conn: BackendConnection, table: str, wanted: str | None) -> None:
    """Make catalog table `table` (in the connection's schema) exactly `wanted`, or absent."""
    name = render_name(table, True)
    current = await _show_create(conn, name)
    if current is not None:
        current = _AUTO_INCREMENT.sub("", current)
    if current == wanted:
        return
    await conn.execute("DROP TABLE IF EXISTS " + name)
    if wanted is None:
        return
    try:
        await conn.execute(wanted)
    except BackendError as exc:
        if exc.code != ER_TABLE_EXISTS:  # another proxy instance created it just now
            raise


async def _query_on(backends: Backends, backend: str, sql: str) -> list[tuple[str | None, ...]]:
    pool = backends[backend]
    conn = await pool.acquire()
    clean = False
    try:
        rows = await conn.query(sql)
        clean = True
        return rows
    finally:
        pool.release(conn, clean)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")
