"""Planning reads that run on several shards: what each shard runs, and how the proxy merges.

The per-shard statement is the client's own text with a few edits (the same template machinery
as every other route, so a cached plan takes new literal values):
  * hidden columns appended to the select list: sort and group keys that are not selected,
    WEIGHT_STRING() of every string key, the SUM and COUNT an AVG is made of, the partial
    aggregates inside expressions, @@div_precision_increment and @@group_concat_max_len;
  * `LIMIT o, n` becomes `LIMIT o+n` (computed from the literal slots when the plan is used);
  * for grouping across shards: ORDER BY, LIMIT and the aggregate parts of HAVING go (the proxy
    applies them to the merged groups), and COUNT(DISTINCT x) adds x to the GROUP BY.
The merge is a small tree of router.plan primitives that router.merge runs. Where the parts of
the statement sit in its text comes from router.clauses; which subqueries stay within a shard,
from router.locality.

A statement whose shards can't be merged into the answer one server would give gets a reason
instead, and is refused with 1235 when it would run on more than one shard. Shapes:
  * rows that each live on one shard (no grouping, grouping by the shard key, DISTINCT over
    the shard key, window functions partitioned by it): concatenated or merge-sorted, then
    DISTINCT, LIMIT;
  * grouping across shards: per-shard partial aggregates merged per group, then HAVING,
    ORDER BY, LIMIT;
  * UNION [ALL] whose branches each stay within shards, run per shard inside a CTE;
  * subqueries and derived tables only where their rows stay within one shard.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.tokens import Token, TokenType

from router.analyze import (
    KeyResolver,
    Tables,
    ValueReader,
    conjuncts,
    is_nullable,
)
from router.clauses import (
    SELECT_MODIFIERS,
    Item,
    Tokens,
    Unlocatable,
    find_clauses,
    select_items,
    split,
)
from router.errors import NotSupported, ParseError
from router.literals import render_param
from router.locality import (
    aggregates_in,
    check_scopes,
    is_aggregate,
    is_key_column,
    key_uses,
    window_keyed,
    windows_in,
)
from router.plan import (
    Aggregate,
    BitAgg,
    Col,
    Computed,
    Concat,
    Count,
    CountDistinct,
    Distinct,
    Expr,
    Filter,
    GroupConcat,
    Key,
    Limit,
    Lit,
    Merge,
    MergeSort,
    MinMax,
    Op,
    Param,
    Project,
    Rule,
    Sort,
    SortKey,
    Sum,
)
from router.predicates import UNKNOWN, Bindings, Const, Slot
from router.template import Edit, Part, Template

_SORTS_AS_NUMBER = (
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.Neg,
    exp.Predicate,
    exp.Connector,
    exp.Not,
    exp.BitwiseAndAgg,
    exp.BitwiseOrAgg,
    exp.BitwiseXorAgg,
)
_BINARY_OPS: dict[type[exp.Expression], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.IntDiv: "DIV",
    exp.Mod: "%",
    exp.EQ: "=",
    exp.NEQ: "<>",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.NullSafeEQ: "<=>",
    exp.And: "AND",
    exp.Or: "OR",
    exp.Xor: "XOR",
}
DIV_INCREMENT = "@@div_precision_increment"
MAX_LIMIT = (1 << 64) - 1  # the largest LIMIT value MariaDB accepts
GROUP_CONCAT_MAX_LEN = "@@group_concat_max_len"


class _Refused(Exception):
    """Planning found a shape it can't merge exactly; the message says which."""


@dataclass(frozen=True, slots=True)
class LimitSum:
    """Template part: the per-shard row count `offset + count` of `LIMIT offset, count`."""

    offset: int | None  # literal slot, None for no offset
    count: int

    def render(self, texts: tuple[str, ...]) -> str:
        slots = [slot for slot in (self.offset, self.count) if slot is not None]
        check_limit_literals([texts[slot] for slot in sorted(slots)])
        values = [int(texts[slot]) for slot in slots]
        if max(values) > MAX_LIMIT:
            return str(sum(values))  # MariaDB refuses it, as it would the client's
        # `LIMIT 5, 18446744073709551615` (every row from the 6th on): no shard has more rows
        # than LIMIT's largest value, which MariaDB accepts where the sum would not be.
        return str(min(sum(values), MAX_LIMIT))


def limit_error(text: str) -> ParseError:
    return ParseError(
        f"You have an error in your SQL syntax; LIMIT takes integer literals (near '{text}')"
    )


_LIMIT_TOKENS = frozenset(
    {TokenType.NUMBER, TokenType.PLACEHOLDER, TokenType.COMMA, TokenType.OFFSET}
)


def check_limit_literals(texts: Sequence[str]) -> None:
    """Raise limit_error unless a LIMIT's literals (in text order) are digits, as MySQL's
    grammar wants: not b'11', 0x0F or 1e2 (numbers elsewhere), nor NULL (what `LIMIT NULL`
    written as text gets, too). The error names what a fresh plan's does, so a cached plan's
    is the same: first what is not a number at all, by its first token as _bad_limit names it
    reading the clause (`'a'` of `'a' 'b'`), then the first number that is not digits."""
    bad = [text for text in texts if not text.isdigit()]
    for text in bad:
        token = _bad_limit(text, MySQL().tokenize(text))
        if token is not None:
            raise limit_error(token)
    if bad:
        raise limit_error(bad[0])


def _bad_limit(text: str, tokens: Sequence[Token]) -> str | None:
    """The text of what is not an integer literal (or parameter) in a LIMIT clause, if any."""
    for i, token in enumerate(tokens):
        if token.token_type in _LIMIT_TOKENS:
            continue
        if token.token_type is TokenType.DASH and i + 1 < len(tokens):
            following = tokens[i + 1]
            return text[token.start : following.end + 1].replace(" ", "")
        return text[token.start : token.end + 1]
    return None


@dataclass(frozen=True, slots=True)
class BadLimit:
    """Template part for a LIMIT MySQL would reject: the statement fails when it would run on
    several shards, as it does when a parameter gives such a value (one shard: the backend
    reports it)."""

    text: str

    def render(self, texts: tuple[str, ...]) -> str:
        raise limit_error(self.text)


class _InvalidLimit(Exception):
    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class ScatterRead:
    """How a read runs on several shards: the per-shard template and the merge."""

    template: Template
    merge: Merge
    has_params: bool

    def texts(self, bindings: Bindings) -> tuple[str, ...]:
        """Slot texts for rendering the template: a LIMIT taken from prepared-statement
        parameters is computed here, so its markers give way to the parameters' values."""
        texts = bindings.texts
        if not bindings.params:
            return texts
        limit_slots = {
            slot
            for part in self.template.parts
            if isinstance(part, LimitSum)
            for slot in (part.offset, part.count)
            if slot is not None
        }
        if not limit_slots & bindings.params.keys():
            return texts
        filled = list(texts)
        for slot in limit_slots & bindings.params.keys():
            if not texts[slot].startswith("/*?"):
                continue  # already the value's text
            # MariaDB reads a NULL LIMIT parameter as 0 (and so does COM_STMT_PREPARE here).
            value = _limit_param(bindings.params[slot])
            filled[slot] = "0" if value is None else render_param(value)
        return tuple(filled)

    def bind(self, bindings: Bindings) -> Merge:
        """The merge with this statement's literal values in place of its slots."""
        if not self.has_params:
            return self.merge
        return _bind(self.merge, bindings)  # type: ignore[return-value]


