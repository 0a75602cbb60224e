"""The gate's graceful stop: lame duck (health 503, a wait), then the sessions drained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from tests.unit.gate.fakes import Cluster, tablet
from vtwist.gate.shutdown import LameDuck, SessionDrain
from vtwist.gate.status import gate_health
from vtwist.protocols.mysql.server import MySQLServerFactory


class FakeConnection:
    """Plays a ``MySQLServerProtocol``: ``busy`` while a command runs."""

    def __init__(self, server: FakeServer, conn_id: int) -> None:
        self.server = server
        self.conn_id = conn_id
        self.busy = False
        self.may_close: Callable[[], bool] | None = None

    def close(self) -> None:
        self.server.connections.pop(self.conn_id, None)

    def close_when_idle(self, may_close: Callable[[], bool]) -> None:
        self.may_close = may_close
        if not self.busy:
            self.command_ended()

    def command_ended(self) -> None:
        self.busy = False
        if self.may_close is not None and self.may_close():
            self.close()


class FakeServer:
    def __init__(self) -> None:
        self.connections: dict[int, FakeConnection] = {}


def setup() -> tuple[Cluster, FakeServer]:
    c = Cluster()
    c.add(tablet("zone1-100", ttype="primary"))
    server = FakeServer()
    c.gate.server = cast(MySQLServerFactory, server)
    return c, server


def connect(c: Cluster, server: FakeServer, logged_in: bool = True) -> tuple[Any, FakeConnection]:
    session = c.session(database="commerce") if logged_in else None
    conn_id = session.connection_id if session is not None else 999
    conn = server.connections[conn_id] = FakeConnection(server, conn_id)
    return session, conn


def test_lame_duck_reports_unhealthy_then_waits() -> None:
    c, _ = setup()
    health = gate_health(c.gate)
    assert health().serving
    d = LameDuck(c.gate, c.clock, 0.5).stopService()
    assert d is not None and not health().serving and health().reason == "shutting down"
    c.clock.advance(0.4)
    assert not d.called
    c.clock.advance(0.2)
    assert d.called
    assert LameDuck(c.gate, c.clock, 0).stopService() is None


def test_sessions_close_once_idle_and_outside_a_transaction() -> None:
    c, server = setup()
    _, idle = connect(c, server)
    _, handshaking = connect(c, server, logged_in=False)
    _, busy = connect(c, server)
    busy.busy = True
    tx_session, in_tx = connect(c, server)
    c.run(tx_session, "begin")
    c.run(tx_session, "update t set a = 1")
    reader, _reading = connect(c, server)  # autocommit off, has only read: nothing to lose
    c.run(reader, "set autocommit = 0")
    c.run(reader, "select * from t")
    assert reader.in_transaction
    d = SessionDrain(c.gate, c.clock, 5.0).stopService()
    assert c.gate.shutting_down
    assert set(server.connections) == {busy.conn_id, in_tx.conn_id}
    busy.command_ended()  # its statement answered
    assert set(server.connections) == {in_tx.conn_id}
    in_tx.command_ended()  # a statement of the transaction: not yet
    assert in_tx.conn_id in server.connections
    c.run(tx_session, "commit")
    in_tx.command_ended()
    assert server.connections == {} and not d.called
    c.clock.advance(0.05)
    assert d.called
    assert idle.conn_id not in server.connections and handshaking.conn_id not in server.connections


def test_sessions_left_after_the_grace_period_are_closed() -> None:
    c, server = setup()
    tx_session, in_tx = connect(c, server)
    c.run(tx_session, "begin")
    c.run(tx_session, "update t set a = 1")
    d = SessionDrain(c.gate, c.clock, 1.0).stopService()
    for _ in range(19):
        c.clock.advance(0.05)
    assert in_tx.conn_id in server.connections and not d.called
    c.clock.advance(0.1)
    assert server.connections == {} and d.called
