"""Multi-row `INSERT ... VALUES (row), (row), ...`, planned by the forms of its rows.

A bulk INSERT's shape grows with its row count, so caching it by shape kept a plan (with a
template per row) for every row count, and planning it parsed every row with sqlglot. Here the
rows are found in the shape by a text scan: the head up to the first row, each row's form
(`(?, ?, NULL)`, `(-?, NOW())`) and the tail after the last row. The planner caches one route
per head, set of distinct row forms and tail, plans it from a statement with one row of each
form, and instantiates it by cutting the literal slots row by row: each row goes to its key's
shard, and each shard's rows are rendered by one `str.format` of their slot texts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import NamedTuple

from router.algorithms import ShardAlgorithm
from router.errors import NotSupported
from router.plan import QueryPlan, Route, Unit
from router.predicates import UNKNOWN, Bindings, Const, Slot, Source
from router.route import Target
from router.template import Part, Template

_NAME = r"(?:`[^`]*+(?:``[^`]*+)*+`|[\w$]+)"
_COLUMNS = r"\((?:[^()`]|`[^`]*+(?:``[^`]*+)*+`)*\)"
# Up to the first row's `(`. Anything else (PARTITION, SET, SELECT) is planned as before.
_HEAD = re.compile(
    rf"(?:INSERT|REPLACE)(?:\s*/\*\+.*?\*/)?"
    rf"(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE))*(?:\s+INTO)?"
    rf"\s*{_NAME}(?:\s*\.\s*{_NAME})?\s*(?:{_COLUMNS}\s*)?VALUES?\s*(?=\()",
    re.I | re.S,
)
_SEVERAL = re.compile(r"\)\s*,\s*\(")
_SEPARATOR = re.compile(r"\s*,\s*(?=\()")
_PARENS = re.compile(r"[()]|`[^`]*+(?:``[^`]*+)*+`|/\*.*?\*/", re.S)
_SLOT_OR_KEPT = re.compile(r"\?|`[^`]*+(?:``[^`]*+)*+`|/\*.*?\*/", re.S)


class Rows(NamedTuple):
    """Where the rows of a multi-row INSERT's shape are.

    `forms` are the distinct row forms, sorted, so the cache key doesn't depend on which form
    comes first; `layout[r]` is row r's form (None: every row has form 0). Rows sent together
    are joined by `separator`: `,` if the statement's first separator is that, else `, `, so
    a statement whose rows all go to one shard is sent as written (with the usual separators).
    """

    head: str
    forms: tuple[str, ...]
    tail: str
    count: int
    layout: list[int] | None
    separator: str


def find_rows(shape: str) -> Rows | None:
    """The rows of an INSERT / REPLACE ... VALUES shape with two or more rows, else None."""
    if shape[:1] not in "iIrR" or _SEVERAL.search(shape) is None or ";" in shape:
        return None
    if "'" in shape or '"' in shape:  # an unterminated string: leave it to the parser's error
        return None
    head = _HEAD.match(shape)
    if head is None:
        return None
    pos = head.end()
    seen: dict[str, int] = {}
    order: list[int] = []
    form = ""
    joiner = ""
    while True:
        if form and shape.startswith(form, pos):
            end = pos + len(form)  # a balanced prefix: the row ends where the form does
        else:
            found = _row_end(shape, pos)
            if found is None:
                return None
            end = found
            form = shape[pos:end]
        order.append(seen.setdefault(form, len(seen)))
        separator = _SEPARATOR.match(shape, end)
        if separator is None:
            break
        joiner = joiner or ("," if separator.group() == "," else ", ")
        pos = separator.end()
    if len(order) < 2:
        return None
    forms = tuple(sorted(seen))
    layout = None
    if len(forms) > 1:
        position = {form: index for index, form in enumerate(forms)}
        rank = [position[form] for form in seen]
        layout = [rank[index] for index in order]
    return Rows(shape[: head.end()], forms, shape[end:], len(order), layout, joiner)


def _row_end(shape: str, pos: int) -> int | None:
    close = shape.find(")", pos)
    row = shape[pos:close]
    if close > 0 and "(" not in row[1:] and "`" not in row and "/*" not in row:
        return close + 1  # no nested parentheses, quotes or hints (the common row): no scan
    depth = 0
    for token in _PARENS.finditer(shape, pos):
        text = token.group()
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            if depth == 0:
                return token.end()
    return None


def cut(piece: str) -> list[str]:
    """`piece` of a shape split at its literal slots (the `?` outside backticks and hints)."""
    if "`" not in piece and "/*" not in piece:
        return piece.split("?")
    parts = []
    start = 0
    for token in _SLOT_OR_KEPT.finditer(piece):
        if token.group() == "?":
            parts.append(piece[start : token.start()])
            start = token.end()
    parts.append(piece[start:])
    return parts


class Representative(NamedTuple):
    """A statement with the first row of each form (in `Rows.forms` order), standing for a
    whole multi-row INSERT when planning it.

    `fragments` are its shape's text between literal slots, as in router.normalize;
    `slots[i]` is the real statement's slot that its slot i stands for.
    """

    fragments: tuple[str, ...]
    slots: tuple[int, ...]
    layout: RowsLayout


class RowsLayout(NamedTuple):
    """The literal slots of a multi-row INSERT's parts: head, each row form, tail."""

    head_slots: int
    row_slots: tuple[int, ...]  # per form
    tail_slots: int