def _bind(node: object, bindings: Bindings) -> object:
    if isinstance(node, Param):
        value = Slot(node.slot, node.negate).resolve(bindings)
        if value is UNKNOWN:
            raise NotSupported("this literal in an expression merged across shards")
        return Lit(value)
    if isinstance(node, Limit):
        source = _bind(node.source, bindings)
        _check_limit_slots(node, bindings)
        offset = _limit_value(_bind(node.offset, bindings))
        count = _limit_value(_bind(node.count, bindings))
        return Limit(source, offset, count)  # type: ignore[arg-type]
    if isinstance(node, tuple):
        return tuple(_bind(item, bindings) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            bound = _bind(value, bindings)
            if bound is not value:
                changes[f.name] = bound
        return dataclasses.replace(node, **changes) if changes else node
    return node


def _check_limit_slots(node: Limit, bindings: Bindings) -> None:
    """A LIMIT's slots written in the text must be digits (b'11' is a number elsewhere, not
    here): the statement's shape is cached whatever literal kind its slots held."""
    slots = sorted(
        value.slot
        for value in (node.offset, node.count)
        if isinstance(value, Param) and value.slot not in bindings.params
    )
    check_limit_literals([bindings.texts[slot] for slot in slots])


def _limit_param(value: object) -> object:
    """A LIMIT parameter's value: MariaDB takes a string of digits as its number (PHP's PDO
    binds every parameter as a string)."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _limit_value(value: object) -> int:
    if isinstance(value, Lit):
        value = value.value
    value = _limit_param(value)
    if value is None:  # a parameter not bound yet (COM_STMT_PREPARE)
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ParseError(f"You have an error in your SQL syntax near LIMIT {value!r}")


def _has_params(node: object) -> bool:
    if isinstance(node, Param):
        return True
    if isinstance(node, tuple):
        return any(_has_params(item) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return any(_has_params(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False


def plan_scatter_read(
    tree: exp.Expression,
    text: str,
    slots: list[tuple[int, int]],
    tables: Tables,
    edits: list[Edit],
) -> ScatterRead | str:
    """The scatter plan of a SELECT over sharded tables, or why it can't be merged exactly."""
    try:
        tokens = Tokens(text)
        reason = check_scopes(tree, tables)
        if reason is not None:
            return reason
        if isinstance(tree, exp.SetOperation):
            return _UnionPlanner(tree, text, slots, tables, edits, tokens).plan()
        if not isinstance(tree, exp.Select):
            return "this statement form across several shards"
        planner = _SelectPlanner(tree, text, slots, tables, edits, tokens, None)
        result = planner.result()
        if planner.star and planner.hidden:
            # The width is known only at run time: hidden columns count from the end, so plan
            # again knowing how many there are.
            hidden = len(planner.hidden)
            result = _SelectPlanner(tree, text, slots, tables, edits, tokens, hidden).result()
        return result
    except (_Refused, Unlocatable) as refused:
        return str(refused)
    except NotSupported as refused:
        quoted = re.search(r"'(.*)'", refused.message, re.S)
        return quoted.group(1) if quoted else refused.message
    except Exception as error:
        # A form this planner misreads: refuse it across shards rather than guess.
        return f"this statement form across several shards ({type(error).__name__})"


def _sorts_as_number(node: exp.Expression) -> bool:
    """Whether a value is never a string, so comparing it needs no collation weight."""
    node = node.unnest()
    if isinstance(node, exp.Literal):
        return not node.is_string
    return isinstance(node, _SORTS_AS_NUMBER)


def _star(select: exp.Select) -> bool:
    return any(
        isinstance(item, exp.Star)
        or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))
        for item in select.expressions
    )


# --- one SELECT -------------------------------------------------------------------------------


