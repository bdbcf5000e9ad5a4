"""The differential suite's queries: a corpus by shape, and a seeded random generator.

Tables (diff_data.SCHEMA): customers (sharded by id) and orders (by customer_id) are bound;
products is sharded by a string key (hash_mod); countries is broadcast.

`T(...)` marks a query whose ORDER BY is total, so the row order must match as well; `Q(...)`
results are compared as multisets. `C(..., columns)` names GROUP_CONCAT columns, whose parts
may come in any order.
"""

from __future__ import annotations

import random

from diff_data import Query


def Q(sql: str) -> Query:
    return Query(sql)


def T(sql: str) -> Query:
    """A query whose ORDER BY is total: the row order must match too."""
    return Query(sql, ordered=True)


def C(sql: str, *columns: int, ordered: bool = False) -> Query:
    return Query(sql, ordered=ordered, concat=columns)


PLAIN = [
    Q("SELECT * FROM customers"),
    Q("SELECT id, name, balance FROM customers WHERE balance > 100"),
    Q("SELECT * FROM orders WHERE status = 'paid'"),
    Q("SELECT id, note FROM orders WHERE note = 'GIFT'"),
    Q("SELECT id, name FROM customers WHERE name = 'alice'"),
    Q("SELECT id, name FROM customers WHERE name LIKE 'z%'"),
    Q("SELECT id, city FROM customers WHERE city IS NULL"),
    Q("SELECT id, score * 2, balance + 1, age DIV 3 FROM customers"),
    Q("SELECT sku, title, price FROM products WHERE price BETWEEN 100 AND 500"),
    Q("SELECT * FROM products WHERE category IN ('tools', 'GARDEN')"),
    Q("SELECT id, placed_at, slot FROM orders WHERE placed_at >= '2023-01-01'"),
    Q("SELECT id, YEAR(created_at), MONTH(born) FROM customers"),
    Q("SELECT customer_id, amount FROM orders WHERE amount < 0"),
    Q("SELECT id FROM customers WHERE active = 1 AND tier = 'a'"),
    Q("SELECT c.id, c.name, 'x' AS lit, NULL AS n FROM customers c"),
]

ORDER = [
    T("SELECT id, name FROM customers ORDER BY name, id"),
    T("SELECT id, name FROM customers ORDER BY name DESC, id DESC"),
    T("SELECT id, name, city FROM customers ORDER BY city, name, id"),
    T("SELECT id, city FROM customers ORDER BY city DESC, id"),
    T("SELECT id, balance FROM customers ORDER BY balance, id"),
    T("SELECT id, balance FROM customers ORDER BY balance DESC, id"),
    T("SELECT id, score FROM customers ORDER BY score, id"),
    T("SELECT id, score FROM customers ORDER BY score DESC, id DESC"),
    T("SELECT id, created_at FROM customers ORDER BY created_at, id"),
    T("SELECT id, born FROM customers ORDER BY born DESC, id"),
    T("SELECT id, age FROM customers ORDER BY age, id"),
    T("SELECT id, slot FROM orders ORDER BY slot, id"),
    T("SELECT id, slot FROM orders ORDER BY slot DESC, id"),
    T("SELECT id, placed_at FROM orders ORDER BY placed_at DESC, id"),
    T("SELECT id, weight FROM orders ORDER BY weight, id"),
    T("SELECT id, status, note FROM orders ORDER BY status, note, id"),
    T("SELECT id, name FROM customers ORDER BY 2, 1"),
    T("SELECT id AS k, name AS n FROM customers ORDER BY n DESC, k"),
    T("SELECT id FROM customers ORDER BY name, id"),
    T("SELECT id, name FROM customers ORDER BY LOWER(name), id"),
    T("SELECT id, name FROM customers ORDER BY name COLLATE utf8mb4_bin, id"),
    T("SELECT id, balance * 2 AS b2 FROM customers ORDER BY b2, id"),
    T("SELECT id, name FROM customers ORDER BY CHAR_LENGTH(name), name, id"),
    T("SELECT id, tier FROM customers ORDER BY tier, id DESC"),
    T("SELECT sku, title FROM products ORDER BY sku"),
    T("SELECT sku, category FROM products ORDER BY category DESC, sku"),
    T("SELECT sku, price FROM products ORDER BY price DESC, sku"),
    T("SELECT * FROM customers ORDER BY id"),
    T("SELECT * FROM orders ORDER BY customer_id, id"),
    T("SELECT id, name FROM customers WHERE name IS NOT NULL ORDER BY name, id"),
    T("SELECT id, customer_id, amount FROM orders ORDER BY amount DESC, id"),
    T("SELECT id, IFNULL(city, 'none') AS c FROM customers ORDER BY c, id"),
    T("SELECT id, created_at FROM customers ORDER BY YEAR(created_at), id"),
    T("SELECT id, qty FROM orders ORDER BY qty IS NULL, qty DESC, id"),
    T("SELECT sku, title FROM products ORDER BY title, sku"),
    T("SELECT id, balance b, name n FROM customers ORDER BY b + 1, CONCAT(n, 'x'), id LIMIT 9"),
    # Inside an ORDER BY expression a name is a table's column before a select alias.
    T("SELECT id, name AS city FROM customers ORDER BY CONCAT(city, ''), id"),
    T("SELECT id, age DIV 10 AS age FROM customers ORDER BY -age, id LIMIT 50"),
]

