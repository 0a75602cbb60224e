// The Go MySQL driver (github.com/go-sql-driver/mysql, Debian's build) against the gate
// of a local cluster; run by test_cluster_routing.py::test_go_sql_driver. Its first
// argument is the DSN of the primary target, its second that of commerce@replica; it
// prints what it read as one JSON object. The driver uses server-side prepared statements
// (binary protocol) for every query with arguments, and asks for DEPRECATE_EOF.
package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

func check(err error, what string) {
	if err != nil {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(1)
	}
}

func main() {
	out := map[string]interface{}{}
	db, err := sql.Open("mysql", os.Args[1])
	check(err, "open")
	defer db.Close()
	var s string
	check(db.QueryRow("SELECT @@version_comment").Scan(&s), "version_comment")
	out["version_comment"] = s
	_, err = db.Exec("CREATE TABLE IF NOT EXISTS go_t (id BIGINT PRIMARY KEY AUTO_INCREMENT, " +
		"s VARCHAR(20), d DATETIME(6), f DOUBLE, b BLOB)")
	check(err, "create")
	when := time.Date(2026, 12, 4, 10, 11, 12, 123456000, time.UTC)
	res, err := db.Exec("INSERT INTO go_t (s, d, f, b) VALUES (?, ?, ?, ?)",
		"héllo", when, 2.5, []byte{0, 1, 2, 255})
	check(err, "insert")
	id, _ := res.LastInsertId()
	n, _ := res.RowsAffected()
	out["insert"] = []int64{id, n}
	var d time.Time
	var f float64
	var b []byte
	check(db.QueryRow("SELECT s, d, f, b FROM go_t WHERE id = ?", id).Scan(&s, &d, &f, &b), "select")
	out["row"] = []interface{}{s, d.Format(time.RFC3339Nano), f, b}

	tx, err := db.Begin()
	check(err, "begin")
	_, err = tx.Exec("UPDATE go_t SET s = ? WHERE id = ?", "in tx", id)
	check(err, "update")
	check(tx.QueryRow("SELECT s FROM go_t WHERE id = ?", id).Scan(&s), "select in tx")
	out["in_tx"] = s
	check(tx.Rollback(), "rollback")
	check(db.QueryRow("SELECT s FROM go_t WHERE id = ?", id).Scan(&s), "select after")
	out["after_rollback"] = s

	stmt, err := db.Prepare("SELECT ? + 1")
	check(err, "prepare")
	sums := []int64{}
	for i := 0; i < 3; i++ {
		var x int64
		check(stmt.QueryRow(i).Scan(&x), "execute")
		sums = append(sums, x)
	}
	check(stmt.Close(), "close")
	out["prepared"] = sums

	// LOAD DATA LOCAL from an io.Reader (the driver sends it in packets of its own size):
	// 3 MB of rows, which the gate streams to the tablet in pieces.
	_, err = db.Exec("CREATE TABLE IF NOT EXISTS go_load (id INT PRIMARY KEY, v TEXT)")
	check(err, "create go_load")
	_, err = db.Exec("TRUNCATE TABLE go_load")
	check(err, "truncate go_load")
	mysql.RegisterReaderHandler("rows", func() io.Reader {
		var sb strings.Builder
		for i := 1; i <= 30000; i++ {
			fmt.Fprintf(&sb, "%d,%s\n", i, strings.Repeat("g", 100))
		}
		return strings.NewReader(sb.String())
	})
	res, err = db.Exec("LOAD DATA LOCAL INFILE 'Reader::rows' INTO TABLE go_load " +
		"FIELDS TERMINATED BY ','")
	check(err, "load data")
	loaded, _ := res.RowsAffected()
	var count, total int64
	check(db.QueryRow("SELECT COUNT(*), SUM(LENGTH(v)) FROM go_load").Scan(&count, &total),
		"count go_load")
	out["load"] = []int64{loaded, count, total}

	_, err = db.Exec("INSERT INTO go_nosuch VALUES (1)")
	if me, ok := err.(*mysql.MySQLError); ok {
		out["error"] = []interface{}{me.Number, me.Message}
	}

	replica, err := sql.Open("mysql", os.Args[2])
	check(err, "open replica")
	defer replica.Close()
	var sid int64
	check(replica.QueryRow("SELECT @@server_id + ?", 0).Scan(&sid), "replica read")
	out["replica_server_id"] = sid
	_, err = replica.Exec("INSERT INTO go_t (s) VALUES (?)", "no")
	if me, ok := err.(*mysql.MySQLError); ok {
		out["replica_write"] = me.Number
	}
	data, err := json.Marshal(out)
	check(err, "json")
	fmt.Println(string(data))
}