class _SelectPlanner:
    """Plans one top-level SELECT across shards (see the module docstring for the shapes)."""

    def __init__(
        self,
        select: exp.Select,
        text: str,
        slots: list[tuple[int, int]],
        tables: Tables,
        edits: list[Edit],
        tokens: Tokens,
        hidden_total: int | None,
    ):
        self.select = select
        self.text = text
        self.values = ValueReader(text, slots)
        self.slot_ends = {end: index for index, (_, end) in enumerate(slots)}
        self.tables = tables
        self.base_edits = edits
        self.tokens = tokens
        self.hidden_total = hidden_total
        self.star = _star(select)
        self.hidden: list[tuple[Part, ...]] = []
        self.hidden_index: dict[tuple, int] = {}
        self.edits: list[Edit] = []
        self.removed: list[tuple[int, int]] = []  # spans whose base edits are replaced
        self.group_names: dict[str, int] = {}  # GROUP BY names read as `(SELECT name)`
        select_index = self._select_token()
        self.clauses = find_clauses(tokens, select_index)
        self.items = self._items()

    # -- columns ---------------------------------------------------------------------------

    def _column(self, hidden: int) -> int:
        if self.hidden_total is None:
            if self.star:
                return -1 - hidden  # first pass: any distinct number
            return len(self.items) + hidden
        return hidden - self.hidden_total

    def add_hidden(self, parts: tuple[Part, ...]) -> int:
        """The column of a hidden select item (added once per distinct text)."""
        key = tuple(repr(p) for p in parts)
        if key not in self.hidden_index:
            self.hidden_index[key] = len(self.hidden)
            self.hidden.append(parts)
        return self._column(self.hidden_index[key])

    def copy(self, span: tuple[int, int]) -> tuple[Part, ...]:
        """The statement text in `span` as template parts (literals and tables as slots)."""
        return Template.build(self.text, self.base_edits, span[0], span[1]).parts

    def hidden_copy(self, span: tuple[int, int]) -> int:
        return self.add_hidden(self.copy(span))

    def key_of(
        self,
        column: int,
        node: exp.Expression,
        span: tuple[int, int] | None,
        text: tuple[Part, ...] | None = None,
    ) -> Key:
        """A key for a column holding `node`: with hidden WEIGHT_STRING() and COLLATION() of
        the expression (`text`, else the statement's text at `span`), unless it is never a
        string."""
        if span is None or _sorts_as_number(node) or self._integer_key(node):
            return Key(column)
        text = text if text is not None else self.copy(span)
        weight = self.add_hidden(("WEIGHT_STRING(", *text, ")"))
        return Key(column, weight, self.add_hidden(("COLLATION(", *text, ")")))

    def copy_order_expr(self, node: exp.Expression, span: tuple[int, int]) -> tuple[Part, ...]:
        """An ORDER BY expression as select-list text, where no alias is visible. Inside an
        expression MariaDB looks a name up among the FROM tables' columns before the select
        aliases (a bare `ORDER BY name` the other way round), as `(SELECT name)` in the select
        list does; a name aliasing a window function or aggregate (which that subquery can't
        see) becomes the aliased expression."""
        extra: list[Edit] = []
        for column in node.find_all(exp.Column):
            if column.table or not isinstance(column.this, exp.Identifier):
                continue
            name = column.name.lower()
            item = next((i for i in self.items if i.alias == name and i.span), None)
            start = column.this.meta.get("start")
            if item is None or item.span is None or start is None:
                continue
            end = column.this.meta["end"] + 1
            if windows_in(item.node) or aggregates_in(item.node):
                extra.append((start, end, ("(", *self.copy(item.span), ")")))
            else:
                extra.append((start, end, ("(SELECT ", self.text[start:end], ")")))
        if not extra:
            return self.copy(span)
        inside = [(a, b) for a, b, _ in extra]
        edits = [e for e in self.base_edits if not any(a <= e[0] < b for a, b in inside)]
        return Template.build(self.text, edits + extra, span[0], span[1]).parts

    def _integer_key(self, node: exp.Expression) -> bool:
        """The shard key of a `mod` table is an integer column (the algorithm refuses others)."""
        use = KeyResolver(self.tables).key_use(node.unnest())
        return use is not None and use.table.algorithm_name == "mod"

    def variable(self, name: str) -> int:
        return self.add_hidden((name,))

    # -- locating the parts of the SELECT ----------------------------------------------------

    def _select_token(self) -> int:
        for i, token in enumerate(self.tokens.list):
            if token.token_type is TokenType.SELECT and self.tokens.depth[i] == 0:
                return i
        raise _Refused("this statement form across several shards")

    def _items(self) -> list[Item]:
        return select_items(self.tokens, self.clauses, self.select)

    def clause_span(self, name: str) -> tuple[int, int] | None:
        """[start, end) of a whole clause, keyword included, up to the next clause."""
        if name not in self.clauses.starts:
            return None
        start = self.tokens.list[self.clauses.starts[name]].start
        end_index = self.clauses.clause_end(name)
        end = (
            self.tokens.list[end_index].start
            if end_index < len(self.tokens.list)
            else self._statement_end()
        )
        return start, end

    def _statement_end(self) -> int:
        return self.tokens.list[-1].end + 1 if self.tokens.list else len(self.text)

    def clause_items(self, name: str, count: int) -> list[tuple[int, int]]:
        """Text spans of the comma-separated items of ORDER BY / GROUP BY, without ASC/DESC."""
        start = self.clauses.starts[name] + 1
        end = self.clauses.clause_end(name)
        if name == "group":
            for i in range(start, end):
                if (
                    self.tokens.list[i].token_type is TokenType.WITH
                    and self.tokens.depth[i] == self.clauses.depth
                ):
                    end = i
                    break
        pieces = split(self.tokens, start, end, self.clauses.depth)
        if len(pieces) != count:
            raise _Refused(f"this {name.upper()} BY form across several shards")
        spans = []
        for a, b in pieces:
            if b > a and self.tokens.list[b].token_type in (TokenType.ASC, TokenType.DESC):
                b -= 1
            spans.append(self.tokens.span(a, b))
        return spans

    def replace(self, span: tuple[int, int], parts: tuple[Part, ...] | str) -> None:
        self.removed.append(span)
        self.edits.append((span[0], span[1], parts))

    # -- resolving references ----------------------------------------------------------------

    def item_named(self, node: exp.Expression) -> Item | None:
        """The select item an ORDER BY / GROUP BY / HAVING expression names, if any: an
        ordinal, an alias, or the same expression."""
        node = node.unnest() if isinstance(node, exp.Paren) else node
        if isinstance(node, exp.Literal) and not node.is_string:
            try:
                position = int(node.this)
            except ValueError:
                return None
            if not 1 <= position <= len(self.items) and not self.star:
                raise _Refused("an ORDER BY or GROUP BY position outside the select list")
            if self.star:
                # Positions count the columns `*` expands to; the type is known at run time
                # only, so a string there is refused then (no weight to compare it by).
                return Item(exp.Null(), None, None, position - 1)
            return self.items[position - 1]
        if (
            isinstance(node, exp.Column)
            and not node.table
            and isinstance(node.this, exp.Identifier)
        ):
            name = node.name.lower()
            for item in self.items:
                if item.alias == name:
                    return item
            for item in self.items:
                if (
                    item.alias is None
                    and isinstance(item.node, exp.Column)
                    and item.node.name.lower() == name
                ):
                    return item
        for item in self.items:
            if item.node == node:
                return item
        return None

    def literal(self, node: exp.Expression) -> Expr:
        """A literal (by its slot, so a cached plan takes new values) or NULL/TRUE/FALSE."""
        marker = self._marker_slot(node)
        if marker is not None:
            return Param(marker)
        source = self.values.source(node)
        if isinstance(source, Slot):
            return Param(source.index, source.negate)
        if isinstance(source, Const):
            return Lit(source.value)
        raise _Refused(f"this literal in an expression merged across shards: {node.sql('mysql')}")

    def _marker_slot(self, node: exp.Expression) -> int | None:
        """The slot of a prepared-statement parameter kept as a marker (`/*?N*/?`).

        sqlglot keeps no position for a `?`: it is matched with the `?` tokens of its clause
        (select item, HAVING, ORDER BY) in order, as the clause's tree lists them."""
        node = node.unnest()
        if not isinstance(node, exp.Placeholder):
            return None
        clause: exp.Expression = node
        while clause.parent is not None and clause.parent is not self.select:
            clause = clause.parent
        span = self._clause_text(clause)
        if span is None:
            return None
        placeholders = [n for n in clause.walk() if isinstance(n, exp.Placeholder)]
        tokens = [
            t
            for t in self.tokens.list
            if t.token_type is TokenType.PLACEHOLDER and span[0] <= t.start < span[1]
        ]
        if len(tokens) != len(placeholders):
            return None
        position = next(i for i, p in enumerate(placeholders) if p is node)
        return self.slot_ends.get(tokens[position].start + 1)

    def _clause_text(self, clause: exp.Expression) -> tuple[int, int] | None:
        """Where a direct part of the SELECT sits in the text."""
        if clause.arg_key == "expressions":
            for item, node in zip(self.items, self.select.expressions, strict=True):
                if node is clause:
                    return item.span
            return None
        if clause.arg_key in ("having", "order"):
            return self.clause_span(clause.arg_key)
        return None

    def _limit_slots(self) -> tuple[int | None, int]:
        """(offset slot, count slot) of the LIMIT clause, from its tokens."""
        start = self.clauses.starts["limit"] + 1
        end = self.clauses.clause_end("limit")
        values = [
            t
            for t in self.tokens.list[start:end]
            if t.token_type in (TokenType.NUMBER, TokenType.PLACEHOLDER)
        ]
        bad = _bad_limit(self.text, self.tokens.list[start:end])
        if bad is not None:
            raise _InvalidLimit(bad)
        offset_word = any(t.token_type is TokenType.OFFSET for t in self.tokens.list[start:end])

        def slot(token: Token) -> int:
            if token.token_type is TokenType.PLACEHOLDER:
                found = self.slot_ends.get(token.start + 1)
            else:
                found = self.values.slot_starts.get(token.start)
            if found is None:
                raise _Refused("LIMIT without literal values across several shards")
            return found

        if len(values) == 1:
            return None, slot(values[0])
        if len(values) == 2:
            first, second = slot(values[0]), slot(values[1])
            return (second, first) if offset_word else (first, second)
        raise _Refused("this LIMIT form across several shards")

    # -- shapes ----------------------------------------------------------------------------

    def result(self) -> ScatterRead:
        select = self.select
        if select.args.get("group") is not None and select.args["group"].args.get("rollup"):
            raise _Refused("GROUP BY ... WITH ROLLUP across several shards")
        if select.args.get("into") is not None:
            raise _Refused("SELECT ... INTO")
        for modifier in ("SQL_CALC_FOUND_ROWS",):
            if modifier in self.text.upper() and any(
                t.text.upper() == modifier for t in self.tokens.list
            ):
                raise _Refused("SQL_CALC_FOUND_ROWS across several shards")
        group = select.args.get("group")
        group_nodes = list(group.expressions) if group is not None else []
        having = select.args.get("having")
        order = select.args.get("order")
        aggregated = bool(group_nodes) or any(aggregates_in(item.node) for item in self.items)
        aggregated = aggregated or (having is not None and bool(aggregates_in(having.this)))
        if order is not None and not aggregated:
            aggregated = any(aggregates_in(o.this) for o in order.expressions)
        windows = [w for item in self.items for w in windows_in(item.node)]
        if order is not None:
            windows += [w for o in order.expressions for w in windows_in(o.this)]
        for window in windows:
            if not window_keyed(window, self.tables, select):
                raise _Refused(
                    "a window function not partitioned by the shard key across several shards"
                )
        if aggregated and not self._grouped_by_key(group_nodes):
            if windows:
                raise _Refused("window functions over groups merged across several shards")
            merge = self._global_aggregate(group_nodes)
        else:
            merge = self._row_local(group_nodes if aggregated else None)
        if self.hidden:
            insert_at = self.tokens.list[self.clauses.starts["from"]].start
            parts: list[Part] = []
            for hidden in self.hidden:
                parts.append(", ")
                parts.extend(hidden)
            parts.append(" ")
            self.edits.append((insert_at, insert_at, tuple(parts)))
            merge = Project(merge, len(self.hidden))
        template = self._template()
        return ScatterRead(template, merge, _has_params(merge))

    def _template(self) -> Template:
        def kept(edit: Edit) -> bool:
            return not any(a <= edit[0] and edit[1] <= b for a, b in self.removed)

        edits = [e for e in self.base_edits if kept(e)] + self.edits
        return Template.build(self.text, edits)

    def _grouped_by_key(self, group_nodes: list[exp.Expression]) -> bool:
        for node in group_nodes:
            item = self.item_named(node) if isinstance(node, exp.Literal) else None
            target = item.node if item is not None else node
            if is_key_column(target, self.tables, self.select):
                return True
        return False

    def _distinct_is_local(self) -> bool:
        """DISTINCT rows never repeat across shards when the select list has the shard key."""
        for item in self.items:
            node = item.node
            if isinstance(node, exp.Star):
                if any(True for _ in key_uses(self.select, self.tables)):
                    return True
            elif isinstance(node, exp.Column) and isinstance(node.this, exp.Star):
                use = self.tables.use_named(node, node.table.lower())
                if use is not None and use.sharded and not is_nullable(use):
                    return True
            elif is_key_column(node, self.tables, self.select):
                return True
        return False

    def _limit(self, merge: Merge, per_shard: bool) -> Merge:
        """Limit(offset, count) over `merge`; rewrites the units' LIMIT to offset+count, or
        drops it when each unit must return all its rows."""
        if self.select.args.get("limit") is None:
            return merge
        span = self.clause_span("limit")
        if span is None:
            raise _Refused("this LIMIT form across several shards")
        try:
            offset_slot, count_slot = self._limit_slots()
        except _InvalidLimit as invalid:
            self.replace(span, ("LIMIT ", BadLimit(invalid.text), " "))
            return Limit(merge, 0, 0)
        if per_shard:
            self.replace(span, ("LIMIT ", LimitSum(offset_slot, count_slot), " "))
        else:
            self.replace(span, " ")
        offset = Param(offset_slot) if offset_slot is not None else 0
        return Limit(merge, offset, Param(count_slot))

    # rows that each live on one shard

    def _row_local(self, group_nodes: list[exp.Expression] | None) -> Merge:
        """No grouping, or grouping by the shard key: each unit's rows are final rows."""
        select = self.select
        order = select.args.get("order")
        keys: list[SortKey] = []
        if order is not None:
            spans = self.clause_items("order", len(order.expressions))
            for ordered, span in zip(order.expressions, spans, strict=True):
                if isinstance(ordered.this, exp.Null):
                    continue
                keys.append(
                    SortKey(self._row_key(ordered.this, span), bool(ordered.args.get("desc")))
                )
        elif group_nodes:
            # MariaDB sorts grouped rows by the GROUP BY keys when there is no ORDER BY.
            spans = self.clause_items("group", len(group_nodes))
            for node, span in zip(group_nodes, spans, strict=True):
                named = self._group_name_key(node, span)
                keys.append(SortKey(named if named is not None else self._row_key(node, span)))
        merge: Merge = MergeSort(tuple(keys)) if keys else Concat()
        ordered_distinct = False
        if select.args.get("distinct") is not None and not self._distinct_is_local():
            if self.star:
                raise _Refused("SELECT DISTINCT * across several shards")
            distinct_keys = tuple(
                self.key_of(item.column, item.node, item.span)  # type: ignore[arg-type]
                for item in self.items
            )
            visible = {item.column for item in self.items}
            if any(k.key.column not in visible for k in keys):
                raise _Refused("SELECT DISTINCT ordered by a column it doesn't select")
            if not keys and order is None and "window" not in self.clauses.starts:
                # Units sorted by the select list: equal rows meet, so the DISTINCT streams
                # (router.merge) instead of holding every distinct row seen.
                merge = MergeSort(tuple(SortKey(k) for k in distinct_keys))
                ordered_distinct = True
            merge = Distinct(merge, distinct_keys)
        if select.args.get("distinct") is not None and self.hidden:
            if self.star:
                raise _Refused("SELECT DISTINCT * with ORDER BY across several shards")
            self._distinct_as_group_by(group_nodes, ordered_distinct)
        elif ordered_distinct:
            at = self._clause_start("order", "limit", "for", "lock")
            self.edits.append((at, at, f" ORDER BY {self._positions()} "))
        return self._limit(merge, per_shard=True)

    def _distinct_as_group_by(
        self, group_nodes: list[exp.Expression] | None, ordered: bool = False
    ) -> None:
        """Each unit groups by the select list instead of using DISTINCT: the hidden weight
        columns must not split rows that DISTINCT calls equal ('a' and 'a ' weigh differently),
        or a unit's LIMIT would keep duplicates in place of rows the answer needs. `ordered`:
        and sorts by it (MySQL 8 no longer sorts what it groups)."""
        select = self.select
        if group_nodes or select.args.get("having") is not None:
            raise _Refused("SELECT DISTINCT with GROUP BY or HAVING across several shards")
        if any(windows_in(item.node) for item in self.items):
            raise _Refused("SELECT DISTINCT with window functions across several shards")
        for i in range(self.clauses.select + 1, self.clauses.end):
            token = self.tokens.list[i]
            if token.text.upper() in ("DISTINCT", "DISTINCTROW"):
                self.edits.append((token.start, token.end + 1, ""))
                break
            if token.text.upper() not in SELECT_MODIFIERS:
                raise _Refused("this SELECT DISTINCT form across several shards")
        positions = self._positions()
        at = self._clause_start("window", "order", "limit", "for", "lock")
        order = f"ORDER BY {positions} " if ordered else ""
        self.edits.append((at, at, f" GROUP BY {positions} {order}"))

    def _positions(self) -> str:
        """The select list by position: `1, 2, ...`."""
        return ", ".join(str(i + 1) for i in range(len(self.items)))

    def _clause_start(self, *names: str) -> int:
        """Where the first of these clauses the statement has starts (else its end): where a
        clause that comes before all of them goes."""
        for name in names:
            if name in self.clauses.starts:
                return self.tokens.list[self.clauses.starts[name]].start
        return self._statement_end()

    def _group_name_key(self, node: exp.Expression, span: tuple[int, int]) -> Key | None:
        """The key of a GROUP BY name that is also the alias of another select item, else None.

        GROUP BY looks a name up among the columns of the FROM tables before the select
        aliases (ORDER BY the other way round), so `SELECT age DIV 10 AS age ... GROUP BY age`
        groups by the column. Only the shards know which columns exist: each returns the key
        as `(SELECT age)`, which MariaDB resolves in the same order."""
        if (
            not isinstance(node, exp.Column)
            or node.table
            or not isinstance(node.this, exp.Identifier)
        ):
            return None
        name = node.name.lower()
        item = next((i for i in self.items if i.alias == name), None)
        if item is None or (isinstance(item.node, exp.Column) and item.node.name.lower() == name):
            return None
        text = ("(SELECT ", *self.copy(span), ")")
        key = self.key_of(self.add_hidden(text), node, span, text)
        self.group_names[name] = key.column
        return key

    def _row_key(self, node: exp.Expression, span: tuple[int, int]) -> Key:
        item = self.item_named(node)
        if item is not None:
            if item.column is not None:
                return self.key_of(item.column, item.node, item.span)
            return self.key_of(self.hidden_copy(item.span), item.node, item.span)
        if isinstance(node, exp.Literal) and not node.is_string:
            raise _Refused("ORDER BY a constant across several shards")
        text = self.copy_order_expr(node, span)
        return self.key_of(self.add_hidden(text), node, span, text)

    # grouping across shards

    def _global_aggregate(self, group_nodes: list[exp.Expression]) -> Merge:
        if self.star:
            raise _Refused("SELECT * with GROUP BY or aggregates across several shards")
        select = self.select
        self.rules: dict[int, Rule] = {}
        self.distinct_args: list[tuple[int, int]] = []
        self.uses_division = False
        # Group keys.
        group_keys: list[Key] = []
        group_spans = self.clause_items("group", len(group_nodes)) if group_nodes else []
        for node, span in zip(group_nodes, group_spans, strict=True):
            named = self._group_name_key(node, span)
            if named is not None:
                group_keys.append(named)
                continue
            item = self.item_named(node)
            if item is not None and not aggregates_in(item.node):
                assert item.column is not None
                group_keys.append(self.key_of(item.column, item.node, item.span))
            elif item is not None:
                raise _Refused("GROUP BY an aggregate")
            else:
                group_keys.append(self.key_of(self.hidden_copy(span), node, span))
        # Select list.
        for item in self.items:
            assert item.column is not None
            found = aggregates_in(item.node)
            if not found:
                continue
            if item.node in found:
                self._bare_aggregate(item.node, item.column, item.span)
            else:
                self.rules[item.column] = Computed(self._agg_expr(item.node))
        # HAVING: aggregate conditions in the proxy, the others stay on the shards.
        condition = self._having()
        # ORDER BY, or the GROUP BY keys as MariaDB sorts groups by default.
        order = select.args.get("order")
        sort_keys: list[SortKey] = []
        if order is not None:
            spans = self.clause_items("order", len(order.expressions))
            for ordered, span in zip(order.expressions, spans, strict=True):
                if isinstance(ordered.this, exp.Null):
                    continue
                key = self._group_sort_key(ordered.this, span, group_keys)
                sort_keys.append(SortKey(key, bool(ordered.args.get("desc"))))
            self.replace(self.clause_span("order"), " ")  # type: ignore[arg-type]
        else:
            sort_keys = [SortKey(key) for key in group_keys]
        if select.args.get("distinct") is not None and group_nodes:
            visible = {item.column for item in self.items}
            if not all(k.column in visible for k in group_keys):
                raise _Refused("SELECT DISTINCT with GROUP BY keys it doesn't select")
        if self.distinct_args:
            self._extend_group_by(group_nodes)
        if self.uses_division:
            division = self.variable(DIV_INCREMENT)
            self.rules = {
                column: (
                    Computed(_with_increment(rule.expr, division))
                    if isinstance(rule, Computed)
                    else rule
                )
                for column, rule in self.rules.items()
            }
        merge: Merge = Aggregate(
            Concat(), tuple(group_keys), tuple(sorted(self.rules.items())), not group_nodes
        )
        if condition is not None:
            if self.uses_division:
                condition = _with_increment(condition, self.variable(DIV_INCREMENT))
            merge = Filter(merge, condition)
        if sort_keys:
            merge = Sort(merge, tuple(sort_keys))
        return self._limit(merge, per_shard=False)

    def _bare_aggregate(self, node: exp.Expression, column: int, span: tuple[int, int]) -> None:
        """The rule for a column that is exactly one aggregate call."""
        rule = self._partial_rule(node, column, span)
        if isinstance(rule, Expr):
            self.rules[column] = Computed(rule)
        else:
            self.rules[column] = rule

    def _partial_rule(
        self, node: exp.Expression, column: int, span: tuple[int, int]
    ) -> Rule | Expr:
        """How the partial values of aggregate `node`, returned in `column`, merge."""
        inner = node.this if isinstance(node, exp.AggFunc) else None
        distinct = isinstance(inner, exp.Distinct)
        if isinstance(node, exp.Count):
            if not distinct:
                return Count()
            assert isinstance(inner, exp.Distinct)
            keys = []
            spans = self._distinct_arg_spans(node, len(inner.expressions))
            for arg, arg_span in zip(inner.expressions, spans, strict=True):
                keys.append(self.key_of(self.hidden_copy(arg_span), arg, arg_span))
                self.distinct_args.append(arg_span)
            return CountDistinct(tuple(keys))
        if distinct:
            raise _Refused(f"{_name(node)}(DISTINCT ...) across several shards")
        if isinstance(node, exp.Sum):
            return Sum()
        if isinstance(node, exp.Min | exp.Max):
            return MinMax(self.key_of(column, node, span), isinstance(node, exp.Max))
        if isinstance(node, exp.BitwiseAndAgg | exp.BitwiseOrAgg | exp.BitwiseXorAgg):
            op = {exp.BitwiseAndAgg: "AND", exp.BitwiseOrAgg: "OR"}.get(type(node), "XOR")
            return BitAgg(op)
        if isinstance(node, exp.Avg):
            call = self.tokens.call_span(node)
            args = self.copy((self.tokens.list[self.tokens.index(node) + 2].start, call[1] - 1))
            total = self.add_hidden(("SUM(", *args, ")"))
            count = self.add_hidden(("COUNT(", *args, ")"))
            self.rules[total] = Sum()
            self.rules[count] = Count()
            self.uses_division = True
            return Op("/", (Col(total), Col(count)))
        if isinstance(node, exp.GroupConcat):
            if isinstance(node.this, exp.Order | exp.Distinct) or isinstance(
                getattr(node.this, "this", None), exp.Distinct
            ):
                raise _Refused("GROUP_CONCAT with DISTINCT or ORDER BY across several shards")
            separator_node = node.args.get("separator")
            separator: Param | Lit = (
                Lit(",") if separator_node is None else self._separator(separator_node)
            )
            return GroupConcat(separator, self.variable(GROUP_CONCAT_MAX_LEN))
        raise _Refused(f"{_name(node)}() across several shards")

    def _separator(self, node: exp.Expression) -> Param | Lit:
        value = self.literal(node)
        if not isinstance(value, Param | Lit):
            raise _Refused("this GROUP_CONCAT separator across several shards")
        return value

    def _distinct_arg_spans(self, node: exp.Expression, count: int) -> list[tuple[int, int]]:
        """The texts of the arguments of `COUNT(DISTINCT a, b)`, read from its tokens: sqlglot
        keeps no position for many expressions (CAST, CASE, BINARY x, TRIM), so a span built
        from the parts it does locate would cover `city` of `CAST(city AS BINARY)`."""
        open_paren = self.tokens.index(node) + 1
        close = self.tokens.closing(open_paren)
        first = open_paren + 1
        if first >= close or self.tokens.list[first].text.upper() != "DISTINCT":
            raise _Refused("this COUNT(DISTINCT ...) form across several shards")
        pieces = split(self.tokens, first + 1, close, self.tokens.depth[open_paren] + 1)
        if len(pieces) != count:
            raise _Refused("this COUNT(DISTINCT ...) form across several shards")
        return [self.tokens.span(a, b) for a, b in pieces]

    def _token_range(self, node: exp.Expression) -> tuple[int, int]:
        """First and last token of an expression, found from its token-backed parts."""
        indexes = []
        for part in node.walk():
            start = part.meta.get("start") if isinstance(part, exp.Expression) else None
            if start is not None and start in self.tokens.by_start:
                index = self.tokens.by_start[start]
                indexes.append(index)
                if (
                    isinstance(part, exp.Func)
                    and index + 1 < len(self.tokens.list)
                    and self.tokens.list[index + 1].token_type is TokenType.L_PAREN
                ):
                    indexes.append(self.tokens.closing(index + 1))
        if not indexes or not isinstance(node, exp.Column | exp.Func | exp.Literal):
            raise _Refused("this aggregate argument across several shards")
        return min(indexes), max(indexes)

    def _agg_column(self, node: exp.Expression) -> Expr:
        """A hidden partial aggregate for an aggregate call inside an expression."""
        span = self.tokens.call_span(node)
        column = self.hidden_copy(span)
        rule = self._partial_rule(node, column, span)
        if isinstance(rule, Expr):
            return rule
        self.rules[column] = rule
        return Col(column)

    def _agg_expr(self, node: exp.Expression) -> Expr:
        """An expression over aggregates as a merge expression over (hidden) columns."""
        if isinstance(node, exp.Paren):
            return self._agg_expr(node.this)
        if is_aggregate(node):
            return self._agg_column(node)
        if self.values.source(node) is not None or self._marker_slot(node) is not None:
            return self.literal(node)
        if isinstance(node, exp.Div):
            self.uses_division = True
            return Op("/", (self._agg_expr(node.this), self._agg_expr(node.expression)))
        op = _BINARY_OPS.get(type(node))
        if op is not None:
            return Op(op, (self._agg_expr(node.this), self._agg_expr(node.expression)))
        if isinstance(node, exp.Neg):
            return Op("NEG", (self._agg_expr(node.this),))
        if isinstance(node, exp.Not):
            inner = node.this
            if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
                return Op("IS NOT NULL", (self._agg_expr(inner.this),))
            return Op("NOT", (self._agg_expr(inner),))
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return Op("IS NULL", (self._agg_expr(node.this),))
        if isinstance(node, exp.Between):
            value = self._agg_expr(node.this)
            low = self._agg_expr(node.args["low"])
            high = self._agg_expr(node.args["high"])
            return Op("AND", (Op(">=", (value, low)), Op("<=", (value, high))))
        if isinstance(node, exp.In) and not node.args.get("query") and node.expressions:
            value = self._agg_expr(node.this)
            tests = tuple(Op("=", (value, self._agg_expr(e))) for e in node.expressions)
            return tests[0] if len(tests) == 1 else Op("OR", tests)
        if isinstance(node, exp.Coalesce):
            args = [node.this, *node.expressions]
            return Op("COALESCE", tuple(self._agg_expr(a) for a in args))
        if isinstance(node, exp.If):
            false = node.args.get("false")
            return Op(
                "IF",
                (
                    self._agg_expr(node.this),
                    self._agg_expr(node.args["true"]),
                    self._agg_expr(false) if false is not None else Lit(None),
                ),
            )
        if isinstance(node, exp.Nullif):
            return Op("NULLIF", (self._agg_expr(node.this), self._agg_expr(node.expression)))
        if isinstance(node, exp.Abs):
            return Op("ABS", (self._agg_expr(node.this),))
        if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
            grouped = None if node.table else self.group_names.get(node.name.lower())
            if grouped is not None:
                return Col(grouped)  # HAVING takes a GROUP BY name before a select alias
            item = self.item_named(node) if not node.table else None
            if item is not None and item.node is not node:
                if item.column is None:
                    raise _Refused("this column reference across several shards")
                if aggregates_in(item.node) and item.column not in self.rules:
                    raise _Refused("a reference to an aggregate defined later")
                return Col(item.column)
            first, last = self._token_range(node)
            return Col(self.hidden_copy(self.tokens.span(first, last)))
        raise _Refused(
            f"{type(node).__name__.upper()} in an expression over aggregates across shards"
        )

    def _having(self) -> Expr | None:
        having = self.select.args.get("having")
        if having is None:
            return None
        parts = list(conjuncts(having.this))
        in_proxy = [p for p in parts if self._needs_groups(p)]
        if not in_proxy:
            return None
        span = self.clause_span("having")
        assert span is not None
        if len(in_proxy) == len(parts):
            self.replace(span, " ")
        else:
            pieces = self._having_pieces(len(parts))
            kept = [
                piece for piece, part in zip(pieces, parts, strict=True) if part not in in_proxy
            ]
            new: list[Part] = ["HAVING "]
            for number, piece in enumerate(kept):
                if number:
                    new.append(" AND ")
                new.extend(("(", *self.copy(piece), ")"))
            new.append(" ")
            self.replace(span, tuple(new))
        exprs = [self._agg_expr(p) for p in in_proxy]
        return exprs[0] if len(exprs) == 1 else Op("AND", tuple(exprs))

    def _needs_groups(self, condition: exp.Expression) -> bool:
        """Whether a HAVING condition looks at aggregates (its own or through an alias)."""
        if aggregates_in(condition):
            return True
        for column in condition.find_all(exp.Column):
            if column.table:
                continue
            for item in self.items:
                if item.alias == column.name.lower() and aggregates_in(item.node):
                    return True
        return False

    def _having_pieces(self, count: int) -> list[tuple[int, int]]:
        start = self.clauses.starts["having"] + 1
        end = self.clauses.clause_end("having")
        pieces = []
        piece_start = start
        between = 0
        for i in range(start, end):
            token = self.tokens.list[i]
            if self.tokens.depth[i] != self.clauses.depth:
                continue
            if token.token_type is TokenType.BETWEEN:
                between += 1
            elif token.token_type is TokenType.AND or token.text == "&&":
                if between:
                    between -= 1
                    continue
                pieces.append(self.tokens.span(piece_start, i - 1))
                piece_start = i + 1
        pieces.append(self.tokens.span(piece_start, end - 1))
        if len(pieces) != count:
            raise _Refused("this HAVING form across several shards")
        return pieces

    def _group_sort_key(
        self, node: exp.Expression, span: tuple[int, int], group_keys: list[Key]
    ) -> Key:
        item = self.item_named(node)
        if item is not None:
            assert item.column is not None
            for key in group_keys:
                if key.column == item.column:
                    return key
            rule = self.rules.get(item.column)
            if isinstance(rule, MinMax):
                return rule.key
            if rule is not None:
                return Key(item.column)
            return self.key_of(item.column, item.node, item.span)
        if isinstance(node, exp.Literal) and not node.is_string:
            raise _Refused("ORDER BY a constant across several shards")
        if aggregates_in(node):
            if is_aggregate(node):
                column = self.hidden_copy(self.tokens.call_span(node))
                rule = self._partial_rule(node, column, self.tokens.call_span(node))
                self.rules[column] = Computed(rule) if isinstance(rule, Expr) else rule
                return rule.key if isinstance(rule, MinMax) else Key(column)
            column = self.hidden_copy(span)
            self.rules[column] = Computed(self._agg_expr(node))
            return Key(column)
        names = {c.name.lower() for c in node.find_all(exp.Column) if not c.table}
        if any(i.alias in names and aggregates_in(i.node) for i in self.items):
            # A name that is a table's column, or else an error (as in MariaDB: 1247).
            return self.key_of(self.hidden_copy(span), node, span)
        text = self.copy_order_expr(node, span)
        return self.key_of(self.add_hidden(text), node, span, text)

    def _extend_group_by(self, group_nodes: list[exp.Expression]) -> None:
        """COUNT(DISTINCT x): each unit groups by x as well, so the proxy sees every x."""
        args: list[Part] = []
        for number, span in enumerate(self.distinct_args):
            if number or group_nodes:
                args.append(", ")
            args.extend(self.copy(span))
        if group_nodes:
            last = self.clause_items("group", len(group_nodes))[-1][1]
            self.edits.append((last, last, tuple(args)))
            return
        at = self._clause_start("having", "window", "order", "limit", "for", "lock")
        self.edits.append((at, at, (" GROUP BY ", *args, " ")))


