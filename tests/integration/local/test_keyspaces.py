"""A local cluster of two keyspaces: keyspace-qualified names, and sessions without one.

Real servers and clients: ``vtwist up`` of two unsharded keyspaces (one MariaDB and one
tablet each), PyMySQL, mysql-connector-python and the ``mariadb`` CLI connected without a
database, as GUI tools and many applications do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from vtwist.local.procs import free_port
from vtwist.local.roles import role_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        role_available("vtgate") is not None or role_available("vttablet") is not None,
        reason="the vtgate and vttablet roles must be installed",
    ),
]

VTWIST = str(Path(sys.executable).with_name("vtwist"))


def vtwist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VTWIST, *args], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("keyspaces")
    directory, config = base / "cluster", base / "local.toml"
    config.write_text(
        f"""
[[keyspaces]]
name = "commerce"
replicas = 0
durability = "none"

[[keyspaces]]
name = "lookup"
replicas = 0
durability = "none"

[gate]
mysql_port = {free_port()}
http_port = {free_port()}

[[gate.users]]
name = "app"

[vtorc]
instances = 0
"""
    )
    try:
        out = vtwist("up", "--dir", str(directory), "--config", str(config))
        assert out.returncode == 0, f"up failed:\n{out.stdout}\n{out.stderr}"
        status = vtwist("status", "--dir", str(directory), "--json")
        assert status.returncode == 0, status.stderr
        yield json.loads(status.stdout)["gate"]
    finally:
        vtwist("down", "--dir", str(directory))


def connect(gate: dict[str, Any], db: str | None = None) -> pymysql.Connection[Any]:
    host, port = gate["mysql"].rsplit(":", 1)
    return pymysql.connect(
        host=host,
        port=int(port),
        user=gate["user"],
        password=gate["password"],
        database=db,
        autocommit=True,
    )


def rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def error(conn: Any, sql: str) -> tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as e, conn.cursor() as cur:
        cur.execute(sql)
    return e.value.args[0], e.value.args[1]


def test_qualified_names_and_sessions_without_a_keyspace(cluster: dict[str, Any]) -> None:
    conn = connect(cluster)  # no database: the cluster has two keyspaces
    try:
        # What needs no database runs (GUI tools and drivers send these at connect).
        assert rows(conn, "SELECT DATABASE()") == [(None,)]
        conn.query("SET sql_mode = 'STRICT_ALL_TABLES'")
        assert rows(conn, "SELECT @@sql_mode") == [("STRICT_ALL_TABLES",)]
        assert rows(conn, "SHOW VARIABLES LIKE 'max_allowed_packet'")[0][0] == "max_allowed_packet"
        schemata = rows(conn, "SELECT schema_name FROM information_schema.schemata")
        assert ("commerce",) in schemata or ("lookup",) in schemata
        # Each keyspace's tables, named with their keyspace.
        for ks in ("commerce", "lookup"):
            conn.query(f"CREATE TABLE IF NOT EXISTS {ks}.k (id INT PRIMARY KEY, ks TEXT)")
            conn.query(f"REPLACE INTO `{ks}`.k VALUES (1, '{ks}')")
        assert rows(conn, "SELECT ks, @@hostname FROM commerce.k")[0][0] == "commerce"
        assert rows(conn, "SELECT ks FROM lookup.k WHERE ks <> 'from commerce.k'") == [("lookup",)]
        assert rows(conn, "SHOW TABLES FROM lookup") == [("k",)]
        # A table without its keyspace: the clear 1046; two keyspaces at once: 1235.
        code, message = error(conn, "SELECT * FROM k")
        assert code == 1046 and "USE a keyspace" in message
        code, message = error(conn, "SELECT * FROM commerce.k JOIN lookup.k")
        assert code == 1235 and "commerce, lookup" in message
    finally:
        conn.close()

    # A session in one keyspace reads another's tables by name; a transaction stays put.
    conn = connect(cluster, "commerce")
    try:
        assert rows(conn, "SELECT ks FROM k") == [("commerce",)]
        assert rows(conn, "SELECT ks FROM lookup.k") == [("lookup",)]
        conn.query("BEGIN")
        conn.query("UPDATE k SET ks = 'commerce' WHERE id = 1")
        code, message = error(conn, "UPDATE lookup.k SET ks = 'x'")
        assert code == 1105 and "COMMIT or ROLLBACK" in message
        conn.query("ROLLBACK")
    finally:
        conn.close()

    # Prepared statements (the binary protocol) route the same way.
    host, port = cluster["mysql"].rsplit(":", 1)
    mc = mysql.connector.connect(
        host=host, port=int(port), user=cluster["user"], password=cluster["password"]
    )
    try:
        cur = mc.cursor(prepared=True)
        cur.execute("SELECT ks FROM lookup.k WHERE id = ?", (1,))
        assert cur.fetchall() == [("lookup",)]
    finally:
        mc.close()


@pytest.mark.skipif(shutil.which("mariadb") is None, reason="needs the mariadb CLI")
def test_mariadb_cli_without_a_database(cluster: dict[str, Any]) -> None:
    host, port = cluster["mysql"].rsplit(":", 1)
    script = (
        "SELECT NOW() > 0; CREATE TABLE IF NOT EXISTS commerce.cli (id INT); "
        "SHOW TABLES FROM commerce LIKE 'cli'; SELECT COUNT(*) FROM commerce.cli"
    )
    login = ["-h", host, "-P", port, "-u", cluster["user"], f"-p{cluster['password']}"]
    out = subprocess.run(
        ["mariadb", *login, "-N", "-e", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "cli", "0"], out.stdout
