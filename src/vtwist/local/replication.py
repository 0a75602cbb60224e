"""MariaDB settings and replication wiring of one shard of the local cluster.

Every instance starts with the same durability settings (``server_args``): semi-sync
timeout effectively infinite and ``wait_no_slave`` ON, so a primary never falls back to
asynchronous replication; the semi-sync *slave* side ON; ``sync_binlog=1``;
``read_only=ON`` (the primary is made writable once it is set up); no automatic slave
start (``up`` points replicas explicitly, at the primary the topo names).

``rpl_semi_sync_master_enabled`` is the exception: it is switched ON on the primary only.
Measured on MariaDB 10.11: a replica with it ON and no semi-sync replica of its own blocks
its SQL thread forever ("Waiting for semi-sync ACK from slave") on the first replicated
transaction. A reparent must therefore turn it ON on the new primary and OFF on the
demoted one (what Vitess does too).

Fresh instances get ``RESET MASTER``: the launcher's own user creation must not stay in
the binary log, or replicas would replay it (and fail on users they already have) and
GTID strict mode would see diverging histories. Cluster-wide users and databases are then
created on the primary only and reach the replicas by replication.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pymysql

from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import LaunchError

# Vitess's templates use 1e18 ms: longer than any process lives, i.e. never give up.
SEMI_SYNC_TIMEOUT_MS = 10**18
REPL_USER = "vt_repl"
APP_USER = "vt_app"
DBA_USER = "vt_dba"
# No SUPER / READ_ONLY ADMIN: vt_app must not write on a read_only replica.
APP_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, ALTER,"
    " SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION CLIENT,"
    " CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER"
)
HOSTS = ("127.0.0.1", "localhost")


def server_args(durability: str) -> list[str]:
    """``mariadbd`` arguments shared by every instance of a shard (see the module doc)."""
    args = [
        "--sync-binlog=1",
        "--read-only=ON",
        "--skip-slave-start",
        "--log-slave-updates=ON",
        "--gtid-strict-mode=ON",
    ]
    if durability != "none":
        args += [
            f"--rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}",
            "--rpl-semi-sync-master-wait-no-slave=ON",
            # AFTER_SYNC: no other session sees a commit before a replica has it.
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            "--rpl-semi-sync-slave-enabled=ON",
            "--rpl-semi-sync-master-enabled=OFF",
            # Crash recovery as a replica: a killed primary restarts without the commits no
            # replica acknowledged (it truncates them from its binlog instead of committing
            # them), so it can rejoin under the new primary instead of holding errant GTIDs.
            "--init-rpl-role=SLAVE",
        ]
    return args


def _execute(db: MariaDB, *statements: str | tuple[str, Sequence[object]]) -> None:
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                if isinstance(stmt, tuple):
                    cur.execute(stmt[0], stmt[1])
                else:
                    cur.execute(stmt)
    finally:
        conn.close()


def _query_one(db: MariaDB, sql: str) -> tuple[object, ...] | None:
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return None if row is None else tuple(row)
    finally:
        conn.close()


def forget_local_history(db: MariaDB) -> None:
    """On a fresh instance: drop the launcher's setup from the binary log (see module doc)."""
    _execute(db, "RESET MASTER", "SET GLOBAL gtid_slave_pos = ''")


