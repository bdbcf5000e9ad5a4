"""Metadata statements answered as if the logical tables were real tables of one server.

Two sources, both with every physical name rewritten to its logical one by the proxy:
- a table's **first data node** for what is about one table and must be live: SHOW CREATE TABLE,
  SHOW INDEX (SHOW COLUMNS / DESCRIBE stay in router.statements: their rows carry no names);
- the **catalog**: one schema per logical database on the metadata backend, named
  `catalog_database(db)`, holding an empty copy of each logical table under its logical name
  (proxy/catalog.py keeps it in step). information_schema queries, SHOW TABLES and SHOW TABLE
  STATUS run there, so MariaDB itself evaluates their WHERE / JOIN / ORDER BY exactly; the
  router only narrows every information_schema table to the catalog schemas and rewrites the
  logical database names the statement mentions (string literals, DATABASE()) to catalog names.

See docs/decisions.md ("Metadata: a catalog schema per logical database").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from types import MappingProxyType

from sqlglot import exp

from router.analyze import (
    INFORMATION_SCHEMA,
    SYSTEM_SCHEMAS,
    Session,
    Tables,
    find_database,
    lookup_table,
    top_scopes,
)
from router.config import Config
from router.errors import NoDatabaseSelected, NotSupported, UnknownDatabase
from router.literals import literal_value, quote_string
from router.parse import syntax_error
from router.plan import MetadataPlan, Plan, ProxyShow, ShowPlan, ShowWhat, TableLocks, Unit
from router.rewrite import render_name, span
from router.sqltext import (
    IDENT,
    QUALIFIED_NAME,
    STRING,
    qualified_name,
    split_top_level,
    unquote,
)

CATALOG_PREFIX = "shardproxy_meta_"
_MAX_NAME = 64

# information_schema tables that list objects of some schema, and the column naming it: the
# router narrows them to the catalog schemas (and information_schema itself, as MySQL lists it).
SCOPED = MappingProxyType(
    {
        "SCHEMATA": "SCHEMA_NAME",
        "TABLES": "TABLE_SCHEMA",
        "COLUMNS": "TABLE_SCHEMA",
        "STATISTICS": "TABLE_SCHEMA",
        "KEY_COLUMN_USAGE": "TABLE_SCHEMA",
        "TABLE_CONSTRAINTS": "TABLE_SCHEMA",
        "REFERENTIAL_CONSTRAINTS": "CONSTRAINT_SCHEMA",
        "CHECK_CONSTRAINTS": "CONSTRAINT_SCHEMA",
        "VIEWS": "TABLE_SCHEMA",
        "TRIGGERS": "TRIGGER_SCHEMA",
        "ROUTINES": "ROUTINE_SCHEMA",
        "PARAMETERS": "SPECIFIC_SCHEMA",
        "EVENTS": "EVENT_SCHEMA",
        "PARTITIONS": "TABLE_SCHEMA",
        "FILES": "TABLE_SCHEMA",
        "COLUMN_PRIVILEGES": "TABLE_SCHEMA",
        "TABLE_PRIVILEGES": "TABLE_SCHEMA",
        "SCHEMA_PRIVILEGES": "TABLE_SCHEMA",
        "COLUMNS_EXTENSIONS": "TABLE_SCHEMA",
        "TABLES_EXTENSIONS": "TABLE_SCHEMA",
        "STATISTICS_EXTENSIONS": "TABLE_SCHEMA",
        "TABLE_CONSTRAINTS_EXTENSIONS": "CONSTRAINT_SCHEMA",
    }
)
# information_schema tables about the server, naming no table: they run unchanged.
GLOBAL = frozenset(
    {
        "CHARACTER_SETS",
        "COLLATIONS",
        "COLLATION_CHARACTER_SET_APPLICABILITY",
        "ENGINES",
        "PLUGINS",
        "ALL_PLUGINS",
        "KEYWORDS",
        "SQL_FUNCTIONS",
        "GLOBAL_VARIABLES",
        "SESSION_VARIABLES",
        "SYSTEM_VARIABLES",
        "GLOBAL_STATUS",
        "SESSION_STATUS",
        "USER_PRIVILEGES",
        "ENABLED_ROLES",
        "APPLICABLE_ROLES",
        "ADMINISTRABLE_ROLE_AUTHORIZATIONS",
        "PROFILING",
        "OPTIMIZER_TRACE",
        "TABLESPACES",
        "ST_SPATIAL_REFERENCE_SYSTEMS",
        "SPATIAL_REF_SYS",
        "RESOURCE_GROUPS",
        "USER_ATTRIBUTES",
        "THREAD_POOL_GROUPS",
        "THREAD_POOL_QUEUES",
        "THREAD_POOL_STATS",
        "THREAD_POOL_WAITS",
    }
)

_FLAGS = re.I | re.S
_FROM_DB = rf"(?:\s+(?:FROM|IN)\s+(?P<db>{IDENT}))?"
_SHOW_TABLES = re.compile(rf"SHOW\s+(?P<full>FULL\s+)?TABLES{_FROM_DB}(?P<rest>.*)", _FLAGS)
_SHOW_TABLE_STATUS = re.compile(rf"SHOW\s+TABLE\s+STATUS{_FROM_DB}(?P<rest>.*)", _FLAGS)
_SHOW_INDEX = re.compile(
    rf"SHOW\s+(?:EXTENDED\s+)?(?:INDEX|INDEXES|KEYS)\s+(?:FROM|IN)\s+{QUALIFIED_NAME}"
    rf"(?:\s+(?:FROM|IN)\s+(?P<db>{IDENT}))?(?P<rest>.*)",
    _FLAGS,
)
_SHOW_CREATE_TABLE = re.compile(rf"SHOW\s+CREATE\s+TABLE\s+{QUALIFIED_NAME}\s*", _FLAGS)
_SHOW_CREATE_DATABASE = re.compile(
    rf"SHOW\s+CREATE\s+(?:DATABASE|SCHEMA)\s+(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<db>{IDENT})\s*",
    _FLAGS,
)
_SHOW_OBJECTS = re.compile(rf"SHOW\s+(?P<what>TRIGGERS|EVENTS){_FROM_DB}(?P<rest>.*)", _FLAGS)
_SHOW_ROUTINES = re.compile(
    r"SHOW\s+(?P<what>PROCEDURE|FUNCTION|PACKAGE)\s+STATUS(?P<rest>.*)", _FLAGS
)
_SHOW_PROCESSLIST = re.compile(r"SHOW\s+(?P<full>FULL\s+)?PROCESSLIST\s*", _FLAGS)
_SHOW_GRANTS = re.compile(r"SHOW\s+GRANTS\b(?P<rest>.*)", _FLAGS)
_CURRENT_USER = re.compile(r"\s*(?:FOR\s+CURRENT_USER(?:\s*\(\s*\))?)?\s*", _FLAGS)
_LIKE = re.compile(rf"\s*LIKE\s+(?P<pattern>{STRING})\s*", _FLAGS)
_WHERE = re.compile(r"\s*WHERE\s+(?P<condition>.*)", _FLAGS)
_STRINGS = re.compile(rf"{STRING}|`(?:[^`]|``)*`|/\*.*?\*/|--[^\n]*|#[^\n]*", re.S)


def catalog_database(logical: str) -> str:
    """The catalog schema standing for logical database `logical` on the metadata backend."""
    name = CATALOG_PREFIX + logical
    if len(name) > _MAX_NAME:
        name = CATALOG_PREFIX + hashlib.sha1(logical.encode()).hexdigest()[:24]
    return name


def metadata_backend(config: Config) -> str:
    """Where the catalog schemas live: the first logical database's default backend."""
    return next(iter(config.databases.values())).default_backend


