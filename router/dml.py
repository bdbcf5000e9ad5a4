"""Planning SELECT / INSERT / REPLACE / UPDATE / DELETE: analyze, pick a route, build templates.

Runs on a cache miss. The result is a route (router.route) that holds no literal values, so
the planner can cache it by statement shape.
"""

from __future__ import annotations

import re
from dataclasses import replace

from sqlglot import exp

from router.analyze import (
    Session,
    Tables,
    TableUse,
    ValueReader,
    check_colocated,
    collect_tables,
    is_driven,
    shard_condition,
)
from router.config import TableKind
from router.errors import ColumnListNeeded, NoDefaultForField, NotSupported, ProxyError
from router.metadata import is_information_schema, plan_information_schema
from router.parse import syntax_error
from router.plan import Route
from router.predicates import Slot, Source
from router.rewrite import Rewriter, render_name, span
from router.route import (
    CachedRoute,
    FixedRoute,
    InsertRoute,
    Refs,
    ShardedRoute,
    Target,
    shard_targets,
    target_on_backend,
)
from router.rows import RowsAt, RowsRoute, build_route
from router.scatter import plan_scatter_read
from router.session_values import session_call_edits
from router.template import Edit, Template

_VALUES_HEAD = re.compile(r"\s*\)\s*VALUES?\s*", re.I)
# Parentheses, and what may hold them without counting: strings, quoted names, comments
# (optimizer hints stay in the text, and a `)` in one must not end a row).
_ROW_TOKENS = re.compile(
    r"""[()]|'(?:[^'\\]|\\.|'')*+'|"(?:[^"\\]|\\.|"")*+"|`[^`]*+(?:``[^`]*+)*+`|/\*.*?\*/""",
    re.S,
)
_ROW_SEPARATOR = re.compile(r"\s*,\s*")


def needs_literals(tree: exp.Expression, text: str, slots: list[tuple[int, int]]) -> bool:
    """Whether the statement's meaning depends on a literal's value, not just its position.

    `ORDER BY 2` and `GROUP BY 1` name select-list columns; the cross-shard merge needs to know
    which, so such statements are planned (and cached) by their exact text.
    """
    if is_information_schema(tree):
        return True  # literals naming a logical database are rewritten (router.metadata)
    values = ValueReader(text, slots)
    for clause in (*tree.find_all(exp.Order), *tree.find_all(exp.Group)):
        for item in clause.expressions:
            target = item.this if isinstance(item, exp.Ordered) else item
            if values.slot_of(target) is not None:
                return True
    # LIMIT takes digits or `?`: a plan made from anything else is an error whose message
    # quotes this text (`LIMIT -1`, `LIMIT 'a'`), and must not serve the shape's other
    # statements (`LIMIT -2`, `LIMIT 2`).
    for clause in (*tree.find_all(exp.Limit), *tree.find_all(exp.Offset)):
        value = clause.expression
        if isinstance(value, exp.Placeholder):
            continue
        source = values.source(value) if value is not None else None
        if not isinstance(source, Slot) or source.negate:
            return True
        start, end = slots[source.index]
        if not text[start:end].isdigit():
            return True
    return False


# Named locks belong to the backend connection that took them: a pooled one outlives the
# client's statement, so the lock would stay held (and RELEASE_LOCK() would run elsewhere).
_NAMED_LOCKS = frozenset({"GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS"})


def _refuse_named_locks(tree: exp.Expression) -> None:
    for node in tree.find_all(exp.Anonymous):
        name = str(node.this).upper()
        if name in _NAMED_LOCKS:
            raise NotSupported(
                f"{name}(): a named lock would stay with a pooled backend connection, "
                "not with this session"
            )


