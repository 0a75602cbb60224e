"""The vtorc loop on the in-memory topo: it acts only while leading, re-observes under the
shard lock, and does not fail a shard over twice within ``recovery_block``."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.unit.tablet.test_tablet_health_fakes import Topo, pump
from vtwist.orc import orc as orc_module
from vtwist.orc.metrics import OrcMetrics
from vtwist.orc.orc import Orchestrator, OrcSettings
from vtwist.orc.reparent import ReparentReport
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.topo import Keyspace, Shard
from vtwist.topo.cache import TopoCache
from vtwist.topo.records import Tablet

P, R1 = "zone1-0000000100", "zone1-0000000101"


class Tablets:
    def __init__(self) -> None:
        self.primary_up = True
        self.calls: list[tuple[str, str]] = []

    def manage(self, tablet: Tablet, action: str, params: Any = None, **kw: Any) -> Deferred[Any]:
        self.calls.append((tablet.alias, action))
        if tablet.alias == P:
            if not self.primary_up:
                return fail(MySQLError(ErrorCode.CR_CONN_HOST_ERROR, "Can't connect"))
            return succeed({"tablet_type": "primary", "read_only": False, "replication": None})
        io = "Yes" if self.primary_up else "Connecting"
        repl = {"host": "127.0.0.1", "port": 3300, "io_running": io}
        return succeed({"tablet_type": "replica", "read_only": True, "replication": repl})

    def close(self) -> None:
        pass


class Reparenter:
    def __init__(self) -> None:
        self.runs = 0

    async def emergency(self, keyspace: str, shard: str) -> ReparentReport:
        self.runs += 1
        return ReparentReport("emergency", keyspace, shard, P, R1, 5)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    async def no_greeting(*args: Any) -> bool:
        return False

    monkeypatch.setattr(orc_module, "mysqld_reachable", no_greeting)
    clock = Clock()
    t = Topo(clock)
    admin = t.client()
    t.run(admin.create_keyspace(Keyspace("commerce", durability="semi_sync")))
    t.run(admin.create_shard(Shard("commerce", "0", primary_alias=P, primary_term=4)))
    for alias, port in ((P, 3300), (R1, 3301)):
        kind = "primary" if alias == P else "replica"
        t.run(
            admin.register_tablet(
                Tablet(alias, "commerce", "0", kind, rpc_port=1, mysql_port=port, serving=True)
            )
        )
    cache = TopoCache(admin, ["zone1"])
    cache.start()
    pump(clock)
    tablets, reparenter, metrics = Tablets(), Reparenter(), OrcMetrics()
    orc = Orchestrator(
        admin,
        cache,
        tablets,  # type: ignore[arg-type]
        reparenter,  # type: ignore[arg-type]
        clock,
        clock,
        OrcSettings(poll_interval=1.0, recovery_block=30.0),
        metrics,
        identifier="test",
    )
    return {"clock": clock, "t": t, "orc": orc, "tablets": tablets, "rep": reparenter, "m": metrics}


def poll(world: dict[str, Any]) -> None:
    d = Deferred.fromCoroutine(world["orc"].poll())
    world["t"].run(d)


def value(world: dict[str, Any], name: str, **labels: str) -> float:
    v = world["m"].registry.get_sample_value(name, labels)
    return 0.0 if v is None else float(v)


def test_follower_detects_but_does_not_act(world: dict[str, Any]) -> None:
    world["tablets"].primary_up = False
    poll(world)  # not started: never leads
    assert world["rep"].runs == 0
    assert (
        value(
            world,
            "vtorc_detected_problems_total",
            keyspace="commerce",
            shard="0",
            problem="dead_primary",
        )
        == 1
    )


def test_leader_fails_over_once_within_recovery_block(world: dict[str, Any]) -> None:
    orc, clock = world["orc"], world["clock"]
    orc.startService()
    pump(clock)
    assert orc.leading and value(world, "vtorc_leader") == 1
    poll(world)  # healthy
    assert world["rep"].runs == 0
    world["tablets"].primary_up = False
    poll(world)
    assert world["rep"].runs == 1
    ok = {"keyspace": "commerce", "shard": "0", "recovery": "emergency_reparent"}
    assert value(world, "vtorc_recoveries_total", **ok, outcome="ok") == 1
    # Still dead (the fake record still names P): blocked by anti-flapping.
    clock.advance(10)
    poll(world)
    assert world["rep"].runs == 1
    # (the loop also ticked during advance(): blocked at least once, never run)
    assert value(world, "vtorc_failovers_blocked_total", keyspace="commerce", shard="0") >= 1
    clock.advance(31)
    poll(world)
    assert world["rep"].runs == 2
    orc.stopService()
    pump(clock)
    assert not orc.leading


def test_a_healthy_primary_seen_under_the_lock_is_left_alone(world: dict[str, Any]) -> None:
    orc, clock, tablets = world["orc"], world["clock"], world["tablets"]
    orc.startService()
    pump(clock)
    tablets.primary_up = False
    real_observe = orc.observe
    calls = 0

    async def observe(shard: Shard) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second look, under the lock: it recovered meanwhile
            tablets.primary_up = True
        return await real_observe(shard)

    orc.observe = observe
    poll(world)
    assert calls == 2 and world["rep"].runs == 0
    orc.stopService()
    pump(clock)
