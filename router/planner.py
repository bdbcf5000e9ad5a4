"""The router's entry point: SQL text (+ parameters) -> Plan, with a plan cache by shape.

Hot path (a cache hit): tokenize the literals out of the statement (one regex pass), look the
shape up, evaluate the cached route against the literal values, fill the cached templates.
Only a miss parses with sqlglot. Statements whose plan depends on literal values (SET, SHOW,
DDL, `ORDER BY 1`) are cached by exact text instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import cast

from sqlglot import exp

from router.admin import plan_admin
from router.analyze import Session
from router.cache import LruCache
from router.config import Config
from router.ddl import plan_ddl
from router.dml import needs_literals, plan_dml
from router.errors import ColumnListNeeded, NotSupported, ParseError, ProxyError
from router.literals import render_param
from router.metadata import plan_table_locks
from router.normalize import Normalized, normalize, split_statements
from router.parse import parse, syntax_error
from router.plan import ExplainShards, MetadataPlan, Plan, QueryPlan, Unit
from router.predicates import Bindings
from router.route import CachedRoute
from router.rows import Rows, RowsAt, RowsRoute, find_rows, representative
from router.statements import (
    plan_describe,
    plan_set,
    plan_show,
    plan_transaction,
    plan_use,
    refuse,
)

__all__ = ["Router", "split_statements"]

_DML = frozenset({"SELECT", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE", "("})
_DDL = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME"})
_TRANSACTION = frozenset({"BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"})
_DESCRIBE = frozenset({"DESCRIBE", "DESC", "EXPLAIN"})
# Statements longer than this are planned every time (a long IN list is a new shape for each
# length), as are multi-row INSERTs whose row forms, head and tail are longer than this: caching
# a plan per row count held ~3 MB each (measured in BENCHMARKS.md). See router.rows.
MAX_CACHED_TEXT = 64 * 1024
_ADMIN = frozenset({"EXPLAIN", "SHOW", "RELOAD", "KILL"})
# Statements MySQL knows that the proxy refuses by name rather than as a syntax error.
_REFUSED = frozenset(
    {
        "LOCK",
        "UNLOCK",
        "LOAD",
        "CALL",
        "HANDLER",
        "XA",
        "PREPARE",
        "EXECUTE",
        "DEALLOCATE",
        "GRANT",
        "REVOKE",
        "KILL",
        "FLUSH",
        "RESET",
        "PURGE",
        "CHANGE",
        "INSTALL",
        "UNINSTALL",
        "ANALYZE",
        "OPTIMIZE",
        "CHECK",
        "CHECKSUM",
        "REPAIR",
        "CACHE",
        "SHUTDOWN",
        "DO",
        "HELP",
        "BINLOG",
        "TABLE",
        "VALUES",
        "SIGNAL",
        "RESIGNAL",
        "GET",
        "IMPORT",
        "CLONE",
        "RESTART",
        "STOP",
        "BACKUP",
    }
)
_KEYWORD = re.compile(r"\(|[A-Za-z]+")
_EXPLAIN_HEAD = re.compile(
    r"(?:EXPLAIN|DESCRIBE|DESC)(?:\s+(?:EXTENDED|PARTITIONS|FORMAT\s*=\s*\w+))?\s+", re.I
)
_HINT = re.compile(
    r"""`[^`]*+(?:``[^`]*+)*+`|'(?:[^'\\]|\\.|'')*+'|"(?:[^"\\]|\\.|"")*+"|/\*\+.*?\*/""", re.S
)


_SELECT_INTO = re.compile(r"\bINTO\s+(?:OUTFILE|DUMPFILE|@)", re.I)


class _ExactOnly:
    """Shape-cache marker: plans of this shape depend on literal values; cache by exact text."""

    __slots__ = ()


EXACT_ONLY = _ExactOnly()

CacheKey = tuple[str | None, str]
# A multi-row INSERT's route: by database, head, distinct row forms and tail (router.rows).
RowsKey = tuple[str | None, str, tuple[str, ...], str]


