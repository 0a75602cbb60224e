"""Routing through the gate of a real local cluster (``vtwist up``: a MariaDB primary and two
GTID replicas with semi-sync, their tablets, the gate), as an application sees it.

The gate runs the example routing plugin (``examples/vtwist_route_reports``, found on the
daemons' PYTHONPATH, selected by ``routing.policy`` in ``[gate.options]``). Each MariaDB's
``@@server_id`` is its tablet's uid, so a query's answer says which instance served it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pymysql.constants
import pymysql.cursors
import pytest

from tests.support import fresh_python
from vtwist.local.procs import free_port, pid_alive
from vtwist.local.roles import role_available
from vtwist.protocols.tabletrpc_codec import DEFAULT_MAX_FRAME_SIZE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        role_available("vtgate") is not None or role_available("vttablet") is not None,
        reason="the vtgate and vttablet roles must be installed",
    ),
]

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "vtwist_route_reports" / "src"
VTWIST = str(Path(sys.executable).with_name("vtwist"))
PRIMARY, REPLICAS = 100, {101, 102}


def vtwist(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VTWIST, *args], capture_output=True, text=True, timeout=180, check=False, env=env
    )


LOAD_LIMIT = 80 * 1024 * 1024  # the gate's session.max_local_infile_size here


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("routing")
    directory = base / "cluster"
    config = base / "local.toml"
    config.write_text(
        f"""
[gate]
mysql_port = {free_port()}
http_port = {free_port()}

[[gate.users]]
name = "app"

[gate.options]
"routing.policy" = "reports-to-replica"
"session.max_local_infile_size" = {LOAD_LIMIT}

[vtorc]
http_port = {free_port()}

[zookeeper]
session_timeout = 4
"""
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLE), *sys.path]))}
    try:
        out = vtwist("up", "--dir", str(directory), "--config", str(config), env=env)
        assert out.returncode == 0, f"up failed:\n{out.stdout}\n{out.stderr}"
        status = vtwist("status", "--dir", str(directory), "--json")
        assert status.returncode == 0, status.stderr
        data: dict[str, Any] = json.loads(status.stdout)
        host, port = data["gate"]["mysql"].rsplit(":", 1)
        data["connect"] = lambda db="commerce", **kw: pymysql.connect(
            host=host,
            port=int(port),
            user=data["gate"]["user"],
            password=data["gate"]["password"],
            database=db,
            **{"autocommit": True, **kw},
        )
        data["dir"] = directory
        data["env"] = env
        yield data
    finally:
        vtwist("down", "--dir", str(directory))


def one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return row[0] if row else None


def result_sets(cur: Any) -> list[Any]:
    """Every result of the statement ``cur`` ran (a CALL's sets, then its OK), read."""
    sets = [cur.fetchall()]
    while cur.nextset():
        sets.append(cur.fetchall())
    return sets


def server_info(cluster: dict[str, Any]) -> str:
    """The server version the gate announces (what PyMySQL read at login)."""
    conn = cluster["connect"]()
    try:
        info: str = conn.get_server_info()
    finally:
        conn.close()
    return info


def one_row(conn: Any, sql: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    return tuple(row)


def served_by(conn: Any, sql: str = "SELECT @@server_id", times: int = 20) -> set[int]:
    return {int(one(conn, sql)) for _ in range(times)}


def test_replica_target_reads_from_replicas_and_refuses_writes(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]("commerce@replica")
    try:
        assert one(conn, "SHOW VITESS_TARGET") == "commerce@replica"
        assert one(conn, "SHOW DATABASES LIKE 'comm%'") == "commerce"
        with conn.cursor() as cur:
            cur.execute("SHOW VITESS_TABLETS LIKE '127.0.0.%'")  # by hostname
            assert len(cur.fetchall()) == 3
        with conn.cursor() as cur:
            cur.execute("SHOW VITESS_REPLICATION_STATUS LIKE 'commerce'")
            rows = cur.fetchall()
        primary_port = next(t["mysql_port"] for t in cluster["tablets"] if t["type"] == "primary")
        assert sorted(int(r[3].split("-")[1]) for r in rows) == sorted(REPLICAS)
        for r in rows:
            assert r[5] == f"127.0.0.1:{primary_port}", r
            assert json.loads(r[6]) == {
                "EventStreamRunning": "Yes",
                "EventApplierRunning": "Yes",
                "LastError": "",
            }
            assert r[7] is not None and int(r[7]) >= 0
        assert served_by(conn, times=40) <= REPLICAS
        with pytest.raises(pymysql.err.OperationalError) as e, conn.cursor() as cur:
            cur.execute("CREATE TABLE nope (id INT)")
        assert e.value.args[0] == 1290 and "commerce@replica" in e.value.args[1]
    finally:
        conn.close()

    primary = cluster["connect"]()
    try:
        assert served_by(primary) == {PRIMARY}
        with primary.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS routed (id INT PRIMARY KEY, v TEXT)")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO routed VALUES (1, 'mine')")
            cur.execute("SELECT v, @@server_id FROM routed WHERE id = 1")
            assert cur.fetchone() == ("mine", PRIMARY)  # the transaction sees its write
            cur.execute("COMMIT")
    finally:
        primary.close()


def test_example_plugin_redirects_reports(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]()  # target: the primary
    try:
        assert served_by(conn, "SELECT /* report */ @@server_id") <= REPLICAS
        assert served_by(conn) == {PRIMARY}
        # Inside a transaction nothing is redirected.
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT /* report */ @@server_id")
            assert cur.fetchone() == (PRIMARY,)
            cur.execute("ROLLBACK")
    finally:
        conn.close()


def test_other_client_libraries(cluster: dict[str, Any]) -> None:
    import mysql.connector
    import MySQLdb

    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    user, password = cluster["gate"]["user"], cluster["gate"]["password"]
    c1 = MySQLdb.connect(host=host, port=int(port), user=user, password=password, db="commerce")
    try:
        cur = c1.cursor()
        cur.execute("SELECT @@server_id, %s", ("x",))
        assert cur.fetchone() == (PRIMARY, "x")
    finally:
        c1.close()
    c2 = mysql.connector.connect(
        host=host,
        port=int(port),
        user=user,
        password=password,
        database="commerce@replica",
        use_pure=True,
    )
    try:
        cur2 = c2.cursor(prepared=True)
        cur2.execute("SELECT @@server_id, ?", (7,))
        row = cur2.fetchone()
        assert row is not None
        server_id, seven = row
        assert isinstance(server_id, Decimal | bytes | float | int | str)  # (what int() takes)
        assert int(server_id) in REPLICAS and seven == 7
    finally:
        c2.close()


def _connector_c_session(host: str, port: int, user: str, password: str) -> dict[str, Any]:
    """mysql-connector-python's C extension through the gate: prepared statements at a
    replica, a transaction at the primary; what it read (run by ``fresh_python.call``)."""
    import mysql.connector

    out: dict[str, Any] = {}
    replica = mysql.connector.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database="commerce@replica",
        use_pure=False,
    )
    try:
        cur = replica.cursor(prepared=True)
        cur.execute("SELECT @@server_id, ?, ?, ?", (7, "héllo", None))
        out["replica"] = cur.fetchall()
        cur.close()
    finally:
        replica.close()
    primary = mysql.connector.connect(
        host=host, port=port, user=user, password=password, database="commerce", use_pure=False
    )
    try:
        cur = primary.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS cext_t (id INT PRIMARY KEY, v DECIMAL(10,2))")
        cur.execute("DELETE FROM cext_t")
        primary.commit()
        ins = primary.cursor(prepared=True)
        ins.execute("INSERT INTO cext_t VALUES (?, ?)", (1, Decimal("12.50")))
        ins.close()
        cur.execute("SELECT id, v, @@server_id FROM cext_t")  # the transaction's own write
        out["in_tx"] = cur.fetchall()
        primary.rollback()
        cur.execute("SELECT COUNT(*) FROM cext_t")
        out["after_rollback"] = cur.fetchall()
        cur.close()
        out["cext"] = type(primary).__name__
    finally:
        primary.close()
    return out


def test_mysql_connector_c_extension(cluster: dict[str, Any]) -> None:
    error = fresh_python.c_extension_error()
    if error is not None:
        pytest.skip(f"mysql-connector C extension unavailable: {error}")
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    user, password = cluster["gate"]["user"], cluster["gate"]["password"]
    out = fresh_python.call(_connector_c_session, host, int(port), user, password)
    ((server_id, seven, text, null),) = out["replica"]
    assert int(server_id) in REPLICAS and (seven, text, null) == (7, "héllo", None)
    assert out["in_tx"] == [(1, Decimal("12.50"), PRIMARY)]
    assert out["after_rollback"] == [(0,)]
    assert out["cext"] == "CMySQLConnection"


