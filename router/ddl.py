"""DDL on logical tables: run on every data node of the table, under its physical name.

DDL is rare and its text varies, so it is planned by exact text only; like DML it is rewritten
by position, so table options, comments and partitioning reach the backend as written.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from sqlglot import exp

from router.analyze import (
    SYSTEM_SCHEMAS,
    Session,
    TableUse,
    collect_tables,
    database_for,
    find_database,
    lookup_table,
)
from router.config import Table, TableKind
from router.errors import NotSupported, ParseError, ProxyError
from router.parse import parse, syntax_error
from router.plan import Note, QueryPlan, Route, Unit
from router.rewrite import Rewriter, render_name
from router.route import Target, shard_targets, target_on_backend
from router.sqltext import QUALIFIED_NAME, STRING, name_pattern, qualified_name, split_top_level
from router.template import Template

_RENAME = re.compile(r"RENAME\s+TABLES?\s+(?P<pairs>.*)", re.I | re.S)
_RENAME_PAIR = re.compile(name_pattern() + r"\s+TO\s+" + name_pattern("new_"), re.I | re.S)
# CREATE / ALTER TABLE heads, for the DDL sqlglot can't read (partitioning, some ALTER forms).
_TABLE_HEAD = re.compile(
    r"(?P<create>CREATE\s+(?P<temporary>TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?)?"
    r"(?(create)|ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+)"
    rf"(?P<name>{QUALIFIED_NAME})",
    re.I,
)
_QUOTED = re.compile(rf"{STRING}|`(?:[^`]|``)*`", re.S)
# Words after which a DDL statement names another table, or renames its own.
_OTHER_TABLE = re.compile(r"\b(?:REFERENCES|LIKE|SELECT|RENAME)\b", re.I)
_ROUTES = MappingProxyType(
    {
        TableKind.SHARDED: Route.SCATTER,
        TableKind.BROADCAST: Route.BROADCAST,
        TableKind.SINGLE: Route.UNSHARDED,
    }
)


def plan_ddl(text: str, session: Session) -> QueryPlan:
    """CREATE / DROP / ALTER / TRUNCATE / RENAME TABLE and CREATE / DROP INDEX."""
    keyword = text.split(None, 1)[0].upper()
    if keyword == "RENAME":
        return _plan_rename(text, session)
    try:
        tree = parse(text)
    except ParseError as error:
        return _plan_by_text(text, session, error)
    if isinstance(tree, exp.Command):
        return _plan_by_text(text, session, None)
    if isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
        return _plan_drop_tables(tree, session)
    target, ignore = _target_of(tree, text, session)
    tables = collect_tables(tree, session, ignore)
    if tables.system:
        raise NotSupported("DDL on system schemas")
    use = next((use for use in tables.uses if use.node is target), None)
    if use is None:  # the target is no logical table (e.g. `dual` or a CTE name)
        raise syntax_error(text, 0)
    for other in tables.sharded:
        group = use.database.binding_group_of(use.table.name) or frozenset({use.table.name})
        if other.table.name not in group:
            raise NotSupported(
                f"DDL on '{use.label}' referring to sharded table '{other.label}' outside its "
                "binding group"
            )
    rewriter = Rewriter(text, tables)
    rewriter.rename_tables(tree)
    template = Template.build(text, rewriter.edits)
    route, targets = _targets(use, rewriter.refs)
    units = []
    for target_node in targets:
        if target_node.problem is not None:
            raise NotSupported(target_node.problem)
        units.append(Unit(target_node.backend, template.render((), target_node.names)))
    return QueryPlan(tuple(units), route, is_write=True, implicit_commit=True)


def _plan_by_text(text: str, session: Session, error: ParseError | None) -> QueryPlan:
    """CREATE / ALTER TABLE that sqlglot can't read: rename the one table after the head.

    Only when nothing else in the statement could name a table; otherwise refuse rather than
    send a logical name to the backends.
    """
    head = _TABLE_HEAD.match(text)
    what = " ".join(text.split()[:2]).upper()
    if head is None:
        raise error if error is not None else NotSupported(f"this form of {what}")
    if _OTHER_TABLE.search(_QUOTED.sub("''", text[head.end() :])):
        raise NotSupported(f"this form of {what} naming other tables")
    if head["temporary"]:
        raise NotSupported("CREATE TEMPORARY TABLE")
    qualifier, name = qualified_name(head)
    if head["create"]:
        table = _configured_for_create(session, qualifier, name)
    else:
        table = lookup_table(session, qualifier, name)
    quoted = head["name"].endswith("`")
    before, after = text[: head.start("name")], text[head.end("name") :]
    units = tuple(
        Unit(node.backend, before + render_name(node.table, quoted) + after) for node in table.nodes
    )
    return QueryPlan(units, _ROUTES[table.kind], is_write=True, implicit_commit=True)


def _configured_for_create(session: Session, qualifier: str | None, name: str) -> Table:
    table = database_for(session, qualifier).tables.get(name.lower())
    if table is None:
        raise NotSupported(f"CREATE TABLE of '{name}': the table is not in the sharding config")
    return table


def _target_of(
    tree: exp.Expression, text: str, session: Session
) -> tuple[exp.Table, list[exp.Table]]:
    """The table a DDL statement changes, and table nodes that aren't tables (index names)."""
    kind = str(tree.args.get("kind") or "").upper()
    if isinstance(tree, exp.Create) and kind == "TABLE":
        if tree.find(exp.TemporaryProperty) is not None:
            raise NotSupported("CREATE TEMPORARY TABLE")
        if isinstance(tree.expression, exp.Query):
            raise NotSupported("CREATE TABLE ... SELECT")
        target = _table_node(
            tree.this.this if isinstance(tree.this, exp.Schema) else tree.this, text
        )
        qualifier = target.args.get("db")
        _configured_for_create(session, qualifier.name if qualifier else None, target.name)
        return target, []
    if isinstance(tree, exp.Create) and kind == "INDEX":
        return _table_node(tree.this.args.get("table"), text), []
    if isinstance(tree, exp.Drop) and kind == "INDEX":
        cluster = tree.args.get("cluster")
        return _table_node(cluster and cluster.this, text), list(tree.args.get("tables") or [])
    if isinstance(tree, exp.TruncateTable):
        return _table_node(tree.expressions[0] if tree.expressions else None, text), []
    if isinstance(tree, exp.Alter) and kind == "TABLE":
        if any(isinstance(action, exp.AlterRename) for action in tree.args.get("actions") or []):
            raise NotSupported("ALTER TABLE ... RENAME")
        return _table_node(tree.this, text), []
    words = text.split()
    raise NotSupported(" ".join(words[:2]).upper() if kind else f"this form of {words[0].upper()}")


