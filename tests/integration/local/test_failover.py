"""Failover on a real local cluster: MariaDB GTID replication with semi-sync, three tablets,
the gate and two vtorcs (``vtwist up``), driven by a writer that keeps one client
connection to the gate for the whole test (so "no reconnect" is checked by its thread id).

The tests run in file order on one cluster and each leaves it with a serving primary:
planned reparent, kill -9 of the primary's mysqld, killing only the primary's tablet, the
vtorc election's hand-over, and last SIGSTOP of the primary's mysqld (which may leave the
frozen server with an errant transaction). Every acknowledged write must be on
the primary and on every serving replica afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from vtwist.local.procs import free_port, pid_alive, read_pidfile
from vtwist.local.roles import role_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        any(role_available(r) is not None for r in ("vtgate", "vttablet", "vtorc")),
        reason="the vtgate, vttablet and vtorc roles must be installed",
    ),
]

VTWIST = str(Path(sys.executable).with_name("vtwist"))
UIDS = (100, 101, 102)


def vtwist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VTWIST, *args], capture_output=True, text=True, timeout=180, check=False)


class Cluster:
    """The running cluster: its dir, status, and ways to reach each part."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.refresh()

    def refresh(self) -> None:
        out = vtwist("status", "--dir", str(self.dir), "--json")
        assert out.returncode == 0, out.stderr
        self.status: dict[str, Any] = json.loads(out.stdout)
        host, port = self.status["gate"]["mysql"].rsplit(":", 1)
        self.gate = (host, int(port))

    def connect(self, db: str = "commerce", **kw: Any) -> Any:
        return pymysql.connect(
            host=self.gate[0],
            port=self.gate[1],
            user=self.status["gate"]["user"],
            password=self.status["gate"]["password"],
            database=db,
            autocommit=True,
            read_timeout=30,
            **kw,
        )

    def topo(self, *args: str) -> Any:
        out = vtwist(*args, "--topo", self.status["topo_address"], "--json")
        assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def shard(self) -> dict[str, Any]:
        data: dict[str, Any] = self.topo("shard", "get", "commerce/0")
        return data

    def tablets(self) -> dict[str, dict[str, Any]]:
        return {t["alias"]: t for t in self.topo("tablets")}

    def mysqld_pid(self, uid: int) -> int:
        pid = read_pidfile(self.dir / "mysql" / str(uid) / "mysqld.pid")
        assert pid is not None
        return pid

    def direct(self, uid: int) -> Any:
        """A root connection to one MariaDB, over its socket (bypasses the gate)."""
        return pymysql.connect(
            unix_socket=str(self.dir / "mysql" / str(uid) / "mysqld.sock"),
            user="root",
            database="commerce",
            autocommit=True,
            read_timeout=10,
        )

    def primary_uid(self) -> int:
        return int(str(self.shard()["primary_alias"]).rsplit("-", 1)[1])

    def orc_metric(self, index: int, name: str) -> float:
        url = f"http://{self.status['vtorc'][index]['http']}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def wait_for(what: str, check: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # keep polling through transient failures
            last = e
        else:
            if last:
                return last
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


class Writer(threading.Thread):
    """Autocommit INSERTs through the gate on one connection, until stopped."""

    def __init__(self, cluster: Cluster, table: str) -> None:
        super().__init__(daemon=True)
        self.conn = cluster.connect()
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY, t DOUBLE)")
        self.table = table
        self.thread_id = self.conn.thread_id()
        self.acked: list[tuple[int, float]] = []  # (id, time acknowledged)
        self.sent: dict[int, float] = {}
        self.errors: list[tuple[int, float, str]] = []
        self.stop_at: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self._halt.is_set() and i < 200_000:
            i += 1
            self.sent[i] = time.time()
            try:
                with self.conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (i, time.time()))
                self.acked.append((i, time.time()))
            except pymysql.MySQLError as e:
                self.errors.append((i, time.time(), str(e)))
                if isinstance(e, pymysql.err.InterfaceError):
                    return  # the connection itself is gone: stop, the test fails on it
            time.sleep(0.005)

    def finish(self) -> None:
        self._halt.set()
        self.join(60)
        assert not self.is_alive()
        # The same client connection all along: the gate never dropped it.
        with self.conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            assert cur.fetchone()[0] == self.thread_id
        self.conn.close()

    def first_ack_after(self, when: float) -> float | None:
        """Seconds from ``when`` to the first acknowledgement of a write sent after it."""
        return next((t - when for i, t in self.acked if self.sent[i] > when), None)