LIMIT = [
    T("SELECT id, name FROM customers ORDER BY name, id LIMIT 10"),
    T("SELECT id, name FROM customers ORDER BY name DESC, id LIMIT 5, 10"),
    T("SELECT id, name FROM customers ORDER BY name, id LIMIT 10 OFFSET 20"),
    T("SELECT id, balance FROM customers ORDER BY balance DESC, id LIMIT 7"),
    T("SELECT id, score FROM customers ORDER BY score, id LIMIT 3, 4"),
    T("SELECT * FROM orders ORDER BY placed_at, id LIMIT 15"),
    T("SELECT id FROM customers ORDER BY id LIMIT 0"),
    T("SELECT id FROM customers ORDER BY id LIMIT 1000, 5"),
    T("SELECT id, created_at FROM customers ORDER BY created_at DESC, id LIMIT 12"),
    T("SELECT id, slot FROM orders ORDER BY slot, id LIMIT 9"),
    T("SELECT sku FROM products ORDER BY sku DESC LIMIT 6"),
    T("SELECT id, amount FROM orders WHERE status = 'new' ORDER BY amount, id LIMIT 2, 3"),
    T("SELECT id, name FROM customers ORDER BY 2 DESC, 1 LIMIT 8"),
    T("SELECT id, city FROM customers ORDER BY city, id LIMIT 50, 50"),
    T("SELECT id, note FROM orders ORDER BY note DESC, id LIMIT 20"),
    T("SELECT id, weight FROM orders ORDER BY weight DESC, id LIMIT 11"),
    T("SELECT id, age FROM customers WHERE age > 30 ORDER BY age, id LIMIT 4, 100"),
    T("SELECT id FROM customers ORDER BY name, id LIMIT 1"),
    T("SELECT id, born FROM customers ORDER BY born, id LIMIT 25"),
    T("SELECT c.id, c.name FROM customers AS c ORDER BY c.name, c.id LIMIT 6, 6"),
    # MySQL's "every row from an offset on": offset + count passes 2^64 - 1, LIMIT's largest.
    T("SELECT id, name FROM customers ORDER BY name, id LIMIT 5, 18446744073709551615"),
    T("SELECT id FROM customers ORDER BY id LIMIT 18446744073709551615 OFFSET 230"),
    T(
        "SELECT id FROM customers UNION ALL SELECT id FROM orders ORDER BY 1 "
        "LIMIT 1130, 18446744073709551615"
    ),
]

AGGREGATES = [
    Q("SELECT COUNT(*) FROM customers"),
    Q("SELECT COUNT(*), COUNT(city), COUNT(balance) FROM customers"),
    Q("SELECT SUM(balance), AVG(balance), MIN(balance), MAX(balance) FROM customers"),
    Q("SELECT SUM(age), AVG(age), MIN(age), MAX(age) FROM customers"),
    Q("SELECT SUM(score), AVG(score), MIN(score), MAX(score) FROM customers"),
    Q("SELECT MIN(name), MAX(name) FROM customers"),
    Q("SELECT MIN(city), MAX(city) FROM customers"),
    Q("SELECT MIN(created_at), MAX(created_at), MIN(born), MAX(born) FROM customers"),
    Q("SELECT MIN(slot), MAX(slot), MIN(placed_at), MAX(placed_at) FROM orders"),
    Q("SELECT SUM(amount), AVG(amount), SUM(qty), AVG(qty) FROM orders"),
    Q("SELECT SUM(weight), AVG(weight), MIN(weight), MAX(weight) FROM orders"),
    Q("SELECT COUNT(*), SUM(amount) FROM orders WHERE status = 'PAID'"),
    Q("SELECT COUNT(*), SUM(balance), AVG(balance), MIN(name) FROM customers WHERE id < -1000"),
    Q("SELECT COUNT(*), SUM(amount), MAX(note) FROM orders WHERE 1 = 0"),
    Q("SELECT SUM(balance) / COUNT(*), MAX(age) - MIN(age) FROM customers"),
    Q("SELECT SUM(amount) / SUM(qty), AVG(amount) * 2 FROM orders"),
    Q("SELECT COUNT(*) * 3 + 1, SUM(qty) DIV 2, SUM(qty) % 7 FROM orders"),
    Q("SELECT AVG(balance) + AVG(age) FROM customers"),
    Q("SELECT MAX(balance) - MIN(balance) AS spread, COUNT(*) AS n FROM customers"),
    Q("SELECT IFNULL(SUM(amount), 0), COALESCE(MAX(qty), -1) FROM orders WHERE qty > 100"),
    Q("SELECT BIT_OR(qty), BIT_AND(qty), BIT_XOR(qty) FROM orders"),
    Q("SELECT MIN(price), MAX(price), SUM(stock), AVG(price) FROM products"),
    Q("SELECT MIN(sku), MAX(sku), MIN(title), MAX(category) FROM products"),
    Q("SELECT COUNT(*) FROM customers HAVING COUNT(*) > 10"),
    Q("SELECT SUM(amount) FROM orders HAVING SUM(amount) < 0"),
]

