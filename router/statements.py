"""Session statements (USE, SET, BEGIN/COMMIT/ROLLBACK, SHOW, DESCRIBE), recognized without
sqlglot: they are frequent (drivers send several per connection), small, and sqlglot parses
many of them only as opaque commands.
"""

from __future__ import annotations

import re

from router.analyze import (
    INFORMATION_SCHEMA,
    SYSTEM_SCHEMAS,
    Session,
    find_database,
    lookup_table,
)
from router.errors import (
    NoDatabaseSelected,
    NotSupported,
    ProxyError,
    SpecificAccessDenied,
    UnknownDatabase,
)
from router.literals import literal_value
from router.metadata import plan_metadata_show
from router.parse import syntax_error
from router.plan import (
    DiagnosticsPlan,
    Plan,
    QueryPlan,
    Route,
    SetPlan,
    SetVar,
    ShowPlan,
    ShowWhat,
    TransactionPlan,
    TxnAction,
    Unit,
    UsePlan,
)
from router.rewrite import render_name
from router.sqltext import IDENT, QUALIFIED_NAME, STRING, qualified_name, split_top_level, unquote

_FLAGS = re.I | re.S

_USE = re.compile(rf"USE\s+(?P<db>{IDENT})", _FLAGS)
_BEGIN = re.compile(r"BEGIN(?:\s+WORK)?", _FLAGS)
_START = re.compile(r"START\s+TRANSACTION\b(?P<modes>.*)", _FLAGS)
_START_MODES = {"READ ONLY", "READ WRITE", "WITH CONSISTENT SNAPSHOT"}
_END = re.compile(
    r"(?P<action>COMMIT|ROLLBACK)(?:\s+WORK)?(?:\s+AND\s+(?P<no_chain>NO\s+)?CHAIN)?"
    r"(?:\s+(?P<no_release>NO\s+)?(?P<release>RELEASE))?",
    _FLAGS,
)

_PLAIN_USER_VARIABLE = re.compile(r"[a-z0-9_$.]+")
_SET = re.compile(r"SET\s+(?P<rest>.*)", _FLAGS)
_SET_GLOBAL = re.compile(
    r"(?:GLOBAL|PERSIST|PERSIST_ONLY)\s|@@(?:GLOBAL|PERSIST|PERSIST_ONLY)\.", re.I
)
_SET_TRANSACTION = re.compile(r"(?:(?P<scope>SESSION|LOCAL)\s+)?TRANSACTION\s+(?P<rest>.*)", _FLAGS)
_SET_NAMES = re.compile(r"NAMES\s+(?P<rest>.*)", _FLAGS)
_SET_CHARSET = re.compile(r"(?:CHARACTER\s+SET|CHARSET)\s+(?P<rest>.*)", _FLAGS)
_SET_OTHER = re.compile(r"(?:PASSWORD|ROLE|DEFAULT\s+ROLE|STATEMENT)\b", re.I)
_ASSIGNMENT = re.compile(
    rf"""(?:
          (?:(?:SESSION|LOCAL)\s+|@@(?:SESSION\.|LOCAL\.)?)?(?P<var>{IDENT})
        | @(?P<user>{IDENT}|{STRING})
        )\s*:?=\s*(?P<value>.*)""",
    re.I | re.S | re.X,
)

_SHOW_DATABASES = re.compile(r"SHOW\s+(?:DATABASES|SCHEMAS)(?P<rest>.*)", _FLAGS)
_SHOW_TABLES = re.compile(
    rf"SHOW\s+(?P<full>FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+(?P<db>{IDENT}))?(?P<rest>.*)", _FLAGS
)
_LIKE = re.compile(rf"\s+LIKE\s+(?P<pattern>{STRING})", _FLAGS)
_SHOW_COLUMNS = re.compile(
    rf"SHOW\s+(?P<head>(?:FULL\s+)?(?:COLUMNS|FIELDS)|INDEX|INDEXES|KEYS)\s+(?:FROM|IN)\s+{QUALIFIED_NAME}"
    rf"(?:\s+(?:FROM|IN)\s+(?P<db>{IDENT}))?(?P<rest>.*)",
    _FLAGS,
)
_SHOW_CREATE_TABLE = re.compile(rf"SHOW\s+CREATE\s+TABLE\s+{QUALIFIED_NAME}\s*", _FLAGS)
# SHOW statements about the server, not about logical tables: the default backend answers.
_SHOW_PASSTHROUGH = re.compile(
    r"SHOW\s+(?:(?:GLOBAL|SESSION|LOCAL)\s+)?(?:VARIABLES|STATUS)\b"
    r"|SHOW\s+(?:ENGINES|COLLATION|CHARACTER\s+SET|CHARSET|PLUGINS|PRIVILEGES)\b"
    r"|SHOW\s+STORAGE\s+ENGINES\b|SHOW\s+(?:FULL\s+)?PROCESSLIST\b",
    re.I,
)
# The session's diagnostics, kept by the proxy (a pooled backend connection has others').
_SHOW_DIAGNOSTICS = re.compile(
    r"SHOW\s+(?P<count>COUNT\s*\(\s*\*\s*\)\s+)?(?P<what>WARNINGS|ERRORS)"
    r"(?:\s+LIMIT\s+(?P<first>\d+)(?:\s*,\s*(?P<second>\d+))?)?\s*",
    _FLAGS,
)
# Words after EXPLAIN / DESCRIBE that start a statement (or EXPLAIN options), not a table name.
_EXPLAIN_WORDS = frozenset(
    {"SELECT", "WITH", "INSERT", "REPLACE", "UPDATE", "DELETE", "EXTENDED", "PARTITIONS", "FORMAT"}
)
_DESCRIBE = re.compile(
    rf"(?:DESCRIBE|DESC|EXPLAIN)\s+{QUALIFIED_NAME}(?P<rest>(?:\s+\S+)?)\s*", _FLAGS
)


