"""A scripted mysqld for client unit tests: a SERVER-role ``Connection`` on a StringTransport.

``Scripted`` builds a ``MySQLClientProtocol`` on a ``StringTransport`` (with a fake
``startTLS``) and a ``task.Clock``; the test plays the server with ``send(*events)`` and
reads what the client wrote with ``received()``. ``login()`` runs a whole native-password
login, ``serve_auth()`` answers with ``auth.ServerAuth`` (so caching_sha2 and RSA run for
real). No sockets, no reactor.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport, ITLSTransport
from twisted.internet.task import Clock
from zope.interface import implementer

from tests.support.tcp_transport import TCPStringTransport
from vtwist.protocols.mysql.auth import (
    Failure,
    SendMoreData,
    SendSwitch,
    ServerAuth,
    Success,
)
from vtwist.protocols.mysql.client import MySQLClient
from vtwist.protocols.mysql.client_protocol import ClientConfig, MySQLClientProtocol
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role
from vtwist.protocols.mysql.constants import SERVER_CAPABILITIES, Capability, ServerStatus
from vtwist.protocols.mysql.events import Signal
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    Ok,
    SSLRequest,
)
from vtwist.protocols.mysql.wire import Message

SCRAMBLE = b"abcdefghij0123456789"
AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
MARIADB_VERSION = "5.5.5-10.11.6-MariaDB-0+deb12u1"
# What MariaDB 10.11 advertises: bit 0 (CLIENT_MYSQL) clear, extended caps in the tail.
MARIADB_CAPS = int(SERVER_CAPABILITIES | Capability.SESSION_TRACK | Capability.SSL) & ~1
MARIADB_EXT_CAPS = 0x1F  # PROGRESS, COM_MULTI, STMT_BULK, EXTENDED_METADATA, CACHE_METADATA


@implementer(ITLSTransport, ITCPTransport)
class TLSStringTransport(TCPStringTransport):
    """A StringTransport whose ``startTLS`` only records the call (no real TLS)."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_options: list[Any] = []
        self.aborted = False

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        self.tls_options.append(contextFactory)

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()  # type: ignore[no-untyped-call]  # Twisted: unannotated


def drain(conn: Connection) -> list[Message | Signal]:
    out: list[Message | Signal] = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, Signal):
            return out


def result_of(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (raises its failure)."""
    out: list[Any] = []

    def keep(r: Any) -> Any:
        out.append(r)
        return None if hasattr(r, "raiseException") else r  # a failure is handled here

    d.addBoth(keep)
    assert out, "the Deferred has not fired"
    r = out[0]
    if hasattr(r, "raiseException"):
        r.raiseException()
    return r


def error_of(d: Deferred[Any], kind: type[BaseException] = Exception) -> Any:
    with pytest.raises(kind) as info:
        result_of(d)
    return info.value


class Scripted:
    """One client protocol and the server Connection playing mysqld (see the docstring)."""

    def __init__(self, **config: Any) -> None:
        args: dict[str, Any] = {"user": "app", "password": "secret", "address": "fake:3306"}
        args.update(config)
        self.config = ClientConfig(**args)
        self.clock = Clock()
        self.proto = MySQLClientProtocol(self.config, self.clock)
        self.transport = TLSStringTransport()
        self.server = Connection(Role.SERVER, max_packet_size=1 << 26)
        self.proto.makeConnection(self.transport)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.client = MySQLClient(self.proto)
        self.response: HandshakeResponse41 | None = None
        self.last_written = b""

    # -- the wire ------------------------------------------------------------------------------

    def send(self, *events: Message) -> None:
        """The server sends ``events`` (framed in one chunk)."""
        self.proto.dataReceived(self.server.send_many(events))

    def send_bytes(self, data: bytes, chunk: int = 0) -> None:
        """Raw bytes to the client, optionally in ``chunk``-sized pieces."""
        if not chunk:
            self.proto.dataReceived(data)
            return
        for i in range(0, len(data), chunk):
            self.proto.dataReceived(data[i : i + chunk])

    def received(self) -> list[Message | Signal]:
        """What the client wrote since the last call, as server-side events."""
        data = self.transport.value()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.transport.clear()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.last_written = data
        if data:
            self.server.receive_data(data)
        return drain(self.server)

    def lose(self) -> None:
        """The socket closes."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure as TwistedFailure

        self.transport.connected = False
        self.proto.connectionLost(TwistedFailure(ConnectionDone()))  # type: ignore[no-untyped-call]  # Twisted: unannotated

    # -- login ---------------------------------------------------------------------------------

    def greeting(
        self,
        caps: int = int(SERVER_CAPABILITIES | Capability.SSL),
        plugin: str = "mysql_native_password",
        version: str = "8.0.36",
        ext: int = 0,
    ) -> HandshakeV10:
        return HandshakeV10(version, 42, SCRAMBLE, caps, 45, AUTOCOMMIT, plugin, ext)

    def start(self, greeting: HandshakeV10 | None = None) -> HandshakeResponse41:
        """Send the greeting; return the client's login packet (after TLS if it asked)."""
        self.send(greeting or self.greeting())
        events = self.received()
        if events and isinstance(events[0], SSLRequest):
            events = self.server_tls()
        [response] = events
        assert isinstance(response, HandshakeResponse41)
        self.response = response
        return response

    def server_tls(self) -> list[Message | Signal]:
        """The server side of the (pretend) TLS upgrade; the events written after it."""
        rest = self.server.take_buffered()
        self.server.start_tls_done()
        if rest:
            self.server.receive_data(rest)
        return drain(self.server)

    def login(self, greeting: HandshakeV10 | None = None, status: int = AUTOCOMMIT) -> None:
        """A whole login that the server accepts without checking the password."""
        self.start(greeting)
        self.send(Ok(status=status))
        assert self.proto.logged_in

    def serve_auth(self, auth: ServerAuth) -> Success | Failure:
        """Answer the login packet with ``auth`` until it succeeds or fails."""
        assert self.response is not None
        step = auth.start(self.response.auth_plugin_name, self.response.auth_response)
        for _ in range(6):
            if isinstance(step, SendSwitch):
                self.send(AuthSwitchRequest(step.plugin, step.data))
            elif isinstance(step, SendMoreData):
                self.send(AuthMoreData(step.data))
            else:
                if isinstance(step, Success):
                    if step.more_data is not None:
                        self.send(AuthMoreData(step.more_data), Ok(status=AUTOCOMMIT))
                    else:
                        self.send(Ok(status=AUTOCOMMIT))
                else:
                    self.send(Err.from_error(step.error))
                return step
            [data] = self.received()
            assert isinstance(data, AuthData)
            step = auth.feed(data.data)
        raise AssertionError("auth exchange did not end")