def test_client_found_rows(cluster: dict[str, Any]) -> None:
    """CLIENT_FOUND_ROWS (Django sets it): an UPDATE that changes nothing still counts the
    row it matched, pooled, in a transaction and on a reserved connection; without the
    flag it counts 0, as mysqld does."""
    same = "UPDATE found_rows_t SET v = 1 WHERE id = 1"
    counts = {}
    for flag in (0, pymysql.constants.CLIENT.FOUND_ROWS):
        conn = cluster["connect"](client_flag=flag)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS found_rows_t (id INT PRIMARY KEY, v INT)")
                cur.execute("REPLACE INTO found_rows_t VALUES (1, 1)")
                pooled = cur.execute(same)
                cur.execute("BEGIN")
                in_tx = cur.execute(same)
                cur.execute("COMMIT")
                cur.execute("SET @reserve = 1")
                reserved = cur.execute(same)
                counts[flag] = (pooled, in_tx, reserved)
        finally:
            conn.close()
    assert counts == {0: (0, 0, 0), pymysql.constants.CLIENT.FOUND_ROWS: (1, 1, 1)}


def test_sessions_with_settings_share_pooled_connections(cluster: dict[str, Any]) -> None:
    """More sessions that ran a SET of session variables (as Django and Rails do at connect)
    than the primary's transaction pool holds (20): none holds a connection; each still sees
    its own values, and a session without settings sees mysqld's defaults."""
    modes = ["ANSI_QUOTES", "NO_ZERO_DATE", "PIPES_AS_CONCAT", ""]
    conns = [cluster["connect"]("commerce" if i < 24 else "commerce@replica") for i in range(28)]
    plain = cluster["connect"]()
    try:
        for i, conn in enumerate(conns):
            with conn.cursor() as cur:
                cur.execute("SET SQL_AUTO_IS_NULL = 0")
                cur.execute(
                    f"SET SESSION sql_mode = '{modes[i % 4]}', "
                    f"@@session.div_precision_increment = {i % 10}"
                )
        for _ in range(3):
            for i, conn in enumerate(conns):
                got = one(conn, "SELECT CONCAT(@@sql_mode, '/', @@div_precision_increment)")
                assert got == f"{modes[i % 4]}/{i % 10}", i
        default = one(plain, "SELECT @@GLOBAL.sql_mode")
        assert {one(plain, "SELECT @@sql_mode") for _ in range(20)} == {default}
        with pytest.raises(pymysql.err.OperationalError) as e, conns[0].cursor() as cur:
            cur.execute("SET SESSION no_such_variable = 1")
        assert e.value.args[0] == 1193
        assert one(conns[0], "SELECT @@sql_mode") == modes[0]
    finally:
        for conn in [*conns, plain]:
            conn.close()


def test_user_variables_set_to_literals_pin_no_connection(cluster: dict[str, Any]) -> None:
    # More sessions than the transaction pool has connections (pool.transaction.size, 20):
    # with each holding a reserved connection the 21st waited 1 s and got ERROR 1203.
    targets = ["commerce@replica" if i % 4 == 3 else "commerce" for i in range(40)]
    conns = [cluster["connect"](target) for target in targets]
    try:
        for i, conn in enumerate(conns):
            with conn.cursor() as cur:
                cur.execute(f"SET @v = {i}, @name = 'n{i}'")
        for i, conn in enumerate(conns):
            assert one_row(conn, "SELECT @v, @name, @V + 1") == (i, f"n{i}", i + 1)
        with conns[0].cursor() as cur:  # what mysqld would answer, column names included
            cur.execute("SELECT @name, length(@name)")
            assert [d[0] for d in cur.description] == ["@name", "length(@name)"]
        other = cluster["connect"]()
        try:
            assert one_row(other, "SELECT @v, @name") == (None, None)  # nothing leaked
        finally:
            other.close()
        # A value that is not a literal: the session reserves a connection, and keeps them.
        with conns[3].cursor() as cur:
            cur.execute("SET @t = NOW() + 0")
        assert one_row(conns[3], "SELECT @v, @t > 0") == (3, 1)
    finally:
        for conn in conns:
            conn.close()


def test_latin1_client(cluster: dict[str, Any]) -> None:
    """A client whose statements are latin1 bytes (not UTF-8) reaches the tablets with
    those bytes, with or without settings, and gets mysqld's errors quoting them."""
    conn = cluster["connect"](charset="latin1")
    try:
        with conn.cursor() as cur:
            cur.execute("SET NAMES latin1")  # a setting: pooled connections get it
            cur.execute("SELECT HEX('é'), 'é', @@character_set_client")
            assert cur.fetchone() == ("E9", "é", "latin1")
            cur.execute("CREATE TABLE IF NOT EXISTS latin1_t (v VARCHAR(10)) CHARSET latin1")
            cur.execute("INSERT INTO latin1_t VALUES ('café')")
            cur.execute("SELECT v, HEX(v) FROM latin1_t WHERE v = 'café'")
            assert cur.fetchone() == ("café", "636166E9")
            with pytest.raises(pymysql.err.ProgrammingError) as e:
                cur.execute("SELEC 'é'")
            assert e.value.args[0] == 1064
            cur.execute("DROP TABLE latin1_t")
    finally:
        conn.close()


