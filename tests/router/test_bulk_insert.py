"""Multi-row INSERTs planned by their row forms (router.rows) route and render every row exactly as
planning that row alone does, and share one cached plan whatever their row count."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planner_config import make_config, sharded

from router.config import Config
from router.errors import ProxyError
from router.plan import QueryPlan, Route
from router.planner import Router

FOUR = ("ds0", "ds0", "ds1", "ds1")


def config() -> Config:
    """The planner tests' config plus `notes`, sharded by a generated key."""
    base = make_config()
    shop = base.databases["shop"]
    tables = dict(shop.tables)
    tables["notes"] = dataclasses.replace(sharded("notes", "id", FOUR), generated_key="id")
    databases = {**base.databases, "shop": dataclasses.replace(shop, tables=tables)}
    return dataclasses.replace(base, databases=databases)


def counter(start: int) -> Callable[[int], Sequence[int]]:
    numbers = itertools.count(start)
    return lambda n: [next(numbers) for _ in range(n)]


def plan(router: Router, sql: str, **kwargs: object) -> QueryPlan:
    result = router.plan(sql, "shop", **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, QueryPlan)
    return result


_SHARD = re.compile(r"INTO \w+?_(\d+) ")


def planned_row_by_row(
    head: str, rows: list[str], tail: str, separator: str = ", ", **kwargs: object
) -> tuple[Route, list[tuple[str, str]], tuple[int, ...]]:
    """What planning each row as its own INSERT gives, put together: each shard's rows in
    statement order after the shard's head, shards in shard order (or every backend for
    tables that aren't sharded)."""
    router = Router(config())
    groups: dict[tuple[int, str], list[str]] = {}
    heads: dict[tuple[int, str], str] = {}
    ids: list[int] = []
    for row in rows:
        alone = plan(router, head + row + tail, **kwargs)
        ids.extend(alone.generated_ids)
        for number, unit in enumerate(alone.units):
            shard = _SHARD.search(unit.sql)
            key = (int(shard.group(1)) if shard else number, unit.backend)
            cut = unit.sql.index(" VALUES ") + len(" VALUES ")
            assert unit.sql.endswith(tail)
            heads[key] = unit.sql[:cut]
            groups.setdefault(key, []).append(unit.sql[cut : len(unit.sql) - len(tail)])
    units = [
        (backend, heads[(n, backend)] + separator.join(groups[(n, backend)]) + tail)
        for n, backend in sorted(groups)
    ]
    fixed = {"countries": Route.BROADCAST, "settings": Route.UNSHARDED}
    table = head.split()[2] if head.split()[1].upper() == "INTO" else head.split()[3]
    route = fixed.get(table) or (Route.SINGLE if len(units) == 1 else Route.MULTI)
    return route, units, tuple(ids)


VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["NULL", "-7", "- 3", "0x1F", "'a, (b)'", "'it''s'", "'x\\')'", '"q,)"']),
    st.sampled_from(["1 + 2", "NOW()", "CONCAT('a', ')')", "-(4)", "''", "1.50", "-2.5e3"]),
)
KEYS = st.one_of(st.integers(-50, 50).map(str), st.sampled_from(["NULL", "'12'", "-3", "0x0A"]))


@st.composite
def bulk(draw: st.DrawFn) -> tuple[str, list[str], str]:
    """A multi-row INSERT into one of the test config's tables: head, rows, tail."""
    table, key_first = draw(
        st.sampled_from(
            [("orders", True), ("tags", False), ("countries", True), ("settings", True)]
        )
    )
    verb = draw(st.sampled_from(["INSERT INTO", "INSERT IGNORE INTO", "REPLACE INTO"]))
    columns = "(user_id, note, n)" if key_first else "(note, name, n)"
    head = f"{verb} {table} {columns} VALUES "
    count = draw(st.integers(2, 12))
    rows = []
    for _ in range(count):
        key = (
            draw(KEYS) if table != "tags" else draw(st.sampled_from(["'a'", "'b'", "'cd'", "'e'"]))
        )
        first, second = draw(VALUES), draw(VALUES)
        items = [key, first, second] if key_first else [first, key, second]
        rows.append("(" + ", ".join(items) + ")")
    tail = ""
    if verb != "REPLACE INTO" and draw(st.booleans()):
        tail = " ON DUPLICATE KEY UPDATE n = VALUES(n) + 1"
    return head, rows, tail


