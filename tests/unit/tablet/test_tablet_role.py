"""Unit tests of the shard sync (the tablet's role) on the in-memory topo, a scripted mysqld
and a task.Clock: init-primary claim with CAS, demotion by a newer term, promotion, and
``build_health_services`` wiring."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.unit.tablet.test_tablet_health_fakes import (
    ALIAS,
    KS,
    OTHER,
    SHARD,
    FakeMysqld,
    Topo,
    advance,
    conn,
    fake_pool,
    health_config,
    make_state,
    pump,
)
from vtwist.tablet.health import HealthProbe, build_health_services
from vtwist.tablet.publish import TopoPublisher
from vtwist.tablet.shard_sync import ShardSync
from vtwist.tablet.state import TabletState
from vtwist.topo import Shard, TopoServer


class Rig:
    """A tablet's state, shard sync and probe against a scripted mysqld and a memory topo."""

    def __init__(
        self,
        tablet_type: str = "primary",
        *,
        primary: str | None = None,
        term: int = 0,
        create_shard: bool = True,
        init_primary: bool = True,
    ) -> None:
        self.clock = Clock()
        self.t = Topo(self.clock)
        self.admin = self.t.client()
        self.t.setup_shard(self.admin, primary, term, create=create_shard)
        self.mysqld = FakeMysqld(read_only=tablet_type != "primary")
        self.state = make_state(self.clock, tablet_type)
        self.pool = fake_pool(self.mysqld, self.clock)
        self.topo: Any = self.t.client()
        self.init_primary = init_primary
        self.seen: list[dict[str, object]] = []
        self.state.subscribe(self.seen.append)

    def start(self) -> ShardSync:
        self.sync = ShardSync(
            self.state,
            self.topo,
            self.pool,
            self.clock,
            init_primary=self.init_primary,
            retry_interval=1.0,
        )
        self.probe = HealthProbe(
            self.state,
            self.pool,
            self.clock,
            interval=1.0,
            probe_timeout=0.5,
            degraded_lag=30.0,
            unhealthy_lag=300.0,
            role_problem=self.sync.role_problem,
        )
        self.sync.on_role_change = self.probe.probe_now
        self.sync.startService()
        self.probe.startService()
        pump(self.clock)
        return self.sync

    def shard(self) -> Shard:
        got: Shard = self.t.run(self.admin.get_shard(KS, SHARD))
        return got

    def set_queries(self) -> list[str]:
        return [q for q in self.mysqld.queries if q.startswith("SET GLOBAL")]


def test_init_primary_claims_the_shard_with_cas() -> None:
    rig = Rig("primary", primary=None, term=3)
    rig.mysqld.read_only = True  # as a freshly installed mysqld might be
    sync = rig.start()
    shard = rig.shard()
    assert (shard.primary_alias, shard.primary_term) == (ALIAS, 4)
    assert sync.claims == 1 and sync.settled
    assert rig.state.tablet_type == "primary" and rig.state.primary_term == 4
    assert rig.state.primary_term_start == rig.clock.seconds()
    assert rig.set_queries() == ["SET GLOBAL read_only = OFF"]
    assert rig.state.serving and rig.state.writable()


def test_init_primary_creates_a_missing_shard_with_term_1() -> None:
    rig = Rig("primary", create_shard=False)
    rig.start()
    shard = rig.shard()
    assert (shard.primary_alias, shard.primary_term) == (ALIAS, 1)
    assert rig.state.writable()


class RacingTopo:
    """A topo whose first ``get_shard`` is followed by another writer's change, so the
    claim's compare-and-swap must fail and be redone."""

    def __init__(self, inner: TopoServer, rival: TopoServer, t: Topo, rival_alias: str | None):
        self.inner, self.rival, self.t, self.rival_alias = inner, rival, t, rival_alias
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_shard(self, keyspace: str, shard: str) -> Deferred[Shard]:
        return Deferred.fromCoroutine(self._get(keyspace, shard))

    async def _get(self, keyspace: str, shard: str) -> Shard:
        got: Shard = await self.inner.get_shard(keyspace, shard)
        if not self.raced:
            self.raced = True
            await self.rival.update_shard(
                replace(got, primary_alias=self.rival_alias, primary_term=got.primary_term + 5)
            )
        return got