def _with_increment(expr: Expr, column: int) -> Expr:
    """Division nodes given the session's div_precision_increment column."""
    if isinstance(expr, Op):
        args = tuple(_with_increment(a, column) for a in expr.args)
        if expr.name == "/" and len(args) == 2:
            args = (*args, Col(column))
        return Op(expr.name, args)
    return expr


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.upper()
    return node.sql_name() if hasattr(node, "sql_name") else type(node).__name__.upper()


# --- UNION --------------------------------------------------------------------------------------


class _UnionPlanner:
    """UNION [ALL] across shards. Each branch's rows live on one shard (checked), so UNION ALL
    just concatenates; ORDER BY, LIMIT and UNION's duplicate removal run over the union,
    which each unit computes inside a CTE so that WEIGHT_STRING() sees the union's columns."""

    def __init__(
        self,
        tree: exp.SetOperation,
        text: str,
        slots: list[tuple[int, int]],
        tables: Tables,
        edits: list[Edit],
        tokens: Tokens,
    ):
        self.tree = tree
        self.text = text
        self.slot_starts = {start: index for index, (start, _) in enumerate(slots)}
        self.slot_ends = {end: index for index, (_, end) in enumerate(slots)}
        self.tables = tables
        self.base_edits = edits
        self.tokens = tokens

    def plan(self) -> ScatterRead:
        tree = self.tree
        if not isinstance(tree, exp.Union):
            raise _Refused("INTERSECT or EXCEPT across several shards")
        branches = _branches(tree)
        kinds = {bool(node.args.get("distinct")) for node in _unions(tree)}
        if len(kinds) > 1:
            raise _Refused("mixing UNION and UNION ALL across several shards")
        distinct = kinds == {True}
        for branch in branches:
            self._check_branch(branch, distinct)
        order = tree.args.get("order")
        limit = tree.args.get("limit")
        if tree.args.get("with") is not None:
            raise _Refused("WITH ... UNION across several shards")
        if not distinct and order is None:
            if limit is None:
                return ScatterRead(Template.build(self.text, self.base_edits), Concat(), False)
            return self._limited_concat(limit)
        return self._wrapped(branches[0], distinct, order, limit)

    def _check_branch(self, branch: exp.Select, distinct: bool) -> None:
        if branch.args.get("limit") is not None or branch.args.get("order") is not None:
            raise _Refused("ORDER BY or LIMIT inside a UNION branch across several shards")
        if branch.args.get("group") is not None or any(
            aggregates_in(item) for item in branch.expressions
        ):
            group = branch.args.get("group")
            keyed = group is not None and any(
                is_key_column(node, self.tables, branch) for node in group.expressions
            )
            if not keyed:
                raise _Refused("grouping inside a UNION branch across several shards")
        if branch.args.get("distinct") is not None and not distinct:
            raise _Refused("SELECT DISTINCT inside UNION ALL across several shards")
        for window in windows_in(branch):
            if not window_keyed(window, self.tables, branch):
                raise _Refused(
                    "a window function not partitioned by the shard key across several shards"
                )

    def _tail(self) -> tuple[int, int, int]:
        """Text offsets: end of the last branch, start of the trailing ORDER BY / LIMIT, end."""
        depth0 = [
            i
            for i, token in enumerate(self.tokens.list)
            if self.tokens.depth[i] == 0
            and token.token_type in (TokenType.ORDER_BY, TokenType.LIMIT)
        ]
        # Trailing clauses of the union come after the last branch.
        last_branch_select = max(
            i
            for i, token in enumerate(self.tokens.list)
            if token.token_type is TokenType.SELECT
            and (self.tokens.depth[i] == 0 or self.tokens.depth[i] == 1)
        )
        tail = [i for i in depth0 if i > last_branch_select]
        end = self.tokens.list[-1].end + 1
        if not tail:
            return end, end, end
        start = self.tokens.list[tail[0]].start
        return start, start, end

    def _limit_parts(
        self, limit: exp.Expression
    ) -> tuple[Param, Param | int, tuple[int, int] | None]:
        """(count, offset, span of the LIMIT clause) of the union's trailing LIMIT;
        _InvalidLimit if it holds something other than integer literals."""
        limit_index = next(
            (
                i
                for i, t in enumerate(self.tokens.list)
                if t.token_type is TokenType.LIMIT and self.tokens.depth[i] == 0
            ),
            None,
        )
        if limit_index is None:
            raise _Refused("this LIMIT form across several shards")
        tail = self.tokens.list[limit_index + 1 :]
        values = [t for t in tail if t.token_type in (TokenType.NUMBER, TokenType.PLACEHOLDER)]
        bad = _bad_limit(self.text, tail)
        if bad is not None:
            raise _InvalidLimit(bad)
        slots = []
        for token in values:
            if token.token_type is TokenType.PLACEHOLDER:
                slot = self.slot_ends.get(token.start + 1)  # a parameter kept as a marker
            else:
                slot = self.slot_starts.get(token.start)
            if slot is None:
                raise _Refused("LIMIT without literal values across several shards")
            slots.append(slot)
        span = (self.tokens.list[limit_index].start, self.tokens.list[-1].end + 1)
        if len(slots) == 1:
            return Param(slots[0]), 0, span
        if len(slots) != 2:
            raise _Refused("this LIMIT form across several shards")
        if any(t.token_type is TokenType.OFFSET for t in tail):
            return Param(slots[0]), Param(slots[1]), span
        return Param(slots[1]), Param(slots[0]), span

    def _limit_clause(
        self, limit: exp.Expression
    ) -> tuple[tuple[Part, ...], Param | int, Param | int]:
        """The per-shard LIMIT text, and the merge's offset and count."""
        try:
            count, offset, _ = self._limit_parts(limit)
        except _InvalidLimit as invalid:
            return ("LIMIT ", BadLimit(invalid.text)), 0, 0
        offset_slot = offset.slot if isinstance(offset, Param) else None
        return ("LIMIT ", LimitSum(offset_slot, count.slot)), offset, count

    def _limited_concat(self, limit: exp.Expression) -> ScatterRead:
        limit_index = next(
            i
            for i, t in enumerate(self.tokens.list)
            if t.token_type is TokenType.LIMIT and self.tokens.depth[i] == 0
        )
        span = (self.tokens.list[limit_index].start, self.tokens.list[-1].end + 1)
        parts, offset, count = self._limit_clause(limit)
        edits = [e for e in self.base_edits if not (span[0] <= e[0] < span[1])]
        edits.append((span[0], span[1], parts))
        merge = Limit(Concat(), offset, count)
        return ScatterRead(Template.build(self.text, edits), merge, True)

    def _wrapped(
        self,
        first: exp.Select,
        distinct: bool,
        order: exp.Expression | None,
        limit: exp.Expression | None,
    ) -> ScatterRead:
        if _star(first):
            raise _Refused("UNION of SELECT * with ORDER BY or duplicate removal across shards")
        select_index = next(
            i for i, t in enumerate(self.tokens.list) if t.token_type is TokenType.SELECT
        )
        items = select_items(self.tokens, find_clauses(self.tokens, select_index), first)
        names = [_output_name(item, self.text) for item in items]
        width = len(names)
        _, tail_start, end = self._tail()
        columns = [f"`_c{i + 1}`" for i in range(width)]
        hidden: list[str] = []
        keyed: dict[int, Key] = {}

        def key(position: int) -> Key:
            if position not in keyed:
                weight = width + len(hidden)
                hidden.append(f"WEIGHT_STRING({columns[position]})")
                hidden.append(f"COLLATION({columns[position]})")
                keyed[position] = Key(position, weight, weight + 1)
            return keyed[position]

        keys: list[SortKey] = []
        if order is not None:
            for ordered in order.expressions:
                position = self._position(ordered.this, names)
                keys.append(SortKey(key(position), bool(ordered.args.get("desc"))))
        distinct_keys = tuple(key(i) for i in range(width)) if distinct else ()
        head = f"WITH `_u` ({', '.join(columns)}) AS ("
        outer = [f"{c} AS `{n.replace('`', '``')}`" for c, n in zip(columns, names, strict=True)]
        select = ", ".join(outer + hidden)
        tail: list[Part] = [f") SELECT {select} FROM `_u`"]
        merge: Merge = MergeSort(tuple(keys)) if keys else Concat()
        if distinct:
            merge = Distinct(merge, distinct_keys)
        has_params = False
        if keys:
            tail.append(
                " ORDER BY "
                + ", ".join(columns[k.key.column] + (" DESC" if k.desc else "") for k in keys)
            )
        if limit is not None:
            parts, offset, count = self._limit_clause(limit)
            tail.extend((" ", *parts))
            merge = Limit(merge, offset, count)
            has_params = True
        if hidden:
            merge = Project(merge, len(hidden))
        edits = [e for e in self.base_edits if e[0] < tail_start]
        edits.append((0, 0, head))
        edits.append((tail_start, end, tuple(tail)))
        return ScatterRead(Template.build(self.text, edits), merge, has_params)

    def _position(self, node: exp.Expression, names: Sequence[str]) -> int:
        if isinstance(node, exp.Literal) and not node.is_string:
            position = int(node.this)
            if not 1 <= position <= len(names):
                raise _Refused("an ORDER BY position outside the select list")
            return position - 1
        if isinstance(node, exp.Column) and not node.table:
            lowered = [n.lower() for n in names]
            if node.name.lower() in lowered:
                return lowered.index(node.name.lower())
        raise _Refused("ORDER BY an expression over a UNION across several shards")


def _unions(node: exp.Expression) -> list[exp.Union]:
    if isinstance(node, exp.Union):
        return [node, *_unions(node.this), *_unions(node.expression)]
    if isinstance(node, exp.Subquery):
        return _unions(node.this)
    return []


def _branches(node: exp.Expression) -> list[exp.Select]:
    if isinstance(node, exp.SetOperation):
        return _branches(node.this) + _branches(node.expression)
    if isinstance(node, exp.Subquery):
        return _branches(node.this)
    if isinstance(node, exp.Select):
        return [node]
    raise _Refused("this UNION form across several shards")


def _output_name(item: Item, text: str) -> str:
    """The column name MySQL gives a select item: its alias, its column name, or its text."""
    if item.alias_name is not None:
        return item.alias_name
    node = item.node
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return node.name
    assert item.span is not None
    return text[item.span[0] : item.span[1]]


__all__ = [
    "DIV_INCREMENT",
    "GROUP_CONCAT_MAX_LEN",
    "LimitSum",
    "ScatterRead",
    "check_scopes",
    "plan_scatter_read",
]