def representative(rows: Rows, slot_count: int) -> Representative | None:
    """The statement to plan for `rows`, or None if its slots don't add up to `slot_count` (the
    statement's literal slots; the scan and the tokenizer would disagree)."""
    head = cut(rows.head)
    row_parts = [cut(form) for form in rows.forms]
    tail = cut(rows.tail)
    counts = tuple(len(parts) - 1 for parts in row_parts)
    firsts = [-1] * len(counts)  # each form's first row's first slot
    pos = len(head) - 1
    for form in rows.layout or [0] * rows.count:
        if firsts[form] < 0:
            firsts[form] = pos
        pos += counts[form]
    if pos + len(tail) - 1 != slot_count:
        return None
    fragments = head[:-1]
    slots = list(range(len(head) - 1))
    open_piece = head[-1]
    for index, parts in enumerate(row_parts):
        open_piece += (", " if index else "") + parts[0]
        for part in parts[1:]:
            fragments.append(open_piece)
            open_piece = part
        slots.extend(range(firsts[index], firsts[index] + counts[index]))
    open_piece += tail[0]
    for part in tail[1:]:
        fragments.append(open_piece)
        open_piece = part
    fragments.append(open_piece)
    slots.extend(range(pos, slot_count))
    layout = RowsLayout(len(head) - 1, counts, len(tail) - 1)
    return Representative(tuple(fragments), tuple(slots), layout)


@dataclass(frozen=True, slots=True)
class RowForm:
    """One row form: its literal slots, its shard key (slots numbered from the row's first;
    the row's generated key, if any, is slot `slots`), and for each target a `str.format`
    pattern of the row with that target's table names in place, whose `{}` fields take the
    row's slot texts (and new key) in order: a shard's rows are one pattern, formatted once."""

    slots: int
    key: Source | None
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowsRoute:
    """A multi-row INSERT / REPLACE ... VALUES, cached once for any number of rows of its forms.

    With an `algorithm`, each row goes to its key's shard (`targets` by shard number); without
    one (unsharded and broadcast tables), every target gets every row.
    """

    table: str
    route: Route  # used when there is no algorithm
    algorithm: ShardAlgorithm | None
    targets: tuple[Target, ...]
    head: Template  # slots as in the statement
    forms: tuple[RowForm, ...]
    tail: Template  # slots numbered from the tail's first
    layout: RowsLayout
    generated: bool  # each row gets a key from `bindings.new_ids`, in statement order

    def instantiate(self, bindings: Bindings, rows: Rows) -> QueryPlan:
        texts = bindings.texts
        count = rows.count
        order = rows.layout
        forms = self.forms
        algorithm = self.algorithm
        ids: tuple[int, ...] = ()
        if self.generated:
            if bindings.new_ids is None:
                raise NotSupported(f"INSERT into '{self.table}' without its generated key")
            ids = tuple(bindings.new_ids(count))
        id_texts = [str(new_id) for new_id in ids]
        head_slots = self.layout.head_slots
        if order is None:  # row r's slots are starts[r]:starts[r + 1]
            size = forms[0].slots
            starts = [head_slots + row * size for row in range(count + 1)]
        else:
            starts = list(itertools.accumulate((forms[f].slots for f in order), initial=head_slots))
        tail_texts = texts[starts[count] :]
        groups: dict[int, list[int]] = {}  # shard -> its rows
        if algorithm is None:
            every = list(range(count))  # every target gets every row
            groups = {number: every for number in range(len(self.targets))}
        else:
            for row in range(count):
                form = forms[0 if order is None else order[row]]
                value = _key_value(form, starts[row], bindings, ids[row] if ids else None)
                if value is UNKNOWN:
                    raise NotSupported(
                        f"INSERT into '{self.table}' with a computed shard key value"
                    )
                groups.setdefault(algorithm.shard_for(value), []).append(row)
        units = []
        for number in sorted(groups):
            target = self.targets[number]
            if target.problem is not None:
                raise NotSupported(target.problem)
            chosen = groups[number]
            args: list[str] = []
            for row in chosen:
                args.extend(texts[starts[row] : starts[row + 1]])
                if id_texts:
                    args.append(id_texts[row])
            if order is None:
                pattern = rows.separator.join([forms[0].patterns[number]] * len(chosen))
            else:
                pattern = rows.separator.join(
                    [forms[order[row]].patterns[number] for row in chosen]
                )
            head = self.head.render(texts, target.names)
            body = pattern.format(*args)
            units.append(
                Unit(target.backend, head + body + self.tail.render(tail_texts, target.names))
            )
        if algorithm is None:
            return QueryPlan(tuple(units), self.route, True)
        route = Route.SINGLE if len(units) == 1 else Route.MULTI
        return QueryPlan(tuple(units), route, True, generated_ids=ids)


