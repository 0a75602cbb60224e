"""Discovery: tablets from the topo cache, serving state from health pushes, lag, terms."""

from __future__ import annotations

from tests.unit.gate.fakes import Cluster, tablet


def aliases(handles: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(h.alias for h in handles)


def test_tablets_from_the_cache_are_linked_and_started() -> None:
    c = Cluster()
    c.add(tablet("zone1-100", ttype="primary"), tablet("zone1-101"))
    assert sorted(c.discovery.handles) == ["zone1-100", "zone1-101"]
    assert all(link.started for link in c.links.values())
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-101"]
    assert aliases(c.discovery.candidates("commerce", "0", "primary")) == ["zone1-100"]
    assert c.discovery.candidates("commerce", "1", "replica") == []


def test_no_health_yet_means_no_candidate() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"), serve=False)
    c.links["zone1-101"].set_connected(True)
    assert c.discovery.candidates("commerce", "0", "replica") == []
    c.serve("zone1-101", "replica")
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-101"]


def test_not_serving_push_removes_candidate_at_once() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    c.serve("zone1-101", "replica", serving=False, error="mysqld down")
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-102"]
    assert c.discovery.handles["zone1-101"].state == "NOT_SERVING"
    c.serve("zone1-101", "replica")
    assert len(c.discovery.candidates("commerce", "0", "replica")) == 2


def test_disconnect_removes_candidate() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"))
    c.links["zone1-101"].set_connected(False)
    assert c.discovery.candidates("commerce", "0", "replica") == []
    assert c.discovery.handles["zone1-101"].state == "DISCONNECTED"


def test_vanished_node_stops_link() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    link = c.links["zone1-101"]
    c.remove("zone1-101")
    assert link.stopped
    assert "zone1-101" not in c.discovery.handles
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-102"]


def test_a_serving_tablet_whose_session_expired_stays_until_it_stops_serving() -> None:
    # ZooKeeper came back from an outage and expired the tablets' sessions: their nodes
    # vanish until they register again, while their links and health streams say serving.
    c = Cluster()
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    link = c.links["zone1-101"]
    c.remove("zone1-101", expired=True)
    handle = c.discovery.handles["zone1-101"]
    assert handle.unlisted and not link.stopped
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-101", "zone1-102"]
    c.add(tablet("zone1-101"), serve=False)  # registered again: the same link goes on
    assert not handle.unlisted and c.links["zone1-101"] is link and not link.stopped
    # Unlisted, then not serving any more: retired as any tablet that left.
    c.remove("zone1-101", expired=True)
    c.serve("zone1-101", "replica", serving=False)
    assert link.stopped and "zone1-101" not in c.discovery.handles
    # Unlisted, then its link drops: retired, not reconnected.
    other = c.links["zone1-102"]
    c.remove("zone1-102", expired=True)
    other.set_connected(False)
    assert other.stopped and c.discovery.handles == {}


def test_moved_tablet_gets_new_link() -> None:
    c = Cluster()
    c.add(tablet("zone1-101", port=16000))
    old = c.links["zone1-101"]
    c.remove("zone1-101")
    c.add(tablet("zone1-101", port=16001))
    assert old.stopped and c.links["zone1-101"] is not old


def test_lagging_replica_is_skipped() -> None:
    c = Cluster(max_lag=10.0)
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    c.serve("zone1-101", "replica", lag_s=11.0)
    c.serve("zone1-102", "replica", lag_s=2.0)
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-102"]
    c.serve("zone1-101", "replica", lag_s=9.5)
    assert len(c.discovery.candidates("commerce", "0", "replica")) == 2


def test_two_primaries_the_higher_term_wins() -> None:
    c = Cluster()
    c.add(tablet("zone1-100"), tablet("zone1-101"), serve=False)
    c.serve("zone1-100", "primary", primary_term=3)
    c.serve("zone1-101", "primary", primary_term=4)
    assert aliases(c.discovery.candidates("commerce", "0", "primary")) == ["zone1-101"]
    # The health stream's type wins over the topo record's (replica here).
    c.serve("zone1-101", "replica")
    assert aliases(c.discovery.candidates("commerce", "0", "primary")) == ["zone1-100"]


def test_topo_loss_keeps_the_last_view() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"))
    c.cache.topo_state = "degraded"
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-101"]


def test_stop_closes_every_link() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    c.discovery.stopService()
    assert all(link.stopped for link in c.links.values())
    assert c.discovery.handles == {}


def test_vanished_node_drains_requests_in_flight_then_stops_link() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"), tablet("zone1-102"))
    handle = c.discovery.handles["zone1-101"]
    link = c.links["zone1-101"]
    handle.inflight = 1  # a statement is running on it
    c.remove("zone1-101")
    # No new query goes to it at once, but its link stays for the running statement.
    assert aliases(c.discovery.candidates("commerce", "0", "replica")) == ["zone1-102"]
    assert handle.removed and not link.stopped
    c.clock.advance(1.0)
    assert not link.stopped
    handle.inflight = 0
    c.clock.advance(0.1)
    assert link.stopped


def test_vanished_node_keeps_its_link_while_a_transaction_is_pinned() -> None:
    c = Cluster()
    c.add(tablet("zone1-101"))
    handle = c.discovery.handles["zone1-101"]
    link = c.links["zone1-101"]
    handle.pinned = 1  # a session's transaction is open on it
    c.remove("zone1-101")
    c.clock.advance(1.0)
    assert handle.removed and not handle.stopped and not link.stopped
    link.set_connected(False)  # the tablet went away: nothing to wait for
    c.clock.advance(0.1)
    assert link.stopped and handle.stopped


def test_drain_is_bounded_by_drain_timeout() -> None:
    c = Cluster()
    c.discovery.drain_timeout = 2.0
    c.add(tablet("zone1-101"))
    handle = c.discovery.handles["zone1-101"]
    link = c.links["zone1-101"]
    handle.inflight = 3  # stuck
    c.remove("zone1-101")
    for _ in range(30):
        c.clock.advance(0.05)
    assert not link.stopped
    for _ in range(20):
        c.clock.advance(0.05)
    assert link.stopped
