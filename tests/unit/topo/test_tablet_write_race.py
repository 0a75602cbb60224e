"""Two writes of this process's tablet record racing to re-create its vanished node (the
re-publish after a reconnection and an update): the loser updates instead of failing."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.unit.tablet.test_tablet_health_fakes import Topo
from tests.unit.topo.conformance import tablet
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
