"""The reconnecting connector: backoff on a Clock, HELLO timeout, health and state relays."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeAddress, IOPump, connect
from zope.interface import implementer

from tests.unit.tabletrpc.fakes import FakeTabletService, RecordingTransport, result_of
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.protocols.tabletrpc_connector import TabletRPCConnector
from vtwist.protocols.tabletrpc_server import TabletRPCServerFactory


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects each attempt to a fresh server protocol over iosim, or refuses."""

    def __init__(self, clock: Clock, service: FakeTabletService, **server_kw: Any) -> None:
        self.clock = clock
        self.server_factory = TabletRPCServerFactory(service, clock, **server_kw)
        self.refuse = 0
        self.silent = 0
        self.attempts = 0
        self.pumps: list[IOPump] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        if self.refuse:
            self.refuse -= 1
            return fail(ConnectionRefusedError("refused by the test"))  # type: ignore[no-untyped-call]  # Twisted: unannotated
        client = factory.buildProtocol(FakeAddress())
        assert client is not None
        server: Protocol
        if self.silent:
            self.silent -= 1
            server = Protocol()  # accepts TCP, never says HELLO
        else:
            server = self.server_factory.buildProtocol(None)
        self.pumps.append(
            connect(  # type: ignore[no-untyped-call]  # Twisted: unannotated
                server,
                RecordingTransport(server, isServer=True),  # type: ignore[no-untyped-call]  # Twisted: FakeTransport.__init__ unannotated
                client,
                RecordingTransport(client, isServer=False),  # type: ignore[no-untyped-call]  # Twisted: FakeTransport.__init__ unannotated
                greet=False,
                clock=self.clock,
            )
        )
        return succeed(client)

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated


def failure_of(d: Deferred[Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        result_of(d)
    return info.value


class Harness:
    def __init__(self, server_kw: dict[str, Any] | None = None, **kw: Any) -> None:
        self.clock = Clock()
        self.service = FakeTabletService(self.clock)
        self.endpoint = FakeEndpoint(self.clock, self.service, **(server_kw or {}))
        self.connector = TabletRPCConnector(
            self.endpoint,
            self.clock,
            min_backoff=0.5,
            max_backoff=4.0,
            jitter=lambda: 0.0,
            hello_timeout=2.0,
            name="tablet-1",
            **kw,
        )
        self.states: list[bool] = []
        self.health: list[dict[str, Any]] = []
        self.connector.subscribe_state(self.states.append)
        self.connector.subscribe_health(self.health.append)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.endpoint.flush()


def test_connects_relays_health_and_state() -> None:
    h = Harness()
    h.connector.startService()
    h.endpoint.flush()
    assert h.connector.connected and h.states == [True]
    client = h.connector.require_client()
    d = client.execute("rows 1")
    h.endpoint.flush()
    assert result_of(d).rows
    h.service.set_health(serving=False, seq=1)
    h.endpoint.flush()
    assert [s["seq"] for s in h.health] == [0, 1]
    assert h.connector.last_health == h.health[-1]


def test_backoff_grows_and_is_bounded() -> None:
    h = Harness()
    h.endpoint.refuse = 5
    h.connector.startService()
    assert h.endpoint.attempts == 1
    # Delays: 0.5, 1, 2, 4, 4 (capped) seconds.
    for delay, attempts in [(0.5, 2), (1.0, 3), (2.0, 4), (4.0, 5), (4.0, 6)]:
        h.advance(delay - 0.01)
        assert h.endpoint.attempts == attempts - 1
        h.advance(0.01)
        assert h.endpoint.attempts == attempts
    h.endpoint.flush()
    assert h.connector.connected and h.states == [True]


def test_reconnects_after_the_connection_is_lost() -> None:
    h = Harness()
    h.connector.startService()
    h.endpoint.flush()
    first = h.connector.require_client()
    pending = first.execute("sleep 5 x")
    h.endpoint.flush()
    h.endpoint.pumps[0].server.transport.loseConnection()
    h.endpoint.flush()
    assert h.states == [True, False]
    assert h.connector.last_health is None
    with pytest.raises(MySQLError) as info:
        result_of(pending)
    assert info.value.code == ErrorCode.CR_SERVER_LOST
    with pytest.raises(MySQLError) as info:
        h.connector.require_client()
    assert info.value.code == ErrorCode.CR_CONN_HOST_ERROR
    assert "route to another tablet" in info.value.message
    h.advance(0.5)
    assert h.states == [True, False, True]
    assert h.connector.require_client() is not first
    assert len(h.health) == 2  # a fresh snapshot on the new connection


def test_silent_tablet_is_dropped_after_the_hello_timeout() -> None:
    h = Harness()
    h.endpoint.silent = 1
    h.connector.startService()
    h.endpoint.flush()
    assert not h.connector.connected
    h.advance(2.0)  # hello_timeout: the connection is closed and counted as a failure
    assert h.endpoint.pumps[0].client.transport.disconnecting
    h.advance(0.5)
    assert h.endpoint.attempts == 2
    assert h.connector.connected and h.states == [True]


def test_a_tablet_silent_past_the_health_timeout_is_dropped_then_reconnected() -> None:
    h = Harness(health_timeout=5.0)
    h.connector.startService()
    h.endpoint.flush()
    first = h.connector.require_client()
    for _ in range(8):  # keepalives (every second) keep it alive though nothing changes
        h.advance(1.0)
    assert h.connector.connected and h.states == [True] and len(h.health) == 9
    server = h.endpoint.pumps[0].server
    server._push_health = lambda *args: None  # stalled: no health frame any more
    pending = first.execute("sleep 60 x")
    h.endpoint.flush()
    h.advance(4.9)
    assert h.connector.connected and not pending.called
    h.advance(0.2)  # 5 s after the last keepalive: dropped, the statement fails now
    assert h.states == [True, False]
    err = failure_of(pending)
    assert isinstance(err, MySQLError) and err.code == ErrorCode.CR_SERVER_LOST
    assert "tablet-1 stopped answering (no health for 5s)" in err.message
    h.advance(0.5)  # reconnects as after any loss
    assert h.states == [True, False, True] and h.connector.require_client() is not first


def test_a_late_health_timer_means_a_stalled_gate_and_waits_again() -> None:
    h = Harness(health_timeout=5.0)
    h.connector.startService()
    h.endpoint.flush()
    h.endpoint.pumps[0].server._push_health = lambda *args: None  # silent from now on
    h.clock.advance(9.0)  # the gate was stuck for 9 s: the timer (due at 5 s) runs late
    assert h.connector.connected
    h.advance(4.9)
    assert h.connector.connected
    h.advance(0.2)  # a whole window of silence, on time: now it is the tablet
    assert not h.connector.connected


def test_only_a_tablet_that_announced_keepalives_can_be_silent() -> None:
    h = Harness(server_kw={"health_keepalive": None}, health_timeout=5.0)
    h.connector.startService()
    h.endpoint.flush()
    assert h.connector.require_client().health_keepalive is None
    h.advance(60.0)  # health only on changes: silence says nothing
    assert h.connector.connected and h.states == [True] and len(h.health) == 1
    # The timeout is at least three keepalives.
    slow = Harness(server_kw={"health_keepalive": 4.0}, health_timeout=5.0)
    slow.connector.startService()
    slow.endpoint.flush()
    slow.endpoint.pumps[0].server._push_health = lambda *args: None
    slow.advance(11.9)
    assert slow.connector.connected
    slow.advance(0.2)
    assert not slow.connector.connected


def test_when_connected_and_stop() -> None:
    h = Harness()
    assert isinstance(failure_of(h.connector.when_connected(1.0)), MySQLError)  # not started
    h.connector.startService()
    waiting = h.connector.when_connected(1.0)
    h.endpoint.flush()
    client = result_of(waiting)
    assert isinstance(client, TabletRPCClient)
    stopped = h.connector.stopService()
    h.endpoint.flush()
    assert result_of(stopped) is None
    assert client.closed and h.states == [True, False]
    h.advance(10)
    assert h.endpoint.attempts == 1  # no reconnect once stopped


def test_when_connected_times_out_with_2003() -> None:
    h = Harness()
    h.endpoint.refuse = 10
    h.connector.startService()
    waiting = h.connector.when_connected(1.0)
    h.advance(0.99)
    assert not waiting.called
    h.advance(0.01)
    e = failure_of(waiting)
    assert isinstance(e, MySQLError) and e.code == ErrorCode.CR_CONN_HOST_ERROR
    stopped = h.connector.stopService()
    assert result_of(stopped) is None
    attempts = h.endpoint.attempts
    h.advance(60)
    assert h.endpoint.attempts == attempts


def test_listener_bound_and_unsubscribe() -> None:
    h = Harness(max_listeners=3)
    seen: list[bool] = []
    unsubscribe = h.connector.subscribe_state(seen.append)
    with pytest.raises(ValueError):
        h.connector.subscribe_state(seen.append)
    unsubscribe()
    h.connector.startService()
    h.endpoint.flush()
    assert seen == [] and h.states == [True]


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TabletRPCConnector(
            FakeEndpoint(Clock(), FakeTabletService(Clock())),
            Clock(),
            min_backoff=5,
            max_backoff=1,
        )