GROUPS = [
    T("SELECT name, COUNT(*) FROM customers GROUP BY name"),
    T("SELECT name, COUNT(*) AS n, SUM(balance), AVG(age) FROM customers GROUP BY name"),
    T("SELECT city, COUNT(*) FROM customers GROUP BY city"),
    T("SELECT city, MIN(name), MAX(name) FROM customers GROUP BY city"),
    T("SELECT tier, COUNT(*), AVG(balance), AVG(score) FROM customers GROUP BY tier"),
    T("SELECT country, tier, COUNT(*) FROM customers GROUP BY country, tier"),
    T("SELECT active, SUM(balance), MIN(created_at) FROM customers GROUP BY active"),
    T("SELECT YEAR(created_at), COUNT(*) FROM customers GROUP BY YEAR(created_at)"),
    T("SELECT YEAR(created_at) AS y, COUNT(*) FROM customers GROUP BY y"),
    T("SELECT YEAR(created_at) y, MONTH(created_at) m, COUNT(*) FROM customers GROUP BY y, m"),
    T("SELECT status, COUNT(*), SUM(amount), AVG(qty) FROM orders GROUP BY status"),
    T("SELECT note, COUNT(*), MAX(placed_at) FROM orders GROUP BY note"),
    T("SELECT status, note, COUNT(*) FROM orders GROUP BY status, note"),
    T("SELECT qty, COUNT(*), SUM(amount) FROM orders GROUP BY qty"),
    T("SELECT category, COUNT(*), SUM(stock), AVG(price) FROM products GROUP BY category"),
    T("SELECT name, COUNT(*) FROM customers GROUP BY name ORDER BY COUNT(*) DESC, name"),
    T("SELECT name, COUNT(*) AS n FROM customers GROUP BY name ORDER BY n DESC, name"),
    T("SELECT name, COUNT(*) AS n FROM customers GROUP BY name ORDER BY n DESC, name LIMIT 5"),
    T("SELECT city, SUM(balance) s FROM customers GROUP BY city ORDER BY s DESC, city LIMIT 3"),
    T("SELECT status, SUM(amount) FROM orders GROUP BY status ORDER BY 2, 1"),
    T("SELECT status, AVG(amount) a FROM orders GROUP BY status ORDER BY a DESC, status"),
    T("SELECT name, COUNT(*) FROM customers GROUP BY name HAVING COUNT(*) > 5"),
    T("SELECT name, COUNT(*) c FROM customers GROUP BY name HAVING c > 5 ORDER BY c, name"),
    T("SELECT city, AVG(age) FROM customers GROUP BY city HAVING AVG(age) > 50"),
    T("SELECT city, COUNT(*) FROM customers GROUP BY city HAVING city <> 'paris'"),
    T(
        "SELECT city, COUNT(*) FROM customers GROUP BY city "
        "HAVING COUNT(*) BETWEEN 5 AND 40 AND city IS NOT NULL"
    ),
    T("SELECT status, SUM(amount) FROM orders GROUP BY status HAVING SUM(amount) > 1000"),
    T(
        "SELECT tier, SUM(balance) / COUNT(*) AS avg_b, MAX(age) - MIN(age) FROM customers "
        "GROUP BY tier"
    ),
    T("SELECT tier, AVG(balance) * COUNT(*) FROM customers GROUP BY tier"),
    T("SELECT status, SUM(amount) / SUM(qty) FROM orders GROUP BY status"),
    T("SELECT name, MAX(score) FROM customers GROUP BY name ORDER BY MAX(score) DESC, name"),
    T("SELECT name, MIN(city) FROM customers GROUP BY name ORDER BY MIN(city), name"),
    T("SELECT country, COUNT(*) FROM customers GROUP BY country ORDER BY country DESC"),
    T("SELECT name FROM customers GROUP BY name"),
    T("SELECT name FROM customers GROUP BY name ORDER BY name DESC LIMIT 4, 5"),
    T("SELECT LOWER(name) AS ln, COUNT(*) FROM customers GROUP BY ln"),
    T("SELECT age DIV 10 AS decade, COUNT(*), AVG(balance) FROM customers GROUP BY decade"),
    T("SELECT slot, COUNT(*) FROM orders GROUP BY slot ORDER BY slot LIMIT 10"),
    T("SELECT weight, COUNT(*) FROM orders GROUP BY weight ORDER BY weight DESC LIMIT 10"),
    T("SELECT DATE(placed_at) d, COUNT(*) FROM orders GROUP BY d ORDER BY d LIMIT 10"),
    T("SELECT born, COUNT(*) FROM customers GROUP BY born ORDER BY COUNT(*) DESC, born LIMIT 5"),
    T("SELECT name, COUNT(*), SUM(balance) FROM customers WHERE active = 1 GROUP BY 1 ORDER BY 1"),
    T("SELECT city, COUNT(DISTINCT name) FROM customers GROUP BY city"),
    T("SELECT tier, COUNT(DISTINCT city), COUNT(*) FROM customers GROUP BY tier"),
    T("SELECT status, COUNT(DISTINCT customer_id), SUM(amount) FROM orders GROUP BY status"),
    Q("SELECT COUNT(DISTINCT name) FROM customers"),
    Q("SELECT COUNT(DISTINCT city), COUNT(DISTINCT name), COUNT(*) FROM customers"),
    Q("SELECT COUNT(DISTINCT status, note) FROM orders"),
    Q("SELECT COUNT(DISTINCT customer_id) FROM orders"),
    # COUNT(DISTINCT f(x)) counts values of f(x), not of x: 9 binary cities, 5 by collation.
    T("SELECT tier, COUNT(DISTINCT CAST(city AS BINARY)) FROM customers GROUP BY tier"),
    Q(
        "SELECT COUNT(DISTINCT BINARY name), COUNT(DISTINCT TRIM(name)), "
        "COUNT(DISTINCT SUBSTRING(name FROM 2)), COUNT(DISTINCT EXTRACT(YEAR FROM born)) "
        "FROM customers"
    ),
    Q(
        "SELECT COUNT(DISTINCT CASE WHEN age > 50 THEN 1 END), "
        "COUNT(DISTINCT IF(age > 50, city, name)), COUNT(DISTINCT CAST(score AS DECIMAL(10,0))), "
        "COUNT(DISTINCT CAST(city AS BINARY), tier) FROM customers"
    ),
    # GROUP BY and HAVING name a table's column before a select alias (ORDER BY the alias).
    T("SELECT age DIV 10 AS age, COUNT(*) FROM customers GROUP BY age"),
    T("SELECT customer_id DIV 100 AS id, COUNT(*) FROM orders GROUP BY id"),
    T(
        "SELECT age DIV 10 AS age, COUNT(*) FROM customers GROUP BY age "
        "HAVING COUNT(*) > 3 OR age > 80"
    ),
    T(
        "SELECT MIN(id) AS m, customer_id DIV 7 AS customer_id, COUNT(*) FROM orders "
        "GROUP BY customer_id"
    ),
    T("SELECT YEAR(born) AS y, COUNT(*) FROM customers GROUP BY y HAVING COUNT(*) > 2 OR y > 2000"),
    T("SELECT age DIV 10 AS d, COUNT(*) FROM customers GROUP BY d ORDER BY d + 0 DESC"),
    T("SELECT city, COUNT(*) FROM customers WHERE 1 = 0 GROUP BY city"),
    T("SELECT customer_id, COUNT(*), SUM(amount) FROM orders GROUP BY customer_id"),
    T(
        "SELECT customer_id, COUNT(*) n FROM orders GROUP BY customer_id "
        "ORDER BY n DESC, customer_id LIMIT 5"
    ),
    T("SELECT customer_id, MAX(amount) FROM orders GROUP BY customer_id HAVING MAX(amount) > 900"),
    T("SELECT id, name, COUNT(*) FROM customers GROUP BY id ORDER BY name, id LIMIT 10"),
]