def plan_dml(
    tree: exp.Expression,
    text: str,
    slots: list[tuple[int, int]],
    session: Session,
    inline: bool,
    rows: RowsAt | None = None,
) -> CachedRoute | RowsRoute:
    """The route for a DML statement.

    `text` is the statement as parsed, `slots` the [start, end) of each literal slot in it.
    With `inline`, literals stay part of the template text (a plan for this text only);
    otherwise they become template slots (a plan for every statement of this shape).
    With `rows`, the statement is an INSERT standing for one with many rows of its rows' forms
    (router.rows): its route is a RowsRoute if it can be one.
    """
    if tree.find(exp.Into) is not None:
        raise NotSupported("SELECT ... INTO")
    _refuse_named_locks(tree)
    values = ValueReader(text, slots)
    is_write = isinstance(tree, exp.Insert | exp.Update | exp.Delete)
    tables = collect_tables(tree, session)
    rewriter = Rewriter(text, tables)
    if not inline:
        rewriter.add_slots(slots)
    if tables.system:
        if tables.uses or is_write:
            raise NotSupported("statements that write system schemas or join them with tables")
        if is_information_schema(tree) or session.in_information_schema:
            return plan_information_schema(tree, text, tables, session)  # type: ignore[return-value]
        template = Template.build(text, rewriter.edits)
        target = Target(session.default_backend(), ())
        return FixedRoute(Route.UNSHARDED, template, (target,), tableless=True)
    rewriter.rename_tables(tree)
    rewriter.replace_database_calls(tree, session.schema())
    rewriter.edits.extend(session_call_edits(tree, text))
    if isinstance(tree, exp.Insert):
        return _plan_insert(tree, text, tables, rewriter, values, session, len(slots), rows)
    modified = _modified(tree, tables) if is_write else []
    template = Template.build(text, rewriter.edits)
    if tables.sharded:
        route = _plan_sharded(tree, tables, rewriter.refs, template, values, modified)
        if is_write or route.single_shard_reason is not None:
            return route
        scatter = plan_scatter_read(tree, text, slots, tables, rewriter.edits)
        if isinstance(scatter, str):
            return replace(route, single_shard_reason=scatter)
        return replace(route, scatter=scatter)
    return _plan_unsharded(tables, rewriter.refs, template, modified, is_write, session)


def _plan_sharded(
    tree: exp.Expression,
    tables: Tables,
    refs: Refs,
    template: Template,
    values: ValueReader,
    modified: list[TableUse],
) -> ShardedRoute:
    check_colocated(tables, tree)
    driver = tables.sharded[0].table
    assert driver.algorithm is not None, "the config loader gives every sharded table one"
    reason = None
    if not is_driven(tree, tables):
        reason = f"a subquery or UNION over sharded table '{driver.name}' across several shards"
    for use in modified:
        if use.table.kind is TableKind.BROADCAST:
            raise NotSupported(
                f"writing broadcast table '{use.label}' from sharded table '{driver.name}'"
            )
        if use.table.kind is TableKind.SINGLE:
            reason = f"writing single table '{use.label}' from sharded table '{driver.name}'"
    is_write = isinstance(tree, exp.Update | exp.Delete)
    if is_write and (tree.args.get("limit") is not None or tree.args.get("order") is not None):
        kind = tree.key.upper()
        reason = reason or f"{kind} with ORDER BY or LIMIT across several shards of '{driver.name}'"
    condition = shard_condition(tree, tables, values)
    targets = shard_targets(driver, refs)
    return ShardedRoute(template, targets, driver.algorithm, condition, is_write, reason)


def _plan_unsharded(
    tables: Tables,
    refs: Refs,
    template: Template,
    modified: list[TableUse],
    is_write: bool,
    session: Session,
) -> FixedRoute:
    singles = [use for use in tables.uses if use.table.kind is TableKind.SINGLE]
    if singles:
        backends = sorted({use.table.nodes[0].backend for use in singles})
        if len(backends) > 1:
            names = ", ".join(sorted({f"'{use.label}'" for use in singles}))
            raise NotSupported(f"joining single tables {names} that live on different backends")
        for use in modified:
            if use.table.kind is TableKind.BROADCAST:
                raise NotSupported(
                    f"writing broadcast table '{use.label}' from single table '{singles[0].label}'"
                )
        return _fixed(Route.UNSHARDED, template, backends, refs, is_write)
    if tables.uses:  # broadcast tables only: read one copy, write every copy
        if is_write:
            written = (modified[0] if modified else tables.uses[0]).table
            return _fixed(Route.BROADCAST, template, list(written.backends), refs, True)
        backend = tables.uses[0].table.nodes[0].backend
        return _fixed(Route.BROADCAST, template, [backend], refs, False)
    route = _fixed(Route.UNSHARDED, template, [session.default_backend()], refs, is_write)
    return replace(route, tableless=not is_write)


def _fixed(
    route: Route, template: Template, backends: list[str], refs: Refs, is_write: bool
) -> FixedRoute:
    targets = tuple(target_on_backend(backend, refs) for backend in backends)
    for target in targets:
        if target.problem is not None:
            raise NotSupported(target.problem)
    return FixedRoute(route, template, targets, is_write)