def plan_transaction(text: str) -> TransactionPlan:
    """BEGIN / START TRANSACTION / COMMIT / ROLLBACK."""
    if _BEGIN.fullmatch(text):
        return TransactionPlan(TxnAction.BEGIN)
    start = _START.fullmatch(text)
    if start is not None:
        return TransactionPlan(TxnAction.BEGIN, access=_access_mode(text, start["modes"]))
    end = _END.fullmatch(text)
    if end is not None:
        if end["release"] and not end["no_release"]:
            raise NotSupported(f"{end['action'].upper()} RELEASE")
        chain = "CHAIN" in text.upper() and not end["no_chain"]
        return TransactionPlan(TxnAction[end["action"].upper()], chain=chain)
    words = text.upper().split()
    if words[0] == "ROLLBACK" and "TO" in words:
        raise NotSupported("ROLLBACK TO SAVEPOINT")
    if words[0] in ("SAVEPOINT", "RELEASE"):
        raise NotSupported("SAVEPOINT" if words[0] == "SAVEPOINT" else "RELEASE SAVEPOINT")
    raise NotSupported(" ".join(words[:3]))


def _access_mode(text: str, modes: str) -> str | None:
    """START TRANSACTION's READ ONLY / READ WRITE (WITH CONSISTENT SNAPSHOT changes nothing
    here: each backend's branch reads from its own snapshot, taken at its first read)."""
    if not modes.strip():
        return None
    found = [" ".join(m.upper().split()) for m in modes.split(",")]
    if not modes[:1].isspace() or not set(found) <= _START_MODES or len(set(found)) < len(found):
        raise syntax_error(text, len(text) - len(modes.lstrip()))
    access = [m for m in found if m.startswith("READ")]
    if len(access) > 1:
        raise syntax_error(text, len(text))
    return access[0] if access else None


def plan_use(text: str, session: Session) -> UsePlan:
    match = _USE.fullmatch(text)
    if match is None:
        raise syntax_error(text, min(4, len(text)))
    name = unquote(match["db"])
    if name.lower() == INFORMATION_SCHEMA:
        return UsePlan(INFORMATION_SCHEMA)
    database = find_database(session.config, name)
    if database is None:
        raise UnknownDatabase(name)
    return UsePlan(database.name)


def plan_set(text: str) -> SetPlan:
    """SET of session and user variables, NAMES, CHARACTER SET, TRANSACTION."""
    match = _SET.fullmatch(text)
    if match is None:
        raise NotSupported("SET")
    rest = match["rest"].strip()
    if _SET_OTHER.match(rest):
        raise NotSupported("SET " + rest.split()[0].upper())
    transaction = _SET_TRANSACTION.fullmatch(rest)
    if transaction is not None:
        name = "session transaction" if transaction["scope"] else "transaction"
        return SetPlan((SetVar(name, transaction["rest"].strip()),))
    assignments = []
    for part in split_top_level(rest):
        assignments.append(_set_var(part.strip()))
    return SetPlan(tuple(assignments))


def _set_var(part: str) -> SetVar:
    if _SET_GLOBAL.match(part):
        raise SpecificAccessDenied("SUPER")
    names = _SET_NAMES.fullmatch(part)
    if names is not None:
        return SetVar("names", names["rest"].strip())
    charset = _SET_CHARSET.fullmatch(part)
    if charset is not None:
        return SetVar("character set", charset["rest"].strip())
    assignment = _ASSIGNMENT.fullmatch(part)
    if assignment is None:
        raise NotSupported(f"SET {part}")
    value = assignment["value"].strip()
    if assignment["user"] is not None:
        return SetVar(user_variable(assignment["user"]), value)
    return SetVar(unquote(assignment["var"]).lower(), value)