def catalog_names(config: Config) -> dict[str, str]:
    """Logical database -> its catalog schema, for every logical database."""
    return {name: catalog_database(name) for name in config.databases}


@dataclass(frozen=True)
class FixedPlan:
    """A route that is one fixed plan (statements planned by exact text only)."""

    plan: Plan

    def instantiate(self, bindings: object) -> Plan:
        return self.plan


# --- information_schema ------------------------------------------------------------------


def is_information_schema(tree: exp.Expression) -> bool:
    """Whether a parsed statement reads a system schema (information_schema, mysql, ...)."""
    for table in tree.find_all(exp.Table):
        db = table.args.get("db")
        if db is not None and db.name.lower() in SYSTEM_SCHEMAS:
            return True
    return False


def _is_information_schema(table: exp.Table, session: Session) -> bool:
    db = table.args.get("db")
    if db is None:
        return session.in_information_schema
    return db.name.lower() == INFORMATION_SCHEMA


def reads_information_schema(tables: Tables, session: Session) -> bool:
    """Whether a statement's system tables include information_schema's (named, or unqualified
    after USE information_schema)."""
    return any(_is_information_schema(table, session) for table in tables.system)


def plan_information_schema(
    tree: exp.Expression, text: str, tables: Tables, session: Session
) -> FixedPlan:
    """An information_schema SELECT, run against the catalog schemas with logical names.

    Each schema-scoped information_schema table becomes a derived table narrowed to the
    catalog schemas; string literals naming a logical database and DATABASE() name its catalog
    schema instead. The proxy maps catalog names in the result back to logical names.
    """
    config = session.config
    if not reads_information_schema(tables, session):
        # mysql.*, performance_schema, sys: the default backend's, with names made logical.
        unit = Unit(session.default_backend(), text)
        return FixedPlan(MetadataPlan(unit))
    catalogs = catalog_names(config)
    listed = ", ".join(quote_string(n) for n in [*catalogs.values(), "information_schema"])
    edits: list[tuple[int, int, str]] = []
    for table in tables.system:
        if not _is_information_schema(table, session):
            continue
        name = table.name.upper()
        qualifier = table.args.get("db")
        if name in GLOBAL:
            if qualifier is None:  # the metadata backend's connection has a database of its own
                start = span(table.this)[0]
                edits.append((start, start, f"{INFORMATION_SCHEMA}."))
            continue
        column = SCOPED.get(name)
        if column is None:
            raise NotSupported(
                f"information_schema.{table.name} through the proxy (it describes the backend "
                "servers, not the logical tables)"
            )
        start = span(qualifier if qualifier is not None else table.this)[0]
        end = span(table.this)[1]
        derived = f"(SELECT * FROM information_schema.{name} WHERE {column} IN ({listed}))"
        if not table.alias:
            derived += " AS " + render_name(table.name, True)
        edits.append((start, end, derived))
    for literal in tree.find_all(exp.Literal):
        if not literal.is_string or "start" not in literal.meta:
            continue
        start, end = span(literal)
        source = text[start:end]
        if source[:1] not in ("'", '"'):
            continue
        value = literal_value(source)
        if isinstance(value, str) and value in catalogs:
            edits.append((start, end, quote_string(catalogs[value])))
    schema = session.schema()
    shadow = "NULL" if schema is None else quote_string(catalogs.get(schema, schema))
    for call in tree.find_all(exp.CurrentSchema):
        if not call.meta:
            continue
        start, end = span(call)
        paren = re.compile(r"\s*\(\s*\)").match(text, end)
        end = paren.end() if paren else end
        replacement = shadow
        if isinstance(call.parent, exp.Select) and call.arg_key == "expressions":
            replacement = f"{shadow} AS `{text[start:end].replace('`', '``')}`"
        edits.append((start, end, replacement))
    edits += _keep_labels(tree)
    sql = _apply(text, edits)
    unit = Unit(metadata_backend(config), sql)
    return FixedPlan(MetadataPlan(unit, catalog=True))