def _modified(tree: exp.Expression, tables: Tables) -> list[TableUse]:
    """The tables an UPDATE or DELETE changes; refuses UPDATEs of a shard key."""
    root = tables.in_scope(tree)
    if isinstance(tree, exp.Delete):
        if not tables.references:
            return root
        found = []
        for ref in tables.references:
            use = tables.use_named(ref, ref.name.lower())
            if use is None:
                raise ProxyError(f"Unknown table '{ref.name}' in MULTI DELETE", 1109, "42S02")
            found.append(use)
        return found
    changed: dict[int, TableUse] = {}
    for assignment in tree.expressions:
        column = assignment.this
        if not isinstance(column, exp.Column):
            continue
        use = tables.use_named(column, column.table.lower()) if column.table else None
        # An unqualified column in a multi-table UPDATE could belong to any of them.
        candidates = [use] if use is not None else root
        for candidate in candidates:
            if candidate.sharded and candidate.table.shard_key == column.name.lower():
                raise NotSupported(
                    f"UPDATE of shard key column '{column.name}' of table '{candidate.label}': "
                    "changing the shard key column would move the row to another shard"
                )
            changed[id(candidate)] = candidate
    return list(changed.values())


def _plan_insert(
    tree: exp.Insert,
    text: str,
    tables: Tables,
    rewriter: Rewriter,
    values: ValueReader,
    session: Session,
    slot_count: int,
    by_rows: RowsAt | None = None,
) -> CachedRoute | RowsRoute:
    """`slot_count`: the statement's literal slots; generated keys get the slots after them."""
    schema = tree.this
    target_node = schema.this if isinstance(schema, exp.Schema) else schema
    target = next((use for use in tables.uses if use.node is target_node), None)
    if target is None:  # sqlglot accepted something that names no table, e.g. INSERT INTO dual
        raise syntax_error(text, 0)
    if tree.expression is None:  # sqlglot accepts `INSERT t` without any rows
        raise syntax_error(text, len(text))
    template = Template.build(text, rewriter.edits)
    sharded = tables.sharded
    if not isinstance(tree.expression, exp.Values):
        generated = target.table.generated_key
        if generated is not None and generated not in _column_names(schema):
            raise NotSupported(
                f"INSERT ... SELECT into '{target.label}' without its generated key column "
                f"'{generated}'"
            )
        if not sharded:
            return _plan_unsharded(tables, rewriter.refs, template, [target], True, session)
        return _plan_insert_select(tables, target, rewriter.refs, template)
    if not target.sharded:
        if sharded:
            raise NotSupported(
                f"INSERT into '{target.label}' reading sharded table '{sharded[0].label}'"
            )
        fixed = _plan_unsharded(tables, rewriter.refs, template, [target], True, session)
        if by_rows is not None:
            count = len(tree.expression.expressions)
            spans = _rows_from(text, by_rows.first_row, count)
            if spans is not None:
                parts = _row_parts(text, rewriter.edits, spans)
                routed = build_route(
                    target.label,
                    fixed.route,
                    None,
                    fixed.targets,
                    parts,
                    None,
                    by_rows.layout,
                    False,
                )
                return routed or fixed
        return fixed
    if len(sharded) > 1:
        raise NotSupported(f"INSERT into sharded table '{target.label}' reading sharded tables")
    table = target.table
    assert table.shard_key is not None and table.algorithm is not None
    columns = list(schema.expressions) if isinstance(schema, exp.Schema) else []
    if not columns:
        raise ColumnListNeeded(
            f"INSERT into sharded table '{target.label}' without a column list",
            target.database.name,
            table.name,
            text,
            span(target_node.this)[1],
        )
    names = [column.name.lower() for column in columns]
    rows = tree.expression.expressions
    generated = table.generated_key
    # The planner adds an omitted generated key column, and one value slot per row after the
    # statement's own literal slots; the proxy supplies the keys (InsertRoute.instantiate).
    add_key = generated is not None and generated not in names
    if table.shard_key not in names and not (add_key and table.shard_key == generated):
        raise NoDefaultForField(table.shard_key)
    _check_conflict_clause(tree, target)
    if table.shard_key in names:
        keys = _row_keys(tree.expression, names, names.index(table.shard_key), values, target)
    else:  # the shard key is the generated key: each row goes where its new key says
        _row_keys(tree.expression, names, 0, values, target, key_required=False)
        keys = tuple(Slot(slot_count + row) for row in range(len(rows)))
    targets = shard_targets(table, rewriter.refs)
    spans = _row_spans(text, span(columns[-1])[1], len(rows))
    if add_key:
        assert generated is not None
        if spans is None:
            raise NotSupported("this form of INSERT into a table with a generated key")
        after_columns = span(columns[-1])[1]
        edits = rewriter.edits
        edits.append((after_columns, after_columns, ", " + render_name(generated, True)))
        for row, (_, end) in enumerate(spans):
            edits.append((end - 1, end - 1, (", ", slot_count + row)))
        template = Template.build(text, edits)
    first_key = slot_count if add_key else None
    if by_rows is not None and spans is not None and spans[0][0] == by_rows.first_row:
        parts = _row_parts(text, rewriter.edits, spans)
        routed = build_route(
            target.label,
            Route.MULTI,
            table.algorithm,
            targets,
            parts,
            keys,
            by_rows.layout,
            add_key,
        )
        if routed is not None:
            return routed
    if len(rows) == 1:  # nothing to split: every statement goes whole to one shard
        empty = Template(())
        return InsertRoute(
            target.label, table.algorithm, keys, targets, template, empty, (), empty, first_key
        )
    if spans is None:
        raise NotSupported("this form of multi-row INSERT into a sharded table")
    head, *row_templates, tail = _row_parts(text, rewriter.edits, spans)
    return InsertRoute(
        target.label,
        table.algorithm,
        keys,
        targets,
        template,
        head,
        tuple(row_templates),
        tail,
        first_key,
    )


