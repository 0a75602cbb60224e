"""vtwist's MySQL client: the tablet's connections to mysqld (MariaDB 10.11, MySQL 8).

``connect(reactor, target, user, password, ...)`` returns a Deferred firing with a logged-in
``MySQLClient``. Every command is a method returning a Deferred; this module owns that API.
The wire loop is ``client_protocol.MySQLClientProtocol`` and the reply collectors are in
``client_commands``; both are re-exported here.

Login: the client answers the greeting with the capabilities both ends share
(``constants.CLIENT_CAPABILITIES``: PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH(+LENENC),
TRANSACTIONS, MULTI_STATEMENTS/RESULTS, PS_MULTI_RESULTS, CONNECT_ATTRS when ``attrs`` are
given, DEPRECATE_EOF when offered) and always sets bit 0, so MariaDB (greeting version
``5.5.5-10.11...``, extended capabilities) treats it as a MySQL client: no ``MARIADB_CLIENT_*``
bit is requested. With ``tls`` it sends an SSLRequest, upgrades with ``startTLS`` and
continues over TLS. Auth plugins: ``mysql_native_password`` and ``caching_sha2_password``
(fast path; full authentication sends the password over TLS or a unix socket, or
RSA-encrypts it with ``server_public_key`` or the key it requests), with auth switches;
any other plugin (``client_ed25519``, ``dialog``...) fails with 1251.

Commands (one at a time per connection; calls made meanwhile wait in a FIFO of
``max_queued`` entries, and a call beyond that fails with ``LocalProtocolError``):

=============================================  =========================================
``query(sql, python=False)``                   ``Deferred[Result]``: rows collected as
                                               ``bytes | None`` (``python=True``: parsed)
``stream_query(sql, consumer)``                ``Deferred[Result]`` without rows; the
                                               consumer sees every event as it arrives
``prepare(sql)``                               ``Deferred[PreparedStatement]``
``execute(stmt, params)`` / ``stream_execute`` binary rows decoded to Python values
``close_statement(stmt)``                      ``Deferred[None]`` (no reply from mysqld)
``reset_connection()``                         COM_RESET_CONNECTION, then ``SET NAMES``
``ping()`` / ``init_db(db)``                   ``Deferred[None]``
``quit()`` / ``close()``                       after the queue / right now
=============================================  =========================================

Errors are ``MySQLError(code, message, sqlstate)``: mysqld's ERR as sent; 2003 when the
TCP connection cannot be made or the login does not finish within ``connect_timeout``
(2002 for a unix socket); 2013 when the connection is lost or ``read_timeout`` expires
while a reply is due (the connection is then closed: ``is_broken``); 2006 for commands
on a broken connection; 2026 for TLS failures; 1104 when a collected result exceeds
``max_result_size`` (stream it instead).

Back-pressure: a streaming consumer can call ``pause_reading()`` (no more events, no more
reads from the socket, read timeout suspended) and ``resume_reading()``; ``producer`` is the
transport as an ``IPushProducer`` for ``registerProducer``-style plumbing. A streamed
result never sits whole in memory: at most one packet (``max_packet_size``) plus one
socket read is buffered.

LOAD DATA LOCAL INFILE (a connection opened with ``local_files``): the file is only ever
the one the statement brings, ``stream_query_notify(..., infile=...)``: ``bytes`` (sent
whole) or an ``interfaces.IInfileReader``, streamed in pieces as mysqld takes them (one
read in flight, none while the socket to mysqld is congested: the file never sits whole
in memory; the read timeout is suspended until the end of the file was sent). A reader
that fails (or a feed cut short by a cancel, ``close`` or a lost connection) closes the
connection without sending the end of the file, so that mysqld aborts and rolls back the
statement rather than load a truncated file; the command fails with the reader's
``MySQLError`` (2013 for a lost connection or ``close``), queued ones with 2006. A
statement that asks for a file without ``infile`` gets an empty one and fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure

from vtwist import __version__ as _vtwist_version
from vtwist.protocols.mysql.client_commands import (
    CHARSETS,
    Consumer,
    ExecuteHandler,
    NoReplyHandler,
    PreparedStatement,
    PrepareHandler,
    ResetHandler,
    Result,
    ResultHandler,
    SimpleHandler,
    StreamEvent,
)
from vtwist.protocols.mysql.client_protocol import (
    DEFAULT_MAX_QUEUED,
    DEFAULT_MAX_RESULT_SIZE,
    DEFAULT_READ_TIMEOUT,
    MARIADB_VERSION_PREFIX,
    ClientConfig,
    MySQLClientFactory,
    MySQLClientProtocol,
)
from vtwist.protocols.mysql.commands import (
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComStmtClose,
)
from vtwist.protocols.mysql.connection import DEFAULT_MAX_PACKET_SIZE
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError

if TYPE_CHECKING:
    from vtwist.interfaces import IInfileReader

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_PACKET_SIZE",
    "DEFAULT_MAX_QUEUED",
    "DEFAULT_MAX_RESULT_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "ClientConfig",
    "Consumer",
    "MySQLClient",
    "MySQLClientFactory",
    "MySQLClientProtocol",
    "PreparedStatement",
    "Result",
    "StreamEvent",
    "Target",
    "connect",
]


DEFAULT_CONNECT_TIMEOUT = 10.0

Target = IStreamClientEndpoint | tuple[str, int] | str | os.PathLike[str]
"""Where mysqld is: an endpoint, ``(host, port)``, or a unix socket path."""


def _sql(sql: bytes | str) -> bytes:
    return sql.encode("utf-8") if isinstance(sql, str) else sql


class MySQLClient:
    """A logged-in connection to mysqld; see the module docstring for the rules.

    Not thread-safe (reactor thread only). Statements belong to the connection that
    prepared them.
    """

    def __init__(self, protocol: MySQLClientProtocol) -> None:
        self.protocol = protocol

    # -- state -------------------------------------------------------------------------------

    @property
    def connection_id(self) -> int:
        """mysqld's id for this connection (``CONNECTION_ID()``, what ``KILL`` takes)."""
        g = self.protocol.greeting
        return g.connection_id if g is not None else 0

    @property
    def raw_server_version(self) -> str:
        """The version string of the greeting, as sent."""
        g = self.protocol.greeting
        return g.server_version if g is not None else ""

    @property
    def server_version(self) -> str:
        """The server version without MariaDB's ``5.5.5-`` replication prefix."""
        v = self.raw_server_version
        if v.startswith(MARIADB_VERSION_PREFIX) and "MariaDB" in v:
            return v[len(MARIADB_VERSION_PREFIX) :]
        return v

    @property
    def is_mariadb(self) -> bool:
        """Whether the server is MariaDB."""
        return "MariaDB" in self.raw_server_version

    @property
    def capabilities(self) -> int:
        """The capabilities in effect (server's & ours)."""
        return self.protocol.conn.capabilities

    @property
    def deprecate_eof(self) -> bool:
        """Whether CLIENT_DEPRECATE_EOF was negotiated."""
        return self.protocol.conn.deprecate_eof

    @property
    def tls(self) -> bool:
        """Whether the connection runs over TLS."""
        return self.protocol.conn.tls

    @property
    def status_flags(self) -> int:
        """Server status flags of the last OK/EOF (``constants.ServerStatus``)."""
        return self.protocol.status_flags

    @property
    def in_transaction(self) -> bool:
        """Whether mysqld reported an open transaction."""
        return self.protocol.in_transaction

    @property
    def is_broken(self) -> bool:
        """True once the connection is closed or unusable (lost, timed out, protocol error)."""
        return self.protocol.is_broken

    @property
    def busy(self) -> bool:
        """True while a command runs or is queued."""
        return self.protocol.busy

    @property
    def producer(self) -> IPushProducer:
        """The transport as the push producer of mysqld's bytes."""
        return self.protocol.producer

    # -- commands ----------------------------------------------------------------------------

    def query(self, sql: bytes | str, *, python: bool = False) -> Deferred[Result]:
        """Run ``sql`` (COM_QUERY) and collect its results (``Result.more`` for the rest).

        Rows hold ``bytes | None`` per column, or with ``python`` the values ``values``
        parses them to (int, float, Decimal, DateValue/DateTimeValue/TimeValue, bytes).
        """
        handler = ResultHandler(
            ComQuery(_sql(sql)),
            binary=False,
            python=python,
            max_result_size=self.protocol.config.max_result_size,
        )
        return self.protocol.submit(handler)

    def stream_query(self, sql: bytes | str, consumer: Consumer) -> Deferred[Result]:
        """Run ``sql``, handing every reply event to ``consumer`` as it arrives.

        Events per result: ``Ok``, or ``ResultSetStart``, ``Column`` x n, ``Row`` (raw
        text-protocol payload) x any, ``ResultSetDone``. Nothing is accumulated; the
        Deferred fires with the summary (columns, counts, status, ``row_count``) when the
        reply is complete. If ``consumer`` raises, the rest of the reply is read and
        dropped and the Deferred fails with that exception.
        """
        return self.protocol.submit(self._streaming(sql, consumer))

    def stream_query_notify(
        self,
        sql: bytes | str,
        consumer: Consumer,
        done: Callable[[Result | Failure | None], object],
        *,
        summary: bool = True,
        infile: bytes | IInfileReader | None = None,
    ) -> None:
        """``stream_query`` without a Deferred, for a caller on every query's path (the
        tablet): ``done`` is called once with the summary or a Failure (the same errors),
        synchronously if the connection refuses the command at once. It cannot be
        cancelled; an exception ``done`` raises is logged. Without ``summary`` no summary
        is kept: ``done`` gets None on success (a relay that only needs the events).
        ``infile``: what to send if the statement is a LOAD DATA LOCAL INFILE (the
        connection must have been opened with ``local_files``): the whole file as bytes,
        or an ``IInfileReader`` it is streamed from when mysqld asks for it (pieces of
        ``client_protocol.INFILE_PIECE`` bytes, one read at a time, paced by the socket to
        mysqld; the read timeout waits meanwhile). If the reader fails, mysqld does not get
        the end of the file: the connection is closed, so mysqld rolls the statement back,
        and ``done`` gets the reader's ``MySQLError`` (its code and message)."""
        self.protocol.submit_notify(self._streaming(sql, consumer, summary, infile), done)

    def _streaming(
        self,
        sql: bytes | str,
        consumer: Consumer,
        summary: bool = True,
        infile: bytes | IInfileReader | None = None,
    ) -> ResultHandler:
        return ResultHandler(
            ComQuery(_sql(sql)),
            binary=False,
            python=False,
            max_result_size=self.protocol.config.max_result_size,
            consumer=consumer,
            summary=summary,
            infile=infile,
        )

    def prepare(self, sql: bytes | str) -> Deferred[PreparedStatement]:
        """COM_STMT_PREPARE: a statement with its parameter and column definitions."""
        return self.protocol.submit(PrepareHandler(_sql(sql)))

    def execute(self, stmt: PreparedStatement, params: Sequence[object] = ()) -> Deferred[Result]:
        """COM_STMT_EXECUTE ``stmt`` with ``params`` (None = NULL; types from the values:
        ``values.choose_param_type``); rows come decoded to Python values."""
        try:
            handler = self._executing(stmt, params)
        except (TypeError, ValueError) as e:
            return _bad_params(stmt, e)
        return self.protocol.submit(handler)

    def stream_execute(
        self, stmt: PreparedStatement, params: Sequence[object], consumer: Consumer
    ) -> Deferred[Result]:
        """Like ``execute``, streaming the events (``Row`` payloads are binary rows: decode
        them with ``values.decode_binary_row`` and ``client_commands.column_specs``)."""
        try:
            handler = self._executing(stmt, params, consumer)
        except (TypeError, ValueError) as e:
            return _bad_params(stmt, e)
        return self.protocol.submit(handler)

    def stream_execute_notify(
        self,
        stmt: PreparedStatement,
        params: Sequence[object],
        consumer: Consumer,
        done: Callable[[Result | Failure | None], object],
        *,
        summary: bool = True,
    ) -> None:
        """``stream_execute`` without a Deferred, as ``stream_query_notify`` is to
        ``stream_query`` (bad parameters call ``done`` with their Failure at once)."""
        try:
            handler = self._executing(stmt, params, consumer, summary)
        except (TypeError, ValueError) as e:
            _bad_params(stmt, e).addBoth(done)
            return
        self.protocol.submit_notify(handler, done)

    def _executing(
        self,
        stmt: PreparedStatement,
        params: Sequence[object],
        consumer: Consumer | None = None,
        summary: bool = True,
    ) -> ExecuteHandler:
        """The handler of an execute (TypeError/ValueError: the values cannot be sent)."""
        return ExecuteHandler(stmt, params, self.protocol.config.max_result_size, consumer, summary)

    def close_statement(self, stmt: PreparedStatement) -> Deferred[None]:
        """COM_STMT_CLOSE (mysqld sends no reply); fires once it was written."""
        stmt.closed = True
        d = self.protocol.submit(NoReplyHandler(ComStmtClose(stmt.statement_id)))
        return d.addCallback(lambda _: None)

    def reset_connection(self) -> Deferred[None]:
        """COM_RESET_CONNECTION (rolls back, drops user variables, temporary tables and
        prepared statements, resets session variables), then ``SET NAMES <charset>``."""
        d = self.protocol.submit(ResetHandler(self.protocol.config.charset))
        return d.addCallback(lambda _: None)

    def ping(self) -> Deferred[None]:
        """COM_PING."""
        return self.protocol.submit(SimpleHandler(ComPing())).addCallback(lambda _: None)

    def init_db(self, database: str) -> Deferred[None]:
        """COM_INIT_DB: make ``database`` the default database."""
        d = self.protocol.submit(SimpleHandler(ComInitDB(database)))
        return d.addCallback(lambda _: None)

    # -- flow control and closing ------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop delivering events and reading the socket (for a slow stream consumer)."""
        self.protocol.pause_reading()

    def resume_reading(self) -> None:
        """Undo ``pause_reading``."""
        self.protocol.resume_reading()

    def quit(self) -> Deferred[None]:
        """COM_QUIT after the queued commands; fires when the socket is closed."""
        d = self.protocol.submit(NoReplyHandler(ComQuit()))
        return d.addBoth(lambda _: self.protocol.when_closed())

    def close(self) -> Deferred[None]:
        """Close now (COM_QUIT if idle; a running command fails with 2013)."""
        return self.protocol.close()

    def when_closed(self) -> Deferred[None]:
        """Fires once the socket is closed."""
        return self.protocol.when_closed()