def _keep_labels(tree: exp.Expression) -> list[tuple[int, int, str]]:
    """Aliases keeping the client's spelling as the label of selected columns: read through a
    derived table, MariaDB would label `column_name` with the table's `COLUMN_NAME`."""
    edits = []
    for scope in top_scopes(tree):
        if not isinstance(scope, exp.Select):
            continue
        for item in scope.expressions:
            if isinstance(item, exp.Column) and isinstance(item.this, exp.Identifier):
                end = span(item.this)[1]
                edits.append((end, end, f" AS {render_name(item.this.name, True)}"))
    return edits


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    out = []
    pos = 0
    for start, end, replacement in sorted(edits):
        if start < pos:
            raise NotSupported("this form of information_schema query (overlapping names)")
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def rewrite_database_literals(text: str, catalogs: dict[str, str]) -> str:
    """`text` with every string literal that names a logical database naming its catalog."""

    def swap(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] not in "'\"":
            return token
        value = literal_value(token)
        if isinstance(value, str) and value in catalogs:
            return quote_string(catalogs[value])
        return token

    return _STRINGS.sub(swap, text)


# --- SHOW ----------------------------------------------------------------------------------


def plan_metadata_show(text: str, session: Session) -> Plan | None:
    """The plan for a SHOW statement about metadata, or None when it is not one of these."""
    for planner in (
        _show_tables,
        _show_table_status,
        _show_index,
        _show_create_table,
        _show_create_database,
        _show_objects,
        _show_routines,
        _show_proxy,
    ):
        plan = planner(text, session)
        if plan is not None:
            return plan
    return None