def _column_names(schema: exp.Expression) -> list[str]:
    if not isinstance(schema, exp.Schema):
        return []
    return [column.name.lower() for column in schema.expressions]


def _plan_insert_select(
    tables: Tables, target: TableUse, refs: Refs, template: Template
) -> ShardedRoute:
    """INSERT ... SELECT with sharded tables runs only when everything is on one shard."""
    names = ", ".join(sorted({f"'{use.label}'" for use in tables.sharded}))
    if target.table.kind is TableKind.BROADCAST or any(
        len(use.table.nodes) > 1 for use in tables.sharded
    ):
        raise NotSupported(f"INSERT ... SELECT with sharded tables {names} across several shards")
    driver = tables.sharded[0].table
    assert driver.algorithm is not None
    return ShardedRoute(template, shard_targets(driver, refs), driver.algorithm, None, True)


def _check_conflict_clause(tree: exp.Insert, target: TableUse) -> None:
    conflict = tree.args.get("conflict")
    if conflict is None:
        return
    for assignment in conflict.expressions:
        column = assignment.this if isinstance(assignment, exp.EQ) else None
        if isinstance(column, exp.Column) and column.name.lower() == target.table.shard_key:
            raise NotSupported(
                f"ON DUPLICATE KEY UPDATE of shard key column '{column.name}' of table "
                f"'{target.label}': changing the shard key column would move the row"
            )


def _row_keys(
    rows: exp.Values,
    names: list[str],
    index: int,
    values: ValueReader,
    target: TableUse,
    key_required: bool = True,
) -> tuple[Source, ...]:
    """Each row's shard-key source (`index`: the key's column); checks every row's width."""
    keys = []
    for number, row in enumerate(rows.expressions, 1):
        items = row.expressions if isinstance(row, exp.Tuple) else [row]
        if len(items) != len(names):
            raise ProxyError(
                f"Column count doesn't match value count at row {number}", 1136, "21S01"
            )
        if not key_required:
            continue
        source = values.source(items[index])
        if source is None:
            raise NotSupported(
                f"INSERT into sharded table '{target.label}' with a shard key value that is "
                "not a literal"
            )
        keys.append(source)
    return tuple(keys)


def _row_parts(text: str, edits: list[Edit], spans: list[tuple[int, int]]) -> tuple[Template, ...]:
    """Templates of an INSERT's head (up to the first row), each row, and tail."""
    ranges = [(0, spans[0][0]), *spans, (spans[-1][1], len(text))]
    return Template.build_ranges(text, edits, ranges)


def _row_spans(text: str, after_columns: int, count: int) -> list[tuple[int, int]] | None:
    """Where each `(...)` row of `VALUES (...), (...)` sits, found from the column list's end."""
    head = _VALUES_HEAD.match(text, after_columns)
    if head is None:
        return None
    return _rows_from(text, head.end(), count)


def _rows_from(text: str, pos: int, count: int) -> list[tuple[int, int]] | None:
    """Where each of `count` rows `(...), (...)` sits, the first at `pos`."""
    spans = []
    for number in range(count):
        if text[pos : pos + 1] != "(":
            return None
        depth = 0
        end = None
        for token in _ROW_TOKENS.finditer(text, pos):
            if token.group() == "(":
                depth += 1
            elif token.group() == ")":
                depth -= 1
                if depth == 0:
                    end = token.end()
                    break
        if end is None:
            return None
        spans.append((pos, end))
        separator = _ROW_SEPARATOR.match(text, end)
        if number < count - 1:
            if separator is None:
                return None
            pos = separator.end()
    return spans