def test_claim_cas_conflict_rereads_and_claims_the_newer_term() -> None:
    rig = Rig("primary", primary=None, term=3)
    rig.topo = RacingTopo(rig.t.client(), rig.admin, rig.t, rival_alias=None)
    rig.start()
    assert rig.topo.raced
    shard = rig.shard()
    # The rival's write (term 8) made our CAS fail; the retry claimed on top of it.
    assert (shard.primary_alias, shard.primary_term) == (ALIAS, 9)
    assert rig.state.primary_term == 9


def test_claim_lost_to_another_tablet_makes_a_replica() -> None:
    rig = Rig("primary", primary=None, term=3)
    rig.topo = RacingTopo(rig.t.client(), rig.admin, rig.t, rival_alias=OTHER)
    sync = rig.start()
    shard = rig.shard()
    assert (shard.primary_alias, shard.primary_term) == (OTHER, 8)
    assert sync.claims == 0
    assert rig.state.tablet_type == "replica" and not rig.state.writable()
    assert rig.set_queries() == ["SET GLOBAL read_only = ON"]


def test_init_primary_off_waits_for_a_reparent() -> None:
    rig = Rig("primary", primary=None, term=0, init_primary=False)
    sync = rig.start()
    assert not sync.settled and "role.init_primary is off" in sync.role_problem()
    assert not rig.state.serving and "role.init_primary" in rig.state.error
    assert rig.shard().primary_alias is None
    rig.t.set_primary(rig.admin, ALIAS, 1)
    pump(rig.clock)
    assert rig.state.writable() and rig.state.primary_term == 1


def test_record_naming_this_tablet_at_start_makes_it_a_writable_primary() -> None:
    rig = Rig("replica", primary=ALIAS, term=5)
    rig.start()
    assert rig.state.tablet_type == "primary" and rig.state.primary_term == 5
    assert rig.set_queries() == ["SET GLOBAL read_only = OFF"]
    assert rig.state.writable()


def test_record_naming_another_at_start_demotes_a_configured_primary() -> None:
    rig = Rig("primary", primary=OTHER, term=5)
    rig.start()
    assert rig.state.tablet_type == "replica" and rig.state.primary_term == 0
    assert rig.mysqld.read_only and rig.set_queries() == ["SET GLOBAL read_only = ON"]
    assert not rig.state.writable()


def test_replica_and_rdonly_settle_read_only_when_another_or_none_is_primary() -> None:
    for tablet_type, primary in (("replica", OTHER), ("rdonly", None)):
        rig = Rig(tablet_type, primary=primary, term=2)
        rig.mysqld.read_only = False
        rig.mysqld.replicating(lag=0)
        sync = rig.start()
        assert sync.settled and rig.state.tablet_type == tablet_type
        assert rig.mysqld.read_only
        assert rig.state.serving  # replication runs and the role is settled


def test_newer_term_naming_another_demotes_at_once_and_sets_read_only() -> None:
    rig = Rig("primary", primary=ALIAS, term=2)
    sync = rig.start()
    assert rig.state.writable()
    rig.mysqld.queries.clear()
    writable_when_notified: list[bool] = []
    rig.state.subscribe(lambda snap: writable_when_notified.append(rig.state.writable()))
    rig.t.set_primary(rig.admin, OTHER, 3)
    pump(rig.clock)
    assert rig.state.tablet_type == "replica" and rig.state.primary_term == 0
    assert rig.state.primary_term_start == 0.0
    assert not rig.state.writable() and writable_when_notified[0] is False
    first = next(snap for snap in rig.seen if snap["tablet_type"] == "replica")
    assert first["serving"] is False
    assert f"term 3 names {OTHER}" in str(first["error"]) and "demoted" in str(first["error"])
    assert rig.mysqld.read_only
    assert rig.set_queries() == ["SET GLOBAL read_only = ON"]
    assert sync.demotions == 1
    # The demoted tablet has no replication yet: not serving, and says why.
    assert not rig.state.serving and "replication" in rig.state.error


def test_demotion_retries_read_only_until_mysqld_takes_it() -> None:
    rig = Rig("primary", primary=ALIAS, term=2)
    sync = rig.start()
    rig.mysqld.stop()
    rig.t.set_primary(rig.admin, OTHER, 3)
    pump(rig.clock)
    assert rig.state.tablet_type == "replica"  # at once, even with mysqld down
    advance(rig.clock, 3)
    assert sync.read_only_failures >= 2
    rig.mysqld.up = True
    rig.mysqld.read_only = False  # it came back writable: the retry must fix that
    advance(rig.clock, 2)
    assert rig.mysqld.read_only
    n = len(rig.set_queries())
    advance(rig.clock, 5)
    assert len(rig.set_queries()) == n  # done: no more retries


