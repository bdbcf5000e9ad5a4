// Node's mysql2 through the proxy: the client matrix scenario with query() (text protocol)
// and execute() (server-side prepared statements, binary rows). Run by
// tests/integration/test_client_matrix.py as `node scenario.js PORT`; prints the observations
// as one JSON line, in the shape of the test's EXPECTED (values as text).
"use strict";

const mysql = require("mysql2/promise");

const INSERT = "INSERT INTO items (k, name, qty, price) VALUES (?, ?, ?, ?)";

function item(k) {
  return [k, `item ${k}`, k, (k * 1.5).toFixed(2)];
}

function text(rows) {
  return rows.map((row) => row.map((v) => (v === null ? null : String(v))));
}

function byKey(rows) {
  return text(rows).sort((a, b) => Number(a[0]) - Number(b[0]));
}

async function main() {
  const conn = await mysql.createConnection({
    host: "127.0.0.1",
    port: Number(process.argv[2]),
    user: "app",
    password: "app",
    database: "matrix",
    charset: "utf8mb4",
    rowsAsArray: true,
    decimalNumbers: false,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
  const q = async (sql, params) => (await conn.query(sql, params))[0];
  const seen = {};
  await q("DROP TABLE IF EXISTS items");
  await q(
    "CREATE TABLE items (k BIGINT PRIMARY KEY, name VARCHAR(50) NOT NULL, " +
      "qty INT NOT NULL, price DECIMAL(10,2))",
  );
  const values = [1, 2, 3, 4, 5, 6, 7, 8].map(item);
  seen.inserted = (await q("INSERT INTO items (k, name, qty, price) VALUES ?", [values]))
    .affectedRows;
  seen.routed = text(await q("SELECT name, qty, price FROM items WHERE k = ?", [3]));
  seen.scatter = byKey(await q("SELECT k FROM items WHERE qty >= 2"));
  seen.ordered = text(await q("SELECT k, name FROM items ORDER BY k DESC LIMIT 3"));
  seen.count = text(await q("SELECT COUNT(*) FROM items"));
  seen.update_routed = (await q("UPDATE items SET qty = qty + 100 WHERE k = 2")).affectedRows;
  seen.update_scatter = (await q("UPDATE items SET name = CONCAT(name, '!') WHERE qty < 5"))
    .affectedRows;
  seen.delete_routed = (await q("DELETE FROM items WHERE k = 8")).affectedRows;
  seen.delete_scatter = (await q("DELETE FROM items WHERE qty > 100")).affectedRows;

  await conn.beginTransaction(); // 9 on ds0, 10 on ds1
  await conn.execute(INSERT, item(9));
  await conn.execute(INSERT, item(10));
  await conn.commit();
  await conn.beginTransaction();
  await conn.execute(INSERT, item(11));
  await q("UPDATE items SET qty = 0 WHERE k IN (9, 10)");
  await conn.rollback();
  seen.after_transactions = byKey(await q("SELECT k FROM items WHERE k >= 9"));

  const ex = async (sql, params) => (await conn.execute(sql, params))[0];
  seen.prepared_routed = text(await ex("SELECT name, qty FROM items WHERE k = ?", [3]));
  seen.prepared_scatter = byKey(await ex("SELECT k FROM items WHERE qty > ?", [4]));
  seen.prepared_ordered = text(
    await ex("SELECT k, name FROM items WHERE qty > ? ORDER BY k DESC LIMIT 2", [4]),
  );
  seen.prepared_insert = (await ex(INSERT, item(12))).affectedRows;
  seen.prepared_update = (await ex("UPDATE items SET qty = ? WHERE k = ?", [120, 12]))
    .affectedRows;
  seen.prepared_null = text(await ex("SELECT k FROM items WHERE price = ?", [null]));

  seen.tables = (await q("SHOW TABLES")).map((r) => r[0]).filter((n) => n === "items");
  seen.columns = (
    await q(
      "SELECT column_name FROM information_schema.columns " +
        "WHERE table_schema = DATABASE() AND table_name = 'items' ORDER BY ordinal_position",
    )
  ).map((r) => r[0]);
  const [, fields] = await conn.query("SELECT * FROM items WHERE k = 1");
  seen.description = fields.map((f) => f.name);
  seen.final = byKey(await q("SELECT k, name, qty, price FROM items"));
  await q("DROP TABLE items");
  await conn.end();
  console.log(JSON.stringify(seen));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
