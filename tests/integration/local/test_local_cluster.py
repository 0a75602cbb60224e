"""``vtwist up`` / ``status`` / ``down`` as a user runs them: the real CLI in a subprocess,
a temporary DIR, free ports for the gate (so a user's cluster on 15306 is left alone).

One scenario, in order: up -> status --json (3 serving tablets) -> GTID replication from
the primary to both replicas -> semi-sync and read_only as configured -> a query through
the gate -> a second up starts nothing -> a killed tablet is restarted by up -> down stops
every PID -> up again on the same data -> down.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from vtwist.local.cluster import mariadb_for
from vtwist.local.procs import free_port, pid_alive
from vtwist.local.replication import APP_USER
from vtwist.local.roles import role_available
from vtwist.local.state import ClusterState, load_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

VTWIST = str(Path(sys.executable).with_name("vtwist"))
TABLETS = role_available("vttablet") is None
GATE = role_available("vtgate") is None


def vtwist(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VTWIST, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def write_config(path: Path, mysql_port: int, http_port: int) -> Path:
    path.write_text(
        f"""
[gate]
mysql_port = {mysql_port}
http_port = {http_port}

[vtorc]
http_port = {free_port()}

[[gate.users]]
name = "app"

[[gate.users]]
name = "guest"
password = ""

[zookeeper]
session_timeout = 4