class Router:
    """Plans statements against one config. Not thread-safe: use one per event loop."""

    def __init__(self, config: Config, cache_size: int = 4096):
        self.config = config
        self._shapes: LruCache[CacheKey, CachedRoute | _ExactOnly] = LruCache(cache_size)
        self._exact: LruCache[CacheKey, Plan] = LruCache(cache_size)
        # EXACT_ONLY here: plan statements of this key as a whole, as other shapes are.
        self._rows: LruCache[RowsKey, RowsRoute | _ExactOnly] = LruCache(cache_size)
        self.hits = 0  # statements planned without parsing
        self.misses = 0  # statements that needed sqlglot or a statement recognizer

    def plan(
        self,
        sql: str,
        database: str | None,
        params: Sequence[object] | None = None,
        keep_markers: bool = False,
        new_ids: Callable[[int], Sequence[int]] | None = None,
        normalized: Normalized | None = None,
    ) -> Plan:
        """The plan for one statement in a session whose current database is `database`.

        `params` are the values of a prepared statement's `?` markers, in order. With
        `keep_markers`, the values still choose the shards but the physical SQL carries
        `param_marker(i)` where parameter i goes, so the proxy can prepare it on the backend.
        `new_ids(n)` supplies n generated keys for an INSERT that leaves out its table's
        generated key column (without it, such an INSERT is refused). `normalized` is
        `normalize(sql)` when the caller keeps it (a prepared statement runs many times).
        """
        if params is None:
            cached = self._exact.get((database, sql))
            if cached is not None:
                self.hits += 1
                return cached
        if normalized is None:
            normalized = normalize(sql)
        if not normalized.shape:
            raise ProxyError("Query was empty", 1065, "42000")
        bindings = _bind(normalized, params, keep_markers)
        bindings.new_ids = new_ids
        rows = find_rows(normalized.shape)
        if rows is not None:
            by_rows = self._plan_rows(normalized, rows, bindings, database)
            if by_rows is not None:
                return by_rows
        key = (database, normalized.shape)
        route = self._shapes.get(key)
        planned = route is None
        if route is None:
            self.misses += 1
            try:
                route = self._plan_shape(normalized, bindings, Session(self.config, database))
            except ColumnListNeeded as need:
                raise _in_client_form(need, normalized) from None
            if len(sql) <= MAX_CACHED_TEXT:
                self._shapes.put(key, route)
        if not isinstance(route, _ExactOnly):
            self.hits += not planned
            return route.instantiate(bindings)
        text, slots = _splice(normalized.fragments, bindings.texts)
        exact_key = (database, sql if params is None else text)
        if keep_markers and params:
            # The text holds markers, not values, and this plan depends on the values.
            exact_key = (database, text + "\0" + repr(tuple(params)))
        if not planned:
            cached = self._exact.get(exact_key)
            if cached is not None:
                self.hits += 1
                return cached
            self.misses += 1
        try:
            plan = self._plan_text(text, slots, bindings, Session(self.config, database))
        except ColumnListNeeded as need:
            raise _in_client_form(need, normalized) from None
        # Generated keys are used up; long texts are not worth their memory.
        if not _uses_generated_keys(plan) and len(exact_key[1]) <= MAX_CACHED_TEXT:
            self._exact.put(exact_key, plan)
        return plan

    def _plan_rows(
        self, normalized: Normalized, rows: Rows, bindings: Bindings, database: str | None
    ) -> Plan | None:
        """A multi-row INSERT by the forms of its rows; None: plan it as a whole instead."""
        key = (database, rows.head, rows.forms, rows.tail)
        route = self._rows.get(key)
        if route is None:
            route = self._plan_row_forms(normalized, rows, bindings, Session(self.config, database))
            if route is None:
                return None
            if len(rows.head) + sum(map(len, rows.forms)) + len(rows.tail) <= MAX_CACHED_TEXT:
                self._rows.put(key, route)
            self.misses += isinstance(route, RowsRoute)
        else:
            self.hits += isinstance(route, RowsRoute)
        return route.instantiate(bindings, rows) if isinstance(route, RowsRoute) else None

    def _plan_row_forms(
        self, normalized: Normalized, rows: Rows, bindings: Bindings, session: Session
    ) -> RowsRoute | _ExactOnly | None:
        """The route of a statement with one row of each form (None: it has an error, which
        planning the whole statement reports with the right row number or position)."""
        stand_in = representative(rows, len(normalized.literals))
        if stand_in is None:
            return EXACT_ONLY
        literals, texts = normalized.literals, bindings.texts
        stand_ins = tuple(texts[i] if literals[i] is not None else "0" for i in stand_in.slots)
        text, slots = _splice(stand_in.fragments, stand_ins)
        head_slots = stand_in.layout.head_slots
        first_row = len(rows.head) - head_slots + sum(map(len, stand_ins[:head_slots]))
        try:
            tree = _parse_dml(text)
            if needs_literals(tree, text, slots):
                return EXACT_ONLY
            at = RowsAt(first_row, stand_in.layout)
            route = plan_dml(tree, text, slots, session, inline=False, rows=at)
        except ColumnListNeeded as need:
            raise _in_client_form(need, normalized) from None
        except ProxyError:
            return None
        return route if isinstance(route, RowsRoute) else EXACT_ONLY

    def _plan_shape(
        self, normalized: Normalized, bindings: Bindings, session: Session
    ) -> CachedRoute | _ExactOnly:
        """A route for every statement of this shape, or EXACT_ONLY."""
        text, slots = _splice(normalized.fragments, _stand_ins(normalized, bindings))
        if ";" in normalized.shape:
            _refuse_several_statements(text)
        if _keyword(text) not in _DML:
            return EXACT_ONLY
        tree = _parse_dml(text)
        if session.in_information_schema or needs_literals(tree, text, slots):
            return EXACT_ONLY  # information_schema: see needs_literals
        return cast(CachedRoute, plan_dml(tree, text, slots, session, inline=False))

    def _plan_text(
        self, text: str, slots: list[tuple[int, int]], bindings: Bindings, session: Session
    ) -> Plan:
        """The plan for exactly this statement text."""
        keyword = _keyword(text)
        if keyword in _ADMIN:
            admin = plan_admin(
                text, lambda inner: self.plan(inner, session.database, new_ids=bindings.new_ids)
            )
            if admin is not None:
                return admin
        if keyword in _DML:
            tree = _parse_dml(text)
            route = cast(CachedRoute, plan_dml(tree, text, slots, session, inline=True))
            return route.instantiate(bindings)
        if keyword in _DDL:
            return plan_ddl(text, session)
        if keyword == "USE":
            return plan_use(text, session)
        if keyword == "SET":
            return plan_set(text)
        if keyword in _TRANSACTION:
            return plan_transaction(text)
        if keyword == "SHOW":
            return plan_show(text, session)
        if keyword in _DESCRIBE:
            return plan_describe(text, session) or self._plan_explain(
                text, slots, bindings, session
            )
        if keyword in ("LOCK", "UNLOCK"):
            return plan_table_locks(text, session)
        if keyword in _REFUSED:
            raise refuse(text)
        raise syntax_error(text, 0)

    def _plan_explain(
        self, text: str, slots: list[tuple[int, int]], bindings: Bindings, session: Session
    ) -> Plan:
        """EXPLAIN <statement>: the statement's units, each asked for its backend's EXPLAIN."""
        head = _EXPLAIN_HEAD.match(text)
        if head is None:
            raise syntax_error(text, 0)
        inner = text[head.end() :]
        if _keyword(inner) not in _DML:
            raise NotSupported(" ".join(text.split()[:2]).upper())
        shift = head.end()
        inner_slots = [(start - shift, end - shift) for start, end in slots]
        plan = self._plan_text(inner, inner_slots, bindings, session)
        prefix = head.group()
        if isinstance(plan, MetadataPlan):  # information_schema: EXPLAIN the catalog query
            unit = Unit(plan.unit.backend, prefix + plan.unit.sql)
            return MetadataPlan(unit, plan.databases, catalog=plan.catalog)
        assert isinstance(plan, QueryPlan)
        units = tuple(Unit(unit.backend, prefix + unit.sql) for unit in plan.units)
        # The units' EXPLAIN rows are shown as they are, not merged.
        return QueryPlan(units, plan.route, is_write=False)


