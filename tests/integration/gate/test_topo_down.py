"""The gate keeps serving reads and writes while ZooKeeper is down: a private ZooKeeper, a
real ``twistd vttablet`` primary and a ``twistd vtgate``; ZooKeeper is stopped and queries
keep working from the gate's cached view."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.integration.gate.test_gate_e2e import (
    DATABASE,
    PASSWORD,
    USER,
    VTWIST,
    Procs,
    _prepare,
    until,
    write_gate_files,
)
from tests.support import servers
from vtwist.config import render_example
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import free_port
from vtwist.local.zookeeper import ZooKeeper
from vtwist.tablet.config import ENV_APP_PASSWORD, ENV_DBA_PASSWORD
from vtwist.tablet.config import SCHEMA as TABLET_SCHEMA

pytestmark = pytest.mark.integration

DOWN_FOR = 8.0  # seconds of queries with ZooKeeper stopped (bounded to keep the suite fast)


@pytest.fixture
def private_zk() -> Iterator[ZooKeeper]:
    zk = ZooKeeper(servers.scratch_dir("gate-zk")).start()
    try:
        yield zk
    finally:
        zk.stop()


def test_gate_serves_while_zookeeper_is_down(mariadb: MariaDB, private_zk: ZooKeeper) -> None:
    procs = Procs()
    try:
        _run(mariadb, private_zk, procs)
    finally:
        procs.stop()


def _run(db: MariaDB, zk: ZooKeeper, procs: Procs) -> None:
    _prepare(db)
    address = zk.address("/gate_down")
    for cmd in (["keyspace", "create", "commerce"], ["shard", "create", "commerce/0"]):
        subprocess.run([VTWIST, *cmd, "--topo", address], check=True, capture_output=True)
    directory = servers.scratch_dir("down-tablet")
    config = directory / "vttablet.toml"
    config.write_text(render_example(TABLET_SCHEMA))
    procs.start(
        "vttablet",
        config,
        directory,
        {ENV_APP_PASSWORD: db.password, ENV_DBA_PASSWORD: db.password},
        {
            "alias": "zone1-0000000200",
            "tablet_type": "primary",
            "topo.address": address,
            "mysql.port": db.port,
            "mysql.database": DATABASE,
            "mysql.app_user": db.user,
            "mysql.dba_user": db.user,
            "rpc.listen": "tcp:0:interface=127.0.0.1",
            "http.listen": "tcp:0:interface=127.0.0.1",
            "health.interval": "200ms",
        },
    )
    directory = servers.scratch_dir("down-gate")
    users, config = write_gate_files(directory)
    port = free_port()
    procs.start(
        "vtgate",
        config,
        directory,
        {},
        {
            "mysql.listen": f"tcp:{port}:interface=127.0.0.1",
            "mysql.users_file": users,
            "http.listen": "tcp:0:interface=127.0.0.1",
            "topo.address": address,
            "topo.session_timeout": "2s",
        },
    )

    def connect() -> Any:
        return pymysql.connect(
            host="127.0.0.1",
            port=port,
            user=USER,
            password=PASSWORD,
            database="commerce",
            autocommit=True,
        )

    def works() -> bool:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO items VALUES (1000, 'x') ON DUPLICATE KEY UPDATE v = 'y'")
                cur.execute("SELECT COUNT(*) FROM items WHERE id = 1000")
                return bool(cur.fetchone() == (1,))
        finally:
            conn.close()

    until(works, "the gate serves through the tablet", procs)
    zk.stop()
    deadline = time.monotonic() + DOWN_FOR
    checks = 0
    while time.monotonic() < deadline:
        procs.check()
        assert works(), "a query failed while ZooKeeper was down"
        checks += 1
        time.sleep(0.2)
    assert checks > 5
