"""``twistd -n vtgate`` in front of REAL ``twistd -n vttablet`` processes, the session's
ZooKeeper and MariaDB, driven by PyMySQL and the ``mariadb`` CLI.

Tablets: a primary (zone1-0000000100) in front of the session's MariaDB, and a replica
(zone1-0000000101) in front of a private MariaDB (a replica tablet sets its mysqld
read-only, which the shared one must never be). The private mysqld replicates from nobody,
so the replica's health probe reports it NOT_SERVING: this exercises health-aware routing
(``commerce@replica`` gets the "no healthy tablet" error while the primary serves); reads
served by real replicas need a replicated cluster (the local-cluster issue).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support import servers
from vtwist.config import render_example
from vtwist.gate.config import SCHEMA as GATE_SCHEMA
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import free_port, pid_alive
from vtwist.local.zookeeper import ZooKeeper
from vtwist.tablet.config import ENV_APP_PASSWORD, ENV_DBA_PASSWORD
from vtwist.tablet.config import SCHEMA as TABLET_SCHEMA
from vtwist.users import hash_password

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
VTWIST = str(BIN / "vtwist")
DATABASE = "vtwist_gate_it"
USER, PASSWORD = "app", "gate-secret"


def flags(values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += [f"--{key.replace('.', '-').replace('_', '-')}", str(value)]
    return out


class Procs:
    """Subprocesses started by the test, stopped by PID at the end."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        self,
        role: str,
        config: Path,
        directory: Path,
        env_extra: dict[str, str],
        values: dict[str, Any],
    ) -> None:
        args = [TWISTD, "-n", "--pidfile=", f"--logfile={directory / 'twistd.log'}", role]
        args += ["--config", str(config), *flags(values)]
        env = {**os.environ, **env_extra}
        proc = subprocess.Popen(
            args, cwd=directory, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.procs.append((proc, directory))

    def check(self) -> None:
        for proc, directory in self.procs:
            if proc.poll() is not None:
                log = (directory / "twistd.log").read_text()[-3000:]
                raise AssertionError(f"{proc.args!r} exited with {proc.returncode}:\n{log}")

    def logs(self) -> str:
        return "\n".join(
            (d / "twistd.log").read_text()[-2000:]
            for _, d in self.procs
            if (d / "twistd.log").exists()
        )

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None and pid_alive(proc.pid):
                os.kill(proc.pid, signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


def until(check: Callable[[], Any], what: str, procs: Procs, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        procs.check()
        try:
            last = check()
        except Exception as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout}s: {what} (last: {last!r})\n{procs.logs()}")


@pytest.fixture(scope="module")
def cluster(mariadb: MariaDB, zookeeper: ZooKeeper) -> Iterator[dict[str, Any]]:
    procs = Procs()
    private = _private_mariadb()
    try:
        yield _start(mariadb, private, zookeeper, procs)
    finally:
        procs.stop()
        private.destroy()


def _private_mariadb() -> MariaDB:
    return MariaDB(servers.scratch_dir("gate-replica-mariadb")).start()


def _prepare(db: MariaDB) -> None:
    admin = pymysql.connect(host="127.0.0.1", port=db.port, user=db.user, password=db.password)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {DATABASE}.items (id INT PRIMARY KEY, v TEXT)")
        cur.execute(f"DELETE FROM {DATABASE}.items")
    admin.close()


def write_gate_files(directory: Path) -> tuple[Path, Path]:
    """A users file holding USER / PASSWORD and the example vtgate.toml, in ``directory``."""
    users = directory / "users.toml"
    entry = hash_password(PASSWORD.encode(), iterations=1000)
    users.write_text(f"[users.{USER}]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items()))
    config = directory / "vtgate.toml"
    config.write_text(render_example(GATE_SCHEMA))
    return users, config


def _start(db: MariaDB, replica_db: MariaDB, zk: ZooKeeper, procs: Procs) -> dict[str, Any]:
    _prepare(db)
    _prepare(replica_db)
    address = zk.address(f"/gate_{secrets.token_hex(4)}")
    for cmd in (["keyspace", "create", "commerce"], ["shard", "create", "commerce/0"]):
        subprocess.run([VTWIST, *cmd, "--topo", address], check=True, capture_output=True)

    for uid, ttype, mysqld in (("100", "primary", db), ("101", "replica", replica_db)):
        directory = servers.scratch_dir(f"gate-tablet-{uid}")
        config = directory / "vttablet.toml"
        config.write_text(render_example(TABLET_SCHEMA))
        procs.start(
            "vttablet",
            config,
            directory,
            {ENV_APP_PASSWORD: mysqld.password, ENV_DBA_PASSWORD: mysqld.password},
            {
                "alias": f"zone1-0000000{uid}",
                "tablet_type": ttype,
                "topo.address": address,
                "topo.session_timeout": "3s",
                "mysql.port": mysqld.port,
                "mysql.database": DATABASE,
                "mysql.app_user": mysqld.user,
                "mysql.dba_user": mysqld.user,
                "rpc.listen": "tcp:0:interface=127.0.0.1",
                "http.listen": "tcp:0:interface=127.0.0.1",
                "health.interval": "200ms",
            },
        )

    directory = servers.scratch_dir("gate")
    users, config = write_gate_files(directory)
    port, http_port = free_port(), free_port()
    procs.start(
        "vtgate",
        config,
        directory,
        {},
        {
            "mysql.listen": f"tcp:{port}:interface=127.0.0.1",
            "mysql.users_file": users,
            "http.listen": f"tcp:{http_port}:interface=127.0.0.1",
            "topo.address": address,
        },
    )

    def connect(db_name: str = "commerce") -> pymysql.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=USER,
            password=PASSWORD,
            database=db_name,
            autocommit=True,
        )

    def both_tablets_seen() -> bool:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW VITESS_TABLETS")
                rows = {r[5]: r for r in cur.fetchall()}
            primary = rows.get("zone1-0000000100")
            return (
                primary is not None
                and primary[3:5] == ("PRIMARY", "SERVING")
                and "zone1-0000000101" in rows
            )
        finally:
            conn.close()

    # Both tablets register on their own schedule: tests start once the gate lists both.
    until(both_tablets_seen, "the gate sees a serving primary and the replica", procs)
    return {
        "port": port,
        "http_port": http_port,
        "connect": connect,
        "procs": procs,
        "address": address,
        "users": users,
        "gate": procs.procs[-1][0],
    }


def test_gate_routes_to_real_tablets(cluster: dict[str, Any]) -> None:
    connect = cluster["connect"]
    conn = connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 40 + 2")
        assert cur.fetchone() == (42,)
        cur.execute("select @@version_comment limit 1")
        assert cur.fetchone() == ("vtwist gate",)
        cur.execute("SELECT CONNECTION_ID()")
        assert cur.fetchone() == (conn.thread_id(),)
        # Inside a statement run by mysqld too (not the tablet connection's id), with the
        # column named as mysqld would name it.
        cur.execute("SELECT connection_id(), CONNECTION_ID() AS id, 'connection_id()'")
        assert cur.fetchone() == (conn.thread_id(), conn.thread_id(), "connection_id()")
        assert [d[0] for d in cur.description] == ["connection_id()", "id", "connection_id()"]
        # autocommit is the gate's session state; mysqld's pooled connections keep theirs.
        cur.execute("SET autocommit = 0")
        cur.execute("SELECT @@autocommit, @@session.autocommit AS s")
        assert cur.fetchone() == (0, 0)
        assert [d[0] for d in cur.description] == ["@@autocommit", "s"]
        cur.execute("SET autocommit = 1")
        cur.execute("SELECT @@autocommit, @@workload")
        assert cur.fetchone() == (1, "OLTP")  # (mysqld has no workload variable)
        cur.execute("SHOW DATABASES")
        assert cur.fetchall() == (("commerce",),)

        # A transaction sees its own writes; others see them after COMMIT.
        cur.execute("BEGIN")
        cur.execute("INSERT INTO items VALUES (1, 'one')")
        cur.execute("SELECT v FROM items WHERE id = 1")
        assert cur.fetchone() == ("one",)
        other = connect()
        with other.cursor() as cur2:
            cur2.execute("SELECT COUNT(*) FROM items")
            assert cur2.fetchone() == (0,)
        cur.execute("COMMIT")
        with other.cursor() as cur2:
            cur2.execute("SELECT COUNT(*) FROM items")
            assert cur2.fetchone() == (1,)
        other.close()

        # Session state: a user variable survives pooling (reserved connection).
        cur.execute("SET @x = 41")
        cur.execute("SELECT @x + 1")
        assert cur.fetchone() == (42,)

        cur.execute("SHOW VITESS_TABLETS")
        rows = {r[5]: r for r in cur.fetchall()}
        assert rows["zone1-0000000100"][3:5] == ("PRIMARY", "SERVING")
        assert rows["zone1-0000000101"][3] == "REPLICA"
        assert rows["zone1-0000000101"][4] == "NOT_SERVING"  # no replication configured

        # The replica does not serve: a clear error naming the target.
        cur.execute("USE commerce@replica")
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("SELECT 1")
        assert e.value.args[0] == 1105
        assert "commerce/0@replica" in e.value.args[1]
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("INSERT INTO items VALUES (2, 'two')")
        assert e.value.args[0] == 1290
    conn.close()

    with pytest.raises(pymysql.err.OperationalError) as e:
        connect("nosuch")
    assert e.value.args[0] == 1049


def test_mariadb_cli_through_the_gate(cluster: dict[str, Any]) -> None:
    out = subprocess.run(
        [
            "mariadb",
            "--protocol=tcp",
            "-h127.0.0.1",
            f"-P{cluster['port']}",
            f"-u{USER}",
            f"-p{PASSWORD}",
            "-A",
            "--batch",
            "commerce",
            "-e",
            "SELECT 1 + 1 AS two; SHOW VITESS_TABLETS; SELECT DATABASE()",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "two\n2\n" in out.stdout
    assert "zone1-0000000100" in out.stdout
    assert "commerce\n" in out.stdout


def test_client_libraries_defaults_and_prepared_statements(cluster: dict[str, Any]) -> None:
    import mysql.connector
    import MySQLdb

    port = cluster["port"]
    # PyMySQL's default: autocommit off, so the write opens a transaction until commit().
    conn = pymysql.connect(
        host="127.0.0.1", port=port, user=USER, password=PASSWORD, database="commerce"
    )
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (%s, %s)", (10, "ten"))
        cur.execute("SELECT v FROM items WHERE id = %s", (10,))
        assert cur.fetchone() == ("ten",)
    conn.commit()
    conn.close()

    # mysql-connector with server-side prepared statements.
    mc = mysql.connector.connect(
        host="127.0.0.1", port=port, user=USER, password=PASSWORD, database="commerce"
    )
    pcur = mc.cursor(prepared=True)
    pcur.execute("SELECT id, v FROM items WHERE id = ?", (10,))
    assert list(pcur.fetchall()) == [(10, "ten")]
    pcur.execute("UPDATE items SET v = ? WHERE id = ?", ("TEN", 10))
    mc.commit()
    pcur.close()
    mc.close()

    # mysqlclient (libmariadb).
    my = MySQLdb.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, db="commerce")
    c = my.cursor()
    c.execute("SELECT v FROM items WHERE id = 10")
    assert c.fetchall() == (("TEN",),)
    my.close()


def test_auth_errors_and_required_tls(cluster: dict[str, Any]) -> None:
    from tests.integration.server.certs import make_certs

    port = cluster["port"]
    for user, password in ((USER, "wrong"), ("nobody", PASSWORD)):
        with pytest.raises(pymysql.err.OperationalError) as e:
            pymysql.connect(host="127.0.0.1", port=port, user=user, password=password)
        assert e.value.args[0] == 1045

    # A second gate requiring TLS, on the same topo.
    procs: Procs = cluster["procs"]
    directory = servers.scratch_dir("gate-tls")
    certs = make_certs(directory)
    (directory / "cert.pem").write_bytes(certs.cert_pem)
    (directory / "key.pem").write_bytes(certs.key_pem)
    users = directory / "users.toml"
    entry = hash_password(PASSWORD.encode(), iterations=1000)
    users.write_text(f"[users.{USER}]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items()))
    config = directory / "vtgate.toml"
    config.write_text(render_example(GATE_SCHEMA))
    tls_port = free_port()
    procs.start(
        "vtgate",
        config,
        directory,
        {},
        {
            "mysql.listen": f"tcp:{tls_port}:interface=127.0.0.1",
            "mysql.users_file": users,
            "mysql.tls_cert": directory / "cert.pem",
            "mysql.tls_key": directory / "key.pem",
            "mysql.require_secure_transport": "true",
            "http.listen": "tcp:0:interface=127.0.0.1",
            "topo.address": cluster["address"],
        },
    )

    def plain() -> Any:
        # This PyMySQL tries TLS by default ("preferred"): turn it off to log in in clear.
        return pymysql.connect(
            host="127.0.0.1", port=tls_port, user=USER, password=PASSWORD, ssl_disabled=True
        )

    def refused() -> Any:
        try:
            plain().close()
        except pymysql.err.MySQLError as e:
            return e.args[0] == 3159 or (False, e.args)
        return (False, "plain login accepted")

    until(lambda: refused() is True, "plain login refused with 3159", procs)
    assert refused() is True
    conn = pymysql.connect(
        host="127.0.0.1",
        port=tls_port,
        user=USER,
        password=PASSWORD,
        database="commerce",
        ssl={"ca": str(certs.ca_file)},  # verifies the chain (PyMySQL: CERT_REQUIRED)
    )
    with conn.cursor() as cur:
        cur.execute("SELECT 6 * 7")
        assert cur.fetchone() == (42,)
    conn.close()


def test_http_pages_and_sighup_reload(cluster: dict[str, Any]) -> None:
    from urllib.request import urlopen

    base = f"http://127.0.0.1:{cluster['http_port']}"
    metrics = urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert 'vtgate_queries_total{keyspace="commerce",kind="select",tablet_type="primary"}' in (
        metrics
    )
    assert 'vtgate_tablets{state="SERVING",type="primary"} 1.0' in metrics
    assert 'vtgate_topo_state{state="connected"} 1.0' in metrics
    assert "vtgate_query_seconds_bucket" in metrics
    status = urlopen(f"{base}/debug/status", timeout=10).read().decode()
    assert "zone1-0000000100" in status and "Tablets" in status
    assert urlopen(f"{base}/debug/health", timeout=10).status == 200

    # A user added to the file can log in after SIGHUP.
    users: Path = cluster["users"]
    entry = hash_password(b"second-secret", iterations=1000)
    users.write_text(
        users.read_text() + "[users.second]\n" + "".join(f'{k} = "{v}"\n' for k, v in entry.items())
    )
    cluster["gate"].send_signal(signal.SIGHUP)

    def second_logs_in() -> bool:
        pymysql.connect(
            host="127.0.0.1", port=cluster["port"], user="second", password="second-secret"
        ).close()
        return True

    until(second_logs_in, "the new user logs in after SIGHUP", cluster["procs"], timeout=10)


def test_olap_workload_streams_past_the_row_limit(cluster: dict[str, Any]) -> None:
    conn = cluster["connect"]()
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute("SELECT seq FROM seq_1_to_20000")
        assert e.value.args[0] == 1104  # the tablet's row limit for OLTP results
        cur.execute("SET workload = 'olap'")
        cur.execute("SELECT seq FROM seq_1_to_20000")
        rows = cur.fetchall()
        assert len(rows) == 20000 and rows[-1] == (20000,)
    conn.close()


@pytest.mark.parametrize("ps_mode", ["auto", "disable"])
def test_sysbench_oltp_read_write(cluster: dict[str, Any], ps_mode: str) -> None:
    import shutil

    if shutil.which("sysbench") is None:
        pytest.skip("sysbench is not installed")
    common = [
        "sysbench",
        "oltp_read_write",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={cluster['port']}",
        f"--mysql-user={USER}",
        f"--mysql-password={PASSWORD}",
        "--mysql-db=commerce",
        "--mysql-ssl=off",
        "--tables=1",
        "--table-size=200",
        f"--db-ps-mode={ps_mode}",
    ]
    for step in ("cleanup", "prepare"):
        out = subprocess.run([*common, step], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run = subprocess.run(
        [*common, "--threads=4", "--time=3", "--events=0", "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "transactions:" in run.stdout
    assert int(run.stdout.split("transactions:")[1].split()[0]) > 0
    # sysbench retries deadlocks itself ("ignored errors"), as against mysqld directly.
    assert "reconnects:                          0 " in run.stdout
    subprocess.run([*common, "cleanup"], capture_output=True, text=True, timeout=60)