CONCAT = [
    C("SELECT tier, GROUP_CONCAT(id) FROM customers GROUP BY tier", 1, ordered=True),
    C("SELECT status, GROUP_CONCAT(note) FROM orders GROUP BY status", 1, ordered=True),
    C("SELECT GROUP_CONCAT(code) FROM countries", 0),
    C("SELECT category, GROUP_CONCAT(sku) FROM products GROUP BY category", 1, ordered=True),
    C("SELECT GROUP_CONCAT(id) FROM customers WHERE age > 85", 0),
    Q("SELECT tier, GROUP_CONCAT(id SEPARATOR '|') FROM customers WHERE 1 = 0 GROUP BY tier"),
]

DISTINCT = [
    Q("SELECT DISTINCT city FROM customers"),
    Q("SELECT DISTINCT name FROM customers"),
    Q("SELECT DISTINCT tier, active FROM customers"),
    Q("SELECT DISTINCT status FROM orders"),
    Q("SELECT DISTINCT note, status FROM orders"),
    Q("SELECT DISTINCT qty FROM orders"),
    Q("SELECT DISTINCT YEAR(placed_at) FROM orders"),
    T("SELECT DISTINCT city FROM customers ORDER BY city"),
    T("SELECT DISTINCT name FROM customers ORDER BY name DESC LIMIT 7"),
    T("SELECT DISTINCT status FROM orders ORDER BY status LIMIT 2, 3"),
    Q("SELECT DISTINCT id, name FROM customers"),
    Q("SELECT DISTINCT category FROM products"),
    Q("SELECT DISTINCT country FROM customers WHERE country IS NOT NULL"),
    T("SELECT DISTINCT weight FROM orders ORDER BY weight LIMIT 10"),
    Q("SELECT DISTINCT customer_id FROM orders WHERE amount > 500"),
    # Strings alike in their first max_sort_length (1024) bytes of weights: a shard's ORDER BY
    # leaves them in any order, so equal ones from two shards need not meet in a merge sort.
    Q("SELECT DISTINCT CONCAT(REPEAT('x', 20000), customer_id % 13) FROM orders"),
    Q("SELECT DISTINCT CONCAT(REPEAT('x', 20000), customer_id % 13) AS s FROM orders ORDER BY s"),
    Q("SELECT DISTINCT CONCAT(REPEAT('x', 600), customer_id % 13), qty FROM orders"),
]

# Merged rows relayed as the shards' bytes cut to the client's columns: many columns (a NULL
# bitmap of several bytes in the binary protocol), NULLs in kept and in hidden key columns.
WIDE = [
    T(
        "SELECT id, name, city, country, tier, balance, score, created_at, born, age, active "
        "FROM customers ORDER BY city, name, id"
    ),
    T(
        "SELECT id, customer_id, amount, qty, status, note, weight, placed_at, slot "
        "FROM orders ORDER BY note DESC, status, id"
    ),
    T(
        "SELECT DISTINCT city, country, tier, age, active, born, balance, score, name "
        "FROM customers ORDER BY city, country, tier, age, active, born, balance, score, name"
    ),
    T("SELECT name, city, id FROM customers ORDER BY city, name, id LIMIT 3, 20"),
    T("SELECT DISTINCT note FROM orders ORDER BY note"),
    Q("SELECT DISTINCT note, slot, weight, placed_at FROM orders"),
]