def setup_primary(db: MariaDB, databases: Sequence[str], passwords: dict[str, str]) -> None:
    """Create the replication, app and dba users and the keyspace databases (idempotent).

    ``passwords`` maps ``repl``, ``app`` and ``dba`` to their passwords. Runs as root over
    the socket, so ``read_only`` does not get in the way; the statements are binlogged and
    replicate to the replicas.
    """
    stmts: list[str | tuple[str, Sequence[object]]] = []
    users = (
        (REPL_USER, passwords["repl"], "REPLICATION SLAVE, REPLICATION CLIENT", False),
        (APP_USER, passwords["app"], APP_PRIVILEGES, False),
        (DBA_USER, passwords["dba"], "ALL PRIVILEGES", True),
    )
    for user, password, privileges, grant_option in users:
        for host in HOSTS:
            stmts.append(
                ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
            )
            stmts.append(("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password)))
            option = " WITH GRANT OPTION" if grant_option else ""
            stmts.append((f"GRANT {privileges} ON *.* TO %s@%s{option}", (user, host)))
    for name in databases:
        stmts.append(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    _execute(db, *stmts)


#: A replica reconnects after this many seconds without data from its primary (heartbeats
#: twice a second): vtorc relies on it to confirm a dead or frozen primary quickly. The same
#: values as the tablets' ``replication.net_timeout``/``heartbeat_interval`` defaults.
NET_TIMEOUT = 2
HEARTBEAT = 0.5


def point_replica(db: MariaDB, primary: MariaDB, repl_password: str) -> None:
    """(Re)point ``db`` at ``primary`` by GTID and start replicating; read_only stays ON.

    ``current_pos``: a former primary (after a failover, then ``down``/``up``) resumes from
    its own binlog position, not from a stale ``gtid_slave_pos``.
    """
    _execute(
        db,
        "SET GLOBAL read_only = ON",
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
        "STOP SLAVE",
        f"SET GLOBAL slave_net_timeout = {NET_TIMEOUT}",
        (
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s,"
            " MASTER_PASSWORD = %s, MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1,"
            f" MASTER_HEARTBEAT_PERIOD = {HEARTBEAT}",
            (primary.host, primary.port, REPL_USER, repl_password),
        ),
        "START SLAVE",
    )


def replica_status(db: MariaDB) -> dict[str, object]:
    """``SHOW SLAVE STATUS`` of ``db`` as a dict (empty when not a replica)."""
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
            if row is None:
                return {}
            return {d[0]: v for d, v in zip(cur.description, row, strict=True)}
    finally:
        conn.close()


def wait_caught_up(db: MariaDB, primary: MariaDB, timeout: float) -> None:
    """Block until ``db`` has applied everything ``primary`` has binlogged; LaunchError if not."""
    row = _query_one(primary, "SELECT @@global.gtid_binlog_pos")
    position = str(row[0]) if row and row[0] else ""
    deadline = time.monotonic() + timeout
    while True:
        status = replica_status(db)
        errors = [str(status.get(k) or "") for k in ("Last_IO_Error", "Last_SQL_Error")]
        stopped = "No" in (status.get("Slave_IO_Running"), status.get("Slave_SQL_Running"))
        if stopped and any(errors):
            raise LaunchError(
                f"replication {primary.port} -> {db.port} stopped: "
                + "; ".join(e for e in errors if e)
            )
        left = deadline - time.monotonic()
        if left <= 0:
            raise LaunchError(
                f"replica on port {db.port} did not catch up with its primary on port "
                f"{primary.port} within {timeout:.0f}s (IO {status.get('Slave_IO_Running')},"
                f" SQL {status.get('Slave_SQL_Running')}, {status.get('Last_IO_Error') or ''})"
            )
        if not position:
            return
        row = _query_one(db, f"SELECT MASTER_GTID_WAIT('{position}', {min(left, 1.0):.3f})")
        if row is not None and row[0] == 0:
            return


def make_primary(db: MariaDB, semi_sync: bool) -> None:
    """Stop any replication on ``db``, make it writable, and switch semi-sync master on/off."""
    _execute(
        db,
        "STOP SLAVE",
        "RESET SLAVE ALL",
        f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync else 'OFF'}",
        "SET GLOBAL read_only = OFF",
    )


def wait_semi_sync_clients(db: MariaDB, wanted: int, timeout: float) -> int:
    """Wait until ``wanted`` semi-sync replicas are connected to ``db``; return the count."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        row = _query_one(db, "SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")
        count = int(str(row[1])) if row else 0
        if count >= wanted:
            return count
        time.sleep(0.1)
    return count


def semi_sync_settings(db: MariaDB) -> dict[str, str]:
    """The semi-sync variables of ``db`` (name -> value), for status and tests."""
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'")
            return {str(k): str(v) for k, v in cur.fetchall()}
    except pymysql.MySQLError:
        return {}
    finally:
        conn.close()