[timeouts]
start = 30
serving = 30
"""
    )
    return path


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "cluster"
    yield directory
    # Whatever happened, leave nothing running.
    state = load_state(directory) if (directory / "cluster.json").exists() else None
    vtwist("down", "--dir", str(directory))
    if state is not None:
        leftovers = [p for p in _pids(directory) if pid_alive(p)]
        assert not leftovers, f"still running after down: {leftovers}"


def _pids(directory: Path) -> list[int]:
    out = vtwist("status", "--dir", str(directory), "--json")
    if out.returncode != 0:
        return []
    return [p["pid"] for p in json.loads(out.stdout)["processes"] if p["pid"]]


def status(directory: Path) -> dict[str, Any]:
    out = vtwist("status", "--dir", str(directory), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def up(directory: Path, config: Path) -> subprocess.CompletedProcess[str]:
    out = vtwist("up", "--dir", str(directory), "--config", str(config))
    assert out.returncode == 0, f"up failed:\n{out.stdout}\n{out.stderr}"
    return out


def wait_for(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def query(conn: Any, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def check_status(data: dict[str, Any], mysql_port: int, http_port: int) -> None:
    assert data["gate"]["mysql"] == f"127.0.0.1:{mysql_port}"
    assert data["gate"]["http"] == f"127.0.0.1:{http_port}"
    assert data["gate"]["user"] == "app" and len(data["gate"]["password"]) >= 12
    host, port = data["topo"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    tablets = data["tablets"]
    assert [t["alias"] for t in tablets] == [f"zone1-000000010{i}" for i in range(3)]
    for t in tablets:
        assert set(t) >= {"alias", "keyspace", "shard", "type", "serving", "mysql_port", "http"}
        assert (t["keyspace"], t["shard"]) == ("commerce", "0")
        assert t["mysql_port"] > 0 and t["http"].startswith("127.0.0.1:")
    assert [t["type"] for t in tablets] == ["primary", "replica", "replica"]
    if TABLETS:
        assert data["tablets_from"] == "topo"
        assert all(t["serving"] is True for t in tablets), tablets
    assert all(p["running"] for p in data["processes"]), data["processes"]


def check_replication(state: ClusterState, directory: Path, marker: int) -> None:
    primary, *replicas = (mariadb_for(directory, state, t) for t in state.tablets)
    conn = primary.connect(database="commerce")
    try:
        query(conn, "CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, note TEXT)")
        query(conn, "INSERT INTO items VALUES (%s, 'direct')", (marker,))
        semi = dict(query(conn, "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_master_%'"))
        assert semi["rpl_semi_sync_master_enabled"] == "ON"
        assert semi["rpl_semi_sync_master_wait_no_slave"] == "ON"
        assert int(semi["rpl_semi_sync_master_timeout"]) >= 10**15
        wait_for(
            lambda: (
                dict(query(conn, "SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'"))
                == {"Rpl_semi_sync_master_clients": "2"}
            ),
            "both replicas as semi-sync clients",
        )
        assert query(conn, "SELECT @@read_only, @@gtid_strict_mode, @@sync_binlog") == [(0, 1, 1)]
    finally:
        conn.close()
    for db in replicas:
        rconn = db.connect(database="commerce")
        try:
            wait_for(
                lambda c=rconn: query(c, "SELECT note FROM items WHERE id = %s", (marker,)),
                f"row {marker} on the replica on port {db.port}",
            )
            assert query(rconn, "SELECT @@read_only, @@rpl_semi_sync_slave_enabled") == [(1, 1)]
            assert query(rconn, "SELECT @@rpl_semi_sync_master_enabled") == [(0,)]
        finally:
            rconn.close()
    # The tablets' app user cannot write on a replica (read_only, no SUPER).
    app = pymysql.connect(
        host="127.0.0.1",
        port=replicas[0].port,
        user=APP_USER,
        password=state.passwords["app"],
        database="commerce",
        autocommit=True,
    )
    try:
        with pytest.raises(pymysql.err.OperationalError) as err:
            query(app, "INSERT INTO items VALUES (%s, 'no')", (marker + 1000,))
        assert err.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT (read-only)
    finally:
        app.close()


def check_gate(data: dict[str, Any], marker: int) -> None:
    host, port = data["gate"]["mysql"].rsplit(":", 1)
    conn = pymysql.connect(
        host=host,
        port=int(port),
        user=data["gate"]["user"],
        password=data["gate"]["password"],
        database="commerce",
        autocommit=True,
    )
    try:
        assert query(conn, "SELECT note FROM items WHERE id = %s", (marker,)) == [("direct",)]
        query(conn, "INSERT INTO items VALUES (%s, 'gate')", (marker + 1,))
        assert query(conn, "SELECT note FROM items WHERE id = %s", (marker + 1,)) == [("gate",)]
    finally:
        conn.close()
    # A user with an empty password, as MariaDB allows.
    guest = pymysql.connect(host=host, port=int(port), user="guest", password="")
    try:
        assert query(guest, "SELECT note FROM commerce.items WHERE id = %s", (marker,))
    finally:
        guest.close()


def test_up_status_replication_gate_down_up_again(cluster_dir: Path, tmp_path: Path) -> None:
    mysql_port, http_port = free_port(), free_port()
    config = write_config(tmp_path / "local.toml", mysql_port, http_port)

    first = up(cluster_dir, config)
    assert "127.0.0.1" in first.stdout and "mariadb -h 127.0.0.1" in first.stdout
    data = status(cluster_dir)
    check_status(data, mysql_port, http_port)
    state = load_state(cluster_dir)
    assert state is not None
    check_replication(state, cluster_dir, marker=1)
    if GATE:
        assert data["gate"]["running"] is True
        check_gate(data, marker=1)
    # Run where the cluster's directory is ./.vtwist, admin commands need no --topo.
    home = tmp_path / "home"
    home.mkdir()
    (home / ".vtwist").symlink_to(cluster_dir)
    env = {k: v for k, v in os.environ.items() if k != "VTWIST_TOPO"}
    listed = subprocess.run(
        [VTWIST, "--json", "tablets"], capture_output=True, text=True, timeout=60, cwd=home, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert "zone1-0000000100" in listed.stdout and "zone1-0000000102" in listed.stdout

    # Every role runs on vtwist's reactor (twistd --reactor=vtwist-epoll).
    logs = [*cluster_dir.glob("tablets/*/twistd.log"), *cluster_dir.glob("gate/twistd.log")]
    assert logs
    for log in logs:
        assert "reactor class: vtwist.reactor.DirectEPollReactor" in log.read_text(), log

    pids = [p["pid"] for p in data["processes"]]
    second = up(cluster_dir, config)
    assert "already running" in second.stdout
    assert [p["pid"] for p in status(cluster_dir)["processes"]] == pids

    if TABLETS:  # a dead tablet daemon: up restarts just that one
        victim = next(p for p in data["processes"] if p["name"] == "vttablet zone1-0000000102")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: not pid_alive(victim["pid"]), "the killed tablet to exit")
        third = up(cluster_dir, config)
        assert "restarted vttablet zone1-0000000102" in third.stdout, third.stdout
        data = status(cluster_dir)
        check_status(data, mysql_port, http_port)
        pids = [p["pid"] for p in data["processes"]]
        assert victim["pid"] not in pids

    out = vtwist("down", "--dir", str(cluster_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("stopped ") == len(pids), out.stdout
    assert not [p for p in pids if pid_alive(p)]
    stopped = status(cluster_dir)  # the topo is down: tablets come from the saved state
    assert stopped["tablets_from"] == "state" and len(stopped["tablets"]) == 3
    assert not any(p["running"] for p in stopped["processes"])

    up(cluster_dir, config)
    data = status(cluster_dir)
    check_status(data, mysql_port, http_port)
    assert not set(pids) & {p["pid"] for p in data["processes"]}
    check_replication(state, cluster_dir, marker=10)  # the data survived: same tables
    if GATE:
        check_gate(data, marker=10)
        assert data["gate"]["password"] == status(cluster_dir)["gate"]["password"]


@pytest.mark.skipif(not GATE, reason="the vtgate role is not installed")
def test_up_refuses_a_taken_gate_port_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "local.toml", port, free_port())
        out = vtwist("up", "--dir", str(tmp_path / "c"), "--config", str(config))
    assert out.returncode == 1
    assert f"port {port}" in out.stderr and "gate.mysql_port" in out.stderr
    assert not (tmp_path / "c" / "zookeeper").exists()


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "local.toml"
    config.write_text('[[keyspaces]]\nname = "ks"\nreplicas = 0\ndurability = "semi_sync"\n')
    out = vtwist("up", "--dir", str(tmp_path / "c"), "--config", str(config))
    assert out.returncode == 1
    assert "keyspaces[0].replicas" in out.stderr and str(config) in out.stderr


def test_status_without_a_cluster_says_so(tmp_path: Path) -> None:
    out = vtwist("status", "--dir", str(tmp_path / "none"))
    assert out.returncode == 1 and "vtwist up" in out.stderr
