"""The tablet's health probe and topo node against a real MariaDB and ZooKeeper.

Two PRIVATE MariaDB instances (a primary and a replica of it) are started for this class and
destroyed after it; the tests stop, restart and reconfigure them. The health stream is
observed where the RPC server takes it from: ``TabletState.subscribe``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from twisted.application.service import IService
from twisted.internet.defer import maybeDeferred
from twisted.trial import unittest

from tests.integration.tablet.test_tablet_health_live_support import (
    blocking,
    create_shard,
    dba_pool,
    live_config,
    new_root,
    node_until,
    private_mariadb,
    reactor,
    read_node,
    sql,
    tablet_state,
    topo_client,
)
from tests.support.servers import shared_zookeeper
from tests.unit.topo.helpers import Recorder
from vtwist.local.mariadb import MariaDB
from vtwist.tablet.health import build_health_services
from vtwist.tablet.state import TabletState
from vtwist.topo import TopoServer

pytestmark = pytest.mark.integration

PRIMARY, REPLICA = "zone1-101", "zone1-102"

Snapshot = dict[str, object]


class TabletHealthLiveTests(unittest.TestCase):
    timeout = 60

    primary: MariaDB
    replica: MariaDB

    @classmethod
    def setUpClass(cls) -> None:
        shared_zookeeper()
        with ThreadPoolExecutor(2) as pool:  # both start at once: half the wait
            p = pool.submit(private_mariadb, "health-primary", 1)
            r = pool.submit(private_mariadb, "health-replica", 2)
            started = []
            try:
                for f in (p, r):
                    started.append(f.result())
            except BaseException:
                for m in started:
                    m.destroy()
                raise
        cls.primary, cls.replica = started

    @classmethod
    def tearDownClass(cls) -> None:
        for m in (cls.primary, cls.replica):
            m.destroy()

    async def start_tablet(
        self, alias: str, tablet_type: str, m: MariaDB, topo: TopoServer
    ) -> tuple[TabletState, Recorder[Snapshot], list[IService]]:
        state = tablet_state(alias, tablet_type, m)
        stream: Recorder[Snapshot] = Recorder()
        state.subscribe(stream)
        pool = dba_pool(m)
        services = build_health_services(live_config(), state, topo, pool, reactor)
        for s in services:
            s.startService()  # type: ignore[no-untyped-call]

        async def stop() -> None:
            for s in reversed(services):
                if s.running:
                    await maybeDeferred(s.stopService)
            await pool.close()

        self.addCleanup(stop)
        return state, stream, services

    async def test_mysqld_stop_and_restart_flip_the_stream_and_the_node(self) -> None:
        if not self.primary.running():
            await blocking(self.primary.start)
        root = new_root()
        admin, topo = await topo_client(root), await topo_client(root)
        self.addCleanup(admin.close)
        self.addCleanup(topo.close)
        await create_shard(admin)
        state, stream, services = await self.start_tablet(PRIMARY, "primary", self.primary, topo)

        await stream.until(lambda s: s["serving"] is True, "the primary serving")
        assert state.read_only is False and state.primary_term == 1  # it claimed the shard
        assert state.gtid_position  # MariaDB's gtid_current_pos
        await node_until(admin, PRIMARY, lambda t: t is not None and t.serving, "node serving")

        await blocking(self.primary.stop)
        down = await stream.until(lambda s: s["serving"] is False, "not serving on the stream")
        assert down["error"], down
        await stream.until(
            lambda s: "mysqld unreachable" in str(s["error"]), "the error naming mysqld"
        )
        node = await node_until(
            admin,
            PRIMARY,
            lambda t: t is not None and not t.serving and "unreachable" in (t.health.error or ""),
            "node not serving",
        )
        assert node is not None and node.tablet_type == "primary"

        await blocking(self.primary.start)
        await stream.until(lambda s: s["serving"] is True, "serving again after the restart")
        await node_until(admin, PRIMARY, lambda t: t is not None and t.serving, "node serving")

        # Stopping the tablet's services removes its node (the probe says goodbye first).
        for s in reversed(services):
            await maybeDeferred(s.stopService)
        assert state.serving is False
        assert await read_node(admin, PRIMARY) is None

    async def test_closing_the_topo_session_removes_the_node(self) -> None:
        if not self.primary.running():
            await blocking(self.primary.start)
        root = new_root()
        admin, topo = await topo_client(root), await topo_client(root)
        self.addCleanup(admin.close)
        await create_shard(admin)
        await self.start_tablet(PRIMARY, "primary", self.primary, topo)
        await node_until(admin, PRIMARY, lambda t: t is not None and t.serving, "node serving")
        await topo.close()
        await node_until(admin, PRIMARY, lambda t: t is None, "the node gone with the session")

    async def test_real_replica_serves_while_replicating_and_not_after_stop_slave(self) -> None:
        if not self.primary.running():
            await blocking(self.primary.start)
        primary, replica = self.primary, self.replica

        def replicate() -> None:
            # The replica starts from the primary's current position (as after a clone).
            (pos,) = sql(primary, "SELECT @@global.gtid_current_pos")[0]
            for statement in (
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "RESET MASTER",
                f"SET GLOBAL gtid_slave_pos = '{pos}'",
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port},"
                f" MASTER_USER='{primary.user}', MASTER_PASSWORD='{primary.password}',"
                " MASTER_USE_GTID=slave_pos",
                "START SLAVE",
            ):
                sql(replica, statement)

        await blocking(replicate)
        root = new_root()
        admin, topo = await topo_client(root), await topo_client(root)
        self.addCleanup(admin.close)
        self.addCleanup(topo.close)
        await create_shard(admin, primary=PRIMARY, term=1)
        state, stream, _ = await self.start_tablet(REPLICA, "replica", replica, topo)

        up = await stream.until(lambda s: s["serving"] is True, "the replica serving")
        assert up["tablet_type"] == "replica" and up["lag_s"] == 0.0, up
        await stream.until(lambda s: s["read_only"] is True, "read_only set by the shard sync")

        # A write on the primary reaches the replica, and its GTID shows in the health.
        def write() -> str:
            sql(primary, "CREATE TABLE IF NOT EXISTS vtwist_test.health_t (id INT PRIMARY KEY)")
            sql(primary, "REPLACE INTO vtwist_test.health_t VALUES (1)")
            (pos,) = sql(primary, "SELECT @@global.gtid_current_pos")[0]
            return str(pos)

        pos = await blocking(write)
        await stream.until(lambda s: s["gtid_position"] == pos, f"replica at GTID {pos}")

        await blocking(lambda: sql(replica, "STOP SLAVE"))
        down = await stream.until(lambda s: s["serving"] is False, "not serving after STOP SLAVE")
        error = str(down["error"])
        assert "replication is not running" in error and "Slave_IO_Running=No" in error, error
        await node_until(
            admin,
            REPLICA,
            lambda t: (
                t is not None
                and not t.serving
                and "replication is not running" in (t.health.error or "")
            ),
            "node not serving",
        )
        await blocking(lambda: sql(replica, "START SLAVE"))
        await stream.until(lambda s: s["serving"] is True, "serving after START SLAVE")
        assert state.lag_s == 0.0