JOINS = [
    Q("SELECT c.id, c.name, o.id, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id"),
    T(
        "SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id "
        "ORDER BY o.amount DESC, o.id LIMIT 10"
    ),
    T(
        "SELECT c.name, COUNT(*), SUM(o.amount) FROM customers c "
        "JOIN orders o ON o.customer_id = c.id GROUP BY c.name"
    ),
    T(
        "SELECT c.city, COUNT(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.city"
    ),
    Q("SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON o.customer_id = c.id"),
    T(
        "SELECT c.id, COUNT(o.id) n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.id ORDER BY n DESC, c.id LIMIT 8"
    ),
    Q("SELECT c.id, k.name FROM customers c JOIN countries k ON k.code = c.country"),
    T(
        "SELECT k.region, COUNT(*), AVG(c.balance) FROM customers c "
        "JOIN countries k ON k.code = c.country GROUP BY k.region"
    ),
    T(
        "SELECT k.name, SUM(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "JOIN countries k ON k.code = c.country GROUP BY k.name ORDER BY 2 DESC, 1"
    ),
    Q("SELECT c.id, k.region FROM customers c LEFT JOIN countries k ON k.code = c.country"),
    Q("SELECT o.id, c.name FROM orders o JOIN customers c USING (id)"),
    T(
        "SELECT c.id, o.id FROM customers c, orders o WHERE o.customer_id = c.id "
        "AND o.qty > 15 ORDER BY c.id, o.id"
    ),
    T(
        "SELECT c.tier, o.status, COUNT(*) FROM customers c JOIN orders o "
        "ON o.customer_id = c.id GROUP BY c.tier, o.status"
    ),
    T(
        "SELECT DISTINCT c.city FROM customers c JOIN orders o ON o.customer_id = c.id "
        "WHERE o.status = 'paid' ORDER BY c.city"
    ),
    Q(
        "SELECT c.id, MAX(o.amount) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.id"
    ),
    T(
        "SELECT c.name, MIN(o.placed_at) FROM customers c JOIN orders o ON o.customer_id = c.id "
        "GROUP BY c.name ORDER BY 2, 1 LIMIT 10"
    ),
    Q("SELECT p.sku, k.name FROM products p JOIN countries k ON k.code = LEFT(p.sku, 2)"),
    T(
        "SELECT k.region, COUNT(DISTINCT c.id) FROM countries k JOIN customers c "
        "ON c.country = k.code GROUP BY k.region"
    ),
    Q(
        "SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id "
        "AND o.amount > c.balance"
    ),
    T(
        "SELECT o.status, AVG(c.age) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "GROUP BY o.status HAVING AVG(c.age) > 40"
    ),
]

SUBQUERIES = [
    Q(
        "SELECT id, name FROM customers c WHERE EXISTS "
        "(SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.amount > 900)"
    ),
    Q(
        "SELECT id FROM customers c WHERE NOT EXISTS "
        "(SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
    ),
    Q("SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE qty > 15)"),
    Q(
        "SELECT id, (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id) AS n "
        "FROM customers c"
    ),
    T(
        "SELECT id, (SELECT SUM(amount) FROM orders o WHERE o.customer_id = c.id) AS s "
        "FROM customers c ORDER BY s DESC, id LIMIT 10"
    ),
    T(
        "SELECT t.customer_id, t.total FROM (SELECT customer_id, SUM(amount) AS total "
        "FROM orders GROUP BY customer_id) t ORDER BY t.total DESC, t.customer_id LIMIT 5"
    ),
    Q(
        "SELECT COUNT(*), AVG(t.n) FROM (SELECT customer_id, COUNT(*) n FROM orders "
        "GROUP BY customer_id) t"
    ),
    T(
        "SELECT t.n, COUNT(*) FROM (SELECT customer_id, COUNT(*) n FROM orders "
        "GROUP BY customer_id) t GROUP BY t.n"
    ),
    Q(
        "SELECT id FROM customers WHERE country IN "
        "(SELECT code FROM countries WHERE region = 'Asia')"
    ),
    Q(
        "SELECT id, (SELECT name FROM countries k WHERE k.code = c.country) FROM customers c "
        "WHERE id > 100"
    ),
    Q(
        "SELECT id FROM customers c WHERE balance > "
        "(SELECT AVG(amount) FROM orders o WHERE o.customer_id = c.id)"
    ),
    T(
        "WITH big AS (SELECT customer_id, SUM(amount) s FROM orders GROUP BY customer_id) "
        "SELECT c.name, big.s FROM customers c JOIN big ON big.customer_id = c.id "
        "ORDER BY big.s DESC, c.id LIMIT 7"
    ),
    Q("SELECT * FROM (SELECT id, name FROM customers WHERE active = 1) a WHERE a.id > 50"),
    T(
        "SELECT c.name, t.n FROM customers c JOIN (SELECT customer_id, COUNT(*) n FROM orders "
        "GROUP BY customer_id) t ON t.customer_id = c.id ORDER BY t.n DESC, c.id LIMIT 6"
    ),
    T(
        "SELECT c.tier, SUM(t.total) FROM customers c JOIN (SELECT customer_id, SUM(amount) "
        "total FROM orders GROUP BY customer_id) t ON c.id = t.customer_id GROUP BY c.tier"
    ),
    Q(
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders "
        "GROUP BY customer_id HAVING COUNT(*) > 5)"
    ),
    Q(
        "SELECT o.id FROM orders o WHERE o.amount = (SELECT MAX(o2.amount) FROM orders o2 "
        "WHERE o2.customer_id = o.customer_id)"
    ),
]

WINDOWS = [
    Q(
        "SELECT id, customer_id, amount, ROW_NUMBER() OVER "
        "(PARTITION BY customer_id ORDER BY amount, id) FROM orders"
    ),
    Q("SELECT id, customer_id, SUM(amount) OVER (PARTITION BY customer_id) AS total FROM orders"),
    T(
        "SELECT id, customer_id, RANK() OVER (PARTITION BY customer_id ORDER BY amount DESC) r "
        "FROM orders ORDER BY customer_id, r, id LIMIT 20"
    ),
    Q(
        "SELECT customer_id, amount, LAG(amount) OVER (PARTITION BY customer_id ORDER BY id) "
        "FROM orders"
    ),
    Q(
        "SELECT * FROM (SELECT id, customer_id, ROW_NUMBER() OVER (PARTITION BY customer_id "
        "ORDER BY placed_at, id) rn FROM orders) t WHERE t.rn = 1"
    ),
    Q("SELECT id, COUNT(*) OVER (PARTITION BY id) FROM customers"),
]