def _uses_generated_keys(plan: Plan) -> bool:
    inner = plan.plan if isinstance(plan, ExplainShards) else plan
    return isinstance(inner, QueryPlan) and bool(inner.generated_ids)


def _refuse_several_statements(text: str) -> None:
    """COM_QUERY may carry several statements only when the caller has split them first."""
    statements = split_statements(text)
    if len(statements) > 1:
        raise syntax_error(text, text.find(statements[1]))


def _keyword(text: str) -> str:
    match = _KEYWORD.match(text)
    return match.group().upper() if match else ""


def _parse_dml(text: str) -> exp.Expression:
    try:
        return parse(_parse_text(text))
    except ParseError:
        # sqlglot doesn't read every placement of INTO; name the feature rather than the syntax.
        if _SELECT_INTO.search(text):
            raise NotSupported("SELECT ... INTO") from None
        raise


def _parse_text(text: str) -> str:
    """What sqlglot parses: offsets must stay those of `text`, which the templates are cut from.

    sqlglot reads REPLACE only as an opaque command, so it sees `INSERT ` instead (same length);
    optimizer hints are blanked out, as sqlglot doesn't accept them everywhere MySQL does.
    """
    if text[:7].upper() == "REPLACE":
        text = "INSERT " + text[7:]
    if "/*+" in text:
        text = _HINT.sub(
            lambda m: " " * len(m.group()) if m.group().startswith("/*+") else m.group(), text
        )
    return text