def test_newer_term_naming_this_tablet_promotes_without_touching_mysqld() -> None:
    rig = Rig("replica", primary=OTHER, term=2)
    rig.mysqld.replicating(lag=0)
    sync = rig.start()
    assert rig.state.tablet_type == "replica"
    rig.mysqld.queries.clear()
    # What a reparent does: promote mysqld (stop replication, writable), then record it.
    rig.mysqld.channels = []
    rig.mysqld.read_only = False
    rig.clock.advance(10)
    rig.t.set_primary(rig.admin, ALIAS, 3)
    pump(rig.clock)
    assert rig.state.tablet_type == "primary" and rig.state.primary_term == 3
    assert rig.state.primary_term_start == 10.0
    assert rig.set_queries() == []
    assert rig.state.writable()  # the probe ran at once after the role change
    assert sync.promotions == 1


def test_stale_or_same_records_change_nothing() -> None:
    rig = Rig("primary", primary=ALIAS, term=5)
    rig.start()
    before = len(rig.seen)
    rig.t.set_primary(rig.admin, ALIAS, 5)  # rewritten, same term
    pump(rig.clock)
    rig.t.set_primary(rig.admin, OTHER, 4)  # an older term naming someone else
    pump(rig.clock)
    assert rig.state.writable() and rig.state.primary_term == 5
    assert len(rig.seen) == before


def test_newer_term_naming_nobody_demotes() -> None:
    rig = Rig("primary", primary=ALIAS, term=5)
    rig.start()
    rig.t.set_primary(rig.admin, None, 6)
    pump(rig.clock)
    assert rig.state.tablet_type == "replica" and rig.mysqld.read_only


def test_not_serving_until_the_shard_record_is_read() -> None:
    rig = Rig("replica", primary=OTHER, term=1)
    rig.mysqld.replicating(lag=0)
    conn(rig.topo).set_reachable(False)
    pump(rig.clock)
    sync = rig.start()
    advance(rig.clock, 2)
    assert not sync.settled and not rig.state.serving
    assert "waiting for the shard record commerce/0" in rig.state.error
    conn(rig.topo).set_reachable(True)
    advance(rig.clock, 1)
    assert sync.settled and rig.state.serving


def test_stop_cancels_the_watch_and_retries() -> None:
    rig = Rig("primary", primary=ALIAS, term=2)
    sync = rig.start()
    rig.mysqld.stop()
    rig.t.set_primary(rig.admin, OTHER, 3)
    pump(rig.clock)
    sync.stopService()
    rig.probe.stopService()
    n = len(rig.mysqld.queries)
    rig.t.set_primary(rig.admin, ALIAS, 4)
    advance(rig.clock, 5)
    assert len(rig.mysqld.queries) == n
    assert rig.state.tablet_type == "replica"


# -- wiring --------------------------------------------------------------------------------------


def test_build_health_services_wires_publisher_sync_and_probe() -> None:
    clock = Clock()
    t = Topo(clock)
    admin = t.client()
    t.setup_shard(admin, None, 0)
    topo = t.client()
    state: TabletState = make_state(clock, "primary")
    mysqld = FakeMysqld()
    services = build_health_services(
        health_config('[health]\ninterval = "500ms"\n'),
        state,
        topo,
        fake_pool(mysqld, clock),
        clock,
    )
    publisher, sync, probe = services
    for s in services:
        assert verifyObject(IService, s)
    assert isinstance(publisher, TopoPublisher)
    assert isinstance(sync, ShardSync) and isinstance(probe, HealthProbe)
    assert probe.interval == 0.5 and probe.probe_timeout == 1.0
    assert sync.on_role_change == probe.probe_now
    for s in services:
        s.startService()  # type: ignore[no-untyped-call]
    pump(clock)
    advance(clock, 1.5)  # the publisher's rate limit lets the serving state through
    assert state.writable()
    got = t.run(admin.get_tablet(state.alias))
    assert got.serving and got.tablet_type == "primary" and got.primary_term == 1
    for s in reversed(services):
        s.stopService()  # type: ignore[no-untyped-call]
    pump(clock)
    assert not state.serving
    assert t.run(admin.list_tablets("zone1")) == []