UNIONS = [
    Q("SELECT id FROM customers UNION ALL SELECT customer_id FROM orders"),
    Q("SELECT city FROM customers UNION SELECT status FROM orders"),
    Q("SELECT name FROM customers UNION SELECT note FROM orders"),
    T("SELECT id, name FROM customers UNION ALL SELECT id, note FROM orders ORDER BY 2, 1"),
    T("SELECT name FROM customers UNION SELECT note FROM orders ORDER BY 1"),
    T("SELECT name AS n FROM customers UNION SELECT status FROM orders ORDER BY n DESC LIMIT 5"),
    T(
        "SELECT id, amount FROM orders WHERE amount > 900 UNION ALL "
        "SELECT id, balance FROM customers WHERE balance > 4000 ORDER BY 2 DESC, 1 LIMIT 10"
    ),
    Q("SELECT city FROM customers UNION ALL SELECT city FROM customers"),
    Q("SELECT tier FROM customers UNION SELECT tier FROM customers"),
    T("SELECT id FROM customers UNION ALL SELECT id FROM orders ORDER BY id LIMIT 3, 9"),
    Q("SELECT id FROM customers WHERE id = 7 UNION ALL SELECT id FROM customers WHERE id = 10"),
    T(
        "SELECT id FROM customers WHERE id = 7 UNION SELECT customer_id FROM orders "
        "WHERE customer_id IN (10, 11) ORDER BY 1"
    ),
    Q("SELECT id, name FROM customers WHERE id = 7 UNION ALL SELECT id, name FROM customers"),
]

SINGLE_SHARD = [
    Q("SELECT * FROM customers WHERE id = 7"),
    T("SELECT name, COUNT(*) FROM customers WHERE id = 7 GROUP BY name"),
    Q(
        "SELECT SUM(amount), AVG(amount), GROUP_CONCAT(note ORDER BY id) FROM orders "
        "WHERE customer_id = 9"
    ),
    T("SELECT DISTINCT status FROM orders WHERE customer_id = 9 ORDER BY status"),
    T("SELECT id, amount FROM orders WHERE customer_id = 9 ORDER BY amount DESC, id LIMIT 2"),
    Q(
        "SELECT o.id, (SELECT COUNT(*) FROM orders o2 WHERE o2.customer_id = 9) FROM orders o "
        "WHERE o.customer_id = 9"
    ),
    Q("SELECT * FROM products WHERE sku = 'SKU-5'"),
    Q("SELECT COUNT(*), MAX(amount) FROM orders WHERE customer_id IN (4, 8, 12)"),
    T("SELECT name, code FROM countries ORDER BY name"),
    Q("SELECT region, COUNT(*) FROM countries GROUP BY region"),
    Q(
        "SELECT a.tier, a.n FROM (SELECT tier, COUNT(*) n FROM customers WHERE id = 3 "
        "GROUP BY tier) a"
    ),
    Q(
        "SELECT t.c FROM (SELECT COUNT(*) c FROM orders WHERE customer_id = 12 "
        "ORDER BY 1 LIMIT 1) t"
    ),
]

# Shapes that can't be answered shard by shard: refused (1235) unless the proxy computes them.
REFUSED = [
    Q("SELECT c.id, o.id FROM customers c JOIN orders o ON o.id = c.id"),
    Q("SELECT * FROM orders WHERE amount > (SELECT AVG(amount) FROM orders)"),
    Q(
        "SELECT t.city, COUNT(*) FROM (SELECT city, COUNT(*) n FROM customers GROUP BY city) t "
        "GROUP BY t.city"
    ),
    Q("SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM customers"),
    Q("SELECT id, SUM(amount) OVER () FROM orders"),
    Q("SELECT k.code, c.id FROM countries k LEFT JOIN customers c ON c.country = k.code"),
    Q("SELECT code FROM countries WHERE code NOT IN (SELECT country FROM customers)"),
    Q("SELECT COUNT(*) FROM (SELECT DISTINCT city FROM customers) t"),
    Q("SELECT * FROM (SELECT id FROM customers ORDER BY id LIMIT 5) t"),
    Q("SELECT name, GROUP_CONCAT(DISTINCT city) FROM customers GROUP BY name"),
    Q("SELECT tier, GROUP_CONCAT(id ORDER BY id) FROM customers GROUP BY tier"),
    Q("SELECT STD(balance) FROM customers"),
    Q("SELECT SUM(DISTINCT qty) FROM orders"),
    Q("SELECT tier, COUNT(*) FROM customers GROUP BY tier WITH ROLLUP"),
    Q("SELECT p.sku, c.id FROM products p JOIN customers c ON c.name = p.title"),
]


CORPUS: list[Query] = [
    *PLAIN,
    *ORDER,
    *LIMIT,
    *AGGREGATES,
    *GROUPS,
    *CONCAT,
    *DISTINCT,
    *WIDE,
    *JOINS,
    *SUBQUERIES,
    *WINDOWS,
    *UNIONS,
    *SINGLE_SHARD,
    *REFUSED,
]


# --- random queries -----------------------------------------------------------------------------