def param_marker(index: int) -> str:
    """Stands for prepared-statement parameter `index` in physical SQL (see Router.plan)."""
    return f"/*?{index}*/?"


def _bind(
    normalized: Normalized, params: Sequence[object] | None, keep_markers: bool = False
) -> Bindings:
    """Every slot's SQL text, with prepared-statement parameters rendered as literals."""
    literals = normalized.literals
    if params is None:
        if None in literals:  # a `?` outside a prepared statement
            texts = tuple("?" if text is None else text for text in literals)
            text, slots = _splice(normalized.fragments, texts)
            raise syntax_error(text, slots[literals.index(None)][0])
        return Bindings(cast(tuple[str, ...], literals), {})
    if literals.count(None) != len(params):
        raise ProxyError("Incorrect arguments to mysqld_stmt_execute", 1210, "HY000")
    texts = []
    values: dict[int, object] = {}
    remaining = iter(params)
    param = 0
    for index, literal in enumerate(literals):
        if literal is None:
            value = next(remaining)
            values[index] = value
            literal = param_marker(param) if keep_markers else render_param(value)
            param += 1
        texts.append(literal)
    return Bindings(tuple(texts), values)


def _in_client_form(need: ColumnListNeeded, normalized: Normalized) -> ColumnListNeeded:
    """`need` with the text the client sent (`?` where its parameters go), not the text planned
    with stand-ins or values: the proxy adds the column list there and plans that again. The
    table name comes before every slot, so `need.position` is the same in both."""
    texts = tuple("?" if text is None else text for text in normalized.literals)
    need.text = _splice(normalized.fragments, texts)[0]
    return need


def _stand_ins(normalized: Normalized, bindings: Bindings) -> tuple[str, ...]:
    """Slot texts for planning a shape: the client's literals, and `0` for each parameter.

    A parameter's rendered value must not shape the plan: NULL (a keyword, not a literal) or
    `-5` (a minus and a literal) would parse differently from other values of the same slot.
    """
    return tuple(
        text if literal is not None else "0"
        for text, literal in zip(bindings.texts, normalized.literals, strict=True)
    )


def _splice(
    fragments: tuple[str, ...], texts: tuple[str, ...]
) -> tuple[str, list[tuple[int, int]]]:
    """The statement text with its literals back in, and where each slot sits in it."""
    parts = [fragments[0]]
    slots = []
    offset = len(fragments[0])
    for text, fragment in zip(texts, fragments[1:], strict=True):
        slots.append((offset, offset + len(text)))
        offset += len(text) + len(fragment)
        parts.append(text)
        parts.append(fragment)
    return "".join(parts), slots
