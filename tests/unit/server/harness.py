"""Fakes for the MySQL server tests: users, a scriptable query handler, and a client side
built from the sans-IO ``Connection`` talking to a ``MySQLServerProtocol`` over a
``StringTransport`` (no sockets, ``task.Clock`` time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support.tcp_transport import TCPStringTransport
from vtwist.interfaces import IAuthServer, IQueryHandler, IQueryHandlerFactory, IResultSink
from vtwist.protocols.mysql.auth import (
    Account,
    ClientAuth,
    Pbkdf2Verifier,
    RsaKey,
    Sha2Cache,
    native_double_sha1,
)
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role, State
from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    CLIENT_CAPABILITIES,
    NATIVE_PASSWORD,
    Capability,
    ColumnType,
    ServerStatus,
)
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Signal
from vtwist.protocols.mysql.literals import count_placeholders
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ColumnDefinition41,
    ComQuery,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    Ok,
    SSLRequest,
)
from vtwist.protocols.mysql.packets import encode_packets
from vtwist.protocols.mysql.server import MySQLServerFactory, MySQLServerProtocol, ServerMetrics
from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
from vtwist.protocols.mysql.values import encode_text_row
from vtwist.protocols.mysql.wire import Message

if TYPE_CHECKING:
    from OpenSSL.SSL import Connection as OpenSSLConnection

AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
IN_TRANS = int(ServerStatus.IN_TRANS)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
CURSOR = int(ServerStatus.CURSOR_EXISTS)
LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
CAPS = int(CLIENT_CAPABILITIES) | int(Capability.CONNECT_WITH_DB)
NO_EOF_CAPS = CAPS & ~int(Capability.DEPRECATE_EOF)
PASSWORD = "s3cret"

COL_ONE = ColumnDefinition41("1", ColumnType.LONGLONG, 63, 1, 0x81)
COL_ECHO = ColumnDefinition41("echo", ColumnType.VAR_STRING, 45, 1024)
COL_COMMENT = ColumnDefinition41("@@version_comment", ColumnType.VAR_STRING, 45, 64)


def text_row(*values: bytes | None) -> bytes:
    return encode_text_row(values)


def make_users(default_plugin: str = NATIVE_PASSWORD) -> MemoryUsers:
    native = native_double_sha1(PASSWORD)
    verifier = Pbkdf2Verifier.create(PASSWORD, 1000)
    return MemoryUsers(
        {
            "app": Account("app", NATIVE_PASSWORD, native, verifier),
            "sha2": Account("sha2", CACHING_SHA2_PASSWORD, native, verifier),
            "clear": Account("clear", CLEAR_PASSWORD, native, verifier),
            "nopw": Account("nopw", NATIVE_PASSWORD, empty_password=True),
        },
        default_plugin,
    )


@implementer(IAuthServer)
class MemoryUsers:
    """An in-memory IAuthServer."""

    def __init__(self, accounts: dict[str, Account], default_plugin: str) -> None:
        self.accounts = accounts
        self._default = default_plugin
        self._cache = Sha2Cache(100)

    def default_plugin(self) -> str:
        return self._default

    def account(self, user: str) -> Account | None:
        return self.accounts.get(user)

    def sha2_cache(self) -> Sha2Cache:
        return self._cache


@implementer(IPushProducer)
class RecordingProducer:
    """A push producer recording what the sink told it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = False

    def pauseProducing(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resumeProducing(self) -> None:
        self.calls.append("resume")
        self.paused = False

    def stopProducing(self) -> None:
        self.calls.append("stop")


Script = Callable[[IResultSink], Any]


@implementer(IQueryHandler)
class FakeHandler:
    """A query handler whose answers are scripted per SQL text; records every call."""

    def __init__(self, info: ClientInfo) -> None:
        self.info = info
        self.calls: list[tuple[Any, ...]] = []
        self.status_flags = AUTOCOMMIT
        self.sinks: list[IResultSink] = []
        self.scripts: dict[bytes, Script] = {}
        self.pending: list[Deferred[Any]] = []
        self.fail_next: BaseException | None = None
        self.columns: dict[bytes, list[ColumnDefinition41]] = {}
        self.closed = 0

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            e, self.fail_next = self.fail_next, None
            raise e

    def status(self) -> int:
        return self.status_flags

    def query(self, sql: bytes, sink: IResultSink) -> Any:
        self.calls.append(("query", sql))
        self.sinks.append(sink)
        return self._answer(sql, sink)

    def _answer(self, sql: bytes, sink: IResultSink) -> Any:
        script = self.scripts.get(sql)
        if script is not None:
            return script(sink)
        if sql == b"SELECT 1":
            sink.start([COL_ONE])
            sink.row(text_row(b"1"))
            sink.done(self.status_flags)
        elif sql.lower() == b"select @@version_comment limit 1":
            sink.start([COL_COMMENT])
            sink.row(text_row(b"vtwist test handler"))
            sink.done(self.status_flags)
        elif sql.startswith(b"error"):
            raise MySQLError(1146, "Table 'db.t' doesn't exist", "42S02")
        elif sql.startswith(b"boom"):
            raise RuntimeError("boom")
        elif sql.startswith(b"later"):
            d: Deferred[None] = Deferred()
            self.pending.append(d)
            return d
        elif sql.startswith(b"insert"):
            sink.ok(3, 42, self.status_flags, 1, b"Records: 3")
        else:
            sink.start([COL_ECHO])
            sink.row(text_row(sql))
            sink.done(self.status_flags)
        return succeed(None)

    def init_db(self, schema: str) -> Deferred[None]:
        self.calls.append(("init_db", schema))
        if schema == "nosuch":
            raise MySQLError(1049, f"Unknown database '{schema}'")
        return succeed(None)

    def field_list(self, table: str, wildcard: str) -> Deferred[Sequence[ColumnDefinition41]]:
        self.calls.append(("field_list", table, wildcard))
        self._maybe_fail()
        return succeed([COL_ONE, COL_ECHO])

    def prepare(self, sql: bytes) -> Deferred[PrepareInfo]:
        self.calls.append(("prepare", sql))
        self._maybe_fail()
        columns = self.columns.get(sql, [COL_ECHO] if sql.lower().startswith(b"select") else [])
        return succeed(PrepareInfo(count_placeholders(sql), columns=columns, state=sql))

    def execute(
        self, statement: Statement, params: Sequence[object], sink: IResultSink, cursor: bool
    ) -> Any:
        self.calls.append(("execute", statement.statement_id, list(params), cursor))
        self.sinks.append(sink)
        return self._answer(statement.sql, sink)

    def close_statement(self, statement: Statement) -> Deferred[None]:
        self.calls.append(("close_statement", statement.statement_id))
        return succeed(None)

    def reset_connection(self) -> Deferred[None]:
        self.calls.append(("reset_connection",))
        self._maybe_fail()
        return succeed(None)

    def change_user(self, info: ClientInfo) -> Deferred[None]:
        self.calls.append(("change_user", info.user, info.database))
        self.info = info
        return succeed(None)

    def ping(self) -> Deferred[None]:
        self.calls.append(("ping",))
        self._maybe_fail()
        return succeed(None)

    def statistics(self) -> Deferred[str]:
        self.calls.append(("statistics",))
        return succeed("Uptime: 1  Threads: 1  Questions: 2")

    def set_multi_statements(self, on: bool) -> Deferred[None]:
        self.calls.append(("set_multi_statements", on))
        return succeed(None)

    def close(self) -> None:
        self.calls.append(("close",))
        self.closed += 1


@implementer(IQueryHandlerFactory)
class FakeHandlerFactory:
    def __init__(self) -> None:
        self.handlers: list[FakeHandler] = []
        self.refuse: MySQLError | None = None

    def open_session(self, info: ClientInfo) -> FakeHandler:
        if self.refuse is not None:
            raise self.refuse
        handler = FakeHandler(info)
        self.handlers.append(handler)
        return handler


class RecordingMetrics(ServerMetrics):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def connection_opened(self) -> None:
        self.events.append(("opened",))

    def connection_closed(self) -> None:
        self.events.append(("closed",))

    def connection_rejected(self, reason: str) -> None:
        self.events.append(("rejected", reason))

    def auth_finished(self, ok: bool, plugin: str) -> None:
        self.events.append(("auth", ok, plugin))

    def command(self, name: str) -> None:
        self.events.append(("command", name))


class FakeTLSProtocol:
    """Stands for the TLS layer: records the bytes handed to it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class FakeTLSTransport(TCPStringTransport):
    """A StringTransport that 'starts TLS' by recording it (bytes stay plain after)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.tls_started: list[object] = []
        self.protocol: Any = None

    def startTLS(self, creator: object, normal: bool = True) -> None:
        self.tls_started.append(creator)
        self.tls_layer = FakeTLSProtocol()
        self.protocol = self.tls_layer


# zope: declare ITLSTransport without importing its attribute requirements into every test.
from twisted.internet.interfaces import ITLSTransport  # noqa: E402
from zope.interface import classImplements  # noqa: E402

classImplements(FakeTLSTransport, ITLSTransport)


@implementer(IOpenSSLServerConnectionCreator)
class FakeTLSCreator:
    def serverConnectionForTLS(self, tlsProtocol: object) -> OpenSSLConnection:  # pragma: no cover
        raise NotImplementedError


class PlainCommand(Protocol):
    """A command message whose ``encode`` needs no capabilities (all but COM_CHANGE_USER)."""

    def encode(self) -> bytes: ...


def drain(conn: Connection) -> list[Message | Signal]:
    out: list[Message | Signal] = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, Signal):
            return out