_COLUMNS = {
    "customers": {
        "key": "id",
        "strings": ["name", "city", "country", "tier"],
        "numbers": ["id", "balance", "score", "age", "active"],
        "times": ["created_at", "born"],
        "expressions": [
            "LOWER(name)",
            "CONCAT(city, tier)",
            "LEFT(name, 2)",
            "name COLLATE utf8mb4_bin",
            "CASE WHEN age > 50 THEN 'old' ELSE name END",
            "balance * 2",
            "IFNULL(age, -1)",
            "YEAR(created_at)",
            "score > 0",
        ],
    },
    "orders": {
        "key": "id",
        "strings": ["status", "note"],
        "numbers": ["id", "customer_id", "amount", "qty", "weight"],
        "times": ["placed_at", "slot"],
        "expressions": [
            "UPPER(status)",
            "CONCAT(status, '/', note)",
            "amount / qty",
            "qty DIV 3",
            "DATE(placed_at)",
            "TIME_TO_SEC(slot)",
            "note COLLATE utf8mb4_unicode_ci",
        ],
    },
    "products": {
        "key": "sku",
        "strings": ["sku", "title", "category"],
        "numbers": ["price", "stock"],
        "times": [],
        "expressions": ["SUBSTRING(sku, 2)", "price * stock", "category COLLATE utf8mb4_bin"],
    },
}
_STRING_VALUES = ["'alice'", "'ZOE'", "'paris'", "'paid'", "'gift'", "'tools'", "''", "'a'"]


def _predicate(rng: random.Random, table: dict[str, list[str] | str]) -> str:
    kind = rng.randrange(6)
    strings = table["strings"]
    numbers = table["numbers"]
    assert isinstance(strings, list) and isinstance(numbers, list)
    if kind == 0:
        return f"{rng.choice(strings)} = {rng.choice(_STRING_VALUES)}"
    if kind == 1:
        return f"{rng.choice(numbers)} > {rng.randrange(-50, 400)}"
    if kind == 2:
        return f"{rng.choice(strings + numbers)} IS {rng.choice(['', 'NOT '])}NULL"
    if kind == 3:
        low = rng.randrange(-100, 300)
        return f"{rng.choice(numbers)} BETWEEN {low} AND {low + rng.randrange(1, 300)}"
    if kind == 4:
        return f"{rng.choice(strings)} < {rng.choice(_STRING_VALUES)}"
    return f"{rng.choice(strings)} IN ({', '.join(rng.sample(_STRING_VALUES, 3))})"


def _aggregate(rng: random.Random, table: dict[str, list[str] | str]) -> str:
    strings = table["strings"]
    numbers = table["numbers"]
    times = table["times"]
    assert isinstance(strings, list) and isinstance(numbers, list) and isinstance(times, list)
    choice = rng.randrange(9)
    number = rng.choice(numbers)
    if choice == 0:
        return "COUNT(*)"
    if choice == 1:
        return f"COUNT({rng.choice(strings + numbers)})"
    if choice == 2:
        return f"SUM({number})"
    if choice == 3:
        return f"AVG({number})"
    if choice == 4:
        return f"{rng.choice(['MIN', 'MAX'])}({rng.choice(strings + numbers + times)})"
    if choice == 5:
        return f"COUNT(DISTINCT {rng.choice(strings)})"
    if choice == 6:
        return f"SUM({number}) / COUNT(*)"
    if choice == 7:
        return f"MAX({number}) - MIN({number})"
    return f"AVG({number}) * 2 + 1"


def random_queries(seed: int, count: int) -> list[Query]:
    """Seeded random SELECTs of the supported shapes (and some that are refused)."""
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        name = rng.choice(["customers", "customers", "orders", "orders", "products"])
        table = _COLUMNS[name]
        strings = table["strings"]
        numbers = table["numbers"]
        times = table["times"]
        assert isinstance(strings, list) and isinstance(numbers, list) and isinstance(times, list)
        key = table["key"]
        where = ""
        if rng.random() < 0.6:
            parts = [_predicate(rng, table) for _ in range(rng.randrange(1, 3))]
            where = " WHERE " + rng.choice([" AND ", " OR "]).join(parts)
        shape = rng.randrange(7)
        expressions = table["expressions"]
        assert isinstance(expressions, list)
        if shape == 0:  # rows, maybe ordered and limited
            columns = rng.sample(strings + numbers + times + expressions, rng.randrange(1, 4))
            sql = f"SELECT {key}, {', '.join(columns)} FROM {name}{where}"
            if rng.random() < 0.7:
                keys = [
                    f"{c}{rng.choice(['', ' DESC'])}"
                    for c in rng.sample(columns, rng.randrange(1, len(columns) + 1))
                ]
                sql += f" ORDER BY {', '.join(keys)}, {key}{rng.choice(['', ' DESC'])}"
                if rng.random() < 0.6:
                    sql += f" LIMIT {rng.randrange(0, 30)}"
                    if rng.random() < 0.5:
                        sql += f" OFFSET {rng.randrange(0, 60)}"
                queries.append(T(sql))
            else:
                queries.append(Q(sql))
        elif shape == 1:  # grouped
            groups = rng.sample(strings + numbers[1:] + times + expressions, rng.randrange(1, 3))
            aggregates = [_aggregate(rng, table) for _ in range(rng.randrange(1, 4))]
            sql = (
                f"SELECT {', '.join(groups)}, {', '.join(aggregates)} FROM {name}{where} "
                f"GROUP BY {', '.join(groups)}"
            )
            if rng.random() < 0.3:
                sql += f" HAVING COUNT(*) > {rng.randrange(0, 5)}"
            if rng.random() < 0.6:
                first = rng.randrange(1, len(groups) + len(aggregates) + 1)
                rest = ", ".join(str(i + 1) for i in range(len(groups)))
                # MariaDB 10.11 itself misgroups `GROUP BY <expression with NULLs>` with
                # COUNT(DISTINCT) and ORDER BY ... DESC (the NULL group joins the last one),
                # so the reference can't judge that combination.
                desc = "" if "DISTINCT" in sql else rng.choice(["", " DESC"])
                sql += f" ORDER BY {first}{desc}, {rest}"
                if rng.random() < 0.5:
                    sql += f" LIMIT {rng.randrange(1, 10)}"
            queries.append(T(sql))
        elif shape == 2:  # aggregates over everything
            aggregates = [_aggregate(rng, table) for _ in range(rng.randrange(1, 5))]
            queries.append(Q(f"SELECT {', '.join(aggregates)} FROM {name}{where}"))
        elif shape == 4:  # a join on the shard key, grouped or ordered
            queries.append(_join_query(rng))
        elif shape == 5:  # UNION [ALL]
            queries.append(_union_query(rng))
        elif shape == 6:  # grouped with HAVING on aggregates and expressions over them
            group = rng.choice(strings + times)
            aggregates = [_aggregate(rng, table) for _ in range(rng.randrange(1, 3))]
            number = rng.choice(numbers)
            having = rng.choice(
                [
                    f"COUNT(*) > {rng.randrange(0, 6)}",
                    f"SUM({number}) > {rng.randrange(-100, 2000)}",
                    f"AVG({number}) BETWEEN {rng.randrange(-50, 50)} AND {rng.randrange(50, 500)}",
                    f"MAX({number}) - MIN({number}) >= {rng.randrange(0, 100)} OR COUNT(*) = 1",
                    f"COUNT(*) IN (1, 2, 3) AND {group} IS NOT NULL",
                ]
            )
            sql = (
                f"SELECT {group}, {', '.join(aggregates)} FROM {name}{where} GROUP BY {group} "
                f"HAVING {having} ORDER BY 2 DESC, 1"
            )
            if rng.random() < 0.4:
                sql += f" LIMIT {rng.randrange(0, 4)}, {rng.randrange(1, 8)}"
            queries.append(T(sql))
        else:  # DISTINCT
            columns = rng.sample(strings + numbers[1:] + times, rng.randrange(1, 3))
            sql = f"SELECT DISTINCT {', '.join(columns)} FROM {name}{where}"
            if rng.random() < 0.5:
                sql += f" ORDER BY {', '.join(columns)}"
                if rng.random() < 0.5:
                    sql += f" LIMIT {rng.randrange(1, 20)}"
                queries.append(T(sql))
            else:
                queries.append(Q(sql))
    return queries


