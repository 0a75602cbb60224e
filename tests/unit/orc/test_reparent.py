"""Planned and emergency reparents on the in-memory topo with scripted tablets: the order of
the tablet actions, the shard record written last, and what a failure at each step leaves."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.unit.tablet.test_tablet_health_fakes import Topo
from vtwist.orc.reparent import Reparenter, ReparentError
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.topo import Keyspace, Shard, TopoServer
from vtwist.topo.records import Tablet

P, R1, R2 = "zone1-0000000100", "zone1-0000000101", "zone1-0000000102"
SERVER_IDS = {P: 100, R1: 101, R2: 102}


class FakeTablets:
    """``TabletClients`` stand-in: records every action and answers from a script."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail: dict[tuple[str, str], str] = {}  # (alias, action) -> error message
        self.positions = {P: "0-100-25", R1: "0-100-25", R2: "0-100-24"}

    def manage(
        self, tablet: Tablet, action: str, params: dict[str, Any], *, timeout: float
    ) -> Deferred[dict[str, Any]]:
        self.calls.append((tablet.alias, action, dict(params)))
        why = self.fail.get((tablet.alias, action))
        if why is not None:
            return fail(MySQLError(ErrorCode.UNKNOWN_ERROR, why))
        pos = self.positions[tablet.alias]
        return succeed(
            {
                "server_id": SERVER_IDS[tablet.alias],
                "gtid_binlog_pos": pos,
                "gtid_current_pos": pos,
                "read_only": action != "promote_replica",
                "replication": {"sql_running": "Yes", "io_running": "Yes"},
            }
        )

    def actions(self, alias: str | None = None) -> list[tuple[str, str]]:
        return [(a, act) for a, act, _ in self.calls if alias in (None, a)]


class Harness:
    def __init__(self, durability: str = "semi_sync") -> None:
        self.clock = Clock()
        self.t = Topo(self.clock)
        self.admin: TopoServer = self.t.client()
        self.t.run(self.admin.create_keyspace(Keyspace("commerce", durability=durability)))
        self.t.run(self.admin.create_shard(Shard("commerce", "0", primary_alias=P, primary_term=3)))
        # Each tablet registers from its own topo session, as the real ones do.
        self.sessions = {}
        for alias, port in ((P, 3300), (R1, 3301), (R2, 3302)):
            session = self.t.client()
            kind = "primary" if alias == P else "replica"
            tablet = Tablet(alias, "commerce", "0", kind, rpc_port=1, mysql_port=port)
            self.t.run(session.register_tablet(tablet))
            self.sessions[alias] = session
        self.tablets = FakeTablets()
        self.reparenter = Reparenter(self.admin, self.tablets)

    def run(self, d: Deferred[Any]) -> Any:
        return self.t.run(d)

    def shard(self) -> Shard:
        shard: Shard = self.run(self.admin.get_shard("commerce", "0"))
        return shard


def test_planned_reparent_order_and_record() -> None:
    h = Harness()
    report = h.run(Deferred.fromCoroutine(h.reparenter.planned("commerce", "0")))
    # R1 is more advanced than R2, so it is chosen.
    assert report.new_primary == R1 and report.old_primary == P and report.term == 4
    assert h.shard().primary_alias == R1 and h.shard().primary_term == 4
    steps = [c for c in h.tablets.actions() if c[1] != "status"]
    assert steps[:3] == [(P, "demote_primary"), (R1, "wait_for_position"), (R1, "promote_replica")]
    assert set(steps[3:]) == {(P, "set_replication_source"), (R2, "set_replication_source")}
    wait = next(p for a, act, p in h.tablets.calls if act == "wait_for_position")
    assert wait["position"] == "0-100-25"
    promote = next(p for a, act, p in h.tablets.calls if act == "promote_replica")
    assert promote == {"semi_sync": True}
    repoint = next(p for a, act, p in h.tablets.calls if act == "set_replication_source")
    assert repoint["port"] == 3301 and repoint["semi_sync"] is True
    # The lock was released: a second reparent can run.
    report = h.run(Deferred.fromCoroutine(h.reparenter.planned("commerce", "0", P)))
    assert report.new_primary == P and h.shard().primary_term == 5


def test_planned_reparent_that_cannot_catch_up_keeps_the_old_primary() -> None:
    h = Harness()
    h.tablets.fail[(R2, "wait_for_position")] = "did not reach GTID position 0-100-25"
    with pytest.raises(ReparentError) as e:
        h.run(Deferred.fromCoroutine(h.reparenter.planned("commerce", "0", R2)))
    assert e.value.step == "catch_up" and "stays the primary" in e.value.message
    assert (P, "undo_demote_primary") in h.tablets.actions()
    assert ("promote_replica") not in [act for _, act in h.tablets.actions()]
    assert h.shard().primary_alias == P and h.shard().primary_term == 3


def test_planned_reparent_failing_promotion_undoes_both_sides() -> None:
    h = Harness()
    h.tablets.fail[(R1, "promote_replica")] = "boom"
    with pytest.raises(ReparentError) as e:
        h.run(Deferred.fromCoroutine(h.reparenter.planned("commerce", "0", R1)))
    assert e.value.step == "promote"
    assert (R1, "set_replication_source") in h.tablets.actions()
    assert h.tablets.actions()[-1] == (P, "undo_demote_primary")
    assert h.shard().primary_term == 3


@pytest.mark.parametrize(
    ("new_primary", "message"),
    [(P, "already the primary"), ("zone1-0000000199", "not a live tablet")],
)
def test_planned_reparent_checks_the_candidate(new_primary: str, message: str) -> None:
    h = Harness()
    with pytest.raises(ReparentError, match=message):
        h.run(Deferred.fromCoroutine(h.reparenter.planned("commerce", "0", new_primary)))
    assert h.tablets.actions() == []


def test_emergency_reparent_promotes_the_most_advanced() -> None:
    h = Harness(durability="none")
    h.tablets.fail[(P, "set_read_only")] = "Can't connect to MySQL server"
    h.tablets.fail[(P, "set_replication_source")] = "Can't connect to MySQL server"
    report = h.run(Deferred.fromCoroutine(h.reparenter.emergency("commerce", "0")))
    assert report.new_primary == R1 and report.term == 4
    assert any("could not fence" in w for w in report.warnings)
    stops = {a for a, act in h.tablets.actions() if act == "stop_replication"}
    assert stops == {R1, R2}
    promote = next(p for a, act, p in h.tablets.calls if act == "promote_replica")
    assert promote == {"semi_sync": False}
    assert h.shard().primary_alias == R1


def test_emergency_reparent_refuses_a_lagging_candidate_and_errant_replicas() -> None:
    h = Harness()
    with pytest.raises(ReparentError, match="is behind"):
        h.run(Deferred.fromCoroutine(h.reparenter.emergency("commerce", "0", R2)))
    assert h.shard().primary_term == 3
    # R1 wrote locally while a replica: refused; R2 is promoted although it is behind R1.
    h = Harness()
    h.tablets.positions[R1] = "0-101-26"
    report = h.run(Deferred.fromCoroutine(h.reparenter.emergency("commerce", "0")))
    assert report.new_primary == R2
    assert any("errant" in w and R1 in w for w in report.warnings)


def test_emergency_reparent_with_no_replica_answering_fails_cleanly() -> None:
    h = Harness()
    for alias in (R1, R2):
        h.tablets.fail[(alias, "stop_replication")] = "unreachable"
    with pytest.raises(ReparentError) as e:
        h.run(Deferred.fromCoroutine(h.reparenter.emergency("commerce", "0")))
    assert e.value.step == "choose" and h.shard().primary_alias == P
