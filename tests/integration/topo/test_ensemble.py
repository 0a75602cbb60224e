"""Fault tests against a real 3-node ZooKeeper ensemble on loopback.

- kill -9 the leader: no session is lost, watches keep firing, the tablet stays;
- stop two of three: caches serve their last values and report degraded; after restart
  everything recovers and later changes arrive;
- cut one client off (its only server stops) while the others write: on reconnection
  (same session) the changes made meanwhile are delivered;
- expire a session: the ephemeral tablet node and the watches come back.

One ensemble serves the module; each test restarts whatever it stopped.
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from twisted.internet.task import deferLater
from twisted.trial import unittest

from tests.support.servers import scratch_dir
from tests.unit.topo.conformance import SHARDED_VSCHEMA, tablet
from tests.unit.topo.helpers import Recorder, eventually, eventually_async, reactor, with_timeout
from vtwist.local.zookeeper import ZooKeeper
from vtwist.topo import Keyspace, Shard, TopoCache, TopoServer, VSchema, open_topo
from vtwist.topo.errors import BadVersionError, TopoUnavailableError

pytestmark = pytest.mark.integration

T = TypeVar("T")


async def retry_topo(op: Callable[[], Awaitable[T]], what: str, timeout: float = 20.0) -> T:
    """Retry ``op`` while the ensemble recovers (unavailable, or a CAS lost to a retry)."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            return await op()
        except (TopoUnavailableError, BadVersionError):
            if reactor.seconds() > deadline:
                raise AssertionError(f"{what}: the topo did not recover in {timeout:g}s") from None
            await deferLater(reactor, 0.1, lambda: None)