def _join_query(rng: random.Random) -> Query:
    """customers joined with their orders (same binding group, on the shard key), maybe with
    countries (broadcast)."""
    customer = ["c.name", "c.city", "c.tier", "c.balance", "c.age", "c.created_at"]
    order = ["o.status", "o.note", "o.amount", "o.qty", "o.placed_at", "o.slot"]
    joins = "customers c JOIN orders o ON o.customer_id = c.id"
    if rng.random() < 0.4:
        side = rng.choice(["", "LEFT "])
        joins += f" {side}JOIN countries k ON k.code = c.country"
        customer.append("k.region")
    if rng.random() < 0.3:
        joins = "customers c LEFT JOIN orders o ON o.customer_id = c.id"
        customer = [col for col in customer if col != "k.region"]
    where = ""
    if rng.random() < 0.5:
        where = rng.choice(
            [
                f" WHERE o.amount > {rng.randrange(0, 800)}",
                " WHERE c.name = 'alice'",
                f" WHERE c.age BETWEEN {rng.randrange(16, 50)} AND {rng.randrange(50, 90)}",
                " WHERE o.status IN ('paid', 'NEW') OR c.city IS NULL",
            ]
        )
    if rng.random() < 0.5:
        group = rng.choice(customer + order)
        number = rng.choice(["o.amount", "o.qty", "c.balance", "c.age"])
        aggregates = rng.sample(
            [
                "COUNT(*)",
                f"SUM({number})",
                f"AVG({number})",
                f"MIN({rng.choice(customer + order)})",
                f"MAX({rng.choice(customer + order)})",
                f"COUNT(DISTINCT {rng.choice(['c.id', 'o.status', 'c.name'])})",
            ],
            rng.randrange(1, 4),
        )
        sql = f"SELECT {group}, {', '.join(aggregates)} FROM {joins}{where} GROUP BY {group}"
        if rng.random() < 0.5:
            sql += f" ORDER BY 2{rng.choice(['', ' DESC'])}, 1 LIMIT {rng.randrange(1, 12)}"
        return T(sql)
    columns = rng.sample(customer + order, rng.randrange(1, 4))
    sql = f"SELECT c.id, o.id, {', '.join(columns)} FROM {joins}{where}"
    if rng.random() < 0.6:
        keys = ", ".join(f"{c}{rng.choice(['', ' DESC'])}" for c in columns[:2])
        sql += f" ORDER BY {keys}, c.id, o.id LIMIT {rng.randrange(0, 40)}"
        return T(sql)
    return Q(sql)


def _union_query(rng: random.Random) -> Query:
    branches = [
        ("SELECT id, name FROM customers", "c"),
        ("SELECT id, status FROM orders", "o"),
        ("SELECT id, city FROM customers WHERE age > 40", "c"),
        ("SELECT customer_id, note FROM orders WHERE qty < 5", "o"),
        ("SELECT stock, category FROM products", "p"),
    ]
    first, second = rng.sample(branches[:4], 2)
    kind = rng.choice(["UNION", "UNION ALL"])
    sql = f"{first[0]} {kind} {second[0]}"
    if rng.random() < 0.7:
        sql += f" ORDER BY 2{rng.choice(['', ' DESC'])}, 1"
        if kind == "UNION ALL":  # duplicates would make the order ambiguous
            return Q(sql)
        if rng.random() < 0.5:
            sql += f" LIMIT {rng.randrange(0, 10)}, {rng.randrange(1, 20)}"
        return T(sql)
    return Q(sql)