def _database(session: Session, written: str | None) -> str:
    """The logical database a SHOW ... FROM db (or the session's) means."""
    if written is None:
        current = session.current()
        if current is None:
            raise NoDatabaseSelected()
        return current.name
    name = unquote(written)
    found = find_database(session.config, name)
    if found is None:
        raise UnknownDatabase(name)
    return found.name


def _catalog_rest(rest: str, database: str, catalogs: dict[str, str]) -> str:
    """A SHOW statement's LIKE / WHERE tail, as the catalog schema must read it."""
    rest = rewrite_database_literals(rest, catalogs)
    label = re.compile(rf"\bTables_in_{re.escape(database)}\b", re.I)
    return label.sub(lambda _: "Tables_in_" + catalogs[database], rest)


def _show_tables(text: str, session: Session) -> Plan | None:
    match = _SHOW_TABLES.fullmatch(text)
    if match is None:
        return None
    full = "FULL " if match["full"] else ""
    rest = match["rest"]
    written = match["db"]
    if (written is None and session.in_information_schema) or (
        written is not None and unquote(written).lower() == INFORMATION_SCHEMA
    ):  # the server's own list, under MariaDB's column names
        sql = f"SHOW {full}TABLES FROM {INFORMATION_SCHEMA}{rest}"
        return MetadataPlan(Unit(metadata_backend(session.config), sql))
    database = _database(session, written)
    catalogs = catalog_names(session.config)
    sql = f"SHOW {full}TABLES FROM {render_name(catalogs[database], True)}"
    sql += _catalog_rest(rest, database, catalogs)
    fallback = None
    like = _LIKE.fullmatch(rest)
    if like is not None or not rest.strip():
        pattern = str(literal_value(like["pattern"])) if like is not None else None
        fallback = ShowPlan(ShowWhat.TABLES, bool(full), pattern, database)
    backend = metadata_backend(session.config)
    return MetadataPlan(Unit(backend, sql), (database,), catalog=True, fallback=fallback)


def _show_table_status(text: str, session: Session) -> Plan | None:
    match = _SHOW_TABLE_STATUS.fullmatch(text)
    if match is None:
        return None
    database = _database(session, match["db"])
    catalogs = catalog_names(session.config)
    sql = f"SHOW TABLE STATUS FROM {render_name(catalogs[database], True)}"
    sql += _catalog_rest(match["rest"], database, catalogs)
    backend = metadata_backend(session.config)
    return MetadataPlan(Unit(backend, sql), (database,), catalog=True, stats=database)


def _show_index(text: str, session: Session) -> Plan | None:
    match = _SHOW_INDEX.fullmatch(text)
    if match is None:
        return None
    qualifier, name = qualified_name(match)
    if match["db"] is not None:
        qualifier = unquote(match["db"])
    if qualifier is not None and qualifier.lower() in ("information_schema", "mysql"):
        return None  # about a system table: router.statements sends it to the default backend
    table = lookup_table(session, qualifier, name)
    node = table.nodes[0]
    sql = f"SHOW INDEX FROM {render_name(node.table, False)}{match['rest']}"
    database = _database(session, qualifier)
    return MetadataPlan(Unit(node.backend, sql), (database,))


def _show_create_table(text: str, session: Session) -> Plan | None:
    match = _SHOW_CREATE_TABLE.fullmatch(text)
    if match is None:
        return None
    qualifier, name = qualified_name(match)
    if qualifier is not None and qualifier.lower() in ("information_schema", "mysql"):
        return None
    table = lookup_table(session, qualifier, name)
    node = table.nodes[0]
    sql = f"SHOW CREATE TABLE {render_name(node.table, True)}"
    return MetadataPlan(Unit(node.backend, sql), (_database(session, qualifier),))