class Harness:
    """A server factory with fakes, and a way to connect clients to it."""

    def __init__(self, **factory_kw: Any) -> None:
        self.clock = Clock()
        self.users = factory_kw.pop("users", None) or make_users()
        self.handlers = FakeHandlerFactory()
        self.metrics = RecordingMetrics()
        self.factory = MySQLServerFactory(
            self.handlers,
            self.users,
            clock=self.clock,
            metrics=self.metrics,
            **factory_kw,
        )

    def connect(
        self,
        host: str = "127.0.0.1",
        tls_transport: bool = False,
        transport: StringTransport | None = None,
    ) -> Client:
        return Client(self, host, tls_transport, transport)


class Client:
    """The client end: a sans-IO client Connection wired to a server protocol."""

    def __init__(
        self,
        harness: Harness,
        host: str,
        tls_transport: bool,
        transport: StringTransport | None = None,
    ) -> None:
        self.harness = harness
        cls = FakeTLSTransport if tls_transport else StringTransport
        self.transport = transport or cls(peerAddress=IPv4Address("TCP", host, 40001))  # type: ignore[no-untyped-call]  # Twisted: StringTransport.__init__ unannotated
        self.proto: MySQLServerProtocol = harness.factory.buildProtocol(None)
        self.conn = Connection(Role.CLIENT)
        self.proto.makeConnection(self.transport)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.lost = False
        self.pending_commands: list[Message] = []

    @property
    def handler(self) -> FakeHandler:
        return self.harness.handlers.handlers[-1]

    def raw_out(self) -> bytes:
        data = self.transport.value()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.transport.clear()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        return bytes(data)

    def events(self) -> list[Message | Signal]:
        data = self.raw_out()
        if data:
            self.conn.receive_data(data)
        return drain(self.conn)

    def send(self, *events: Message) -> None:
        self.proto.dataReceived(self.conn.send_many(events))

    def send_raw(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def send_pipelined(self, *commands: PlainCommand) -> None:
        """Send several commands in one write, without waiting for answers."""
        self.pending_commands = []
        for cmd in commands:
            assert isinstance(cmd, Message)
            self.pending_commands.append(cmd)
        self.send_raw(b"".join(encode_packets(cmd.encode(), 0)[0] for cmd in commands))

    def pipelined_replies(self) -> list[list[Message | Signal]]:
        """The replies to ``send_pipelined``'s commands received so far, per command."""
        data = self.raw_out()
        if data:
            self.conn.receive_data(data)
        out: list[list[Message | Signal]] = []
        while self.pending_commands:
            if self.conn.state is State.IDLE:
                self.conn.send(self.pending_commands[0])
            evs: list[Message | Signal] = []
            while self.conn.state is not State.IDLE:
                ev = self.conn.next_event()
                if ev is NEED_DATA:
                    break
                evs.append(ev)
            if evs:
                out.append(evs)
            if self.conn.state is not State.IDLE:
                break
            self.pending_commands.pop(0)
        return out

    def greeting(self) -> HandshakeV10:
        evs = self.events()
        assert isinstance(evs[0], HandshakeV10), evs
        return evs[0]

    def login(
        self,
        user: str = "app",
        password: str = PASSWORD,
        *,
        caps: int = CAPS,
        database: str = "",
        plugin: str | None = None,
        secure: bool = False,
        ssl_request: bool = False,
        attrs: dict[str, str] | None = None,
    ) -> Ok | Err:
        greeting = self.greeting()
        if ssl_request:
            self.send(SSLRequest(caps | int(Capability.SSL)))
            self.conn.start_tls_done()
            caps |= int(Capability.SSL)
            secure = True
        auth = ClientAuth(
            password, greeting.auth_plugin_data, plugin or greeting.auth_plugin_name, secure
        )
        response = HandshakeResponse41(
            caps, 1 << 24, 45, user, auth.initial_response(), database, auth.plugin, attrs or {}
        )
        self.send(response)
        return self.finish_auth(auth)

    def finish_auth(self, auth: ClientAuth) -> Ok | Err:
        for _ in range(10):
            evs = self.events()
            assert evs, "the server did not answer"
            for ev in evs:
                if isinstance(ev, AuthSwitchRequest):
                    self.send(AuthData(auth.feed_switch(ev.plugin_name, ev.data)))
                elif isinstance(ev, AuthMoreData):
                    reply = auth.feed_more_data(ev.data)
                    if reply is not None:
                        self.send(AuthData(reply))
                elif isinstance(ev, Ok | Err):
                    return ev
        raise AssertionError("auth did not finish")

    def logged_in(self, **kw: Any) -> Client:
        result = self.login(**kw)
        assert isinstance(result, Ok), result
        return self

    def query(self, sql: bytes) -> list[Message | Signal]:
        self.send(ComQuery(sql))
        return self.events()

    def lose(self) -> None:
        """The socket closed (as the reactor would report it)."""
        if not self.lost:
            self.lost = True
            self.proto.connectionLost(Failure(ConnectionError("closed")))  # type: ignore[no-untyped-call]  # Twisted: unannotated


__all__ = [
    "AUTOCOMMIT",
    "CAPS",
    "COL_ECHO",
    "COL_ONE",
    "CURSOR",
    "IN_TRANS",
    "LAST_ROW",
    "MORE",
    "NO_EOF_CAPS",
    "PASSWORD",
    "Client",
    "FakeHandler",
    "FakeTLSCreator",
    "Harness",
    "RecordingProducer",
    "RsaKey",
    "text_row",
]