def outcome(router: Router, sql: str) -> object:
    try:
        result = plan(router, sql)
    except ProxyError as error:
        return (type(error), error.code, error.message)
    return result.route, [(unit.backend, unit.sql) for unit in result.units]


@settings(max_examples=300, deadline=None)
@given(bulk())
def test_a_bulk_insert_is_its_rows_planned_one_by_one(
    statement: tuple[str, list[str], str],
) -> None:
    head, rows, tail = statement
    sql = head + ", ".join(rows) + tail
    try:
        expected: object = planned_row_by_row(head, rows, tail)[:2]
    except ProxyError as error:  # a row the proxy refuses alone: the whole statement is refused
        expected = (type(error), error.code)
    router = Router(config())
    got = outcome(router, sql)
    if isinstance(got, tuple) and isinstance(got[0], type):
        assert expected == got[:2]
    else:
        assert got == expected
    assert outcome(router, sql) == got  # and again, from the cache


@pytest.mark.parametrize(
    "rows",
    [
        ["(1, 'a')", "(2, NULL)", "(-3, 'b,(c)')", "(5, 'it\\'s')", "(6, CONCAT('x', ')'))"],
        ["(-1, -2)", "(- 2, 3)", "(NULL, 4)", "('9', '\"')", "(-0.0, 'x')"],
        [f"({i}, 'row {i}')" for i in range(50)],
    ],
)
def test_mixed_row_forms_keep_their_order_within_each_shard(rows: list[str]) -> None:
    head = "INSERT INTO orders (user_id, note) VALUES "
    router = Router(config())
    result = plan(router, head + ",".join(rows))
    route, units, _ = planned_row_by_row(head, rows, "", ",")
    assert (result.route, [(u.backend, u.sql) for u in result.units]) == (route, units)


def test_generated_keys_follow_statement_order() -> None:
    rows = ["('a')", "(NULL)", "('b, (c)')", "(CONCAT('d', 'e'))", "('f')"]
    result = plan(
        Router(config()), "INSERT INTO notes (body) VALUES " + ", ".join(rows), new_ids=counter(7)
    )
    route, units, ids = planned_row_by_row(
        "INSERT INTO notes (body) VALUES ", rows, "", new_ids=counter(7)
    )
    assert result.generated_ids == ids == (7, 8, 9, 10, 11)
    assert (result.route, [(u.backend, u.sql) for u in result.units]) == (route, units)
    assert result.units[-1].sql == "INSERT INTO notes_3 (body, `id`) VALUES ('a', 7), ('f', 11)"


def test_rows_of_one_form_share_one_cached_plan_whatever_their_count() -> None:
    router = Router(config())
    head = "INSERT INTO orders (id, user_id, note) VALUES "
    two = plan(router, head + "(1, 1, 'a'), (2, 2, 'b')")
    assert (router.hits, router.misses) == (0, 1)
    rows = [f"({i}, {i % 7}, 'n{i}')" for i in range(3000)]
    many = plan(router, head + ", ".join(rows))
    assert (router.hits, router.misses) == (1, 1)
    plan(router, head + "(1, -1, 'a'), (2, NULL, 'b'), (3, 3, 'c')")  # two more forms
    assert (router.hits, router.misses) == (1, 2)
    plan(router, head + "(3, 3, 'c'), (2, NULL, 'b'), (1, -1, 'a'), (4, 4, 'd')")
    assert (router.hits, router.misses) == (2, 2)  # the same forms in another order
    assert [u.sql for u in two.units] == [
        "INSERT INTO orders_1 (id, user_id, note) VALUES (1, 1, 'a')",
        "INSERT INTO orders_2 (id, user_id, note) VALUES (2, 2, 'b')",
    ]
    route, units, _ = planned_row_by_row(head, rows, "")
    assert (many.route, [(u.backend, u.sql) for u in many.units]) == (route, units)


