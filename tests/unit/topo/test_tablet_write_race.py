"""Two writes of this process's tablet record racing to re-create its vanished node (the
re-publish after a reconnection and an update): the loser updates instead of failing."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.unit.tablet.test_tablet_health_fakes import Topo
from tests.unit.topo.conformance import tablet
from vtwist.topo.errors import NoNodeError
from vtwist.topo.records import Tablet


def test_concurrent_recreations_of_the_tablet_node_both_succeed() -> None:
    t = Topo(Clock())
    topo = t.client()
    record = tablet("zone1-0000000100")
    t.run(topo.register_tablet(record))
    path = topo.layout.tablet(record.alias)
    t.run(topo.conn.delete(path))  # the node vanished (e.g. with an expired session)
    a: Deferred[Tablet] = topo.update_tablet(replace(record, serving=True))
    b: Deferred[Tablet] = topo.update_tablet(replace(record, serving=True, primary_term=2))
    first, second = t.run(a), t.run(b)
    assert first.alias == second.alias == record.alias
    stored: Tablet = t.run(topo.get_tablet(record.alias))
    assert stored.primary_term == 2 and stored.serving


def test_a_republish_racing_an_unregister_leaves_no_node_and_no_error() -> None:
    # After a reconnection the topo re-publishes every registered tablet; the tablet may be
    # unregistered (its service stopping) while that write is in flight.
    t = Topo(Clock())
    topo = t.client()
    record = tablet("zone1-0000000100")
    t.run(topo.register_tablet(record))
    path = topo.layout.tablet(record.alias)
    t.run(topo.conn.delete(path))  # the node vanished (e.g. with an expired session)
    republish: Deferred[None] = Deferred.fromCoroutine(topo._ensure_tablet(record.alias))
    gone: Deferred[None] = topo.unregister_tablet(record.alias)
    t.run(republish)  # no error: nothing is left to publish
    t.run(gone)
    assert t.run(topo.conn.exists(path)) is None


def test_an_update_racing_an_unregister_says_the_tablet_is_gone() -> None:
    t = Topo(Clock())
    topo = t.client()
    record = tablet("zone1-0000000100")
    t.run(topo.register_tablet(record))
    update: Deferred[Tablet] = topo.update_tablet(replace(record, serving=True))
    gone: Deferred[None] = topo.unregister_tablet(record.alias)
    failures: list[Failure] = []
    update.addErrback(failures.append)
    t.run(gone)
    t.run(update)
    assert t.run(topo.conn.exists(topo.layout.tablet(record.alias))) is None
    # It says why (NoNodeError).
    assert len(failures) == 1 and failures[0].check(NoNodeError)  # type: ignore[no-untyped-call]  # Twisted: unannotated