def _bad_params(stmt: PreparedStatement, e: Exception) -> Deferred[Result]:
    d: Deferred[Result] = Deferred()
    d.errback(
        MySQLError(
            ErrorCode.WRONG_ARGUMENTS,
            f"Incorrect arguments to mysqld_stmt_execute: {e} (statement {stmt.sql[:60]!r})",
        )
    )
    return d


# -- connecting ------------------------------------------------------------------------------


def _endpoint(
    reactor: Any, target: Target, timeout: float
) -> tuple[IStreamClientEndpoint, str, bool]:
    """``(endpoint, address for messages, is a unix socket)``."""
    if isinstance(target, tuple):
        host, port = target
        address = f"[{host}]:{port}" if isIPv6Address(host) else f"{host}:{port}"
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, port, timeout=timeout), address, False
        if isIPv6Address(host):
            ep6 = TCP6ClientEndpoint(reactor, host, port, timeout=timeout)  # type: ignore[no-untyped-call]
            return ep6, address, False
        ep = HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)
        return ep, address, False
    if isinstance(target, str | os.PathLike):
        path = os.fspath(target)
        unix_ep = UNIXClientEndpoint(reactor, path, timeout=timeout)  # type: ignore[no-untyped-call]
        return unix_ep, path, True
    if IStreamClientEndpoint.providedBy(target):
        return target, _describe_endpoint(target), False
    raise TypeError(f"cannot connect to {target!r}: give an endpoint, (host, port) or a path")