def _key_value(form: RowForm, start: int, bindings: Bindings, new_id: int | None) -> object:
    """A row's shard key value; `start` is the row's first slot in the statement."""
    key = form.key
    if isinstance(key, Const):
        return key.value
    assert key is not None, "a sharded route's forms have keys"
    if key.index == form.slots and new_id is not None:
        return new_id
    if not key.negate:
        return bindings.value(start + key.index)
    return Slot(start + key.index, True).resolve(bindings)


class RowsAt(NamedTuple):
    """A representative statement's rows: where the first begins in its text, and its layout."""

    first_row: int
    layout: RowsLayout


def build_route(
    table: str,
    route: Route,
    algorithm: ShardAlgorithm | None,
    targets: tuple[Target, ...],
    parts: tuple[Template, ...],
    keys: tuple[Source, ...] | None,
    layout: RowsLayout,
    generated: bool,
) -> RowsRoute | None:
    """The route for a representative statement planned as head, one row per form and tail
    (`parts`) with each row's shard key (`keys`; generated keys in the slots after all of the
    statement's); None if a part uses slots outside its own, which a repeated row can't."""
    head, *rows, tail = parts
    if len(rows) != len(layout.row_slots):
        return None  # the statement's rows were cut differently: plan it whole
    first = layout.head_slots
    slot_count = first + sum(layout.row_slots) + layout.tail_slots
    if any((isinstance(p, int) and p >= first) or not isinstance(p, str | int) for p in head.parts):
        return None
    forms = []
    for index, (template, size) in enumerate(zip(rows, layout.row_slots, strict=True)):
        new_key = slot_count + index if generated else None
        patterns = [_pattern(template, first, size, new_key, t.names) for t in targets]
        key = None if keys is None else _relative(keys[index], first, size, new_key)
        if None in patterns or (keys is not None and key is None):
            return None
        forms.append(RowForm(size, key, tuple(p for p in patterns if p is not None)))
        first += size
    tail_parts: list[Part] = []
    for part in tail.parts:
        if not isinstance(part, str | int) or (isinstance(part, int) and 0 <= part < first):
            return None
        tail_parts.append(part - first if isinstance(part, int) and part >= 0 else part)
    return RowsRoute(
        table,
        route,
        algorithm,
        targets,
        head,
        tuple(forms),
        Template(tuple(tail_parts)),
        layout,
        generated,
    )


def _pattern(
    template: Template, first: int, size: int, new_key: int | None, names: tuple[str, ...]
) -> str | None:
    """A row template as a `str.format` pattern over the row's slot texts (and new key)."""
    out = []
    fields = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(_escape(part))
        elif not isinstance(part, int):
            return None
        elif part < 0:
            out.append(_escape(names[~part]))
        elif first <= part < first + size or part == new_key:
            out.append("{}")
            fields.append(size if part == new_key else part - first)
        else:
            return None
    expected = list(range(size + (new_key is not None)))
    return "".join(out) if fields == expected else None


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _relative(key: Source, first: int, size: int, new_key: int | None) -> Source | None:
    if isinstance(key, Const):
        return key
    if first <= key.index < first + size:
        return Slot(key.index - first, key.negate)
    if key.index == new_key:
        return Slot(size)
    return None