def _show_create_database(text: str, session: Session) -> Plan | None:
    match = _SHOW_CREATE_DATABASE.fullmatch(text)
    if match is None:
        return None
    database = _database(session, match["db"])
    config = session.config
    backend = config.databases[database].default_backend
    physical = config.backends[backend].database
    exists = "IF NOT EXISTS " if match["exists"] else ""
    sql = f"SHOW CREATE DATABASE {exists}{render_name(physical, True)}"
    return MetadataPlan(Unit(backend, sql), (database,))


def _show_objects(text: str, session: Session) -> Plan | None:
    """SHOW TRIGGERS / EVENTS: of the catalog schema, which has none (the proxy creates none)."""
    match = _SHOW_OBJECTS.fullmatch(text)
    if match is None:
        return None
    database = _database(session, match["db"])
    catalogs = catalog_names(session.config)
    what = match["what"].upper()
    sql = f"SHOW {what} FROM {render_name(catalogs[database], True)}"
    sql += _catalog_rest(match["rest"], database, catalogs)
    backend = metadata_backend(session.config)
    return MetadataPlan(Unit(backend, sql), (database,), catalog=True)


def _show_routines(text: str, session: Session) -> Plan | None:
    """SHOW PROCEDURE / FUNCTION STATUS, narrowed to the catalog schemas (so: empty)."""
    match = _SHOW_ROUTINES.fullmatch(text)
    if match is None:
        return None
    catalogs = catalog_names(session.config)
    listed = ", ".join(quote_string(n) for n in catalogs.values())
    condition = f"`Db` IN ({listed})"
    rest = rewrite_database_literals(match["rest"], catalogs)
    like = _LIKE.fullmatch(rest)
    where = _WHERE.fullmatch(rest)
    if like is not None:
        condition += f" AND `Name` LIKE {like['pattern']}"
    elif where is not None:
        condition += f" AND ({where['condition']})"
    elif rest.strip():
        raise NotSupported(f"SHOW {match['what'].upper()} STATUS {rest.strip()}")
    sql = f"SHOW {match['what'].upper()} STATUS WHERE {condition}"
    backend = metadata_backend(session.config)
    return MetadataPlan(Unit(backend, sql), catalog=True)


def _show_proxy(text: str, session: Session) -> Plan | None:
    """SHOW PROCESSLIST / SHOW GRANTS: the proxy's own sessions and accounts."""
    match = _SHOW_PROCESSLIST.fullmatch(text)
    if match is not None:
        return ProxyShow("processlist", full=bool(match["full"]))
    match = _SHOW_GRANTS.fullmatch(text)
    if match is not None:
        if not _CURRENT_USER.fullmatch(match["rest"]):
            raise NotSupported("SHOW GRANTS FOR another account (only the current one)")
        return ProxyShow("grants")
    return None


# --- LOCK TABLES ----------------------------------------------------------------------------

_LOCK = re.compile(r"LOCK\s+TABLES?\s+(?P<items>.+)", _FLAGS)
_UNLOCK = re.compile(r"UNLOCK\s+TABLES?\s*", _FLAGS)
_LOCK_ITEM = re.compile(
    rf"{QUALIFIED_NAME}(?:\s+(?:AS\s+)?(?!READ\b|WRITE\b|LOW_PRIORITY\b){IDENT})?\s+"
    r"(?:READ(?:\s+LOCAL)?|(?:LOW_PRIORITY\s+)?WRITE(?:\s+CONCURRENT)?)\s*",
    _FLAGS,
)


def plan_table_locks(text: str, session: Session) -> TableLocks:
    """LOCK TABLES t READ, ... / UNLOCK TABLES: the tables are checked, no lock is taken.

    mysqldump locks the tables it dumps and its dumps lock the tables they load; a lock on
    every data node would need the session's statements pinned to the locking connections.
    """
    if _UNLOCK.fullmatch(text):
        return TableLocks(())
    match = _LOCK.fullmatch(text)
    if match is None:
        raise syntax_error(text, 0)
    names = []
    for item in split_top_level(match["items"]):
        found = _LOCK_ITEM.fullmatch(item.strip())
        if found is None:
            raise syntax_error(text, text.find(item.strip()))
        qualifier, name = qualified_name(found)
        if qualifier is not None and qualifier.lower() in ("information_schema", "mysql"):
            raise NotSupported("LOCK TABLES of system tables")
        names.append(lookup_table(session, qualifier, name).name)
    return TableLocks(tuple(names))
