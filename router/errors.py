"""One exception hierarchy carrying MySQL's error code, SQLSTATE and message.

The wire layer is the only place that turns these into ERR packets.
"""

from __future__ import annotations


class ProxyError(Exception):
    """An error the client sees as a MySQL error."""

    code: int = 1105  # ER_UNKNOWN_ERROR
    sqlstate: str = "HY000"

    def __init__(self, message: str, code: int | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if sqlstate is not None:
            self.sqlstate = sqlstate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.sqlstate!r}, {self.message!r})"


class AccessDenied(ProxyError):
    code, sqlstate = 1045, "28000"


class DbAccessDenied(ProxyError):
    code, sqlstate = 1044, "42000"


class UnknownDatabase(ProxyError):
    code, sqlstate = 1049, "42000"

    def __init__(self, name: str):
        super().__init__(f"Unknown database '{name}'")


class NoDatabaseSelected(ProxyError):
    code, sqlstate = 1046, "3D000"

    def __init__(self) -> None:
        super().__init__("No database selected")


class UnknownTable(ProxyError):
    code, sqlstate = 1146, "42S02"

    def __init__(self, db: str, table: str):
        super().__init__(f"Table '{db}.{table}' doesn't exist")


class ParseError(ProxyError):
    code, sqlstate = 1064, "42000"


class NotSupported(ProxyError):
    """ER_NOT_SUPPORTED_YET: the statement can't be run correctly across shards."""

    code, sqlstate = 1235, "42000"

    def __init__(self, what: str):
        super().__init__(f"This version of shardproxy doesn't yet support '{what}'")


class ColumnListNeeded(NotSupported):
    """An INSERT into a sharded table names no columns: the proxy adds the table's column
    list (it knows the schema, the router doesn't) at `position` in `text` and plans again."""

    def __init__(self, what: str, database: str, table: str, text: str, position: int):
        super().__init__(what)
        self.database = database
        self.table = table
        self.text = text
        self.position = position


class NoShardForValue(ProxyError):
    """ER_NO_PARTITION_FOR_GIVEN_VALUE: a list/range algorithm has no shard for a key value."""

    code, sqlstate = 1526, "HY000"

    def __init__(self, table: str, value: object):
        super().__init__(f"Table '{table}' has no shard for value {value!r}")


class BackendUnavailable(ProxyError):
    """CR_SERVER_LOST-style: a backend could not be reached or was lost mid-statement."""

    code, sqlstate = 2013, "HY000"


class ConfigError(Exception):
    """A config file that can't be loaded; each problem is 'file:line: key: message'."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class SpecificAccessDenied(ProxyError):
    """ER_SPECIFIC_ACCESS_DENIED_ERROR: e.g. SET GLOBAL, which the proxy never forwards."""

    code, sqlstate = 1227, "42000"

    def __init__(self, privilege: str):
        super().__init__(
            f"Access denied; you need (at least one of) the {privilege} privilege(s) "
            "for this operation"
        )


class NoDefaultForField(ProxyError):
    """ER_NO_DEFAULT_FOR_FIELD: an INSERT into a sharded table that leaves out the shard key
    (what MySQL says for a NOT NULL column without default: the proxy can't route the row)."""

    code, sqlstate = 1364, "HY000"

    def __init__(self, column: str):
        super().__init__(f"Field '{column}' doesn't have a default value")