def test_mysqld_errors_above_2999_keep_their_code(cluster: dict[str, Any]) -> None:
    """MariaDB's own errors numbered 3000 and up (4025: CHECK constraint failed) reach the
    client as mysqld sent them, not as a link error of the gate."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS checked_t (v INT CHECK (v > 0))")
            with pytest.raises(pymysql.err.MySQLError) as e:
                cur.execute("INSERT INTO checked_t VALUES (-1)")
        assert e.value.args[0] == 4025 and "retry" not in e.value.args[1]
    finally:
        conn.close()


def test_start_transaction_read_only(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS read_only_t (id INT PRIMARY KEY)")
            cur.execute("START TRANSACTION READ ONLY")
            with pytest.raises(pymysql.err.MySQLError) as e:
                cur.execute("INSERT INTO read_only_t VALUES (1)")
            assert e.value.args[0] == 1792  # as mysqld: a read-only transaction
            cur.execute("ROLLBACK")
            cur.execute("START TRANSACTION READ WRITE")
            cur.execute("INSERT INTO read_only_t VALUES (1)")
            cur.execute("ROLLBACK")
    finally:
        conn.close()


def test_savepoints_with_autocommit_off(cluster: dict[str, Any]) -> None:
    # What SQLAlchemy's Session.begin_nested() sends over a PyMySQL connection (autocommit
    # off, no BEGIN): the SAVEPOINT must open the transaction its RELEASE then finds.
    conn = cluster["connect"](autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS nested_t (id INT PRIMARY KEY)")
            cur.execute("DELETE FROM nested_t")
            conn.commit()
            cur.execute("SAVEPOINT sa_savepoint_1")
            cur.execute("INSERT INTO nested_t VALUES (1)")
            cur.execute("RELEASE SAVEPOINT sa_savepoint_1")
            cur.execute("SAVEPOINT sa_savepoint_2")
            cur.execute("INSERT INTO nested_t VALUES (2)")
            cur.execute("ROLLBACK TO SAVEPOINT sa_savepoint_2")
            conn.commit()
            cur.execute("SELECT id FROM nested_t")
            assert cur.fetchall() == ((1,),)
    finally:
        conn.close()


def test_autocommit_off_reads_are_one_transaction(cluster: dict[str, Any]) -> None:
    # PyMySQL's default, and what Spring's @Transactional runs in: autocommit off, no BEGIN.
    # As in MySQL, the first read of a table starts the transaction: later reads share its
    # snapshot, and under SERIALIZABLE its reads lock until COMMIT.
    a = cluster["connect"](autocommit=False)
    b = cluster["connect"]()
    try:
        with a.cursor() as cur, b.cursor() as other:
            other.execute("CREATE TABLE IF NOT EXISTS snap_t (id INT PRIMARY KEY, v INT)")
            other.execute("REPLACE INTO snap_t VALUES (1, 0)")
            cur.execute("SELECT COUNT(*) FROM snap_t")
            before = cur.fetchone()[0]
            other.execute("INSERT INTO snap_t SELECT MAX(id) + 1, 0 FROM snap_t")
            cur.execute("SELECT COUNT(*) FROM snap_t")
            assert cur.fetchone()[0] == before  # the same snapshot
            a.commit()
            cur.execute("SELECT COUNT(*) FROM snap_t")
            assert cur.fetchone()[0] == before + 1
            a.rollback()

            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            cur.execute("SELECT v FROM snap_t WHERE id = 1")  # a shared lock on row 1
            other.execute("SET SESSION innodb_lock_wait_timeout = 1")
            with pytest.raises(pymysql.err.OperationalError) as waited:
                other.execute("UPDATE snap_t SET v = 1 WHERE id = 1")
            assert waited.value.args[0] == 1205
            a.rollback()
            other.execute("UPDATE snap_t SET v = 1 WHERE id = 1")  # the lock went with it

            # Idle past the tablet's transaction.timeout (30 s), a transaction that only
            # read ends on the tablet; the next read starts a new one without an error.
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT COUNT(*) FROM snap_t")
            time.sleep(31)
            other.execute("INSERT INTO snap_t SELECT MAX(id) + 1, 0 FROM snap_t")
            cur.execute("SELECT COUNT(*) FROM snap_t")
            assert cur.fetchone()[0] == before + 2
            # Switching to a replica target ends such a transaction: reads go to replicas.
            cur.execute("USE commerce@replica")
            cur.execute("SELECT @@server_id")
            assert cur.fetchone()[0] in REPLICAS
            a.commit()
    finally:
        a.close()
        b.close()


def test_ddl_commits_implicitly_as_in_mysql(cluster: dict[str, Any]) -> None:
    # Autocommit off (PyMySQL's default, Alembic's migrations): DDL commits what came
    # before it and leaves no transaction open, so a ROLLBACK undoes only what follows it.
    conn = cluster["connect"](autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS ddl_t")
            cur.execute("CREATE TABLE ddl_t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO ddl_t VALUES (1)")
            conn.rollback()
            cur.execute("INSERT INTO ddl_t VALUES (2)")
            cur.execute("ALTER TABLE ddl_t ADD COLUMN v INT")  # commits the insert of 2
            cur.execute("INSERT INTO ddl_t VALUES (3, 0)")
            conn.rollback()
            cur.execute("SELECT id FROM ddl_t ORDER BY id")
            assert cur.fetchall() == ((2,),)
            conn.rollback()
    finally:
        conn.close()


def test_lock_tables_keeps_its_locks(cluster: dict[str, Any]) -> None:
    # START TRANSACTION releases table locks in MySQL: with autocommit off a write under
    # LOCK TABLES (which would open a tablet transaction) gets the clear 1235 and the locks
    # stay; with autocommit on, writes under the locks run as in MySQL.
    a = cluster["connect"](autocommit=False)
    b = cluster["connect"]()
    try:
        with a.cursor() as cur, b.cursor() as other:
            other.execute("CREATE TABLE IF NOT EXISTS locked_t (id INT AUTO_INCREMENT PRIMARY KEY)")
            other.execute("SET SESSION lock_wait_timeout = 1")
            for autocommit in (False, True):
                a.autocommit(autocommit)
                cur.execute("LOCK TABLES locked_t WRITE")
                if autocommit:
                    cur.execute("INSERT INTO locked_t VALUES ()")
                else:
                    with pytest.raises(pymysql.err.MySQLError) as refused:
                        cur.execute("INSERT INTO locked_t VALUES ()")
                    assert refused.value.args[0] == 1235
                    cur.execute("SELECT COUNT(*) FROM locked_t")  # reads run under them
                with pytest.raises(pymysql.err.OperationalError) as waited:
                    other.execute("SELECT COUNT(*) FROM locked_t")
                assert waited.value.args[0] == 1205  # the lock is still held
                cur.execute("UNLOCK TABLES")
            other.execute("SELECT COUNT(*) FROM locked_t")
    finally:
        a.close()
        b.close()


def test_a_deadlock_ends_the_transaction(cluster: dict[str, Any]) -> None:
    # mysqld rolls the deadlock's loser back whole; with autocommit off, what the loser
    # runs next is a new transaction, which its ROLLBACK undoes (as on MariaDB directly).
    setup = cluster["connect"]()
    a, b = cluster["connect"](autocommit=False), cluster["connect"](autocommit=False)
    try:
        with setup.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS deadlock_t (id INT PRIMARY KEY, v INT)")
            cur.execute("DELETE FROM deadlock_t")
            cur.execute("INSERT INTO deadlock_t VALUES (1, 0), (2, 0)")
        ca, cb = a.cursor(), b.cursor()
        ca.execute("UPDATE deadlock_t SET v = 1 WHERE id = 1")
        cb.execute("UPDATE deadlock_t SET v = 1 WHERE id = 2")
        errors: dict[Any, int] = {}

        def crossing() -> None:
            try:
                ca.execute("UPDATE deadlock_t SET v = 2 WHERE id = 2")  # waits for b
            except pymysql.err.MySQLError as e:
                errors[ca] = e.args[0]

        waiter = threading.Thread(target=crossing)
        waiter.start()
        time.sleep(0.5)
        try:
            cb.execute("UPDATE deadlock_t SET v = 2 WHERE id = 1")  # closes the cycle
        except pymysql.err.MySQLError as e:
            errors[cb] = e.args[0]
        waiter.join(10)
        assert list(errors.values()) == [1213]
        (loser,) = errors
        (ca if loser is cb else cb).connection.commit()  # the winner
        loser.execute("INSERT INTO deadlock_t VALUES (3, 3)")
        loser.connection.rollback()
        with setup.cursor() as cur:
            cur.execute("SELECT id FROM deadlock_t ORDER BY id")
            assert cur.fetchall() == ((1,), (2,))
    finally:
        for conn in (setup, a, b):
            conn.close()


def test_commit_and_chain_and_release(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS chain_t (id INT)")
            cur.execute("DELETE FROM chain_t")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO chain_t VALUES (1)")
            cur.execute("COMMIT AND CHAIN")  # the next insert is in a new transaction...
            cur.execute("INSERT INTO chain_t VALUES (2)")
            cur.execute("ROLLBACK")  # ...which this undoes, as in MySQL
            cur.execute("SELECT id FROM chain_t")
            assert cur.fetchall() == ((1,),)
            with pytest.raises(pymysql.err.MySQLError) as refused:
                cur.execute("SET SESSION completion_type = 'CHAIN'")
            assert refused.value.args[0] == 1235
            cur.execute("COMMIT RELEASE")  # the gate closes the connection after its OK
            with pytest.raises(pymysql.err.OperationalError) as closed:
                cur.execute("SELECT 1")
            assert closed.value.args[0] in (2006, 2013)
    finally:
        conn.close()


def test_a_procedure_that_leaves_its_transaction_open(cluster: dict[str, Any]) -> None:
    # On MariaDB the session is then in that transaction and its COMMIT keeps the row. Run
    # on a pooled connection, the gate's COMMIT could not reach it: the tablet rolls it
    # back and says so; inside a transaction the CALL works as on MariaDB.
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS open_t (id INT PRIMARY KEY)")
            cur.execute("DELETE FROM open_t")
            cur.execute("DROP PROCEDURE IF EXISTS leave_open")
            cur.execute(
                "CREATE PROCEDURE leave_open() BEGIN START TRANSACTION; "
                "INSERT INTO open_t VALUES (1); END"
            )
            with pytest.raises(pymysql.err.MySQLError) as refused:
                cur.execute("CALL leave_open()")
            assert refused.value.args[0] == 1105 and "left a transaction open" in str(refused.value)
            cur.execute("SELECT COUNT(*) FROM open_t")
            assert cur.fetchone() == (0,)
            cur.execute("BEGIN")
            cur.execute("CALL leave_open()")
            cur.execute("COMMIT")
            cur.execute("SELECT COUNT(*) FROM open_t")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


def test_xa_and_a_procedure_that_commits_inside_a_transaction(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]()
    off = cluster["connect"](autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS xa_t (id INT PRIMARY KEY)")
            cur.execute("DELETE FROM xa_t")
            # XA runs on a reserved connection, which stays in its XA transaction.
            for sql in ("XA START 'vt1'", "INSERT INTO xa_t VALUES (1)", "XA END 'vt1'"):
                cur.execute(sql)
            cur.execute("XA PREPARE 'vt1'")
            cur.execute("XA COMMIT 'vt1'")
            cur.execute("DROP PROCEDURE IF EXISTS commits_inside")
            cur.execute(
                "CREATE PROCEDURE commits_inside() BEGIN INSERT INTO xa_t VALUES (2); COMMIT; END"
            )
        # Autocommit off: the procedure's COMMIT ends the transaction, as on MariaDB, so the
        # next insert is in a new one, which ROLLBACK undoes.
        with off.cursor() as cur:
            cur.execute("CALL commits_inside()")
            cur.execute("INSERT INTO xa_t VALUES (3)")
            off.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM xa_t ORDER BY id")
            assert cur.fetchall() == ((1,), (2,))
    finally:
        conn.close()
        off.close()


def test_last_insert_id_of_interleaved_sessions(cluster: dict[str, Any]) -> None:
    """Two sessions inserting in turn on pooled connections: SELECT LAST_INSERT_ID() gives
    each its own id, and ROW_COUNT() its own count (mysqld would answer for whichever
    session used the connection last)."""
    a, b = cluster["connect"](), cluster["connect"]()
    try:
        with a.cursor() as ca, b.cursor() as cb:
            ca.execute("DROP TABLE IF EXISTS ids_t")
            ca.execute("CREATE TABLE ids_t (id INT AUTO_INCREMENT PRIMARY KEY)")
            for _ in range(10):
                ca.execute("INSERT INTO ids_t () VALUES ()")
                cb.execute("INSERT INTO ids_t () VALUES ()")
                id_a, id_b = ca.lastrowid, cb.lastrowid
                assert id_a and id_b and id_a != id_b
                ca.execute("SELECT LAST_INSERT_ID()")
                assert ca.fetchone() == (id_a,)
                cb.execute("SELECT LAST_INSERT_ID()")
                assert cb.fetchone() == (id_b,)
            ca.execute("DELETE FROM ids_t WHERE id <= 4")  # 4 rows (ids from 1 in a new table)
            cb.execute("UPDATE ids_t SET id = id WHERE id < 0")  # 0 rows
            ca.execute("SELECT ROW_COUNT()")
            assert ca.fetchone() == (4,)
            cb.execute("SELECT ROW_COUNT()")
            assert cb.fetchone() == (0,)
            # LAST_INSERT_ID(expr) sets it, though a SELECT or DO reports no id.
            ca.execute("SELECT LAST_INSERT_ID(5)")
            ca.execute("SELECT LAST_INSERT_ID()")
            assert ca.fetchone() == (5,)
            cb.execute("DO LAST_INSERT_ID(9)")
            cb.execute("SELECT LAST_INSERT_ID()")
            assert cb.fetchone() == (9,)
    finally:
        a.close()
        b.close()


def test_stored_procedure_out_parameters(cluster: dict[str, Any]) -> None:
    """A CALL whose OUT parameter is a user variable, then a SELECT of it (what the mariadb
    CLI and text-protocol drivers do), and PyMySQL's callproc: the variable keeps its value,
    and the procedure's own result set arrives before the CALL's OK."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS double_it")
            cur.execute(
                "CREATE PROCEDURE double_it(IN x INT, OUT y INT) "
                "BEGIN SELECT x AS given; SET y = x * 2; END"
            )
            cur.execute("CALL double_it(21, @y)")
            assert result_sets(cur)[0] == ((21,),)
            cur.execute("SELECT @y")
            assert cur.fetchone() == (42,)
            cur.callproc("double_it", (5, None))
            assert result_sets(cur)[0] == ((5,),)
            cur.execute("SELECT @_double_it_1")
            assert cur.fetchone() == (10,)
    finally:
        conn.close()