class EnsembleTests(unittest.TestCase):
    timeout = 90
    zk: ZooKeeper

    @classmethod
    def setUpClass(cls) -> None:
        cls.zk = ZooKeeper(scratch_dir("zk-ensemble"), size=3).start()
        atexit.register(cls.zk.stop)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.zk.destroy()

    def setUp(self) -> None:
        self.root = f"/e{uuid.uuid4().hex[:12]}"
        self.addCleanup(self._restore_ensemble)

    def _restore_ensemble(self) -> None:
        for node in self.zk.nodes:
            if not node.running():
                node.start(wait=False)
        self.zk.wait_serving(self.zk.nodes, timeout=60)

    async def client(self, hosts: str | None = None, session_timeout: float = 8.0) -> TopoServer:
        address = f"zk:{hosts or self.zk.hosts}{self.root}"
        topo = open_topo(address, reactor, session_timeout=session_timeout, op_timeout=3.0)
        await topo.connect(15)
        self.addCleanup(topo.close)
        return topo

    async def set_term(self, writer: TopoServer, term: int) -> Shard:
        async def write() -> Shard:
            shard = await writer.get_shard("commerce", "0")
            return await writer.update_shard(replace(shard, primary_term=term))

        return await retry_topo(write, f"setting primary_term {term}")

    async def setup_commerce(self, writer: TopoServer) -> None:
        await writer.create_keyspace(Keyspace("commerce", sharded=True))
        await writer.create_shard(Shard.new("commerce", "0"))

    def serving_nodes(self) -> int:
        return sum(1 for n in self.zk.nodes if n.serving())

    async def test_kill_leader_keeps_sessions_and_watches(self) -> None:
        a, writer = await self.client(), await self.client()
        await self.setup_commerce(writer)
        await a.register_tablet(tablet("zone1-100"))
        seen: Recorder[Shard | None] = Recorder()
        a.watch_shard("commerce", "0", seen)
        await seen.until(lambda s: s is not None, "the shard")
        states: list[str] = []
        a.add_state_listener(states.append)
        session = a.conn.session_id

        leader = self.zk.leader()
        leader.kill()
        survivors = [n for n in self.zk.nodes if n is not leader]
        await eventually(lambda: any(n.mode() == "leader" for n in survivors), "a new leader")
        await self.set_term(writer, 1)
        await seen.until(lambda s: s is not None and s.primary_term == 1, "a change after failover")
        await eventually(lambda: a.state() == "connected", "a to be connected")
        assert a.conn.session_id == session, "the session must survive a leader failover"
        assert "expired" not in states
        node = await retry_topo(lambda: writer.conn.exists(a.layout.tablet("zone1-100")), "read")
        assert node is not None and node.ephemeral_owner == session

    async def test_quorum_loss_serves_cache_then_recovers(self) -> None:
        a, writer = await self.client(), await self.client()
        await self.setup_commerce(writer)
        await writer.register_tablet(tablet("zone1-100"))
        cache = TopoCache(a, cells=["zone1"])
        states: list[str] = []
        cache.subscribe(lambda kind, key: states.append(key[0]) if kind == "state" else None)
        cache.start()
        self.addCleanup(cache.stop)
        await with_timeout(cache.when_ready(), 15, "the cache")
        before = (cache.keyspaces(), cache.shards("commerce"), cache.tablets("zone1"))
        assert list(before[2]) == ["zone1-100"]

        stopped = self.zk.nodes[:2]
        for node in stopped:
            node.kill()
        await eventually(lambda: cache.state() == "degraded", "the cache to report degraded")
        assert (cache.keyspaces(), cache.shards("commerce"), cache.tablets("zone1")) == before
        with pytest.raises(TopoUnavailableError):
            await a.get_shard("commerce", "0")

        for node in stopped:
            node.start(wait=False)
        await eventually(lambda: self.serving_nodes() == 3, "the quorum to return", 60)
        await self.set_term(writer, 9)

        async def register() -> Any:
            return await writer.register_tablet(tablet("zone1-101"))

        await retry_topo(register, "registering zone1-101")
        await eventually(lambda: cache.state() == "connected", "the cache to reconnect")
        await eventually(
            lambda: (s := cache.shard("commerce", "0")) is not None and s.primary_term == 9,
            "the cache to see the new term",
        )
        await eventually(
            lambda: sorted(cache.tablets("zone1")) == ["zone1-100", "zone1-101"],
            "the cache to see both tablets",
        )
        assert "degraded" in states and states[-1] == "connected"

    async def test_changes_made_while_cut_off_arrive_on_reconnection(self) -> None:
        lonely = self.zk.node(3)
        others = ",".join(n.address for n in self.zk.nodes if n is not lonely)
        a = await self.client(hosts=lonely.address, session_timeout=15.0)
        writer = await self.client(hosts=others)
        await self.setup_commerce(writer)
        cache = TopoCache(a, cells=["zone1"])
        cache.start()
        self.addCleanup(cache.stop)
        await with_timeout(cache.when_ready(), 15, "the cache")
        session = a.conn.session_id

        lonely.kill()
        await eventually(lambda: a.state() == "degraded", "a to be cut off")
        # Changes while a is cut off (kazoo has dropped a's watches by now).
        await self.set_term(writer, 5)
        await retry_topo(lambda: writer.register_tablet(tablet("zone1-101")), "register")
        await retry_topo(
            lambda: writer.save_vschema("commerce", VSchema.parse(SHARDED_VSCHEMA)), "vschema"
        )
        assert cache.shard("commerce", "0").primary_term == 0  # type: ignore[union-attr]
        assert cache.tablets("zone1") == {} and cache.vschema("commerce") is None

        lonely.start(wait=False)
        await eventually(lambda: a.state() == "connected", "a to reconnect", 30)
        assert a.conn.session_id == session, "reconnected within the session timeout"
        await eventually(
            lambda: cache.shard("commerce", "0").primary_term == 5,  # type: ignore[union-attr]
            "the term changed while cut off",
        )
        await eventually(lambda: "zone1-101" in cache.tablets("zone1"), "the tablet")
        await eventually(lambda: cache.vschema("commerce") is not None, "the vschema")

    async def test_session_expiry_brings_back_tablet_and_watches(self) -> None:
        a, writer = await self.client(), await self.client()
        await self.setup_commerce(writer)
        await a.register_tablet(tablet("zone1-100", serving=True))
        seen: Recorder[Shard | None] = Recorder()
        a.watch_shard("commerce", "0", seen)
        await seen.until(lambda s: s is not None, "the shard")
        old = a.conn.session_id
        conn: Any = a.conn
        await conn.expire_session()
        await eventually(
            lambda: a.state() == "connected" and a.conn.session_id != old, "a new session"
        )
        path = a.layout.tablet("zone1-100")

        async def owned_by_new_session() -> bool:
            stat = await writer.conn.exists(path)
            return stat is not None and stat.ephemeral_owner == a.conn.session_id

        await eventually_async(owned_by_new_session, "the tablet node on the new session")
        assert (await writer.get_tablet("zone1-100")).serving
        await self.set_term(writer, 3)
        await seen.until(lambda s: s is not None and s.primary_term == 3, "a change after expiry")