def assert_everywhere(cluster: Cluster, table: str, ids: list[int], uids: tuple[int, ...]) -> None:
    """Every id is on each MariaDB of ``uids`` (waiting for replication)."""
    want = set(ids)
    for uid in uids:

        def has_all(uid: int = uid) -> bool:
            conn = cluster.direct(uid)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM {table}")
                    return want <= {r[0] for r in cur.fetchall()}
            finally:
                conn.close()

        wait_for(f"{len(want)} acknowledged rows of {table} on mariadb {uid}", has_all, 30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("failover")
    directory = base / "cluster"
    config = base / "local.toml"
    config.write_text(
        f"""
[[keyspaces]]
name = "commerce"
durability = "semi_sync"

[gate]
mysql_port = {free_port()}
http_port = {free_port()}

[[gate.users]]
name = "app"

[gate.options]
"session.query_timeout" = "10s"

[vtorc]
instances = 2
http_port = {free_port()}

[vtorc.options]
"orc.recovery_block" = "5s"

[zookeeper]
# Short, so a killed tablet's node goes soon; not shorter: on a loaded machine a tablet's
# session could expire, and the gate drops a tablet's link (and what runs on it) with it.
session_timeout = 6
"""
    )
    out = vtwist("up", "--dir", str(directory), "--config", str(config))
    try:
        assert out.returncode == 0, f"up failed:\n{out.stdout}\n{out.stderr}"
        c = Cluster(directory)
        wait_for(
            "a vtorc leading",
            lambda: c.orc_metric(0, "vtorc_leader") + c.orc_metric(1, "vtorc_leader") == 1,
            20,
        )
        yield c
    finally:
        vtwist("down", "--dir", str(directory))


def test_planned_reparent_under_write_load(cluster: Cluster) -> None:
    old = cluster.primary_uid()
    term = cluster.shard()["primary_term"]
    writer = Writer(cluster, "prs")
    writer.start()
    # A transaction left open on the old primary across the reparent.
    tx = cluster.connect()
    with tx.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO prs VALUES (-1, 0)")
    time.sleep(1.5)
    out = vtwist("reparent", "planned", "commerce/0", "--topo", cluster.status["topo_address"])
    assert out.returncode == 0, out.stdout + out.stderr
    time.sleep(1.5)
    writer.finish()
    # It fails cleanly (a MySQL error, the connection stays usable) and is not committed.
    with pytest.raises(pymysql.MySQLError) as e, tx.cursor() as cur:
        cur.execute("COMMIT")
    assert e.value.args[0] in (1105, 1290), e.value.args
    with tx.cursor() as cur:
        cur.execute("ROLLBACK")
        cur.execute("SELECT COUNT(*) FROM prs WHERE id = -1")
        assert cur.fetchone()[0] == 0
        cur.execute("INSERT INTO prs VALUES (-2, 0)")  # autocommit again, on the new primary
    tx.close()
    shard = cluster.shard()
    assert shard["primary_term"] == term + 1 and shard["primary_alias"] != f"zone1-{old:010d}"
    # Statements outside transactions saw no error: buffered across the switch.
    assert writer.errors == [], writer.errors[:5]
    assert len(writer.acked) > 50
    assert_everywhere(cluster, "prs", [i for i, _ in writer.acked], UIDS)
    # The old primary is a serving replica of the new one.
    wait_for(
        "the old primary serving as a replica",
        lambda: (t := cluster.tablets()[f"zone1-{old:010d}"])["type"] == "replica" and t["serving"],
        15,
    )


def test_planned_reparent_there_and_back_without_writes(cluster: Cluster) -> None:
    """Two planned reparents in a row with no write in between: the way back waits for a
    position made of the candidate's own transactions, which it has already (it once
    waited 15 s for MASTER_GTID_WAIT, which follows replicated transactions only, and
    failed)."""
    old = cluster.primary_uid()
    other = next(u for u in UIDS if u != old)
    topo = cluster.status["topo_address"]
    for new in (other, old):
        started = time.monotonic()
        out = vtwist("reparent", "planned", "commerce/0", "--new-primary", f"zone1-{new:010d}",
                     "--topo", topo)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert time.monotonic() - started < 10
        assert cluster.shard()["primary_alias"] == f"zone1-{new:010d}"


def test_kill_9_of_the_primary_mysqld_fails_over_and_the_old_one_rejoins(cluster: Cluster) -> None:
    old = cluster.primary_uid()
    replicas = tuple(u for u in UIDS if u != old)
    writer = Writer(cluster, "crash")
    writer.start()
    time.sleep(1.5)
    killed = time.time()
    os.kill(cluster.mysqld_pid(old), signal.SIGKILL)
    wait_for("a new primary", lambda: cluster.primary_uid() != old, 10)
    wait_for("a write acknowledged after the kill", lambda: writer.first_ack_after(killed), 10)
    time.sleep(1.0)
    writer.finish()
    first = writer.first_ack_after(killed)
    assert first is not None and first < 10, first
    # Only statements in flight at the kill may fail (they may or may not have run).
    assert len(writer.errors) <= 3, writer.errors
    acked = [i for i, _ in writer.acked]
    assert_everywhere(cluster, "crash", acked, replicas)

    # Restart the dead mysqld: vtorc points it at the new primary and it catches up.
    out = vtwist("up", "--dir", str(cluster.dir))
    assert out.returncode == 0, out.stdout + out.stderr
    alias = f"zone1-{old:010d}"
    wait_for(
        "the old primary serving as a replica",
        lambda: (t := cluster.tablets()[alias])["type"] == "replica" and t["serving"],
        30,
    )
    assert_everywhere(cluster, "crash", acked, (old,))
    conn = cluster.direct(old)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@global.read_only")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


def test_killing_only_the_primary_tablet_does_not_fail_over(cluster: Cluster) -> None:
    shard = cluster.shard()
    alias = shard["primary_alias"]
    pidfile = cluster.dir / "tablets" / alias / "twistd.pid"
    pid = read_pidfile(pidfile)
    assert pid is not None
    conn = cluster.connect()
    try:
        os.kill(pid, signal.SIGKILL)
        wait_for("the tablet gone", lambda: not pid_alive(pid), 10)

        def gate_sees_it_down() -> bool:
            with conn.cursor() as cur:
                cur.execute("SHOW VITESS_TABLETS")
                rows: dict[str, str] = {r[5]: r[4] for r in cur.fetchall()}
            return rows.get(alias, "gone") != "SERVING"

        # (A statement already on its way when the link broke may or may not have run: that
        # one fails with "retry the statement"; this test is about the ones after.)
        wait_for("the gate to see the tablet down", gate_sees_it_down, 10)
        # A write now waits in the gate's buffer, then fails cleanly (no primary serves).
        start = time.monotonic()
        with pytest.raises(pymysql.err.OperationalError) as e, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS tablet_down (id INT PRIMARY KEY)")
        assert e.value.args[0] == 1105 and "commerce/0" in e.value.args[1], e.value.args
        assert time.monotonic() - start < 30
        # No failover: mysqld is healthy and the replicas still stream from it.
        time.sleep(3)
        assert cluster.shard()["primary_term"] == shard["primary_term"]
        assert cluster.shard()["primary_alias"] == alias
        # The tablet comes back; the same client connection writes again.
        out = vtwist("up", "--dir", str(cluster.dir))
        assert out.returncode == 0, out.stdout + out.stderr
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS tablet_down (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO tablet_down VALUES (1)")
    finally:
        conn.close()
    assert cluster.shard()["primary_term"] == shard["primary_term"]


def test_vtorc_repairs_a_writable_replica_and_one_that_stopped_replicating(
    cluster: Cluster,
) -> None:
    replica = next(u for u in UIDS if u != cluster.primary_uid())
    conn = cluster.direct(replica)
    try:
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL read_only = OFF")

        def read_only() -> bool:
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                return bool(cur.fetchone()[0] == 1)

        wait_for("vtorc to make the replica read_only again", read_only, 15)
        with conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")

        def replicating() -> bool:
            with conn.cursor() as cur:
                cur.execute("SHOW SLAVE STATUS")
                names = [d[0] for d in cur.description or ()]
                row = cur.fetchone()
            status = dict(zip(names, row or (), strict=False))
            return status.get("Slave_IO_Running") == "Yes"

        wait_for("vtorc to repoint the replica", replicating, 15)
    finally:
        conn.close()
    alias = f"zone1-{replica:010d}"
    wait_for("the repaired replica serving", lambda: cluster.tablets()[alias]["serving"], 15)
    kinds = {"replica_writable", "replica_wrong_source"}
    text = "".join(
        urllib.request.urlopen(f"http://{o['http']}/metrics", timeout=5).read().decode()
        for o in cluster.status["vtorc"]
    )
    for kind in kinds:
        assert f'recovery="{kind}"' in text, kind


def test_two_vtorcs_one_acts_and_the_other_takes_over(cluster: Cluster) -> None:
    leaders = [cluster.orc_metric(i, "vtorc_leader") for i in (0, 1)]
    assert sorted(leaders) == [0.0, 1.0], leaders
    leader = leaders.index(1.0)
    other = 1 - leader
    before = cluster.orc_metric(other, "vtorc_recoveries_total")
    # Kill the leading vtorc: the other one wins the election.
    pid = read_pidfile(cluster.dir / "vtorc" / str(leader) / "twistd.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for("the other vtorc leading", lambda: cluster.orc_metric(other, "vtorc_leader") == 1, 20)
    # ... and it is the one that fails over the next dead primary.
    old = cluster.primary_uid()
    os.kill(cluster.mysqld_pid(old), signal.SIGKILL)
    wait_for("a new primary", lambda: cluster.primary_uid() != old, 15)
    assert cluster.orc_metric(other, "vtorc_recoveries_total") > before
    out = vtwist("up", "--dir", str(cluster.dir))  # restarts the dead vtorc and mysqld
    assert out.returncode == 0, out.stdout + out.stderr


def test_sigstop_of_the_primary_fails_over_and_it_stays_read_only(cluster: Cluster) -> None:
    old = cluster.primary_uid()
    pid = cluster.mysqld_pid(old)
    writer = Writer(cluster, "frozen")
    writer.start()
    time.sleep(1.5)
    stopped = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for("a new primary", lambda: cluster.primary_uid() != old, 15)
        assert time.time() - stopped < 15
        wait_for("a write acknowledged after the stop", lambda: writer.first_ack_after(stopped), 15)
        time.sleep(max(0.0, stopped + 30 - time.time()))
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.time()
    time.sleep(2)
    writer.finish()

    # The resumed server turns read_only (its tablet saw the newer term) and its tablet is
    # not a serving primary.
    def read_only() -> bool:
        conn = cluster.direct(old)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                return bool(cur.fetchone()[0] == 1)
        finally:
            conn.close()

    wait_for("the resumed primary read_only", read_only, 10)
    tablet = cluster.tablets()[f"zone1-{old:010d}"]
    assert tablet["type"] != "primary"
    # Every acknowledged write (none of them by the stopped primary after it resumed) is on
    # the new primary.
    new = cluster.primary_uid()
    assert_everywhere(cluster, "frozen", [i for i, _ in writer.acked], (new,))
    late = [i for i, t in writer.acked if t > resumed]
    assert all(i for i in late)  # written after the resume: through the new primary
    # Last test of the file: a statement that was in flight when it froze may have been
    # committed there after it resumed (never acknowledged: its client got an error), which
    # is an errant transaction that keeps it from replicating until it is rebuilt.
    wait_for(
        "the frozen primary back as a replica (or refused for an errant write)",
        lambda: cluster.tablets()[f"zone1-{old:010d}"]["type"] == "replica",
        20,
    )
