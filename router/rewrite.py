"""Rewriting logical SQL into physical SQL, as edits of the client's own text.

Edits are made by position (sqlglot records where each identifier sits) rather than by
regenerating SQL from the tree, so the backend receives the client's statement byte for byte
except for table names, dropped logical-database qualifiers and DATABASE() calls. Regenerating
would also change what the client wrote (`FROM DUAL` became `` FROM `DUAL` ``, `LIMIT 1, 2`
became `LIMIT 2 OFFSET 1`).
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL

from router.analyze import Tables, TableUse
from router.config import Table
from router.errors import NotSupported
from router.literals import quote_string
from router.template import Edit, table_part

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_EMPTY_CALL = re.compile(r"\s*\(\s*\)")
_RESERVED = frozenset(MySQL.Generator.RESERVED_KEYWORDS)


def render_name(name: str, quoted: bool) -> str:
    """A physical table name as SQL: backticks when the client used them or when needed."""
    if quoted or not _PLAIN_NAME.fullmatch(name) or name.lower() in _RESERVED:
        return "`" + name.replace("`", "``") + "`"
    return name


def span(node: exp.Expression) -> tuple[int, int]:
    """Where a token-backed node (identifier, literal) sits in the text: [start, end)."""
    meta = node.meta
    if "start" not in meta:
        # sqlglot made this node up rather than reading it, so it can't be rewritten in place.
        raise NotSupported(f"this form of statement (can't locate '{node.sql(dialect='mysql')}')")
    return meta["start"], meta["end"] + 1


class Rewriter:
    """Collects the edits of one statement and numbers the table slots they use."""

    def __init__(self, text: str, tables: Tables):
        self.text = text
        self.tables = tables
        self.refs: list[tuple[Table, bool]] = []  # table slot -> (logical table, quoted)
        self._ref_index: dict[tuple[str, str, bool], int] = {}
        self.edits: list[Edit] = []

    def ref(self, use: TableUse, quoted: bool) -> int:
        """The table slot for a table use written quoted or not."""
        key = (use.database.name, use.table.name, quoted)
        if key not in self._ref_index:
            self._ref_index[key] = len(self.refs)
            self.refs.append((use.table, quoted))
        return self._ref_index[key]

    def rename(self, identifier: exp.Identifier, db: exp.Expression | None, use: TableUse) -> None:
        """Replace `[db.]name` with the table slot of `use`, dropping the logical db."""
        start, end = span(identifier)
        self.edits.append((start, end, table_part(self.ref(use, identifier.quoted))))
        if db is not None:
            self.edits.append((span(db)[0], start, ""))

    def rename_tables(self, tree: exp.Expression) -> None:
        """Every table, table-qualified column and DELETE target that names a logical table."""
        for use in self.tables.uses:
            self.rename(use.node.this, use.node.args.get("db"), use)
        for column in tree.find_all(exp.Column):
            qualifier = column.args.get("table")
            if isinstance(qualifier, exp.Identifier):
                use = self.tables.use_named(column, qualifier.name.lower())
                if use is not None and use.alias is None:
                    self.rename(qualifier, column.args.get("db"), use)
        for ref in self.tables.references:
            use = self.tables.use_named(ref, ref.name.lower())
            if use is not None and use.alias is None:
                self.rename(ref.this, ref.args.get("db"), use)

    def replace_database_calls(self, tree: exp.Expression, database: str | None) -> None:
        """DATABASE() / SCHEMA() name the logical database, keeping the client's column label."""
        value = "NULL" if database is None else quote_string(database)
        for call in tree.find_all(exp.CurrentSchema):
            if not call.meta:
                continue
            start, end = span(call)
            paren = _EMPTY_CALL.match(self.text, end)
            end = paren.end() if paren else end
            replacement = value
            if isinstance(call.parent, exp.Select) and call.arg_key == "expressions":
                label = self.text[start:end].replace("`", "``")
                replacement = f"{value} AS `{label}`"
            self.edits.append((start, end, replacement))

    def add_slots(self, slot_spans: list[tuple[int, int]]) -> None:
        """Literal slots become template slots, so a cached template takes new literals."""
        for index, (start, end) in enumerate(slot_spans):
            self.edits.append((start, end, index))
