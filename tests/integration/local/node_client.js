// Node.js's mysql2 driver against the gate of a local cluster; run by
// test_cluster_routing.py::test_node_mysql2 (scripts/test installs mysql2 in .venv/node).
// Connection settings come from the environment (VT_HOST, VT_PORT, VT_USER, VT_PASSWORD);
// prints what it read as one JSON object.
"use strict";
const { Readable } = require("stream");
const mysql = require("mysql2/promise");

async function main() {
  const out = {};
  const conn = await mysql.createConnection({
    host: process.env.VT_HOST,
    port: Number(process.env.VT_PORT),
    user: process.env.VT_USER,
    password: process.env.VT_PASSWORD,
    database: "commerce",
    timezone: "Z",
    flags: ["+LOCAL_FILES"],
  });
  let [rows] = await conn.query("SELECT 1 AS a, 'héllo' AS b, NULL AS c");
  out.query = rows[0];
  // execute(): server-side prepared statements, binary protocol both ways.
  [rows] = await conn.execute("SELECT ? + 1 AS n, ? AS s", [41, "x"]);
  out.execute = rows[0];
  await conn.query(
    "CREATE TABLE IF NOT EXISTS node_t (id INT AUTO_INCREMENT PRIMARY KEY, d DATETIME(3), v VARCHAR(20))"
  );
  const when = new Date(Date.UTC(2026, 11, 4, 10, 11, 12, 345));
  const [ins] = await conn.execute("INSERT INTO node_t (d, v) VALUES (?, ?)", [when, "a"]);
  out.insert = [ins.insertId > 0, ins.affectedRows];
  [rows] = await conn.execute("SELECT d, v FROM node_t WHERE id = ?", [ins.insertId]);
  out.row = [rows[0].d.toISOString(), rows[0].v];

  await conn.beginTransaction();
  await conn.execute("UPDATE node_t SET v = ? WHERE id = ?", ["in tx", ins.insertId]);
  [rows] = await conn.execute("SELECT v FROM node_t WHERE id = ?", [ins.insertId]);
  out.in_tx = rows[0].v;
  await conn.rollback();
  [rows] = await conn.execute("SELECT v FROM node_t WHERE id = ?", [ins.insertId]);
  out.after_rollback = rows[0].v;

  await conn.query("SELECT 'x' + 1 AS w");
  [rows] = await conn.query("SHOW WARNINGS");
  out.warnings = rows.map((r) => [r.Code, r.Message]);

  try {
    await conn.query("SELECT * FROM node_nosuch");
  } catch (e) {
    out.error = [e.errno, e.sqlState];
  }

  const [loaded] = await conn.query({
    sql: "LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE node_t FIELDS TERMINATED BY ',' (v, d)",
    infileStreamFactory: () =>
      Readable.from([Buffer.from("l1,2026-01-02 03:04:05\n"), Buffer.from("l2,2026-01-02 03:04:06\n")]),
  });
  out.load = loaded.affectedRows;

  await conn.query("USE `commerce@replica`");
  [rows] = await conn.query("SELECT @@server_id AS sid");
  out.replica_sid = rows[0].sid;
  try {
    await conn.query("DELETE FROM node_t");
  } catch (e) {
    out.replica_write = e.errno;
  }
  await conn.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
