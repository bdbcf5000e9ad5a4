"""The differential suite's schema, data, comparison and random query generator.

One reference MariaDB holds every row; the proxy spreads the same rows over 2 backends x 2
tables. Strings mix case, accents, trailing spaces, a tab, emoji and look-alikes that
utf8mb4_general_ci calls equal ('alice' = 'Alice' = 'ÁLICE'); numbers include NULLs, negative
DECIMALs and DOUBLEs; dates are DATETIME, DATE and TIME.

Not a test module: test_differential.py imports it (pytest puts tests/integration on sys.path).
"""

from __future__ import annotations

import datetime
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CONFIG = """\
users: [{name: app, password: app}]
backends:
  ds0: {host: 127.0.0.1, port: 1, user: root, password: "", database: diff_0}
  ds1: {host: 127.0.0.1, port: 2, user: root, password: "", database: diff_1}
databases:
  diff:
    default_backend: ds0
    tables:
      customers: {shard_key: id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      orders: {shard_key: customer_id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      products: {shard_key: sku, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      countries: {broadcast: true}
      flags: {shard_key: id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
    binding: [[customers, orders]]
limits: {max_merge_rows: 5000}
"""

SCHEMA = [
    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40), city VARCHAR(30), "
    "country CHAR(2), tier CHAR(1) NOT NULL, balance DECIMAL(10,2), score DOUBLE, "
    "created_at DATETIME, born DATE, age INT, active TINYINT NOT NULL)",
    "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(12,2), "
    "qty INT, status VARCHAR(12), note VARCHAR(60), weight FLOAT, placed_at DATETIME(3), "
    "slot TIME, KEY (customer_id))",
    "CREATE TABLE products (sku VARCHAR(20) PRIMARY KEY, title VARCHAR(60), price DECIMAL(8,3), "
    "stock INT, category VARCHAR(20))",
    "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(40), region VARCHAR(20))",
]

NAMES = [
    "alice", "Alice", "ÁLICE", "alice ", "Bob", "bob", "BOB", "Émile", "emile", "Zoë", "zoe",
    "ZOE", "😀 smile", "🎉 party", "ß-strasse", "S-strasse", "", "a\tb", "øyvind", "Øyvind",
    "zebra", "Zebra", "123", "0010", "Ünïcödé", "unicode", "naïve", "NAIVE", "Çelik", "celik",
    "mañana", "Manana", "Łukasz", "lukasz", "Ωmega", "ωmega", "d'Artagnan", "O'Brien",
]  # fmt: skip
CITIES = ["Paris", "paris", "PARÍS", "Berlin", "berlin ", "Zürich", "zurich", "Oslo", None, ""]
COUNTRIES = [
    ("fr", "France", "Europe"), ("de", "Germany", "Europe"), ("ch", "Switzerland", "Europe"),
    ("no", "Norway", "Europe"), ("us", "United States", "Americas"), ("br", "Brasil", "Americas"),
    ("jp", "Japan", "Asia"), ("in", "India", "Asia"),
]  # fmt: skip
STATUSES = ["new", "NEW", "paid", "Paid", "shipped", "cancelled", "Cancelled ", None]
NOTES = ["", "gift", "Gift", "GIFT ", "fragile", "Fragile", "🎁", "🎁 gift", "rush", None, None]
CATEGORIES = ["tools", "Tools", "TOOLS", "garden", "Garden", "toys", "Toys ", None]


CUSTOMER_COLUMNS = [
    "id", "name", "city", "country", "tier", "balance", "score", "created_at", "born", "age",
    "active",
]  # fmt: skip
ORDER_COLUMNS = [
    "id", "customer_id", "amount", "qty", "status", "note", "weight", "placed_at", "slot",
]  # fmt: skip


@dataclass
class Dataset:
    """Rows of every table, as parameter tuples for INSERT."""

    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def generate(seed: int = 20261126, customers: int = 240, orders: int = 900) -> Dataset:
    rng = random.Random(seed)

    def maybe(value: Any, chance: float = 0.12) -> Any:
        return None if rng.random() < chance else value

    def when(start: int = 2020, years: int = 5) -> datetime.datetime:
        base = datetime.datetime(start, 1, 1)
        return base + datetime.timedelta(seconds=rng.randrange(years * 365 * 86400))

    customer_rows = []
    for i in range(1, customers + 1):
        customer_rows.append(
            (
                i if rng.random() > 0.05 else -i,
                maybe(rng.choice(NAMES), 0.06),
                rng.choice(CITIES),
                maybe(rng.choice(COUNTRIES)[0], 0.1),
                rng.choice("ABCab"),
                maybe(Decimal(rng.randrange(-50000, 500000)) / 100),
                maybe(rng.choice([rng.uniform(-100, 100), rng.random() * 1e6, 0.1, 1 / 3])),
                maybe(when()),
                maybe(when(1950, 60).date()),
                maybe(rng.randrange(16, 90)),
                rng.choice([0, 1, 1]),
            )
        )
    ids = [row[0] for row in customer_rows]
    order_rows = []
    for i in range(1, orders + 1):
        millis = datetime.timedelta(milliseconds=rng.randrange(1000))
        order_rows.append(
            (
                i,
                rng.choice(ids),
                maybe(Decimal(rng.randrange(-1000, 100000)) / 100, 0.05),
                maybe(rng.randrange(0, 20), 0.05),
                rng.choice(STATUSES),
                rng.choice(NOTES),
                maybe(round(rng.uniform(0.1, 50), 1)),
                maybe(when() + millis, 0.05),
                maybe(datetime.timedelta(seconds=rng.randrange(-30000, 86400 * 2)), 0.1),
            )
        )
    product_rows = []
    skus: set[str] = set()
    while len(product_rows) < 120:
        sku = rng.choice(["sku", "SKU", "Sku", "ítem", "item"]) + f"-{rng.randrange(1000)}"
        folded = fold(sku)
        if folded in skus:
            continue
        skus.add(folded)
        product_rows.append(
            (
                sku,
                maybe(rng.choice(NAMES) + " " + rng.choice(["kit", "Kit", "set"])),
                maybe(Decimal(rng.randrange(0, 10**6)) / 1000),
                maybe(rng.randrange(0, 500)),
                rng.choice(CATEGORIES),
            )
        )
    return Dataset(
        {
            "customers": (
                CUSTOMER_COLUMNS,
                customer_rows,
            ),
            "orders": (
                ORDER_COLUMNS,
                order_rows,
            ),
            "products": (["sku", "title", "price", "stock", "category"], product_rows),
            "countries": (["code", "name", "region"], list(COUNTRIES)),
        }
    )


