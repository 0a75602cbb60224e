"""The tablet's role against a real MariaDB and ZooKeeper: the init-primary claim makes
mysqld writable, a newer term naming another tablet (written with the topo API, as a
reparent would) demotes it and makes mysqld read-only, and a newer term naming it again
promotes it. The MariaDB instance is PRIVATE to this class (its read_only is flipped)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.trial import unittest

from tests.integration.tablet.test_tablet_health_live_support import (
    KS,
    SHARD,
    blocking,
    create_shard,
    dba_pool,
    live_config,
    new_root,
    node_until,
    private_mariadb,
    reactor,
    sql,
    tablet_state,
    topo_client,
)
from tests.support.servers import shared_zookeeper
from tests.unit.topo.helpers import Recorder, eventually_async
from vtwist.local.mariadb import MariaDB
from vtwist.tablet.health import build_health_services
from vtwist.topo import Shard

pytestmark = pytest.mark.integration

ME, OTHER = "zone1-301", "zone1-302"

Snapshot = dict[str, object]


class TabletRoleLiveTests(unittest.TestCase):
    timeout = 60

    mysqld: MariaDB

    @classmethod
    def setUpClass(cls) -> None:
        shared_zookeeper()
        cls.mysqld = private_mariadb("role-primary", 1)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.mysqld.destroy()

    def read_only(self) -> Any:
        return blocking(lambda: sql(self.mysqld, "SELECT @@global.read_only")[0][0])

    async def test_claim_then_demotion_then_promotion_by_shard_terms(self) -> None:
        await blocking(lambda: sql(self.mysqld, "SET GLOBAL read_only = ON"))
        root = new_root()
        admin, topo = await topo_client(root), await topo_client(root)
        self.addCleanup(admin.close)
        self.addCleanup(topo.close)
        await create_shard(admin)  # names no primary yet

        state = tablet_state(ME, "primary", self.mysqld)
        stream: Recorder[Snapshot] = Recorder()
        state.subscribe(stream)
        pool = dba_pool(self.mysqld)
        services = build_health_services(live_config(), state, topo, pool, reactor)
        for s in services:
            s.startService()  # type: ignore[no-untyped-call]

        async def stop() -> None:
            for s in reversed(services):
                if s.running:
                    await maybeDeferred(s.stopService)
            await pool.close()

        self.addCleanup(stop)

        # Init primary: the tablet claims the empty shard and makes mysqld writable.
        await stream.until(lambda s: s["serving"] is True, "the claimed primary serving")
        shard: Shard = await admin.get_shard(KS, SHARD)
        assert (shard.primary_alias, shard.primary_term) == (ME, 1)
        assert state.writable() and state.primary_term == 1
        assert await self.read_only() == 0

        # A reparent elsewhere records a newer term naming another tablet.
        await admin.update_shard(replace(shard, primary_alias=OTHER, primary_term=2))
        demoted = await stream.until(
            lambda s: s["tablet_type"] == "replica", "the demotion on the stream"
        )
        assert demoted["serving"] is False and demoted["primary_term"] == 0
        assert not state.writable()

        async def mysqld_read_only() -> bool:
            return bool(await self.read_only() == 1)

        await eventually_async(mysqld_read_only, "mysqld read_only=ON after the demotion")
        await node_until(
            admin,
            ME,
            lambda t: t is not None and t.tablet_type == "replica" and t.primary_term == 0,
            "the node showing a replica",
        )

        # A later reparent promotes it back: it makes mysqld writable, then records the term.
        await blocking(lambda: sql(self.mysqld, "SET GLOBAL read_only = OFF"))
        shard = await admin.get_shard(KS, SHARD)
        await admin.update_shard(replace(shard, primary_alias=ME, primary_term=3))
        await stream.until(
            lambda s: s["tablet_type"] == "primary" and s["serving"] is True,
            "primary again, serving",
        )
        assert state.primary_term == 3 and state.primary_term_start > 0
        await node_until(
            admin,
            ME,
            lambda t: t is not None and t.tablet_type == "primary" and t.primary_term == 3,
            "the node showing the primary",
        )
