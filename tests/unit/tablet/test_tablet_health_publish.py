"""Unit tests of the topo publisher on the in-memory topo and a task.Clock: the node is
registered at start, rewritten only when what it shows changes (rate-limited), survives
topo outages and session loss with the latest state, and is removed at stop."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.task import Clock

from tests.unit.tablet.test_tablet_health_fakes import (
    ALIAS,
    Topo,
    advance,
    conn,
    make_state,
    pump,
)
from vtwist.tablet.publish import TopoPublisher, tablet_record, worth_writing
from vtwist.tablet.state import TabletState
from vtwist.topo import Tablet, TabletHealth, TopoServer
from vtwist.topo.errors import NoNodeError


def start(
    clock: Clock, topo: TopoServer, state: TabletState, min_interval: float = 1.0
) -> TopoPublisher:
    pub = TopoPublisher(
        state, topo, clock, min_interval=min_interval, lag_step=5.0, retry_interval=2.0
    )
    pub.startService()
    pump(clock)
    return pub


def node(t: Topo, reader: TopoServer) -> Tablet | None:
    try:
        got: Tablet = t.run(reader.get_tablet(ALIAS))
        return got
    except NoNodeError:
        return None


def setup() -> tuple[Clock, Topo, TopoServer, TopoServer, TabletState]:
    clock = Clock()
    t = Topo(clock)
    return clock, t, t.client(), t.client(), make_state(clock)


def test_registers_the_node_with_the_state() -> None:
    clock, t, topo, reader, state = setup()
    state.update(serving=True, error="", primary_term=3)
    start(clock, topo, state)
    got = node(t, reader)
    assert got is not None
    assert (got.alias, got.keyspace, got.shard, got.tablet_type) == (
        ALIAS,
        "commerce",
        "0",
        "primary",
    )
    assert (got.host, got.rpc_port, got.http_port, got.mysql_port) == (
        "127.0.0.1",
        16100,
        15100,
        3306,
    )
    assert got.serving and got.primary_term == 3
    assert got.health.error is None and got.health.updated == state.updated


def test_writes_only_when_the_node_would_change() -> None:
    clock, t, topo, reader, state = setup()
    pub = start(clock, topo, state)
    assert pub.writes == 1
    advance(clock, 2)
    state.update(gtid_position="0-1-1", read_only=False)  # not shown in the node
    advance(clock, 2)
    assert pub.writes == 1
    state.update(serving=True, error="")
    pump(clock)
    assert pub.writes == 2
    got = node(t, reader)
    assert got is not None and got.serving


def test_bursts_coalesce_into_one_write_of_the_latest_state() -> None:
    clock, t, topo, reader, state = setup()
    pub = start(clock, topo, state, min_interval=1.0)
    for i in range(5):  # five flips within one interval
        state.update(serving=i % 2 == 0, error="" if i % 2 == 0 else f"flap {i}")
        pump(clock)
    assert pub.writes == 1  # still within the interval of the registration
    advance(clock, 1)
    assert pub.writes == 2
    got = node(t, reader)
    assert got is not None and got.serving and got.health.error is None  # i == 4
    advance(clock, 5)
    assert pub.writes == 2


def test_lag_alone_is_written_only_in_steps() -> None:
    rec = tablet_record(make_state(Clock()))

    def lag(x: float | None) -> Tablet:
        return replace(rec, health=TabletHealth(lag_s=x, error=None, updated=1.0))

    assert worth_writing(rec, None, 5.0)
    assert not worth_writing(lag(1.0), lag(0.0), 5.0)
    assert not worth_writing(replace(lag(1.0), health=TabletHealth(1.0, None, 9.0)), lag(1.0), 5.0)
    assert worth_writing(lag(5.0), lag(0.0), 5.0)
    assert worth_writing(lag(None), lag(0.0), 5.0)
    assert worth_writing(replace(lag(0.0), serving=True), lag(0.0), 5.0)


def test_unregisters_on_stop() -> None:
    clock, t, topo, reader, state = setup()
    pub = start(clock, topo, state)
    assert node(t, reader) is not None
    d = pub.stopService()
    pump(clock)
    assert d.called
    assert node(t, reader) is None
    state.update(serving=True)  # no longer subscribed
    advance(clock, 3)
    assert node(t, reader) is None


def test_closing_the_session_removes_the_node() -> None:
    clock, t, topo, reader, state = setup()
    start(clock, topo, state)
    t.run(topo.close())
    assert node(t, reader) is None


def test_topo_outage_keeps_serving_and_catches_up_with_the_latest_state() -> None:
    clock, t, topo, reader, state = setup()
    pub = start(clock, topo, state)
    conn(topo).set_reachable(False)
    pump(clock)
    state.update(serving=True, error="")  # the tablet keeps working meanwhile
    advance(clock, 2)
    state.update(primary_term=7)
    advance(clock, 2)
    got = node(t, reader)
    assert got is not None and not got.serving  # the outage hid the changes
    conn(topo).set_reachable(True)
    advance(clock, 2)
    got = node(t, reader)
    assert got is not None and got.serving and got.primary_term == 7
    assert pub.published is not None and pub.published.primary_term == 7


def test_session_expiry_recreates_the_node_with_the_latest_state() -> None:
    clock, t, topo, reader, state = setup()
    start(clock, topo, state)
    conn(topo).set_reachable(False)
    pump(clock)
    state.update(serving=True, error="")
    advance(clock, 2)
    conn(topo).expire_session()  # the ephemeral node vanishes with the session
    assert node(t, reader) is None
    conn(topo).set_reachable(True)
    advance(clock, 2)
    got = node(t, reader)
    assert got is not None and got.serving


def test_a_node_held_by_another_session_is_retried_until_it_goes() -> None:
    clock, t, topo, reader, state = setup()
    old_run = t.client()
    t.run(old_run.register_tablet(tablet_record(make_state(clock))))
    state.update(serving=True, error="")
    pub = start(clock, topo, state)
    assert pub.write_failures == 1
    got = node(t, reader)
    assert got is not None and not got.serving  # still the old run's node
    t.run(old_run.close())  # its session ends: the node goes
    advance(clock, 3)
    got = node(t, reader)
    assert got is not None and got.serving