def test_prepared_rows_keep_their_markers() -> None:
    router = Router(config())
    sql = "INSERT INTO orders (user_id, note) VALUES (?, ?), (?, ?), (?, ?)"
    result = plan(router, sql, params=[1, "a", -2, None, 5, b"\x00"], keep_markers=True)
    assert [(u.backend, u.sql) for u in result.units] == [
        (
            "ds0",
            "INSERT INTO orders_1 (user_id, note) VALUES (/*?0*/?, /*?1*/?), (/*?4*/?, /*?5*/?)",
        ),
        ("ds1", "INSERT INTO orders_2 (user_id, note) VALUES (/*?2*/?, /*?3*/?)"),
    ]
    rendered = plan(router, sql, params=[1, "a", -2, None, 5, b"\x00"])
    assert [u.sql for u in rendered.units] == [
        "INSERT INTO orders_1 (user_id, note) VALUES (1, 'a'), (5, X'00')",
        "INSERT INTO orders_2 (user_id, note) VALUES (-2, NULL)",
    ]


def test_session_functions_in_rows_become_markers() -> None:
    result = plan(
        Router(config()),
        "INSERT INTO orders (user_id, note) VALUES (1, LAST_INSERT_ID()), (2, USER())",
    )
    assert [u.sql for u in result.units] == [
        "INSERT INTO orders_1 (user_id, note) VALUES (1, /*shardproxy:last_insert_id*/NULL)",
        "INSERT INTO orders_2 (user_id, note) VALUES (2, /*shardproxy:user*/NULL)",
    ]


@pytest.mark.parametrize(
    ("sql", "code", "message"),
    [
        (
            "INSERT INTO orders (user_id, note) VALUES (1, 'a'), (2)",
            1136,
            "Column count doesn't match value count at row 2",
        ),
        (
            "INSERT INTO orders (user_id, note) VALUES (1, 'a'), (1 + 1, 'b')",
            1235,
            "This version of shardproxy doesn't yet support 'INSERT into sharded table 'orders' "
            "with a shard key value that is not a literal'",
        ),
        (
            "INSERT INTO orders (note, n) VALUES (1, 'a'), (2, 'b')",
            1364,
            "Field 'user_id' doesn't have a default value",
        ),
    ],
)
def test_refusals_are_those_of_the_whole_statement(sql: str, code: int, message: str) -> None:
    with pytest.raises(ProxyError) as error:
        Router(config()).plan(sql, "shop")
    assert (error.value.code, error.value.message) == (code, message)


def test_backticks_comments_and_hints_around_rows() -> None:
    sql = (
        "INSERT /*+ NO_RANGE_OPTIMIZATION(t) */ INTO `shop`.`orders` (`user_id`, `note`) "
        "VALUES (1, 'a') /* one */, (2, `note`), -- two\n (5, CONCAT('(', ')'))"
    )
    result = plan(Router(config()), sql)
    assert [(u.backend, u.sql) for u in result.units] == [
        (
            "ds0",
            "INSERT /*+ NO_RANGE_OPTIMIZATION(t) */ INTO `orders_1` (`user_id`, `note`) "
            "VALUES (1, 'a'), (5, CONCAT('(', ')'))",
        ),
        (
            "ds1",
            "INSERT /*+ NO_RANGE_OPTIMIZATION(t) */ INTO `orders_2` (`user_id`, `note`) "
            "VALUES (2, `note`)",
        ),
    ]


def test_parentheses_inside_hint_comments_never_cut_a_row() -> None:
    """`/*+ ... */` stays in the text: a `)` or `(` inside one is not a row's end (a row cut
    there was lost inside the comment of the rendered statement)."""
    sql = (
        "INSERT INTO orders (user_id, a) VALUES "
        "(1, 2 /*+ ), (( */), (5, 6 /*+ ), (( */), (TRUE, 3 /*+ ) */)"
    )
    plan = Router(config()).plan(sql, "shop")
    assert isinstance(plan, QueryPlan)
    assert [(u.backend, u.sql) for u in plan.units] == [
        ("ds0", sql.replace("INTO orders ", "INTO orders_1 ")),  # 1, 5, TRUE: shard 1
    ]


def test_rows_the_scanners_cut_differently_are_refused_not_crashed() -> None:
    sql = "INSERT INTO orders (user_id, a) VALUES (1, 2), (TRUE, 3 /*+ ), ( */) /*+ */, (7, 8)"
    with pytest.raises(ProxyError) as excinfo:
        Router(config()).plan(sql, "shop")
    assert excinfo.value.code == 1235
