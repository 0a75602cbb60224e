<?php
// PHP's own MySQL client (mysqlnd, through mysqli and PDO) against the gate of a local
// cluster; run by test_cluster_routing.py::test_php_mysqlnd. Connection settings come
// from the environment (VT_HOST, VT_PORT, VT_USER, VT_PASSWORD); prints what it read as
// one JSON object.
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
$host = getenv("VT_HOST");
$port = (int) getenv("VT_PORT");
$user = getenv("VT_USER");
$password = getenv("VT_PASSWORD");
$out = [];

$m = new mysqli($host, $user, $password, "commerce", $port);
$m->set_charset("utf8mb4");
$out["server_info"] = $m->server_info;
$out["query"] = $m->query("SELECT 1 AS a, 'héllo' AS b, NULL AS c, 2.5 AS d")->fetch_assoc();

// A server-side prepared statement: binary protocol both ways.
$s = $m->prepare("SELECT ? AS i, ? AS s, ? AS n");
$i = 7;
$str = "x";
$n = null;
$s->bind_param("isi", $i, $str, $n);
$s->execute();
$out["prepared"] = $s->get_result()->fetch_assoc();
$s->close();

$m->query("CREATE TABLE IF NOT EXISTS php_t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(10))");
$m->begin_transaction();
$m->query("INSERT INTO php_t (v) VALUES ('a')");
$out["insert_id"] = $m->insert_id;
$out["in_tx"] = $m->query("SELECT COUNT(*) AS n, @@server_id AS sid FROM php_t WHERE v = 'a'")->fetch_assoc();
$m->rollback();
$out["after_rollback"] = $m->query("SELECT COUNT(*) AS n FROM php_t WHERE v = 'a'")->fetch_assoc();

// COM_INIT_DB to a replica target, then a write there.
$m->select_db("commerce@replica");
$out["replica"] = $m->query("SELECT @@server_id AS sid")->fetch_assoc();
try {
    $m->query("INSERT INTO php_t (v) VALUES ('b')");
    $out["replica_write"] = "accepted";
} catch (mysqli_sql_exception $e) {
    $out["replica_write"] = [$e->getCode(), $e->getSqlState()];
}

// Several statements in one query (mysqli turns CLIENT_MULTI_STATEMENTS on for it).
$m->multi_query("SELECT 1 AS x; SELECT 2 AS y");
$sets = [];
do {
    if ($res = $m->store_result()) {
        $sets[] = $res->fetch_all();
        $res->free();
    }
} while ($m->more_results() && $m->next_result());
$out["multi"] = $sets;
// mysqli_get_warnings runs SHOW WARNINGS: the gate answers for this session.
$m->query("SELECT 'x' + 1 AS w");
$count = $m->warning_count;
$w = $m->get_warnings();
$out["warnings"] = [$count, $w->errno, $w->message];
$out["ping"] = $m->ping();
$m->close();

// PDO: emulated prepares (the default), then real ones.
$pdo = new PDO(
    "mysql:host=$host;port=$port;dbname=commerce;charset=utf8mb4",
    $user,
    $password,
    [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]
);
$st = $pdo->prepare("SELECT ? AS a, ? AS b");
$st->execute([1, "two"]);
$out["pdo_emulated"] = $st->fetch(PDO::FETCH_ASSOC);
$pdo->setAttribute(PDO::ATTR_EMULATE_PREPARES, false);
$st = $pdo->prepare("SELECT ? AS a, 5 AS c");
$st->execute([3]);
$out["pdo_real"] = $st->fetch(PDO::FETCH_ASSOC);
try {
    $pdo->query("SELECT * FROM nosuch");
} catch (PDOException $e) {
    $out["pdo_error"] = [$e->errorInfo[0], $e->errorInfo[1]];
}

echo json_encode($out), "\n";