def load(conn: Any, data: Dataset, batch: int = 50) -> None:
    """Insert the dataset through `conn` (a pymysql connection), in multi-row INSERTs."""
    with conn.cursor() as cursor:
        for table, (columns, rows) in data.tables.items():
            marks = "(" + ", ".join(["%s"] * len(columns)) + ")"
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join(
                    [marks] * len(chunk)
                )
                cursor.execute(sql, [value for row in chunk for value in row])


# --- comparing results ------------------------------------------------------------------------


def fold(text: str) -> str:
    """utf8mb4_general_ci's notion of equal strings, near enough for comparing answers whose
    representative of a group MySQL may pick freely ('alice' or 'Alice')."""
    out = []
    for char in text:
        if char > "\uffff":
            out.append("\ufffd")
            continue
        if char == "ß":
            out.append("S")
            continue
        decomposed = unicodedata.normalize("NFD", char)
        out.append("".join(c for c in decomposed if not unicodedata.combining(c)).upper())
    return "".join(out).rstrip(" ")


def _cell(value: Any, loose: bool) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("float", float(f"{value:.12g}"))
    if loose and isinstance(value, str):
        return fold(value)
    if loose and isinstance(value, bytes):
        return fold(value.decode("utf-8", "replace"))
    return value


def normalize(rows: Sequence[Sequence[Any]], loose: bool) -> list[tuple[Any, ...]]:
    return [tuple(_cell(v, loose) for v in row) for row in rows]


# A query whose answer MySQL may legitimately word differently: any representative of a
# group of collation-equal strings, or GROUP_CONCAT parts in any order.
_LOOSE = re.compile(r"GROUP BY|DISTINCT|\bMIN\(|\bMAX\(|\bUNION\b(?!\s+ALL)|GROUP_CONCAT", re.I)


@dataclass(frozen=True)
class Query:
    sql: str
    ordered: bool = False  # the ORDER BY is total: the row order must match too
    concat: tuple[int, ...] = ()  # GROUP_CONCAT columns: compared as sorted parts


# MariaDB's own precision for arithmetic on AVG() or a quotient depends on its plan: grouping
# through a temporary table stores AVG() rounded to its scale before `* 2 + 1` reads it, a
# streamed grouping keeps 9-digit words. Either is an answer one server gives; they differ by
# one unit in the last place.
_PLAN_DEPENDENT_DIGITS = re.compile(r"AVG\(.*\)\s*[-+*/]|/", re.I)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal) and isinstance(b, Decimal) and a != b:
        exponent = a.as_tuple().exponent
        return exponent == b.as_tuple().exponent and abs(a - b) == Decimal(1).scaleb(exponent)  # type: ignore[arg-type]
    return a == b


def same_result(query: Query, expected: Sequence[Sequence[Any]], got: Sequence[Sequence[Any]]):
    """None if `got` is an answer one server could give for `expected`; else why not."""
    if len(expected) != len(got):
        return f"{len(got)} rows instead of {len(expected)}"
    if query.ordered and _PLAN_DEPENDENT_DIGITS.search(query.sql):
        want = normalize(_split_concat(expected, query.concat), True)
        have = normalize(_split_concat(got, query.concat), True)
        if all(_close(a, b) for a, b in zip(want, have, strict=True)):
            return None
    for loose in (False, True):
        if loose and not _LOOSE.search(query.sql):
            break
        want = normalize(_split_concat(expected, query.concat), loose)
        have = normalize(_split_concat(got, query.concat), loose)
        if query.ordered:
            if want == have:
                return None
        elif Counter(want) == Counter(have):
            return None
    want = normalize(expected, False)
    have = normalize(got, False)
    if query.ordered:
        for i, (a, b) in enumerate(zip(want, have, strict=True)):
            if a != b:
                return f"row {i}: expected {a!r}, got {b!r}"
    missing = Counter(want) - Counter(have)
    extra = Counter(have) - Counter(want)
    return f"missing {list(missing)[:3]!r}, unexpected {list(extra)[:3]!r}"


def _split_concat(rows: Sequence[Sequence[Any]], columns: tuple[int, ...]) -> list[tuple]:
    if not columns:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        cells = list(row)
        for i in columns:
            if isinstance(cells[i], str):
                cells[i] = tuple(sorted(cells[i].split(",")))
        out.append(tuple(cells))
    return out
