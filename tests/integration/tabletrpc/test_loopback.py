"""The tablet RPC over real TCP on 127.0.0.1: TCP_NODELAY, calls, streams, deadlines, TLS.

No MariaDB here: the tablet side is the recording fake service, driven by the real reactor.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, cast

import pytest
import twisted.test
from twisted.internet import reactor as global_reactor
from twisted.internet import ssl
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
)
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest

from tests.unit.tabletrpc.fakes import FakeTabletService, text_row
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.protocols.tabletrpc_codec import (
    Chunk,
)
from vtwist.protocols.tabletrpc_server import TabletRPCServer, TabletRPCServerFactory

pytestmark = [
    pytest.mark.integration,
    # Twisted's TLS options still hand pyOpenSSL objects to pyOpenSSL: not ours to fix.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]

reactor = cast(Any, global_reactor)


class RecordingServerFactory(TabletRPCServerFactory):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.built: list[TabletRPCServer] = []

    def buildProtocol(self, addr: object) -> TabletRPCServer:
        proto = super().buildProtocol(addr)
        self.built.append(proto)
        return proto


def nodelay(proto: Any) -> int:
    sock: socket.socket = proto.transport.getHandle()
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class LoopbackTests(unittest.TestCase):
    timeout = 60

    async def _setup(self, **server_kw: Any) -> tuple[TabletRPCClient, RecordingServerFactory]:
        clock = cast(IReactorTime, reactor)
        self.service = FakeTabletService(cast(Clock, clock))
        factory = RecordingServerFactory(self.service, clock, **server_kw)
        endpoint = TCP4ServerEndpoint(cast(IReactorTCP, reactor), 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]  # Twisted: unannotated
        port = await endpoint.listen(factory)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.addCleanup(port.stopListening)
        client_ep = TCP4ClientEndpoint(cast(IReactorTCP, reactor), "127.0.0.1", port.getHost().port)
        client = await client_ep.connect(TabletRPCClientFactory(clock, stream_window=2))
        assert isinstance(client, TabletRPCClient)
        self.addCleanup(client.close)
        await client.when_ready()
        return client, factory

    def test_calls_streams_and_deadlines_over_tcp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._calls_streams_and_deadlines())

    async def _calls_streams_and_deadlines(self) -> None:
        client, factory = await self._setup(stream_chunk_rows=100)
        [server] = factory.built
        assert nodelay(client) != 0
        assert nodelay(server) != 0

        results = await gatherResults([client.execute(f"rows {i % 7}") for i in range(300)])
        assert [len(r.rows) for r in results] == [i % 7 for i in range(300)]

        received: list[bytes] = []

        def slow_consumer(chunk: Chunk) -> Deferred[None]:
            received.extend(chunk.rows)
            return deferLater(cast(IReactorTime, reactor), 0.001, lambda: None)

        done = await client.stream_execute("rows 5000", slow_consumer)
        assert done.info == "streamed"
        assert received == [text_row(str(i)) for i in range(5000)]
        assert self.service.producers[0].pauses > 0  # credit ran out at least once

        with pytest.raises(MySQLError) as info:
            await client.execute("sleep 30 slow", deadline=reactor.seconds() + 0.2)
        assert info.value.code == 1317
        await deferLater(cast(IReactorTime, reactor), 0.05, lambda: None)
        assert self.service.cancel_hooks and self.service.cancelled_deferreds == ["slow"]
        assert server.inflight == {}

    def test_tls(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._tls())

    async def _tls(self) -> None:
        # Twisted's own test certificate; the client does not verify it (not the point here).
        pem = (Path(twisted.test.__file__).parent / "server.pem").read_bytes()
        cert = ssl.PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        clock = cast(IReactorTime, reactor)
        service = FakeTabletService(cast(Clock, clock))
        factory = RecordingServerFactory(service, clock)
        server_ep = SSL4ServerEndpoint(reactor, 0, cert.options(), interface="127.0.0.1")  # type: ignore[no-untyped-call]  # Twisted: unannotated
        port = await server_ep.listen(factory)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.addCleanup(port.stopListening)
        client_ep = SSL4ClientEndpoint(  # type: ignore[no-untyped-call]  # Twisted: unannotated
            reactor, "127.0.0.1", port.getHost().port, ssl.CertificateOptions()
        )
        client = await client_ep.connect(TabletRPCClientFactory(clock))  # type: ignore[no-untyped-call]  # Twisted: unannotated
        assert isinstance(client, TabletRPCClient)
        self.addCleanup(client.close)
        await client.when_ready()
        result = await client.execute("rows 3")
        assert result.rows == [text_row(str(i)) for i in range(3)]
        # Under TLS the handle is an OpenSSL connection; Twisted's getter reads the socket.
        assert client.transport is not None
        assert client.transport.getTcpNoDelay()  # type: ignore[attr-defined]
        assert factory.built[0].transport.getTcpNoDelay()  # type: ignore[union-attr]
        assert client.transport.getPeerCertificate() is not None  # type: ignore[attr-defined]

    def test_connection_loss_over_tcp(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._connection_loss())

    async def _connection_loss(self) -> None:
        client, factory = await self._setup()
        pending = client.execute("sleep 30 x")
        await deferLater(cast(IReactorTime, reactor), 0.05, lambda: None)
        [server] = factory.built
        assert server.transport is not None
        server.transport.loseConnection()
        with pytest.raises(MySQLError) as info:
            await pending
        assert info.value.code == 2013
        assert cast(IReactorCore, reactor).running
