"""Tablet-manager calls from the admin side (``vtwist reparent``, ``vtorc``).

``TabletClients`` keeps one tablet RPC connection per tablet address, opened on first use
and dropped when it breaks, and sends ``manage`` actions (``vtwist.tablet.manager``) with a
deadline. ``mysqld_reachable`` tells whether a mysqld answers its MySQL greeting: vtorc's
own check that a primary's mysqld is down, which needs no credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, is_client_error
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.topo.records import Tablet

log = Logger()


def unreachable(tablet: Tablet, why: object) -> MySQLError:
    """ERROR 2003: the tablet's RPC port did not answer."""
    return MySQLError(
        ErrorCode.CR_CONN_HOST_ERROR,
        f"tablet {tablet.alias} at {tablet.host}:{tablet.rpc_port} is unreachable: {why}",
    )


class TabletClients:
    """One RPC connection per tablet address, for ``manage`` calls (see the module doc)."""

    def __init__(self, reactor: Any, *, connect_timeout: float = 2.0) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.connect_timeout = connect_timeout
        self.factory = TabletRPCClientFactory(self.clock)
        self._clients: dict[tuple[str, int], TabletRPCClient] = {}

    async def _client(self, tablet: Tablet) -> TabletRPCClient:
        key = (tablet.host, tablet.rpc_port)
        client = self._clients.get(key)
        if client is not None and client.ready:
            return client
        self._clients.pop(key, None)
        if not tablet.rpc_port:
            raise unreachable(tablet, "it published no RPC port")
        endpoint = TCP4ClientEndpoint(
            self.reactor, tablet.host, tablet.rpc_port, timeout=max(1, int(self.connect_timeout))
        )
        try:
            proto = cast(TabletRPCClient, await endpoint.connect(self.factory))
            ready = proto.when_ready()
            timer = self.clock.callLater(self.connect_timeout, ready.cancel)
            try:
                await ready
            finally:
                if timer.active():
                    timer.cancel()
        except MySQLError:
            raise
        except Exception as e:
            raise unreachable(tablet, e) from None
        self._clients[key] = proto
        return proto

    async def manage(
        self,
        tablet: Tablet,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Run ``action`` on ``tablet``; its report, or a ``MySQLError`` naming the tablet."""
        client = await self._client(tablet)
        deadline = self.clock.seconds() + timeout
        try:
            report: dict[str, Any] = await client.manage(action, params, deadline=deadline)
        except MySQLError as e:
            if is_client_error(e.code):
                self._clients.pop((tablet.host, tablet.rpc_port), None)
                if tablet.alias not in e.message:
                    raise MySQLError(e.code, f"tablet {tablet.alias}: {e.message}") from None
            raise
        return report

    def close(self) -> None:
        """Drop every connection."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class _Greeting(Protocol):
    def __init__(self) -> None:
        self.got: Deferred[bool] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if not self.got.called:
            self.got.callback(True)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.got.called:
            self.got.callback(False)


class _GreetingFactory(Factory):
    noisy = False  # vtorc probes often: no "Starting/Stopping factory" log lines
    protocol = _Greeting


async def mysqld_reachable(reactor: Any, host: str, port: int, timeout: float) -> bool:
    """True if a MySQL server at ``host:port`` sends its greeting within ``timeout``.

    A stopped (SIGSTOP) mysqld accepts TCP connections in the kernel but never greets, so a
    bare connect is not enough.
    """
    if not port:
        return False
    clock: IReactorTime = reactor
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=max(1, int(timeout)))
    factory = _GreetingFactory()
    try:
        proto = cast(_Greeting, await endpoint.connect(factory))
    except Exception:
        return False
    timer = clock.callLater(timeout, _give_up, proto)
    try:
        return await proto.got
    finally:
        if timer.active():
            timer.cancel()


def _give_up(proto: _Greeting) -> None:
    if not proto.got.called:
        proto.got.callback(False)
    if proto.transport is not None:
        proto.transport.abortConnection()  # type: ignore[attr-defined]