def _describe_endpoint(ep: IStreamClientEndpoint) -> str:
    host = getattr(ep, "_host", None) or getattr(ep, "_hostText", None)
    port = getattr(ep, "_port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    return repr(ep)


def _cant_connect(address: str, unix: bool, why: str) -> MySQLError:
    if unix:
        return MySQLError(
            ErrorCode.CR_CONNECTION_ERROR,
            f"Can't connect to local server through socket '{address}' ({why}); check "
            "that mysqld is running and the socket path",
        )
    return MySQLError(
        ErrorCode.CR_CONN_HOST_ERROR,
        f"Can't connect to MySQL server on '{address}' ({why}); check that mysqld is "
        "running and reachable there",
    )


def default_attrs() -> dict[str, str]:
    """The connection attributes sent by default (visible in performance_schema)."""
    return {"_client_name": "vtwist", "_client_version": _vtwist_version, "program_name": "vtwist"}


def connect(
    reactor: Any,
    target: Target,
    user: str,
    password: str | bytes = "",
    database: str | None = None,
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    server_public_key: bytes | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
    charset: str = "utf8mb4",
    attrs: dict[str, str] | None = None,
    allow_cleartext: bool = False,
    found_rows: bool = False,
    local_files: bool = False,
    multi_statements: bool = True,
    max_queued: int = DEFAULT_MAX_QUEUED,
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
) -> Deferred[MySQLClient]:
    """Connect and log in to mysqld; fires with a ``MySQLClient``.

    ``reactor`` provides IReactorTime and IReactorTCP (IReactorUNIX for a socket path).
    ``tls``: client TLS options (``twisted.internet.ssl.optionsForClientTLS(...)``);
    ``server_public_key``: mysqld's RSA public key (PEM) for caching_sha2 full auth
    without TLS (else the client asks mysqld for it). ``connect_timeout`` bounds TCP
    connect plus login; ``read_timeout`` (None: no limit) bounds the silence while a
    reply is due; ``max_packet_size`` bounds one reassembled packet from mysqld;
    ``charset`` is one of ``client_commands.CHARSETS``; ``attrs`` are the connection
    attributes (default ``default_attrs()``; ``{}`` sends none). ``found_rows`` and
    ``local_files`` ask for CLIENT_FOUND_ROWS and CLIENT_LOCAL_FILES (the client sends no
    file but what a statement brings, ``stream_query_notify``'s ``infile``). Failures
    are ``MySQLError`` (see the module docstring).
    """
    if charset not in CHARSETS:
        raise ValueError(f"unknown charset {charset!r}; use one of {sorted(CHARSETS)}")
    if connect_timeout <= 0 or (read_timeout is not None and read_timeout <= 0):
        raise ValueError("connect_timeout and read_timeout must be positive")
    endpoint, address, unix = _endpoint(reactor, target, connect_timeout)
    config = ClientConfig(
        user=user,
        password=password,
        database=database,
        tls=tls,
        server_public_key=server_public_key,
        read_timeout=read_timeout,
        max_packet_size=max_packet_size,
        charset=charset,
        attrs=default_attrs() if attrs is None else dict(attrs),
        address=address,
        secure_channel=unix,
        allow_cleartext=allow_cleartext,
        found_rows=found_rows,
        local_files=local_files,
        multi_statements=multi_statements,
        max_queued=max_queued,
        max_result_size=max_result_size,
    )
    clock = cast(IReactorTime, reactor)
    factory = MySQLClientFactory(config, clock)
    return Deferred.fromCoroutine(_connect(clock, endpoint, factory, connect_timeout, unix))


async def _connect(
    clock: IReactorTime,
    endpoint: IStreamClientEndpoint,
    factory: MySQLClientFactory,
    timeout: float,
    unix: bool,
) -> MySQLClient:
    address = factory.config.address
    timed_out = False
    stage: Deferred[Any] | None = None

    def on_timeout() -> None:
        nonlocal timed_out
        timed_out = True
        if stage is not None:
            stage.cancel()

    timer = clock.callLater(timeout, on_timeout)
    try:
        stage = endpoint.connect(factory)
        try:
            proto = await stage
        except CancelledError:
            if not timed_out:
                raise
            raise _cant_connect(address, unix, f"timed out after {timeout}s") from None
        except Exception as e:
            raise _cant_connect(address, unix, _reason(e)) from None
        assert isinstance(proto, MySQLClientProtocol)
        stage = proto.ready
        try:
            await stage
        except CancelledError:
            if not timed_out:
                raise
            raise _cant_connect(
                address, unix, f"no complete login within connect_timeout={timeout}s"
            ) from None
        return MySQLClient(proto)
    finally:
        if timer.active():
            timer.cancel()


def _reason(e: BaseException) -> str:
    text = str(e).strip().rstrip(".")
    return text or type(e).__name__
