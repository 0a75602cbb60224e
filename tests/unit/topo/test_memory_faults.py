"""Fault injection on the in-memory topo: what the gate, tablet and vtorc rely on when
ZooKeeper misbehaves (unreachable, failing operations, expired sessions)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from twisted.trial import unittest

from tests.unit.topo.conformance import SHARDED_VSCHEMA, tablet
from tests.unit.topo.helpers import Recorder, eventually, eventually_async, reactor, with_timeout
from vtwist.topo import Keyspace, MemoryTopoBackend, Shard, TopoCache, TopoServer, VSchema
from vtwist.topo import memory_topo as make_memory_topo
from vtwist.topo.errors import (
    ClosedError,
    InjectedError,
    NoNodeError,
    TopoUnavailableError,
    ValidationError,
)
from vtwist.topo.memory import MemoryConn


class MemoryFaultTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.backend = MemoryTopoBackend()

    async def client(self, connect: bool = True) -> TopoServer:
        topo = make_memory_topo(reactor, self.backend)
        if connect:
            await topo.connect(1)
        self.addCleanup(topo.close)
        return topo

    @staticmethod
    def conn(topo: TopoServer) -> MemoryConn:
        conn: Any = topo.conn
        assert isinstance(conn, MemoryConn)
        return conn

    async def commerce(self, topo: TopoServer) -> Shard:
        await topo.create_keyspace(Keyspace("commerce"))
        return await topo.create_shard(Shard.new("commerce", "0"))

    async def test_unreachable_fails_fast_and_reconnects_same_session(self) -> None:
        topo = await self.client()
        states: list[str] = []
        topo.add_state_listener(states.append)
        session = topo.conn.session_id
        self.conn(topo).set_reachable(False)
        assert topo.state() == "degraded"
        with pytest.raises(TopoUnavailableError):
            await topo.list_keyspaces()
        self.conn(topo).set_reachable(True)
        await eventually(lambda: states == ["degraded", "connected"], "reconnection")
        assert topo.conn.session_id == session
        assert await topo.list_keyspaces() == []

    async def test_cache_serves_while_unreachable_and_misses_no_change(self) -> None:
        topo, writer = await self.client(), await self.client()
        shard = await self.commerce(writer)
        await writer.register_tablet(tablet("zone1-100"))
        cache = TopoCache(topo, cells=["zone1"])
        states: list[str] = []
        cache.subscribe(lambda kind, key: states.append(key[0]) if kind == "state" else None)
        cache.start()
        await with_timeout(cache.when_ready(), 5, "the cache")

        self.conn(topo).set_reachable(False)
        await eventually(lambda: states == ["degraded"], "degraded state")
        await writer.update_shard(replace(shard, primary_alias="zone1-100", primary_term=2))
        await writer.register_tablet(tablet("zone1-101"))
        await writer.save_vschema("commerce", VSchema.parse({"tables": {"t": {}}}))
        await writer.create_keyspace(Keyspace("customer", sharded=True))
        await writer.create_shard(Shard.new("customer", "-80"))
        await writer.get_keyspace("customer")  # let the deliveries run
        assert cache.state() == "degraded"
        assert cache.shard("commerce", "0") == shard  # the last known value
        assert list(cache.tablets("zone1")) == ["zone1-100"]
        assert list(cache.keyspaces()) == ["commerce"] and cache.vschema("commerce") is None

        self.conn(topo).set_reachable(True)
        await eventually(
            lambda: (s := cache.shard("commerce", "0")) is not None and s.primary_term == 2,
            "the change made while unreachable",
        )
        await eventually(lambda: list(cache.tablets("zone1")) == ["zone1-100", "zone1-101"], "t")
        await eventually(lambda: cache.vschema("commerce") is not None, "the vschema")
        await eventually(lambda: list(cache.shards("customer")) == ["-80"], "the new keyspace")
        assert cache.state() == "connected" and states == ["degraded", "connected"]

    async def test_tablet_written_while_unreachable_is_published_on_reconnect(self) -> None:
        topo, observer = await self.client(), await self.client()
        registered = await topo.register_tablet(tablet("zone1-100"))
        self.conn(topo).set_reachable(False)
        with pytest.raises(TopoUnavailableError):
            await topo.update_tablet(replace(registered, serving=True))
        with pytest.raises(TopoUnavailableError):
            await topo.register_tablet(tablet("zone1-101"))
        assert [t.serving for t in await observer.list_tablets("zone1")] == [False]
        self.conn(topo).set_reachable(True)

        async def published() -> bool:
            tablets = await observer.list_tablets("zone1")
            return [(t.alias, t.serving) for t in tablets] == [
                ("zone1-100", True),
                ("zone1-101", False),
            ]

        await eventually_async(published, "both tablets written after reconnection")

    async def test_expiry_while_unreachable(self) -> None:
        topo, observer = await self.client(), await self.client()
        await topo.register_tablet(tablet("zone1-100"))
        states: list[str] = []
        topo.add_state_listener(states.append)
        conn = self.conn(topo)
        conn.set_reachable(False)
        conn.expire_session()  # the server gives up on the session: its nodes vanish
        assert await observer.list_tablets("zone1") == []
        conn.set_reachable(True)
        await eventually(lambda: states == ["degraded", "expired", "connected"], "a new session")
        path = observer.layout.tablet("zone1-100")
        await eventually(lambda: self.backend.exists(path, None) is not None, "the re-creation")

    async def test_injected_failures_by_operation_path_and_count(self) -> None:
        topo = await self.client()
        conn = self.conn(topo)
        await self.commerce(topo)
        conn.fail(op="get", path=topo.layout.keyspace("commerce"), count=1)
        with pytest.raises(InjectedError):
            await topo.get_keyspace("commerce")
        assert (await topo.get_keyspace("commerce")).name == "commerce"  # count exhausted
        conn.fail(op="create", error=TopoUnavailableError("injected outage"))
        with pytest.raises(TopoUnavailableError):
            await topo.create_keyspace(Keyspace("other"))
        assert await topo.list_keyspaces() == ["commerce"]  # other operations still work
        conn.fail(path=topo.layout.keyspace("commerce"))  # everything under the keyspace
        with pytest.raises(InjectedError):
            await topo.get_shard("commerce", "0")
        conn.clear_faults()
        assert (await topo.get_shard("commerce", "0")).name == "0"

    async def test_connect_times_out_then_succeeds_in_background(self) -> None:
        topo = await self.client(connect=False)
        self.conn(topo).set_reachable(False)
        assert topo.state() == "connecting"
        with pytest.raises(TopoUnavailableError):
            await topo.connect(0.05)
        watched: Recorder[Keyspace | Any] = Recorder()
        topo.watch_keyspaces(watched)  # set up while unreachable
        self.conn(topo).set_reachable(True)
        await watched.until(lambda v: v == {}, "the watch once connected")
        assert topo.state() == "connected"

    async def test_invalid_nodes_are_skipped_and_watches_survive_errors(self) -> None:
        topo, writer = await self.client(), await self.client()
        seen: Recorder[dict[str, Any]] = Recorder()
        failing: list[int] = []

        def bad_callback(value: object) -> None:
            failing.append(1)
            raise RuntimeError("consumer bug")

        topo.watch_tablets("zone1", bad_callback)
        topo.watch_tablets("zone1", seen)  # the cell does not exist yet
        await seen.until(lambda v: v == {}, "empty cell")
        await writer.conn.create(topo.layout.tablet("zone1-1"), b"{oops", makepath=True)
        await writer.register_tablet(tablet("zone1-2"))
        await seen.until(lambda v: list(v) == ["zone1-2"], "the valid tablet only")
        assert [t.alias for t in await topo.list_tablets("zone1")] == ["zone1-2"]
        with pytest.raises(ValidationError):
            await topo.get_tablet("zone1-1")
        assert len(failing) >= 2  # the raising callback kept being called
        assert len(self.flushLoggedErrors(RuntimeError)) == len(failing)  # type: ignore[no-untyped-call]  # Twisted: unannotated

    async def test_close(self) -> None:
        topo, observer = await self.client(), await self.client()
        await topo.register_tablet(tablet("zone1-100"))
        watch = topo.watch_tablets("zone1", lambda v: None)
        await topo.close()
        assert topo.state() == "closed"
        with pytest.raises(TopoUnavailableError):
            await topo.list_keyspaces()
        with pytest.raises(ClosedError):
            await topo.connect(1)
        assert await observer.list_tablets("zone1") == []
        watch.cancel()  # harmless after close

    async def test_vschema_and_shard_need_the_keyspace(self) -> None:
        topo = await self.client()
        with pytest.raises(NoNodeError):
            await topo.save_vschema("ghost", VSchema.parse(SHARDED_VSCHEMA))
        with pytest.raises(ValidationError):
            await topo.update_shard(Shard.new("commerce", "0"))