def test_query_statistics_by_digest(cluster: dict[str, Any]) -> None:
    """/debug/queryz counts statements by digest (PyMySQL's and the mariadb CLI's alike),
    with their rows and errors, and lists the errors; POST .../reset clears it."""
    base = f"http://{cluster['gate']['http']}/debug/queryz"
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS digest_t")
            cur.execute("CREATE TABLE digest_t (id INT PRIMARY KEY, v VARCHAR(10))")
            urllib.request.urlopen(urllib.request.Request(base + "/reset", method="POST"))
            for n in range(5):
                cur.execute("INSERT INTO digest_t VALUES (%s, %s)", (n, f"v{n}"))
            for n in range(3):
                cur.execute("SELECT v FROM digest_t WHERE id IN (%s, %s)", (n, n + 1))
            with pytest.raises(pymysql.err.OperationalError, match="1054"):
                cur.execute("SELECT nope FROM digest_t WHERE id = 1")
    finally:
        conn.close()
    cli = subprocess.run(
        ["mariadb", "-h", cluster["gate"]["mysql"].rsplit(":", 1)[0],
         "-P", cluster["gate"]["mysql"].rsplit(":", 1)[1], "-u", cluster["gate"]["user"],
         f"-p{cluster['gate']['password']}", "commerce", "-e",
         "SELECT v FROM digest_t WHERE id IN (4, 0)"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    with urllib.request.urlopen(base + "?format=json") as response:
        data = json.load(response)
    by_digest = {e["digest"]: e for e in data["digests"] if e["database"] == "commerce"}
    insert = by_digest["INSERT INTO digest_t VALUES (?, ?)"]
    assert (insert["count"], insert["rows_affected"], insert["errors"]) == (5, 5, 0)
    select = by_digest["SELECT v FROM digest_t WHERE id IN (...)"]
    assert (select["count"], select["rows_sent"]) == (4, 8)
    assert 0 < select["min_seconds"] <= select["mean_seconds"] <= select["max_seconds"]
    assert by_digest["SELECT nope FROM digest_t WHERE id = ?"]["errors"] == 1
    assert [(e["code"], e["digest"]) for e in data["recent_errors"][:1]] == [
        (1054, "SELECT nope FROM digest_t WHERE id = ?")
    ]
    with urllib.request.urlopen(base) as response:
        assert "SELECT v FROM digest_t WHERE id IN (...)" in response.read().decode()
    urllib.request.urlopen(urllib.request.Request(base + "/reset", method="POST"))
    with urllib.request.urlopen(base + "?format=json") as response:
        assert json.load(response)["digests"] == []


def test_set_statement_for_holds_no_connection(cluster: dict[str, Any]) -> None:
    """MariaDB's ``SET STATEMENT var = value FOR s`` is routed as ``s``: at a replica
    target it is a read spread over the replicas (a session holding a reserved connection
    would stay on one), its value does not outlive it, and it still applies."""
    conn = cluster["connect"]("commerce@replica")
    try:
        sql = "SET STATEMENT max_statement_time=5 FOR SELECT @@server_id"
        assert served_by(conn, sql, times=40) == REPLICAS
        assert float(one(conn, "SELECT @@max_statement_time")) == 0
        started = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as e:
            one(conn, "SET STATEMENT max_statement_time=0.5 FOR SELECT SLEEP(5)")
        assert e.value.args[0] == 1969 and time.monotonic() - started < 4
    finally:
        conn.close()


def test_large_blob_round_trip(cluster: dict[str, Any]) -> None:
    """A 20 MB BLOB through the gate, as PyMySQL writes it (hex: a 40 MB statement, under
    the local mysqld's 64 MB max_allowed_packet): stored and read back whole. The tablet
    RPC's frame limit used to refuse anything above 16 MB (ERROR 1153)."""
    conn = cluster["connect"](max_allowed_packet=128 * 1024 * 1024)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS blob_t")
            cur.execute("CREATE TABLE blob_t (id INT PRIMARY KEY, b LONGBLOB)")
            data = os.urandom(20 * 1024 * 1024)
            cur.execute("INSERT INTO blob_t VALUES (1, %s)", (data,))
            cur.execute("SELECT b, LENGTH(b) FROM blob_t WHERE id = 1")
            got, length = cur.fetchone()
            assert length == len(data) and got == data
            cur.execute("DROP TABLE blob_t")
    finally:
        conn.close()


def test_mariadb_dump_and_restore(cluster: dict[str, Any], tmp_path: Path) -> None:
    """mariadb-dump --single-transaction of a table over the tablet's row limit (10000),
    then its restore through the mariadb CLI: the same rows. The dump's session starts in
    the OLAP workload (its program_name is in session.olap_programs); another client's
    SELECT of the same rows gets ERROR 1104."""
    gate = cluster["gate"]
    host, port = gate["mysql"].rsplit(":", 1)
    login = ["-h", host, "-P", port, "-u", gate["user"], f"-p{gate['password']}"]
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS dump_t")
            cur.execute("CREATE TABLE dump_t (id INT PRIMARY KEY, v VARCHAR(20))")
            for start in range(0, 12000, 2000):
                values = ",".join(f"({i}, 'v{i}''x')" for i in range(start, start + 2000))
                cur.execute(f"INSERT INTO dump_t VALUES {values}")
            checksum = "SELECT COUNT(*), SUM(id), SUM(CRC32(v)) FROM dump_t"
            before = one_row(conn, checksum)
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute("SELECT * FROM dump_t")
            assert e.value.args[0] == 1104
        dump = tmp_path / "dump.sql"
        with dump.open("wb") as out:
            r = subprocess.run(
                ["mariadb-dump", *login, "--single-transaction", "--no-tablespaces",
                 "commerce", "dump_t"],
                stdout=out, stderr=subprocess.PIPE, timeout=120, check=False,
            )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        with conn.cursor() as cur:
            cur.execute("DROP TABLE dump_t")
        with dump.open("rb") as source:
            r = subprocess.run(
                ["mariadb", *login, "commerce"],
                stdin=source, capture_output=True, timeout=120, check=False,
            )  # fmt: skip
        assert r.returncode == 0, r.stderr.decode()
        assert one_row(conn, checksum) == before
    finally:
        conn.close()


def test_olap_stream_to_a_reader_that_pauses(cluster: dict[str, Any]) -> None:
    """A 100 MB result streamed (SET workload = 'olap') to a client that stops reading now
    and then, as a dump program writing its file does: the gate pauses the stream each
    time and resumes it, and the whole result arrives (the gate once lost the credit of
    all but one of the chunks taken while paused, and the stream stalled after a few
    pauses until the 30 s deadline)."""
    conn = cluster["connect"](cursorclass=pymysql.cursors.SSCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SET workload = 'olap'")
            cur.execute("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_100000")
            count = total = 0
            for seq, _ in cur:
                count += 1
                total += seq
                if count % 5000 == 0:
                    time.sleep(0.2)  # the client's socket fills: the gate pauses the stream
        assert (count, total) == (100_000, 100_000 * 100_001 // 2)
    finally:
        conn.close()


def test_create_and_drop_database_and_server_admin(cluster: dict[str, Any], tmp_path: Path) -> None:
    """DROP DATABASE of a keyspace is refused (mariadb-slap's DROP SCHEMA IF EXISTS once
    dropped every table of the keyspace on its tablets), and so is RESET MASTER (the app
    account has RELOAD: it would wipe the binary logs the replicas follow); CREATE
    DATABASE IF NOT EXISTS of the keyspace, as a dump made with --databases begins, is a
    note, so its restore works."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS keep_t")
            cur.execute("CREATE TABLE keep_t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO keep_t VALUES (1), (2)")
            for sql in ("DROP DATABASE commerce", "DROP SCHEMA IF EXISTS commerce",
                        "CREATE DATABASE elsewhere", "RESET MASTER",
                        "PURGE BINARY LOGS BEFORE NOW()"):  # fmt: skip
                with pytest.raises(pymysql.err.MySQLError) as e:
                    cur.execute(sql)
                assert e.value.args[0] == 1235, sql
            assert one(conn, "SELECT COUNT(*) FROM keep_t") == 2
            cur.execute("CREATE DATABASE IF NOT EXISTS commerce")
            cur.execute("SHOW WARNINGS")
            assert [r[:2] for r in cur.fetchall()] == [("Note", 1007)]
    finally:
        conn.close()
    dump = tmp_path / "with_database.sql"
    dump.write_text(
        "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `commerce` /*!40100 DEFAULT CHARACTER SET "
        "utf8mb4 */;\nUSE `commerce`;\nDROP TABLE IF EXISTS `keep_t`;\n"
        "CREATE TABLE `keep_t` (`id` int NOT NULL, PRIMARY KEY (`id`));\n"
        "INSERT INTO `keep_t` VALUES (7),(8),(9);\n"
    )
    gate = cluster["gate"]
    host, port = gate["mysql"].rsplit(":", 1)
    with dump.open("rb") as source:
        r = subprocess.run(
            ["mariadb", "-h", host, "-P", port, "-u", gate["user"], f"-p{gate['password']}"],
            stdin=source, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    conn = cluster["connect"]()
    try:
        assert one(conn, "SELECT SUM(id) FROM keep_t") == 24
    finally:
        conn.close()


MYDUMPER = "/usr/bin/mydumper"


def test_mydumper_and_myloader(cluster: dict[str, Any], tmp_path: Path) -> None:
    """mydumper (FLUSH TABLES WITH READ LOCK, then consistent-snapshot transactions in 4
    threads) of a table over the tablet's row limit: it sends no program_name, but its
    table reads carry the dump marker (session.olap_markers) and stream; myloader
    restores the same rows."""
    if not Path(MYDUMPER).exists():
        pytest.skip("mydumper is not installed (scripts/test installs the mydumper package)")
    gate = cluster["gate"]
    host, port = gate["mysql"].rsplit(":", 1)
    login = ["-h", host, "-P", port, "-u", gate["user"], "-p", gate["password"]]
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS mydump_t")
            cur.execute("CREATE TABLE mydump_t (id INT PRIMARY KEY, v VARCHAR(20))")
            for start in range(0, 12000, 3000):
                values = ",".join(f"({i}, 'm{i}''q')" for i in range(start, start + 3000))
                cur.execute(f"INSERT INTO mydump_t VALUES {values}")
        checksum = "SELECT COUNT(*), SUM(id), SUM(CRC32(v)) FROM mydump_t"
        before = one_row(conn, checksum)
        out = tmp_path / "dump"
        r = subprocess.run(
            [MYDUMPER, *login, "-B", "commerce", "--regex", r"^commerce\.mydump_t$",
             "-o", str(out), "-t", "4"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert r.returncode == 0 and "CRITICAL" not in r.stderr, r.stderr
        assert (out / "commerce.mydump_t.sql").stat().st_size > 100_000
        with conn.cursor() as cur:
            cur.execute("DELETE FROM mydump_t WHERE id >= 6000")
        r = subprocess.run(
            ["myloader", *login, "-B", "commerce", "-d", str(out), "-o"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert r.returncode == 0 and "CRITICAL" not in r.stderr, r.stderr
        assert one_row(conn, checksum) == before
    finally:
        conn.close()


@pytest.mark.filterwarnings("ignore:Call to deprecated function stored_results")
def test_procedure_returning_two_result_sets(cluster: dict[str, Any]) -> None:
    """A procedure with two SELECTs: both result sets reach the client (the tablet used to
    refuse the CALL with ERROR 1312), as PyMySQL's nextset and mysql-connector's callproc
    read them; the session goes on. JDBC reads them in JdbcClient.java."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP PROCEDURE IF EXISTS two_sets")
            cur.execute(
                "CREATE PROCEDURE two_sets(IN n INT) BEGIN SELECT n AS a; "
                "SELECT n + 1 AS b, 'x' AS c UNION ALL SELECT n + 2, 'y'; END"
            )
            cur.execute("CALL two_sets(1)")
            assert result_sets(cur)[:2] == [((1,),), ((2, "x"), (3, "y"))]
            assert one(conn, "SELECT 'after'") == "after"
    finally:
        conn.close()
    import mysql.connector

    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    connector = mysql.connector.connect(
        host=host, port=int(port), user=cluster["gate"]["user"],
        password=cluster["gate"]["password"], database="commerce", use_pure=True,
    )  # fmt: skip
    try:
        cur = connector.cursor()
        cur.callproc("two_sets", (20,))
        got = [r.fetchall() for r in cur.stored_results()]
        assert got == [[(20,)], [(21, "x"), (22, "y")]]
    finally:
        connector.close()


def test_show_warnings_is_each_sessions_own(cluster: dict[str, Any]) -> None:
    """Sessions taking turns on pooled connections (the primary's and a replica's): SHOW
    WARNINGS answers each one's own last statement. Before, it ran on whichever pooled
    connection came up, and showed nothing or another session's warnings."""
    conns = [cluster["connect"](), cluster["connect"](), cluster["connect"]("commerce@replica")]
    try:
        curs = [c.cursor() for c in conns]
        for r in range(5):
            for i, cur in enumerate(curs):
                cur.execute(f"SELECT 's{i}r{r}' + 1, 'x' + 1")
            for i, cur in enumerate(curs):
                cur.execute("SHOW WARNINGS")
                assert cur.fetchall() == (
                    ("Warning", 1292, f"Truncated incorrect DOUBLE value: 's{i}r{r}'"),
                    ("Warning", 1292, "Truncated incorrect DOUBLE value: 'x'"),
                )
        a = curs[0]
        a.execute("SHOW COUNT(*) WARNINGS")
        assert a.fetchall() == ((2,),)
        a.execute("SELECT @@warning_count, @@error_count")
        assert a.fetchall() == ((2, 0),)
        a.execute("SHOW WARNINGS LIMIT 1, 1")
        assert [row[2] for row in a.fetchall()] == ["Truncated incorrect DOUBLE value: 'x'"]
        with pytest.raises(pymysql.err.OperationalError):
            a.execute("SELECT nosuch_column")
        a.execute("SHOW ERRORS")
        assert a.fetchall() == (("Error", 1054, "Unknown column 'nosuch_column' in 'SELECT'"),)
        a.execute("SELECT 1")
        a.execute("SHOW WARNINGS")
        assert a.fetchall() == ()
    finally:
        for c in conns:
            c.close()
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    cli = subprocess.run(
        ["mariadb", "--protocol=tcp", f"-h{host}", f"-P{port}", f"-u{cluster['gate']['user']}",
         f"-p{cluster['gate']['password']}", "--show-warnings", "commerce",
         "-e", "SET sql_mode = ''; CREATE TEMPORARY TABLE tw (c TINYINT);"
               "INSERT INTO tw VALUES (300)"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "Warning (Code 1264): Out of range value for column 'c' at row 1" in cli.stdout


def test_a_settings_own_warnings(cluster: dict[str, Any]) -> None:
    """A SET of a session variable (which becomes one of the session's settings) that
    mysqld warns about: SHOW WARNINGS shows mysqld's warning, as directly; the value holds."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION max_heap_table_size = 1")
            cur.execute("SHOW WARNINGS")
            rows = cur.fetchall()
        assert [(r[0], r[1]) for r in rows] == [("Warning", 1292)]
        assert "max_heap_table_size" in rows[0][2]
        assert int(one(conn, "SELECT @@max_heap_table_size")) == 16384
    finally:
        conn.close()


def test_load_data_local_infile(cluster: dict[str, Any], tmp_path: Path) -> None:
    """LOAD DATA LOCAL INFILE through the gate: PyMySQL and the mariadb CLI send their
    file, mysqld loads it on the primary; warnings, a file larger than a tablet RPC frame
    (it streams), a file over the gate's limit (refused, nothing of it loaded, session
    still usable) and a client without the flag (1148)."""
    csv = tmp_path / "rows.csv"
    csv.write_text("".join(f"{i},v{i}\n" for i in range(1, 20001)))
    conn = cluster["connect"](local_infile=True)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS ld_t")
            cur.execute("CREATE TABLE ld_t (id INT PRIMARY KEY, v VARCHAR(4))")
            into = "INTO TABLE ld_t FIELDS TERMINATED BY ','"
            assert cur.execute(f"LOAD DATA LOCAL INFILE '{csv}' {into}") == 20000
            # v1000..v20000 did not fit in VARCHAR(4): 19001 warnings, 64 shown
            # (query.max_warnings).
            assert one(conn, "SHOW COUNT(*) WARNINGS") == 19001
            cur.execute("SHOW WARNINGS")
            notes = cur.fetchall()
            assert len(notes) == 64 and {row[1] for row in notes} == {1265}
            assert one(conn, "SELECT SUM(id) FROM ld_t") == 20000 * 20001 // 2
            assert one(conn, "SELECT v FROM ld_t WHERE id = 998") == "v998"
            # 70 MB: more than one tablet RPC frame (65 MiB) could carry.
            cur.execute("DROP TABLE IF EXISTS ld_big")
            cur.execute("CREATE TABLE ld_big (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB")
            filler = "y" * 1000
            big = tmp_path / "big.csv"
            with big.open("w") as f:
                f.writelines(f"{i},{filler}\n" for i in range(1, 70_001))
            assert big.stat().st_size > DEFAULT_MAX_FRAME_SIZE
            by_comma = "FIELDS TERMINATED BY ','"
            load_big = f"LOAD DATA LOCAL INFILE '{big}' INTO TABLE ld_big {by_comma}"
            assert cur.execute(load_big) == 70_000
            assert one(conn, "SELECT SUM(LENGTH(v)) FROM ld_big") == 70_000_000
            # Over the limit: a new row first, then rows that are ignored (duplicate keys)
            # until the file passes it. The statement is rolled back: not even the first row
            # stays.
            over = tmp_path / "over.csv"
            with over.open("w") as f:
                f.write("999999,new\n")
                f.writelines(f"1,{filler}\n" for _ in range(LOAD_LIMIT // 1000 + 1))
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute(
                    f"LOAD DATA LOCAL INFILE '{over}' INTO TABLE ld_big FIELDS TERMINATED BY ','"
                )
            assert e.value.args[0] == 1153 and "session.max_local_infile_size" in e.value.args[1]
            assert one(conn, "SELECT COUNT(*) FROM ld_big WHERE id = 999999") == 0
            assert one(conn, "SELECT COUNT(*) FROM ld_big") == 70_000
            # Inside a transaction: the transaction ends with the aborted statement, and
            # its COMMIT says so.
            cur.execute("BEGIN")
            cur.execute("INSERT INTO ld_big VALUES (888888, 'tx')")
            with pytest.raises(pymysql.err.OperationalError) as e:
                cur.execute(f"LOAD DATA LOCAL INFILE '{over}' INTO TABLE ld_big {by_comma}")
            assert e.value.args[0] == 1153
            with pytest.raises(pymysql.err.MySQLError) as ended:
                cur.execute("COMMIT")
            assert "rolled back: its connection to mysqld broke" in ended.value.args[1]
            assert one(conn, "SELECT COUNT(*) FROM ld_big WHERE id = 888888") == 0
            cur.execute("INSERT INTO ld_big VALUES (888888, 'again')")
            assert one(conn, "SELECT v FROM ld_big WHERE id = 888888") == "again"
            cur.execute("DROP TABLE ld_big")
    finally:
        conn.close()
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    base = ["mariadb", "--protocol=tcp", f"-h{host}", f"-P{port}", f"-u{cluster['gate']['user']}",
            f"-p{cluster['gate']['password']}", "commerce"]  # fmt: skip
    load = f"DELETE FROM ld_t; LOAD DATA LOCAL INFILE '{csv}' {into}; SELECT COUNT(*) FROM ld_t"

    def cli(flag: str) -> subprocess.CompletedProcess[str]:
        args = [*base, flag, "-N", "-e", load]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    loaded = cli("--local-infile=1")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["20000"]
    assert "ERROR 1148 (42000)" in cli("--local-infile=0").stderr


def test_query_timeout_directive_and_session_variable(cluster: dict[str, Any]) -> None:
    """Vitess's per-statement timeout: /*vt+ QUERY_TIMEOUT_MS=n */ and SET query_timeout
    (milliseconds): the tablet kills the statement on mysqld after n ms, ERROR 1317."""
    conn = cluster["connect"]()
    try:
        with conn.cursor() as cur:
            for setup, sql in [
                (None, "SELECT /*vt+ QUERY_TIMEOUT_MS=300 */ SLEEP(20)"),
                ("SET query_timeout = 300", "SELECT SLEEP(20)"),
                ("BEGIN", "SELECT SLEEP(20) FROM DUAL"),  # in a transaction, still 300 ms
            ]:
                if setup:
                    cur.execute(setup)
                start = time.monotonic()
                with pytest.raises(pymysql.err.OperationalError) as e:
                    cur.execute(sql)
                assert e.value.args[0] == 1317 and "QUERY_TIMEOUT_MS" in e.value.args[1]
                assert time.monotonic() - start < 10
            cur.execute("ROLLBACK")
            assert one(conn, "SELECT @@query_timeout") == 300  # the gate's, as in Vitess
            cur.execute("SET query_timeout = 0")
            assert one(conn, "SELECT @@session.query_timeout") == 0
            assert one(conn, "SELECT SLEEP(0.5)") == 0  # the default (30 s) again
            running = "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            running += " WHERE INFO LIKE 'SELECT%SLEEP(20)%' AND INFO NOT LIKE '%PROCESSLIST%'"
            assert one(conn, running) == 0  # killed on mysqld, not left running
    finally:
        conn.close()


NODE_MODULES = Path(sys.prefix) / "node" / "node_modules"  # (scripts/test: $VENV/node)


def test_node_mysql2(cluster: dict[str, Any]) -> None:
    """Node.js's mysql2 (its query() and its server-side prepared execute()), with a
    DATETIME(3), a transaction, SHOW WARNINGS, an error, LOAD DATA LOCAL from a stream
    and a replica target: tests/integration/local/node_client.js."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "mysql2").is_dir():
        pytest.skip("node or mysql2 is not installed (scripts/test installs them)")
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    env = {
        **os.environ,
        "NODE_PATH": str(NODE_MODULES),
        "VT_HOST": host,
        "VT_PORT": port,
        "VT_USER": cluster["gate"]["user"],
        "VT_PASSWORD": cluster["gate"]["password"],
    }
    script = Path(__file__).with_name("node_client.js")
    r = subprocess.run(
        [node, str(script)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["query"] == {"a": 1, "b": "héllo", "c": None}
    assert out["execute"] == {"n": 42, "s": "x"}
    assert out["insert"] == [True, 1]
    assert out["row"] == ["2026-12-04T10:11:12.345Z", "a"]
    assert out["in_tx"] == "in tx" and out["after_rollback"] == "a"
    assert out["warnings"] == [[1292, "Truncated incorrect DOUBLE value: 'x'"]]
    assert out["error"] == [1146, "42S02"]
    assert out["load"] == 2
    assert out["replica_sid"] in REPLICAS and out["replica_write"] == 1290


GO = "/usr/bin/go"
GO_DRIVER = "/usr/share/gocode/src/github.com/go-sql-driver/mysql"


def test_go_sql_driver(cluster: dict[str, Any], tmp_path: Path) -> None:
    """The Go MySQL driver (what Vitess users' Go services use): server-side prepared
    statements, DATETIME(6), a BLOB, a transaction, LOAD DATA LOCAL from a reader, a
    replica target:
    tests/integration/local/go_client.go, built with Debian's Go and driver."""
    if not (Path(GO).exists() and Path(GO_DRIVER).exists()):
        pytest.skip(
            "go or the driver is not installed (scripts/test installs golang-go and "
            "golang-github-go-sql-driver-mysql-dev)"
        )
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": "/usr/share/gocode",
        "GOCACHE": str(tmp_path / "gocache"),
        "HOME": str(tmp_path),
    }
    binary = tmp_path / "go_client"
    source = Path(__file__).with_name("go_client.go")
    build = subprocess.run(
        [GO, "build", "-o", str(binary), str(source)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    gate = cluster["gate"]
    dsn = f"{gate['user']}:{gate['password']}@tcp({gate['mysql']})/commerce{{}}?parseTime=true"
    r = subprocess.run(
        [str(binary), dsn.format(""), dsn.format("@replica")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version_comment"] == "vtwist gate"
    assert out["insert"][0] > 0 and out["insert"][1] == 1
    assert out["row"][:3] == ["héllo", "2026-12-04T10:11:12.123456Z", 2.5]
    assert out["row"][3] == "AAEC/w=="  # bytes 0 1 2 255 (JSON base64)
    assert out["in_tx"] == "in tx" and out["after_rollback"] == "héllo"
    assert out["prepared"] == [1, 2, 3]
    assert out["load"] == [30_000, 30_000, 3_000_000]
    assert out["error"][0] == 1146 and "go_nosuch" in out["error"][1]
    assert out["replica_server_id"] in REPLICAS
    assert out["replica_write"] == 1290


JAVA = "/usr/bin/java"
JDBC_JAR = "/usr/share/java/mariadb-java-client.jar"


@pytest.mark.parametrize("options", ["", "?useServerPrepStmts=true&rewriteBatchedStatements=true"])
def test_jdbc(cluster: dict[str, Any], options: str) -> None:
    """MariaDB Connector/J (JDBC), with client-side and with server-side prepared
    statements: generated keys, getWarnings(), a batch, DATETIME(3), DECIMAL and BLOB, a
    transaction, setQueryTimeout (the driver's KILL QUERY), a stored procedure, a replica
    target by setCatalog: tests/integration/local/JdbcClient.java."""
    if not (Path(JAVA).exists() and Path(JDBC_JAR).exists()):
        pytest.skip(
            "java or the driver is not installed (scripts/test installs "
            "openjdk-17-jdk-headless and libmariadb-java)"
        )
    gate = cluster["gate"]
    source = Path(__file__).with_name("JdbcClient.java")
    url = f"jdbc:mariadb://{gate['mysql']}/commerce{options}"
    r = subprocess.run(
        [JAVA, "-cp", JDBC_JAR, str(source), url, gate["user"], gate["password"]],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == server_info(cluster)
    assert out["generated"] == 1
    assert out["warning"] == [1292, "Truncated incorrect INTEGER value: 'abc'"]
    assert out["batch"] == [1, 1, 1] and out["batch_keys"] == [2, 3, 4]
    assert out["row"] == ["hé0", "2026-12-05 10:11:12.345", "12.34", 3, 255]
    assert out["in_tx"] == "1" and out["after_rollback"] == "0"
    before = int(out["snapshot"][0])  # autocommit off: the reads share one snapshot
    assert out["snapshot"] == [str(before), str(before), str(before + 1)]
    assert out["isolation"] == "READ-COMMITTED"
    assert out["timeout"] == [1317, "70100"] and out["timeout_ms"] < 15_000
    assert out["after_timeout"] == "2"
    assert out["call_result"] == 21 and out["call_out"] == "42"
    assert out["call_sets"] == [[3], [4, 5]]
    assert out["error"] == [1146, "42S02"]
    assert int(out["replica_server_id"]) in REPLICAS
    assert out["replica_write"] == [1290, "HY000"]
    assert out["valid"] is True


PHP = "/usr/bin/php"


def test_php_mysqlnd(cluster: dict[str, Any]) -> None:
    """PHP's mysqlnd (mysqli and PDO), a MySQL client written apart from libmariadb and
    the Python ones: tests/integration/local/php_client.php."""
    if not Path(PHP).exists():
        pytest.skip("php is not installed (scripts/test installs php-cli and php-mysql)")
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    env = {
        "VT_HOST": host,
        "VT_PORT": port,
        "VT_USER": cluster["gate"]["user"],
        "VT_PASSWORD": cluster["gate"]["password"],
    }
    script = Path(__file__).with_name("php_client.php")
    r = subprocess.run([PHP, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["server_info"] == server_info(cluster)
    assert out["query"] == {"a": "1", "b": "héllo", "c": None, "d": "2.5"}
    assert out["prepared"] == {"i": 7, "s": "x", "n": None}
    assert out["insert_id"] > 0
    assert out["in_tx"] == {"n": "1", "sid": str(PRIMARY)}
    assert out["after_rollback"] == {"n": "0"}
    assert int(out["replica"]["sid"]) in REPLICAS
    assert out["replica_write"] == [1290, "HY000"]
    assert out["multi"] == [[["1"]], [["2"]]]
    assert out["warnings"] == [1, 1292, "Truncated incorrect DOUBLE value: 'x'"]
    assert out["ping"] is True
    assert out["pdo_emulated"] == {"a": "1", "b": "two"}
    assert out["pdo_real"] == {"a": "3", "c": 5}
    assert out["pdo_error"] == ["42S02", 1146]


def pid_of(cluster: dict[str, Any], name: str) -> int:
    status = json.loads(vtwist("status", "--dir", str(cluster["dir"]), "--json").stdout)
    return int(next(p["pid"] for p in status["processes"] if p["name"] == name))


def wait_exit(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} did not exit in {seconds}s"
        time.sleep(0.05)


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn()`` in a thread; the dict gets its "result" or "error"."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as e:
            out["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def sigterm_mid_work(
    cluster: dict[str, Any], conns: tuple[Any, Any, Any], table: str, process: str, sleep: str
) -> tuple[Any, threading.Thread, dict[str, Any], int]:
    """With ``conns`` (setup, tx, busy): make ``table`` (one row, v = 0), open a
    transaction on ``tx`` that adds 1, start ``sleep`` (a SELECT) on ``busy`` in a thread,
    then SIGTERM ``process``. Returns tx's cursor, the thread, its result and the PID."""
    setup, tx, busy = conns
    with setup.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
        cur.execute(f"INSERT INTO {table} VALUES (1, 0)")
    tc = tx.cursor()
    tc.execute("BEGIN")
    tc.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1")
    sleeper, slept = in_thread(lambda: one(busy, sleep))
    time.sleep(0.3)
    pid = pid_of(cluster, process)
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    return tc, sleeper, slept, pid


def test_primary_tablet_restart_lets_running_work_end(cluster: dict[str, Any]) -> None:
    """SIGTERM to the primary's vttablet (a rolling restart): a statement running and an
    open transaction finish on it (shutdown.grace_period, 3 s), a new statement waits in
    the gate's failover buffer until the tablet is back (``vtwist up``): no client error."""
    setup, tx, other = cluster["connect"](), cluster["connect"](), cluster["connect"]()
    try:
        tc, sleeper, slept, pid = sigterm_mid_work(
            cluster,
            (setup, tx, other),
            "restart_t",
            "vttablet zone1-0000000100",
            "SELECT SLEEP(1.5) + 7",
        )
        tc.execute("UPDATE restart_t SET v = v + 10 WHERE id = 1")
        tc.execute("COMMIT")
        sleeper.join(30)
        assert slept == {"result": 7}
        wait_exit(pid, 15)
        reader, read = in_thread(lambda: one(setup, "SELECT v FROM restart_t WHERE id = 1"))
        out = vtwist("up", "--dir", str(cluster["dir"]), env=cluster["env"])
        assert out.returncode == 0, out.stdout + out.stderr
        reader.join(30)
        assert read == {"result": 11}
    finally:
        for conn in (setup, tx, other):
            conn.close()


def sysbench(cluster: dict[str, Any], workload: str = "oltp_read_write") -> list[str]:
    """sysbench ``workload`` through the gate (one table of 1000 rows, prepared now)."""
    if shutil.which("sysbench") is None:
        pytest.skip("sysbench is not installed (scripts/test installs it)")
    host, port = cluster["gate"]["mysql"].rsplit(":", 1)
    common = [
        "sysbench", workload, "--db-driver=mysql", f"--mysql-host={host}",
        f"--mysql-port={port}", f"--mysql-user={cluster['gate']['user']}",
        f"--mysql-password={cluster['gate']['password']}", "--mysql-db=commerce",
        "--mysql-ssl=off", "--tables=1", "--table-size=1000",
    ]  # fmt: skip
    for step in ("cleanup", "prepare"):
        out = subprocess.run([*common, step], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return common


def under_load(common: list[str], seconds: int, during: Callable[[], None]) -> None:
    """Run sysbench (8 threads, prepared statements) for ``seconds`` and ``during()`` in
    the meantime; sysbench stops at the first error it does not expect (it retries
    deadlocks), so its exit 0 means no client saw an error."""
    load = subprocess.Popen(
        [*common, "--threads=8", f"--time={seconds}", "--report-interval=1", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)
        during()
        output, _ = load.communicate(timeout=120)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert load.returncode == 0, output[-3000:]
    assert "FATAL" not in output
    assert int(output.split("transactions:")[1].split()[0]) > 100
    subprocess.run([*common, "cleanup"], capture_output=True, text=True, timeout=60)


def test_sysbench_through_a_primary_tablet_restart(cluster: dict[str, Any]) -> None:
    """The primary's vttablet restarted (SIGTERM, then ``vtwist up``) under sysbench
    oltp_read_write: no client error."""

    def restart() -> None:
        pid = pid_of(cluster, "vttablet zone1-0000000100")
        os.kill(pid, signal.SIGTERM)
        wait_exit(pid, 15)
        up = vtwist("up", "--dir", str(cluster["dir"]), env=cluster["env"])
        assert up.returncode == 0, up.stdout + up.stderr

    under_load(sysbench(cluster), 14, restart)


def test_sysbench_at_replicas_through_a_replica_tablet_restart(cluster: dict[str, Any]) -> None:
    """sysbench oltp_read_only at commerce@replica (statements outside transactions) while
    a replica's vttablet restarts: a read it refuses as it stops runs on the other replica;
    no client error."""
    common = sysbench(cluster, "oltp_read_only")
    at = "--mysql-db=commerce@replica"
    replica = [at if a.startswith("--mysql-db=") else a for a in common] + ["--skip_trx=on"]

    def restart() -> None:
        pid = pid_of(cluster, "vttablet zone1-0000000102")
        os.kill(pid, signal.SIGTERM)
        wait_exit(pid, 15)
        up = vtwist("up", "--dir", str(cluster["dir"]), env=cluster["env"])
        assert up.returncode == 0, up.stdout + up.stderr

    under_load(replica, 8, restart)


def test_sysbench_through_planned_reparents(cluster: dict[str, Any]) -> None:
    """Two planned reparents (to a replica and back) under sysbench oltp_read_write: the
    old primary lets open transactions commit before it turns read-only, new ones wait in
    the gate's buffer; no client error."""
    topo = cluster["topo_address"]

    def reparent_twice() -> None:
        for new in ("zone1-0000000101", "zone1-0000000100"):
            out = vtwist("reparent", "planned", "commerce/0", "--new-primary", new, "--topo", topo)
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(2)

    under_load(sysbench(cluster), 12, reparent_twice)
    conn = cluster["connect"]()
    try:
        assert int(one(conn, "SELECT @@server_id")) == PRIMARY
    finally:
        conn.close()


def test_planned_reparents_do_not_wait_for_autocommit_off_readers(cluster: dict[str, Any]) -> None:
    """PyMySQL clients (autocommit off) that read and then sit idle hold transactions that
    have only read: when the primary stops serving for a planned reparent, the gate rolls
    them back at once, so the old primary's drain does not wait out its grace period (its
    log says so when it does), and their next reads run in new transactions."""
    topo = cluster["topo_address"]
    logs = {
        alias: cluster["dir"] / "tablets" / alias / "twistd.log"
        for alias in ("zone1-0000000100", "zone1-0000000101")
    }
    sizes = {alias: path.stat().st_size for alias, path in logs.items()}
    readers = [cluster["connect"](autocommit=False) for _ in range(3)]
    try:
        with readers[0].cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS idle_readers_t (id INT PRIMARY KEY)")
        for new in ("zone1-0000000101", "zone1-0000000100"):
            for r in readers:
                assert one(r, "SELECT COUNT(*) FROM idle_readers_t") == 0  # opens one
            out = vtwist("reparent", "planned", "commerce/0", "--new-primary", new, "--topo", topo)
            assert out.returncode == 0, out.stdout + out.stderr
        for r in readers:
            assert one(r, "SELECT COUNT(*) FROM idle_readers_t") == 0
            r.commit()
    finally:
        for r in readers:
            r.close()
    for alias, path in logs.items():
        with path.open("rb") as f:
            f.seek(sizes[alias])
            written = f.read().decode("utf-8", "replace")
        assert "demoting: " not in written, written


def test_gate_stop_drains_its_sessions(cluster: dict[str, Any]) -> None:
    """SIGTERM to vtgate: /debug/health answers 503 and the listener closes; a statement
    running gets its result, an open transaction may still COMMIT, then each session is
    closed (an idle one at once). ``vtwist up`` brings the gate back."""
    idle, busy, tx = cluster["connect"](), cluster["connect"](), cluster["connect"]()
    http = f"http://{cluster['gate']['http']}/debug/health"
    try:
        tc, sleeper, slept, pid = sigterm_mid_work(
            cluster, (idle, tx, busy), "drain_t", "vtgate", "SELECT SLEEP(2) + 5"
        )
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(http)
        assert health.value.code == 503 and b"shutting down" in health.value.read()
        with pytest.raises(pymysql.err.OperationalError):
            cluster["connect"]()  # the listener is closed
        with pytest.raises(pymysql.err.OperationalError):
            one(idle, "SELECT 1")  # closed at once
        tc.execute("UPDATE drain_t SET v = v + 10 WHERE id = 1")
        tc.execute("COMMIT")
        with pytest.raises(pymysql.err.OperationalError):
            tc.execute("SELECT 1")  # closed once its transaction ended
        sleeper.join(30)
        assert slept == {"result": 5}
        wait_exit(pid, 15)
    finally:
        for conn in (idle, busy, tx):
            with contextlib.suppress(Exception):
                conn.close()
    out = vtwist("up", "--dir", str(cluster["dir"]), env=cluster["env"])
    assert out.returncode == 0, out.stdout + out.stderr
    conn = cluster["connect"]()
    try:
        assert one(conn, "SELECT v FROM drain_t WHERE id = 1") == 11
    finally:
        conn.close()


def reads_through_a_stop(
    cluster: dict[str, Any], process: str, seconds: float, after: float = 0.0
) -> list[tuple[float, float, Any]]:
    """Four sessions read at commerce@replica while ``process`` is stopped (SIGSTOP) for
    ``seconds``, and ``after`` seconds more: (start, duration, server id or error) of each
    read, times from the stop. Then waits until replica 101 serves again, for the next
    tests."""
    status = json.loads(vtwist("status", "--dir", str(cluster["dir"]), "--json").stdout)
    victim = next(p for p in status["processes"] if p["name"] == process)
    reads: list[tuple[float, float, Any]] = []
    stop = threading.Event()
    start = time.monotonic() + 1.0

    def reader() -> None:
        conn = cluster["connect"]("commerce@replica", read_timeout=40)
        try:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    got: Any = int(one(conn, "SELECT @@server_id"))
                except pymysql.err.MySQLError as e:
                    got = e
                reads.append((began - start, time.monotonic() - began, got))
                time.sleep(0.02)
        finally:
            conn.close()

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        os.kill(victim["pid"], signal.SIGSTOP)
        time.sleep(seconds)
    finally:
        os.kill(victim["pid"], signal.SIGCONT)
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join(45)
    conn = cluster["connect"]("commerce@replica")
    try:
        deadline = time.monotonic() + 60
        while 101 not in served_by(conn):
            assert time.monotonic() < deadline, f"101 did not serve again after {process} resumed"
            time.sleep(0.5)
    finally:
        conn.close()
    return reads


def test_sigstopped_replica_tablet_stalls_no_read(cluster: dict[str, Any]) -> None:
    # A stopped tablet process (reliability anchor 5): its TCP connections stay open and
    # answer nothing. Its topo node goes with its ZooKeeper session (4 s here), and the gate
    # gives up on its link once its health keepalives stop (discovery.health_timeout, 10 s):
    # reads stuck on it then run on the other replica; none waits for the 30 s timeout.
    reads = reads_through_a_stop(cluster, "vttablet zone1-0000000101", 20.0)
    errors = [r for r in reads if not isinstance(r[2], int)]
    assert not errors, errors[:3]
    # (Without the health timeout the stuck reads would wait until SIGCONT, 20 s.)
    assert max(r[1] for r in reads) < 15, "a read waited for the stopped tablet"
    late = {r[2] for r in reads if 12.0 < r[0] < 20.0}
    assert late == {102}, late


def test_sigstopped_replica_mysqld_stalls_no_read(cluster: dict[str, Any]) -> None:
    # A stopped mysqld behind a live tablet: the tablet's health probe times out
    # (health.probe_timeout, 1 s), it stops serving and breaks off the statements running
    # on its pooled connections, which the gate then runs on the other replica.
    reads = reads_through_a_stop(cluster, "mariadb 101", 20.0)
    errors = [r for r in reads if not isinstance(r[2], int)]
    assert not errors, errors[:3]
    # (Before, the reads running there waited until SIGCONT, 20 s; a new pooled connection
    # to the stopped mysqld may wait mysql.connect_timeout, 5 s, before it fails over.)
    assert max(r[1] for r in reads) < 12, "a read waited for the stopped mysqld"
    late = {r[2] for r in reads if 8.0 < r[0] < 20.0}
    assert late == {102}, late


def test_zookeeper_outage_longer_than_the_sessions_costs_no_read(cluster: dict[str, Any]) -> None:
    # ZooKeeper stopped for 12 s, three times the tablets' session timeout (4 s here): when
    # it comes back it expires their sessions, and their nodes vanish until they register
    # again. The gate keeps routing to the tablets whose links and health say serving
    # (reliability anchor 7); it used to drop them all for a second ("no healthy tablet").
    reads = reads_through_a_stop(cluster, "zookeeper", 12.0, after=8.0)
    errors = [r for r in reads if not isinstance(r[2], int)]
    assert not errors, errors[:3]
    assert {r[2] for r in reads if r[0] > 12.0} == {101, 102}  # both replicas, after it too


def test_killed_replica_tablet_gets_no_more_queries(cluster: dict[str, Any]) -> None:
    status = json.loads(vtwist("status", "--dir", str(cluster["dir"]), "--json").stdout)
    victim = next(p for p in status["processes"] if p["name"] == "vttablet zone1-0000000102")
    conn = cluster["connect"]("commerce@replica")
    try:
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(victim["pid"]):
            assert time.monotonic() < deadline, "the killed tablet did not exit"
            time.sleep(0.05)
        time.sleep(1.0)  # the gate sees the RPC connection drop at once; allow a second
        assert served_by(conn, times=40) == {101}
    finally:
        conn.close()
