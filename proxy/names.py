"""Physical -> logical names, so backend errors and column metadata never show physical ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proxy import packets as p
from router.config import Config
from router.metadata import catalog_database

_WORD = re.compile(r"\w+")
# Distinct column definitions remembered; beyond this the memo starts over.
MEMO_COLUMNS = 2048


@dataclass(frozen=True)
class NameMap:
    """Built once per config: physical database and table names and their logical names."""

    databases: dict[str, str]  # physical db -> logical db
    tables: dict[str, str]  # physical table (lower) -> logical table
    # Column definition payload -> its logical form: a statement shape gets the same bytes
    # back every time, so each is decoded once (measured in docs/decisions.md, "Hot path").
    _columns: dict[bytes, bytes] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> NameMap:
        databases: dict[str, str] = {}
        tables: dict[str, str] = {}
        for db in config.databases.values():
            for table in db.tables.values():
                for node in table.nodes:
                    databases.setdefault(config.backends[node.backend].database, db.name)
                    if node.table.lower() != table.name:
                        tables[node.table.lower()] = table.name
            databases.setdefault(config.backends[db.default_backend].database, db.name)
            databases[catalog_database(db.name)] = db.name
        return cls(databases, tables)

    def message(self, text: str) -> str:
        """A backend error message with physical names replaced by logical ones."""

        def swap(match: re.Match[str]) -> str:
            word = match.group(0)
            found = self.databases.get(word) or self.tables.get(word.lower())
            if found is None and "_ibfk_" in word:
                # InnoDB names a foreign key `<table>_ibfk_<n>` after the physical table.
                table, _, number = word.rpartition("_ibfk_")
                logical = self.tables.get(table.lower())
                found = f"{logical}_ibfk_{number}" if logical is not None else None
            return found or word

        return _WORD.sub(swap, text)

    def column_definition(self, payload: bytes) -> bytes:
        """A column definition with its schema and table fields made logical."""
        columns = self._columns
        logical = columns.get(payload)
        if logical is None:
            if len(columns) >= MEMO_COLUMNS:
                columns.clear()
            logical = columns[payload] = self._logical_column(payload)
        return logical

    def _logical_column(self, payload: bytes) -> bytes:
        pos = 0
        fields = []
        for _ in range(6):
            n, end = p.read_lenenc_int(payload, pos)
            n = n or 0
            fields.append(payload[end : end + n])
            pos = end + n
        schema, table, org_table, name = fields[1], fields[2], fields[3], fields[4]
        new_schema = self._db(schema)
        new_table = self._table(table)
        new_org = self._table(org_table)
        new_name = self._label(name) if not fields[5] else name
        if (
            new_schema is schema
            and new_table is table
            and new_org is org_table
            and new_name is name
        ):
            return payload
        return b"".join(
            (
                p.lenenc_str(fields[0]),
                p.lenenc_str(new_schema),
                p.lenenc_str(new_table),
                p.lenenc_str(new_org),
                p.lenenc_str(new_name),
                p.lenenc_str(fields[5]),
                payload[pos:],
            )
        )

    def _label(self, name: bytes) -> bytes:
        """An expression's column label (no original column name): MariaDB labels an unaliased
        expression with its text, which names the physical tables the rewrite put there
        (`customers_1.id + 1`, `(SELECT COUNT(*) FROM orders_0 o ...)`). A label that is
        exactly a physical name is the client's own alias, and stays."""
        text = name.decode("utf-8", "replace")
        tables = self.tables
        if not tables or text.lower() in tables:
            return name
        renamed = _WORD.sub(lambda match: tables.get(match.group(0).lower(), match.group(0)), text)
        return name if renamed == text else renamed.encode("utf-8")

    def _db(self, name: bytes) -> bytes:
        if not name:
            return name
        logical = self.databases.get(name.decode("utf-8", "replace"))
        return logical.encode("utf-8") if logical is not None else name

    def _table(self, name: bytes) -> bytes:
        if not name:
            return name
        logical = self.tables.get(name.decode("utf-8", "replace").lower())
        return logical.encode("utf-8") if logical is not None else name