def user_variable(written: str) -> str:
    """A user variable as the session state keeps it, from its name as written after `@`
    (x, `x`, 'x' or "x"): lower case, as names are case-insensitive, and quoted only when it
    must be, so `@name` is valid SQL and one variable has one key."""
    name = str(literal_value(written)) if written[0] in "'\"" else unquote(written)
    name = name.lower()
    if _PLAIN_USER_VARIABLE.fullmatch(name):
        return "@" + name
    return "@`" + name.replace("`", "``") + "`"


def _like(rest: str, what: str) -> str | None:
    """The LIKE pattern after SHOW DATABASES / TABLES; WHERE is refused."""
    rest = rest.strip()
    if not rest:
        return None
    match = _LIKE.fullmatch(" " + rest)
    if match is None:
        raise NotSupported(f"SHOW {what} {rest}")
    return str(literal_value(match["pattern"]))


def plan_show(text: str, session: Session) -> Plan:
    """SHOW DATABASES / TABLES from the config; table metadata from the table's first node."""
    match = _SHOW_DATABASES.fullmatch(text)
    if match is not None:
        return ShowPlan(ShowWhat.DATABASES, like=_like(match["rest"], "DATABASES"))
    metadata = plan_metadata_show(text, session)
    if metadata is not None:
        return metadata
    match = _SHOW_TABLES.fullmatch(text)
    if match is not None:
        database = None
        if match["db"] is not None:
            name = unquote(match["db"])
            found = find_database(session.config, name)
            if found is None:
                raise UnknownDatabase(name)
            database = found.name
        elif session.current() is None:
            raise NoDatabaseSelected()
        like = _like(match["rest"], "TABLES")
        return ShowPlan(ShowWhat.TABLES, full=bool(match["full"]), like=like, database=database)
    match = _SHOW_COLUMNS.fullmatch(text)
    if match is not None:
        qualifier, name = qualified_name(match)
        if match["db"] is not None:
            qualifier = unquote(match["db"])
        head = " ".join(match["head"].upper().split())
        return _on_first_node(session, qualifier, name, f"SHOW {head} FROM ", match["rest"], text)
    match = _SHOW_CREATE_TABLE.fullmatch(text)
    if match is not None:
        qualifier, name = qualified_name(match)
        return _on_first_node(session, qualifier, name, "SHOW CREATE TABLE ", "", text)
    match = _SHOW_DIAGNOSTICS.fullmatch(text)
    if match is not None:
        return _diagnostics(match)
    if _SHOW_PASSTHROUGH.match(text):
        return QueryPlan((Unit(session.default_backend(), text),), Route.UNSHARDED)
    raise NotSupported(" ".join(text.split()[:3]).upper())


def plan_describe(text: str, session: Session) -> Plan | None:
    """DESCRIBE t [col]; None if this is EXPLAIN of a statement rather than of a table."""
    match = _DESCRIBE.fullmatch(text)
    if match is None or match["first"].upper() in _EXPLAIN_WORDS:
        return None
    qualifier, name = qualified_name(match)
    return _on_first_node(session, qualifier, name, "DESCRIBE ", match["rest"], text)


def _diagnostics(match: re.Match[str]) -> DiagnosticsPlan:
    """SHOW [COUNT(*)] WARNINGS|ERRORS [LIMIT [offset,] row_count]."""
    errors = match["what"].upper() == "ERRORS"
    if match["count"] is not None:
        if match["first"] is not None:
            raise syntax_error(match.string, match.start("first"))
        return DiagnosticsPlan(errors, count=True)
    if match["first"] is None:
        return DiagnosticsPlan(errors, count=False)
    if match["second"] is None:
        return DiagnosticsPlan(errors, count=False, limit=int(match["first"]))
    return DiagnosticsPlan(errors, False, int(match["first"]), int(match["second"]))


def _on_first_node(
    session: Session, qualifier: str | None, name: str, head: str, rest: str, text: str
) -> QueryPlan:
    """A table-metadata statement, run on the table's first data node under its physical name."""
    if qualifier is not None and qualifier.lower() in SYSTEM_SCHEMAS:
        return QueryPlan((Unit(session.default_backend(), text),), Route.UNSHARDED)
    table = lookup_table(session, qualifier, name)
    node = table.nodes[0]
    sql = head + render_name(node.table, False) + rest
    return QueryPlan((Unit(node.backend, sql),), Route.UNSHARDED)


def refuse(text: str) -> ProxyError:
    """NotSupported naming the statement kind, for statements the proxy can't route."""
    words = text.split()
    two_word = {"LOCK", "UNLOCK", "LOAD", "XA"}
    kind = " ".join(words[:2]) if words[0].upper() in two_word else words[0]
    return NotSupported(kind.upper())