def _table_node(node: object, text: str) -> exp.Table:
    if not isinstance(node, exp.Table):  # sqlglot accepted the statement without its table
        raise syntax_error(text, len(text))
    return node


def _targets(use: TableUse, refs: list[tuple[Table, bool]]) -> tuple[Route, list[Target]]:
    table = use.table
    if table.kind is TableKind.SHARDED:
        return Route.SCATTER, list(shard_targets(table, refs))
    if table.kind is TableKind.BROADCAST:
        return Route.BROADCAST, [target_on_backend(backend, refs) for backend in table.backends]
    return Route.UNSHARDED, [target_on_backend(table.nodes[0].backend, refs)]


def _plan_drop_tables(tree: exp.Drop, session: Session) -> QueryPlan:
    """DROP TABLE a, b: one DROP per data node of each table.

    Tables the config doesn't have are named together in one 1051, as MariaDB names the
    tables it doesn't have: with IF EXISTS a note, and the others are dropped; without, the
    error, and nothing is dropped (MariaDB drops the others)."""
    if tree.args.get("temporary"):
        raise NotSupported("DROP TEMPORARY TABLE")
    exists = bool(tree.args.get("exists"))
    head = "DROP TABLE IF EXISTS " if exists else "DROP TABLE "
    units = []
    kinds = set()
    unknown: list[str] = []
    seen: set[str] = set()
    for node in tree.args.get("tables") or []:
        label, table = _dropped(node, session)
        if label.lower() in seen:  # logical names are case-insensitive
            raise ProxyError(f"Not unique table/alias: '{node.name}'", 1066, "42000")
        seen.add(label.lower())
        if table is None:
            unknown.append(label)
            continue
        kinds.add(table.kind)
        quoted = node.this.quoted
        units.extend(Unit(n.backend, head + render_name(n.table, quoted)) for n in table.nodes)
    notes: tuple[Note, ...] = ()
    if unknown:
        message = f"Unknown table '{','.join(unknown)}'"
        if not exists:
            raise ProxyError(message, 1051, "42S02")
        notes = (Note(1051, message),)
    # The widest of the tables' routes: scatter if any is sharded.
    route = next((_ROUTES[kind] for kind in TableKind if kind in kinds), Route.UNSHARDED)
    return QueryPlan(tuple(units), route, is_write=True, implicit_commit=True, notes=notes)


def _dropped(node: exp.Table, session: Session) -> tuple[str, Table | None]:
    """A table DROP TABLE names, as `db.name` the way MariaDB reports it, and the configured
    table (None: no such table, in a database the config may not have either)."""
    qualifier = node.args.get("db")
    if qualifier is None:
        database = database_for(session, None)
        return f"{database.name}.{node.name}", database.tables.get(node.name.lower())
    if qualifier.name.lower() in SYSTEM_SCHEMAS:
        raise NotSupported("DDL on system schemas")
    found = find_database(session.config, qualifier.name)
    table = found.tables.get(node.name.lower()) if found is not None else None
    return f"{qualifier.name}.{node.name}", table


def _plan_rename(text: str, session: Session) -> QueryPlan:
    """RENAME TABLE a TO b, ...: both names configured, with the same data node layout."""
    match = _RENAME.fullmatch(text)
    if match is None:
        raise NotSupported("RENAME")
    pairs: list[tuple[Table, Table]] = []
    for part in split_top_level(match["pairs"]):
        pair = _RENAME_PAIR.fullmatch(part.strip())
        if pair is None:
            raise NotSupported(f"RENAME TABLE {part.strip()}")
        old = lookup_table(session, *qualified_name(pair))
        new_qualifier, new_name = qualified_name(pair, "new_")
        database = database_for(session, new_qualifier)
        new = database.tables.get(new_name.lower())
        if new is None:
            raise NotSupported(
                f"RENAME TABLE to '{new_name}': the table is not in the sharding config"
            )
        pairs.append((old, new))
    layout = [node.backend for node in pairs[0][0].nodes]
    for old, new in pairs:
        if [n.backend for n in old.nodes] != layout or [n.backend for n in new.nodes] != layout:
            raise NotSupported("RENAME TABLE between tables with different data nodes")
    units = []
    for index, backend in enumerate(layout):
        renames = ", ".join(
            f"{render_name(old.nodes[index].table, False)} TO "
            f"{render_name(new.nodes[index].table, False)}"
            for old, new in pairs
        )
        units.append(Unit(backend, "RENAME TABLE " + renames))
    route = _ROUTES[pairs[0][0].kind]
    return QueryPlan(tuple(units), route, is_write=True, implicit_commit=True)
